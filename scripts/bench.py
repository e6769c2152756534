"""The benchmark behind `make bench` (DESIGN.md §10).

Runs on 127.0.0.1, one scenario after another under identical load:
direct to the mock, nginx as a keep-alive reverse proxy, llmroute with 1 and
2 workers.  Reports requests/s, latency p50/p99, CPU microseconds per
request of the proxy's own processes, peak RSS per process; then the added
latency at concurrency 1, and the highest request rate llmroute sustains
against a 20 ms upstream with p99 under 30 ms.  Writes bench/results.json.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import bench_https

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = json.dumps({"model": "bench", "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello in one short sentence, please."}]})


# "cores" mode (--cores, machines with more than 2 cores): the proxy, the
# load tool and the upstream each pinned to cores of their own, as
# ../shared/device/run.sh does, so that a proxy's N workers get N cores.
CORES = {}


def plan_cores(n):
    """A quarter of the cores (at least 1) for the load, a quarter for the
    upstream, the rest for the proxy, which gets its first W for W workers."""
    load = max(1, n // 4)
    up = max(1, n // 4)
    proxy = n - load - up
    return {"proxy": list(range(proxy)), "load": list(range(proxy, proxy + load)),
            "upstream": list(range(proxy + load, n))}


def pinned(role, argv, workers=None):
    """argv under taskset when in cores mode."""
    cores = CORES.get(role)
    if not cores:
        return argv
    if workers is not None:
        cores = cores[:max(1, min(workers, len(cores)))]
    return ["taskset", "-c", ",".join(map(str, cores))] + argv


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(0.02)
    raise RuntimeError("timed out waiting for " + what)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(port, path, cafile=None):
    import ssl
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen("%s://127.0.0.1:%d%s" % ("https" if cafile else "http", port,
                                                             path), timeout=1,
                                    context=ctx) as r:
            return r.status == 200
    except Exception:
        return False


class Server:
    """A process tree whose CPU time and memory we measure."""

    def __init__(self, name, argv, port, ready_path, tmp, tls_ready=None, role=None,
                 workers=None):
        self.name, self.port = name, port
        self.log = open(os.path.join(tmp, name + ".log"), "wb")
        if role is None:
            role = "upstream" if name.startswith(("mock", "tls-up")) else "proxy"
        argv = pinned(role, argv, workers if role == "proxy" else None)
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT)
        if port == 0:                      # the mock prints its port
            self.port = int(self.p.stdout.readline().decode().split("=")[1])
        wait_for(lambda: http_ok(self.port, ready_path or "/v1/models", tls_ready), 15,
                 name + " ready")

    def pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.p.pid)], capture_output=True, text=True)
        return [self.p.pid] + [int(x) for x in out.stdout.split()]

    def cpu_ns(self):
        total = 0
        for pid in self.pids():
            try:
                for task in os.listdir("/proc/%d/task" % pid):
                    with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                        total += int(f.read().split()[0])
            except OSError:
                pass
        return total

    def rss_kb(self):
        """Peak RSS (VmHWM) of each process, master first."""
        out = []
        for pid in self.pids():
            try:
                with open("/proc/%d/status" % pid) as f:
                    m = re.search(r"VmHWM:\s+(\d+)", f.read())
                    out.append(int(m.group(1)))
            except OSError:
                pass
        return out

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.p.stdout.close()
        self.log.close()


def parse_wrk(out):
    def us(v, unit):
        return float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
    r = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % pct, out)
        r["p%s_us" % pct] = us(m.group(1), m.group(2))
    m = re.search(r"(\d+) requests in", out)
    r["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["errors"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["errors"] += sum(map(int, m.groups())) if m else 0
    return r


def run_wrk(port, path, args, lua):
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d",
           "%ds" % args.duration, "--latency", "-s", lua,
           "http://127.0.0.1:%d%s" % (port, path)]
    return parse_wrk(subprocess.run(pinned("load", cmd), capture_output=True, text=True, check=True).stdout)


def run_lat(args, tmp, port_a, port_b, path, body="body.json", stream=False):
    r = subprocess.run(pinned("load", [os.path.join(args.build, "llmroute-lat"), "-n",
                                       str(args.lat_requests), "-r", "20", "-b",
                                       os.path.join(tmp, body), str(port_a), str(port_b),
                                       path] + (["-s"] if stream else [])),
                       capture_output=True, text=True)
    if r.returncode != 0:
        logs = "".join("\n--- %s\n%s" % (f, open(os.path.join(tmp, f), errors="replace").read()[-1500:])
                       for f in sorted(os.listdir(tmp)) if f.endswith(".log"))
        raise RuntimeError("llmroute-lat failed: " + r.stderr + logs)
    return json.loads(r.stdout)


def measure(server, port, path, args, lua):
    """wrk against port; CPU and RSS of `server` (None for direct)."""
    subprocess.run(pinned("load", ["wrk", "-t1", "-c8", "-d1s", "-s", lua,
                                   "http://127.0.0.1:%d%s" % (port, path)]), capture_output=True)
    cpu0 = server.cpu_ns() if server else 0
    r = run_wrk(port, path, args, lua)
    if server:
        r["cpu_us_per_req"] = (server.cpu_ns() - cpu0) / 1e3 / max(r["requests"], 1)
        r["rss_kb"] = server.rss_kb()
    return r


def nginx_conf(tmp, port, upstream, workers):
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write("""daemon off;
master_process on;
worker_processes %d;
pid %s/nginx.pid;
error_log %s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path %s;
  proxy_temp_path %s;
  upstream mock { server 127.0.0.1:%d; keepalive 128; }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }
  }
}
""" % (workers, tmp, tmp, tmp, tmp, upstream, port))
    return path


def llmroute_conf(tmp, name, port, upstream, workers, server="", scheme="http", params="",
                  extra=""):
    path = os.path.join(tmp, name + ".conf")
    deps = ",\n".join(
        '{ model_name = "bench"; litellm_params = { model = "openai/gpt-3.5-turbo"; '
        'api_base = "%s://127.0.0.1:%d/v1"; api_key = "sk-bench"; %s }; '
        'model_info = { id = "mock-%s"; }; }' % (scheme, upstream, params, c) for c in "ab")
    with open(path, "w") as f:
        f.write("""server: { listen = "127.0.0.1:%d"; workers = %d;
  pid_file = "%s/%s.pid"; shm_name = "/llmr-bench-%d-%s"; %s };
