"""`make bench`'s multi-host sync scenario (issue 14), also runnable alone:
python3 scripts/bench_sync.py [--build build] [--duration 8].

The same llmroute (2 workers, one deployment with rpm and tpm limits high
enough never to refuse) under the same wrk load, once without Redis and
once syncing through a real redis-server: CPU microseconds per request of
the whole process tree (the sync process included) and the Redis commands
per 1,000 requests (INFO commandstats before and after).  Skipped when
redis-server is not installed.
"""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def redis_calls(port):
    """(commands Redis ran, those inside scripts included; round trips =
    commands sent, the scripts' own not counted), less this INFO itself."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"],
                         capture_output=True, text=True, check=True).stdout
    calls = {line.split(":")[0][len("cmdstat_"):]: int(line.split("calls=")[1].split(",")[0])
             for line in out.splitlines() if line.startswith("cmdstat_")}
    info = calls.get("info", 0)
    inner = sum(n for k, n in calls.items() if k not in ("eval", "evalsha", "info", "ping",
                                                          "subscribe", "auth", "select",
                                                          "mget", "hello", "client"))
    total = sum(calls.values()) - info
    return total, total - inner


def sync_pid(args, conf_path):
    out = subprocess.run([os.path.join(args.build, "llmroute"), "-c", conf_path, "status",
                          "--json"], capture_output=True, text=True)
    try:
        return json.loads(out.stdout)["sync"]["pid"]
    except (ValueError, KeyError):
        return 0


def proc_cpu_ns(pid):
    total = 0
    if not pid:
        return 0
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
            total += int(f.read().split()[0])
    return total


def conf(tmp, name, port, upstream, router):
    path = os.path.join(tmp, name + ".conf")
    with open(path, "w") as f:
        f.write("""server: { listen = "127.0.0.1:%d"; workers = 2;
  pid_file = "%s/%s.pid"; shm_name = "/llmr-bench-%d-%s"; access_log = "off"; };
router_settings: { %s };
model_list = ( { model_name = "bench"; litellm_params = { model = "openai/gpt-3.5-turbo";
  api_base = "http://127.0.0.1:%d/v1"; api_key = "sk-bench"; rpm = 100000000;
  tpm = 2000000000; }; model_info = { id = "mock-sync"; }; } );
""" % (port, tmp, name, os.getpid(), name, router, upstream))
    return path


def scenario(args, tmp, mock_port, lua):
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        return {"skipped": "redis-server not installed"}
    rport = bench.free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    out = {}
    try:
        bench.wait_for(lambda: subprocess.run(["redis-cli", "-p", str(rport), "PING"],
                                              capture_output=True, text=True).stdout.strip()
                       == "PONG", 10, "redis-server")
        path = "/v1/chat/completions"
        for name, router in (("no_sync", ""),
                             ("sync", 'redis_host = "127.0.0.1"; redis_port = %d;' % rport)):
            port = bench.free_port()
            c = conf(tmp, "llmroute-" + name, port, mock_port, router)
            lr = bench.Server("llmroute-" + name, [os.path.join(args.build, "llmroute"), "-c", c],
                              port, "/health/readiness", tmp)
            spid = sync_pid(args, c)
            c0, t0 = redis_calls(rport)
            s0, w0 = proc_cpu_ns(spid), time.monotonic()
            r = bench.measure(lr, port, path, args, lua)
            c1, t1 = redis_calls(rport)
            s1, w1 = proc_cpu_ns(spid), time.monotonic()
            lr.stop()
            if spid:    # the sync process alone: what syncing costs the host
                r["sync_process_cpu_us_per_req"] = round((s1 - s0) / 1e3 / max(r["requests"], 1),
                                                         3)
                r["sync_process_cpu_ms_per_s"] = round((s1 - s0) / 1e6 / (w1 - w0), 2)
            # measure() warms up for 1 s first: those requests are not counted
            # in r["requests"], so the figures per 1,000 overstate a little.
            n = max(r["requests"], 1)
            r["redis_commands"], r["redis_round_trips"] = c1 - c0, t1 - t0
            r["redis_commands_per_1000_requests"] = round((c1 - c0) * 1000.0 / n, 2)
            r["redis_round_trips_per_1000_requests"] = round((t1 - t0) * 1000.0 / n, 2)
            out[name] = r
    finally:
        redis.terminate()
        redis.wait(10)
    out["cpu_ratio_sync_vs_no_sync"] = round(out["sync"]["cpu_us_per_req"]
                                             / out["no_sync"]["cpu_us_per_req"], 3)
    return out


def report(res):
    s = res.get("sync")
    if s is None:
        return
    if "skipped" in s:
        print("multi-host sync: skipped (%s)" % s["skipped"])
        return
    for name in ("no_sync", "sync"):
        r = s[name]
        print("llmroute 2w, %-8s %8.0f req/s, CPU %.1f us/request, errors %d, Redis commands "
              "%d (%.2f per 1,000 requests; round trips %.2f per 1,000)" % (
                  name.replace("_", " "), r["rps"], r["cpu_us_per_req"], r["errors"],
                  r["redis_commands"], r["redis_commands_per_1000_requests"],
                  r["redis_round_trips_per_1000_requests"]))
    print("multi-host sync: CPU per request %.3fx without; the sync process itself %.3f us per "
          "request (%.2f ms of CPU per second)" % (
              s["cpu_ratio_sync_vs_no_sync"], s["sync"].get("sync_process_cpu_us_per_req", 0),
              s["sync"].get("sync_process_cpu_ms_per_s", 0)))


def main():
    import argparse
    import tempfile
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="llmr-bench-sync-")
    lua = os.path.join(tmp, "post.lua")
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = %s\n'
                'wrk.headers["Content-Type"] = "application/json"\n' % json.dumps(bench.BODY))
    mock = bench.Server("mock", [os.path.join(args.build, "llmroute-mock"), "-p", "0"], 0,
                        "/v1/models", tmp)
    try:
        res = {"sync": scenario(args, tmp, mock.port, lua)}
    finally:
        mock.stop()
    report(res)
    print(json.dumps(res["sync"], indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