model_list = ( %s );
%s
""" % (port, workers, tmp, name, os.getpid(), name, server, deps, extra))
    return path


def start_llmroute(args, tmp, name, upstream, workers, server="", scheme="http", params="",
                   extra=""):
    port = free_port()
    conf = llmroute_conf(tmp, name, port, upstream, workers, server, scheme, params, extra)
    return Server(name, [os.path.join(args.build, "llmroute"), "-c", conf], port,
                  "/health/readiness", tmp, workers=workers)


def rate_steps(args, tmp, mock_port, port, name):
    """Open-loop rates against a 20 ms upstream; the highest rate held with
    p99 < 30 ms, no errors and at least 95% of the asked rate delivered."""
    body = os.path.join(tmp, "body.json")
    steps, best = [], 0
    if True:
        for rate in args.rates:
            clients = max(16, int(rate * 0.02 * 3))
            log = os.path.join(tmp, "h2load-%s-%d.log" % (name, rate))
            cmd = ["h2load", "--h1", "-c", str(clients), "--rps", "%.3f" % (rate / clients),
                   "-D", str(args.rate_duration), "--warm-up-time", "1", "-d", body,
                   "-H", "Content-Type: application/json", "--log-file", log,
                   "http://127.0.0.1:%d/v1/chat/completions" % port]
            out = subprocess.run(pinned("load", cmd), capture_output=True, text=True).stdout
            lats, errors = [], 0
            with open(log) as f:
                for line in f:
                    t, status, dur = line.split()
                    lats.append(int(dur))
                    errors += status != "200"
            m = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
            if m:
                errors += sum(map(int, m.groups()))
            lats.sort()
            p99 = lats[int(0.99 * (len(lats) - 1))] / 1e3 if lats else float("inf")
            got = len(lats) / args.rate_duration
            ok = p99 < 30 and errors == 0 and got >= 0.95 * rate
            steps.append({"rate": rate, "achieved": round(got), "p99_ms": round(p99, 2),
                          "errors": errors, "ok": ok})
            if not ok:
                break
            best = rate
    return {"steps": steps, "max_rate_p99_under_30ms": best}


def rate_scenario(args, tmp):
    """The same rate steps straight to the 20 ms mock and through llmroute
    with 2 workers."""
    mock = Server("mock20", [os.path.join(args.build, "llmroute-mock"), "-p", "0",
                             "--latency", "20"], 0, "/v1/models", tmp)
    lr = start_llmroute(args, tmp, "llmroute-rate", mock.port, 2)
    try:
        return {"direct": rate_steps(args, tmp, mock.port, mock.port, "direct"),
                "llmroute_2w": rate_steps(args, tmp, mock.port, lr.port, "llmroute")}
    finally:
        lr.stop()
        mock.stop()


def stream_scenario(args, tmp, mock_port):
    """Added time to the first event at concurrency 1, then concurrent
    streams of 64 chunks 20 ms apart, stepping up: the most held with every
    event delivered and no gap over 1 s."""
    for name, body in (("stream4.json", {"chunks": 4}),
                       ("stream64.json", {"chunks": 64, "chunk_delay_ms": 20})):
        with open(os.path.join(tmp, name), "w") as f:
            f.write(json.dumps(dict(json.loads(BODY), stream=True, x_mock=body)))
    lr = start_llmroute(args, tmp, "llmroute-stream", mock_port, 2,
                        "worker_rlimit_nofile = 65536;")
    res = {"ttfb": run_lat(args, tmp, mock_port, lr.port, "/v1/chat/completions",
                           "stream4.json", stream=True), "steps": [], "max_streams": 0,
           "direct_steps": [], "direct_max_streams": 0}

    def streams(port, n):
        r = subprocess.run(pinned("load", [os.path.join(args.build, "llmroute-streams"), "-n",
                                           str(n), "-e", "66", "-g", "1000", "-b",
                                           os.path.join(tmp, "stream64.json"), str(port),
                                           "/v1/chat/completions"]),
                           capture_output=True, text=True)
        return json.loads(r.stdout) if r.stdout.strip() else {"streams": n, "error": r.stderr}
    try:
        for n in args.streams:
            step = streams(lr.port, n)
            step["rss_kb"] = lr.rss_kb()
            res["steps"].append(step)
            if step.get("completed") != n:
                break
            res["max_streams"] = n
        # The single-threaded mock's own limit, for scale.
        for n in args.streams:
            step = streams(mock_port, n)
            res["direct_steps"].append(step)
            if step.get("completed") != n:
                break
            res["direct_max_streams"] = n
    finally:
        lr.stop()
    return res


def cache_scenario(args, tmp, mock_port, path, lua):
    """One worker: CPU per request of a proxied request against a response
    cache hit (the same body every time, so all but the first are hits)."""
    out = {}
    lr = start_llmroute(args, tmp, "llmroute-nocache", mock_port, 1)
    out["proxied"] = measure(lr, lr.port, path, args, lua)
    lr.stop()
    extra = ('router_settings: { cache_responses = true; };\n'
             'cache: { path = "%s/cache"; };' % tmp)
    lr = start_llmroute(args, tmp, "llmroute-cache", mock_port, 1, extra=extra)
    out["hit"] = measure(lr, lr.port, path, args, lua)
    lr.stop()
    out["hit_cpu_ratio"] = round(out["hit"]["cpu_us_per_req"] / out["proxied"]["cpu_us_per_req"],
                                 2)
    return out


def report_cache(c, d):
    print(fmt_row("llmroute 1w proxy", c["proxied"], d))
    print(fmt_row("llmroute 1w hit", c["hit"], d))
    print("response cache hit: CPU per request %.1f us, %.2fx a proxied request's (%.1f us)" % (
        c["hit"]["cpu_us_per_req"], c["hit_cpu_ratio"], c["proxied"]["cpu_us_per_req"]))


def fmt_row(name, r, direct):
    cpu = "%.1f" % r["cpu_us_per_req"] if "cpu_us_per_req" in r else "-"
    rss = "/".join("%.1f" % (k / 1024) for k in r.get("rss_kb", [])) or "-"
    return "%-18s %10.0f %8.2fx %9.0f %9.0f %8s %8d   %s" % (
        name, r["rps"], r["rps"] / direct["rps"], r["p50_us"], r["p99_us"], cpu,
        r["errors"], rss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, help="wrk's (default 64; 256 with --cores)")
    ap.add_argument("--threads", type=int, help="wrk's (default 1; the load cores with --cores)")
    ap.add_argument("--lat-requests", type=int, default=10000)
    ap.add_argument("--rates", type=int, nargs="*",
                    default=[250, 500, 1000, 2000, 3000, 4000, 6000, 8000])
    ap.add_argument("--rate-duration", type=int, default=5)
    ap.add_argument("--streams", type=int, nargs="*", default=[1000, 2500, 5000, 10000])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results.json"))
    ap.add_argument("--only", choices=["plain", "https"],
                    help="run only the plain-HTTP scenarios or only the HTTPS upstream one")
    ap.add_argument("--workers", type=int, nargs="*",
                    help="worker counts of the proxies (default 1 2; 1 2 4 with --cores)")
    ap.add_argument("--cores", action="store_true",
                    help="pin the proxy, the load and the upstream to separate cores "
                         "(machines with more than 2 cores)")
    ap.add_argument("--cache-only", action="store_true",
                    help="only the response cache scenario (a hit against a proxied request)")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    if args.cores:
        if (os.cpu_count() or 1) < 4 or shutil.which("taskset") is None:
            ap.error("--cores needs taskset and at least 4 cores (this machine has %d)"
                     % (os.cpu_count() or 1))
        CORES.update(plan_cores(os.cpu_count()))
    if args.connections is None:
        args.connections = 256 if args.cores else 64
    if args.threads is None:
        args.threads = len(CORES["load"]) if args.cores else 1
    if args.workers is None:
        args.workers = [w for w in ([1, 2, 4] if args.cores else [1, 2])
                        if not args.cores or w <= len(CORES["proxy"])]
    # Thousands of streams need thousands of sockets in every process.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, max(hard, 65536)))
    except (ValueError, OSError):       # no CAP_SYS_RESOURCE: the hard limit it is
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="llmr-bench-")
    lua = os.path.join(tmp, "post.lua")
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = %s\n'
                'wrk.headers["Content-Type"] = "application/json"\n' % json.dumps(BODY))
    with open(os.path.join(tmp, "body.json"), "w") as f:
        f.write(BODY)
    res = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
           "cores": CORES or None, "workers": args.workers,
           "duration_s": args.duration, "connections": args.connections}
    path = "/v1/chat/completions"
    servers = []
    res["routing"] = json.loads(subprocess.run([os.path.join(args.build, "llmroute-route")],
                                               capture_output=True, text=True,
                                               check=True).stdout)["ns_per_decision"]
    if args.only == "https":
        res["https"] = bench_https.run(sys.modules[__name__], args, tmp, lua, args.workers)
        bench_https.report(res["https"], args.workers)
        return finish(args, res, tmp)
    try:
        mock = Server("mock", [os.path.join(args.build, "llmroute-mock"), "-p", "0"], 0,
                      "/v1/models", tmp)
        servers.append(mock)
        print("zero-latency mock on :%d; %d connections, %d s per run" %
              (mock.port, args.connections, args.duration), flush=True)
        res["direct"] = measure(None, mock.port, path, args, lua)
        res["cache"] = cache_scenario(args, tmp, mock.port, path, lua)
        if args.cache_only:
            report_cache(res["cache"], res["direct"])
            shutil.rmtree(tmp, ignore_errors=True)
            return 0
        for workers in args.workers:
            port = free_port()
            ng = Server("nginx-%dw" % workers,
                        ["nginx", "-c", nginx_conf(tmp, port, mock.port, workers)], port,
                        "/v1/models", tmp, workers=workers)
            res["nginx_%dw" % workers] = measure(ng, port, path, args, lua)
            ng.stop()
            lr = start_llmroute(args, tmp, "llmroute-%dw" % workers, mock.port, workers)
            res["llmroute_%dw" % workers] = measure(lr, lr.port, path, args, lua)
            lr.stop()
            # nginx runs with access_log off; llmroute's default writes one
            # JSON line per request.  The same proxy without it, side by side.
            lr = start_llmroute(args, tmp, "llmroute-%dw-nolog" % workers, mock.port, workers,
                                'access_log = "off";')
            res["llmroute_%dw_nolog" % workers] = measure(lr, lr.port, path, args, lua)
            lr.stop()
        # Added latency at concurrency 1, interleaved rounds.
        lr = start_llmroute(args, tmp, "llmroute-lat", mock.port, 1)
        res["idle_worker_rss_kb"] = lr.rss_kb()[1:]
        res["added_latency"] = run_lat(args, tmp, mock.port, lr.port, path)
        lr.stop()
        port = free_port()
        ng = Server("nginx-lat", ["nginx", "-c", nginx_conf(tmp, port, mock.port, 1)], port,
                    "/v1/models", tmp)
        res["nginx_added_latency"] = run_lat(args, tmp, mock.port, port, path)
        ng.stop()
        res["rate_20ms"] = rate_scenario(args, tmp)
        res["streaming"] = stream_scenario(args, tmp, mock.port)
        import bench_sync       # multi-host sync through Redis (issue 14)
        res["sync"] = bench_sync.scenario(args, tmp, mock.port, lua)
    finally:
        for s in servers:
            s.stop()
    if args.only is None:
        res["https"] = bench_https.run(sys.modules[__name__], args, tmp, lua, args.workers)
    report(res)
    if "https" in res:
        bench_https.report(res["https"], args.workers)
    return finish(args, res, tmp)


def finish(args, res, tmp):
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print("\nwrote " + os.path.relpath(args.out, ROOT))
    shutil.rmtree(tmp, ignore_errors=True)


def report(res):
    d = res["direct"]
    print("\n%-18s %10s %9s %9s %9s %8s %8s   %s" % (
        "scenario", "req/s", "vs direct", "p50 us", "p99 us", "cpu us/r", "errors",
        "peak RSS MiB (master/workers)"))
    print(fmt_row("direct", d, d))
    ws = ["%dw" % n for n in res.get("workers", [1, 2])]
    for w in ws:
        for k in ("nginx_" + w, "llmroute_" + w, "llmroute_" + w + "_nolog"):
            if k in res:
                print(fmt_row(k.replace("_", " ").replace(" nolog", " no log"), res[k], d))
    for w in ws:
        for k, what in (("llmroute_" + w, ""), ("llmroute_" + w + "_nolog", ", access log off")):
            if k not in res:
                continue
            ratio = res[k]["cpu_us_per_req"] / res["nginx_" + w]["cpu_us_per_req"]
            res["cpu_ratio_vs_nginx_" + w + ("_nolog" if what else "")] = round(ratio, 2)
            print("llmroute %s%s: CPU per request %.2fx nginx's; throughput %.2fx direct, "
                  "%.2fx nginx's" % (w, what, ratio, res[k]["rps"] / d["rps"],
                                     res[k]["rps"] / res["nginx_" + w]["rps"]))
    a, n = res["added_latency"], res["nginx_added_latency"]
    print("added latency at concurrency 1 over %d requests: llmroute p50 %+.1f us, p99 %+.1f us"
          " (nginx p50 %+.1f us, p99 %+.1f us)" % (a["requests"], a["added_p50_us"],
                                                   a["added_p99_us"], n["added_p50_us"],
                                                   n["added_p99_us"]))
    print("idle worker peak RSS: %s MiB" %
          ", ".join("%.1f" % (k / 1024) for k in res["idle_worker_rss_kb"]))
    for name, r in res["rate_20ms"].items():
        print("20 ms upstream, open loop, %s: " % name + "; ".join(
            "%d/s -> %d/s p99 %.1f ms%s" % (s["rate"], s["achieved"], s["p99_ms"],
                                             "" if s["ok"] else " (fails)")
            for s in r["steps"]))
        print("  highest rate with p99 < 30 ms and no errors, %s: %d/s" % (
            name, r["max_rate_p99_under_30ms"]))
    print("one routing decision (pick + admission + release), ns:")
    for n, per in res["routing"].items():
        print("  %4s deployments: " % n + ", ".join("%s %d" % kv for kv in per.items()))
    st = res["streaming"]
    print("streaming, time to first event at concurrency 1: llmroute p50 %+.1f us, p99 %+.1f us"
          " over direct" % (st["ttfb"]["added_p50_us"], st["ttfb"]["added_p99_us"]))
    for name, steps in (("llmroute 2w", st["steps"]), ("direct", st["direct_steps"])):
        for step in steps:
            print("  %s, %d concurrent streams (64 x 20 ms): " % (name, step["streams"]) + (
                "completed %(completed)d, lost %(lost)d, stalled %(stalled)d, peak open "
                "%(peak_open)d, first event p50 %(ttfb_p50_ms).1f ms p99 %(ttfb_p99_ms).1f "
                "ms, longest gap %(max_gap_ms).0f ms" % step if "completed" in step
                else step["error"]) + (", RSS MiB " + "/".join(
                    "%.1f" % (k / 1024) for k in step["rss_kb"]) if "rss_kb" in step else ""))
    report_cache(res["cache"], d)
    print("most concurrent streams held without loss or stall: llmroute 2 workers %d, "
          "direct to the mock %d" % (st["max_streams"], st["direct_max_streams"]))
    import bench_sync
    bench_sync.report(res)


if __name__ == "__main__":
    sys.exit(main())
