#!/usr/bin/env python3
"""Counts, not clocks: system calls per proxied request and per relayed
stream event (strace -c on the worker), allocations per request (the
malloc_count.so counter).  One worker, so that every request is its own.

  bench/count.py --build build [--requests 2000] [--streams 40] [--events 64]
                 [--delay MS] [--burst N]
                 [--sites] [--many N]
                 [--what syscalls,allocs,stream,stream_allocs,many,instructions,
                         nginx_instructions]

instructions: the user-space instructions a proxied request costs the worker,
counted by valgrind's callgrind (no hardware counters needed, the same on a
busy machine): the daemon runs under callgrind twice, answering 300 and then
300 + --requests requests; the difference of the worker's totals over the
difference of the counts leaves out start-up and exit.  nginx_instructions:
the same for nginx proxying to the same mock (one process, master_process
off), and with both the ratio: a user-space comparison that does not move
with the machine's neighbours (kernel time is not in it).

Prints one JSON object; with --sites, also the top allocation sites of the
worker over the measured requests (raw frames; addr2line -f -e build/llmroute
resolves the static ones)."""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import bench  # noqa: E402  (Server, start_llmroute, wait_for)

BODY = {"model": "bench", "messages": [{"role": "user", "content": "hi"}]}


def worker_pid(master):
    """The worker among the children of master's pid (the prober aside)."""
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    for pid in map(int, out.stdout.split()):
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"prober" not in f.read():
                return pid
    raise RuntimeError("no worker")


def requests(port, n, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body)
    for _ in range(n):
        c.request("POST", "/v1/chat/completions", data, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError("status %d" % r.status)
    c.close()


def streams(port, n, events, delay_ms, burst=1):
    body = dict(BODY, stream=True, x_mock={"chunks": events, "chunk_delay_ms": delay_ms,
                                           "chunk_burst": burst})
    errs = []

    def one():
        try:
            requests(port, 1, body)
        except Exception as e:  # noqa: BLE001
            errs.append(e)
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]


def rss_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def many_streams(args, tmp, mock_port):
    """--many N: N concurrent streams of 64 events 20 ms apart on 2 workers
    (bench/streams.c, every event checked): completed, lost, stalled (a gap
    over 1 s), and the workers' memory per stream (peak RSS over idle)."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))
    body = os.path.join(tmp, "stream64.json")
    with open(body, "w") as f:
        json.dump(dict(BODY, stream=True, x_mock={"chunks": 64, "chunk_delay_ms": 20}), f)
    lr = bench.start_llmroute(args, tmp, "lr-many", mock_port, 2, "worker_rlimit_nofile = 65536;")
    try:
        out = subprocess.run(["pgrep", "-P", str(lr.p.pid)], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()
                if b"prober" not in open("/proc/%s/cmdline" % p, "rb").read()]
        idle = sum(rss_kb(p, "VmRSS") for p in pids)
        # System calls of the workers per relayed event, counted in the
        # kernel (perf's tracepoints cost far less than strace under load).
        calls = ["recvfrom", "poll", "writev", "epoll_wait"]
        ps = subprocess.Popen(["perf", "stat", "-x", ",", "-e",
                               ",".join("syscalls:sys_enter_" + c for c in calls),
                               "-p", ",".join(map(str, pids))],
                              stderr=subprocess.PIPE, text=True)
        r = subprocess.run([os.path.join(args.build, "llmroute-streams"), "-n", str(args.many),
                            "-e", "66", "-g", "1000", "-b", body, str(lr.port),
                            "/v1/chat/completions"], capture_output=True, text=True)
        ps.send_signal(signal.SIGINT)
        perf_out = ps.communicate(timeout=30)[1]
        res = json.loads(r.stdout) if r.stdout.strip() else {"error": r.stderr}
        events = args.many * 66
        for line in perf_out.splitlines():
            f = line.split(",")
            if len(f) > 2 and f[2].startswith("syscalls:sys_enter_") and f[0].isdigit():
                res[f[2][len("syscalls:sys_enter_"):] + "_per_event"] = round(int(f[0]) / events,
                                                                             3)
        peak = sum(rss_kb(p, "VmHWM") for p in pids)
        res["workers_rss_idle_kb"], res["workers_rss_peak_kb"] = idle, peak
        res["kb_per_stream"] = round((peak - idle) / args.many, 1)
        return res
    finally:
        lr.stop()


def strace_c(pid, fn):
    out = tempfile.mktemp(prefix="strace-")
    st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)],
                          stderr=subprocess.DEVNULL)
    time.sleep(0.5)         # strace attaching; nothing to poll for
    fn()
    st.send_signal(signal.SIGINT)
    st.wait(30)
    calls = {}
    with open(out) as f:
        for line in f:
            p = line.split()
            if len(p) >= 5 and p[0][0].isdigit() and p[-1] != "total":
                calls[p[-1]] = int(p[3])
    os.unlink(out)
    return calls


def dump(pid, path):
    n = sum(1 for _ in open(path)) if os.path.exists(path) else 0
    os.kill(pid, signal.SIGUSR2)
    bench.wait_for(lambda: os.path.exists(path) and
                   any(l.startswith("end") or not os.environ.get("MALLOC_COUNT_SITES")
                       for l in list(open(path))[n:]) and sum(1 for _ in open(path)) > n,
                   10, "malloc dump")
    lines = list(open(path))[n:]
    counts = dict(kv.split("=") for kv in lines[0].split())
    return {k: int(v) for k, v in counts.items()}, lines[1:]


def callgrind_total(args, tmp, mock_port, n):
    """Instructions of the worker of a daemon run under callgrind that
    answered n sequential requests, from start to exit."""
    port = bench.free_port()
    conf = bench.llmroute_conf(tmp, "cg-%d" % n, port, mock_port, 1)
    out = os.path.join(tmp, "callgrind-%d.%%p" % n)
    # The tunable the daemon would re-execute itself with (master/main.c):
    # set here, it does not, and valgrind (which does not follow exec()
    # without --trace-children) keeps counting the same process.
    env = dict(os.environ, GLIBC_TUNABLES=os.environ.get("GLIBC_TUNABLES",
                                                         "glibc.malloc.tcache_count=32"))
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                          os.path.join(args.build, "llmroute"), "-c", conf],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        bench.wait_for(lambda: bench.http_ok(port, "/health/readiness"), 120,
                       "llmroute under callgrind")
        worker = worker_pid(p.pid)
        requests(port, n, BODY)
    finally:
        p.terminate()
        p.wait(60)
    return callgrind_summary(out.replace("%p", str(worker)), "the worker")


def callgrind_summary(path, who):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("no callgrind summary for " + who)


def instructions(args, tmp, mock_port):
    base = 300
    a = callgrind_total(args, tmp, mock_port, base)
    b = callgrind_total(args, tmp, mock_port, base + args.requests)
    return round((b - a) / args.requests)


def nginx_callgrind_total(tmp, mock_port, n):
    """Instructions of nginx (one process: master_process off, so callgrind
    follows it whole) proxying n sequential requests to the same mock, from
    start to exit: bench's nginx configuration otherwise."""
    port = bench.free_port()
    d = os.path.join(tmp, "nginx-cg-%d" % n)
    os.makedirs(d)
    conf = bench.nginx_conf(d, port, mock_port, 1)
    with open(conf) as f:
        text = f.read().replace("master_process on;", "master_process off;")
    with open(conf, "w") as f:
        f.write(text)
    out = os.path.join(d, "callgrind.out")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                          "nginx", "-c", conf, "-e", os.path.join(d, "error.log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench.wait_for(lambda: bench.http_ok(port, "/v1/models"), 120, "nginx under callgrind")
        requests(port, n, BODY)
    finally:
        # A single nginx process checks for SIGTERM between its event waits;
        # under valgrind, a signal taken just before a wait is only seen once
        # another arrives (the wait has no timer then): sent until it exits.
        for _ in range(20):
            p.terminate()
            try:
                p.wait(3)
                break
            except subprocess.TimeoutExpired:
                pass
        else:
            p.kill()
            p.wait(10)
    return callgrind_summary(out, "nginx")


def nginx_instructions(args, tmp, mock_port):
    """nginx's user-space instructions per proxied request, counted as
    llmroute's are: the same two runs, the same client, the same mock."""
    base = 300
    a = nginx_callgrind_total(tmp, mock_port, base)
    b = nginx_callgrind_total(tmp, mock_port, base + args.requests)
    return round((b - a) / args.requests)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--streams", type=int, default=40)
    ap.add_argument("--events", type=int, default=64)
    ap.add_argument("--delay", type=int, default=20)
    ap.add_argument("--burst", type=int, default=1, help="events the mock sends together")
    ap.add_argument("--sites", action="store_true")
    ap.add_argument("--many", type=int, default=10000, help="streams for --what many")
    ap.add_argument("--what", default="syscalls,allocs,stream")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    what = args.what.split(",")
    tmp = tempfile.mkdtemp(prefix="llmr-count-")
    so = os.path.join(tmp, "malloc_count.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so,
                    os.path.join(ROOT, "bench", "malloc_count.c")], check=True)
    if "allocs" in what or "stream_allocs" in what:
        os.environ["MALLOC_COUNT_OUT"] = os.path.join(tmp, "mc")
        if args.sites:
            os.environ["MALLOC_COUNT_SITES"] = "1"
    mock = bench.Server("mock", [os.path.join(args.build, "llmroute-mock"), "-p", "0"], 0,
                        "/v1/models", tmp, role="upstream")
    lr = None
    res = {}
    try:
        if "many" in what:
            res["many_streams"] = many_streams(args, tmp, mock.port)
            what = [w for w in what if w != "many"]
        if "instructions" in what:
            res["instructions_per_request"] = instructions(args, tmp, mock.port)
            what = [w for w in what if w != "instructions"]
        if "nginx_instructions" in what:
            res["nginx_instructions_per_request"] = nginx_instructions(args, tmp, mock.port)
            if "instructions_per_request" in res:
                res["instructions_ratio_to_nginx"] = round(
                    res["instructions_per_request"] / res["nginx_instructions_per_request"], 2)
            what = [w for w in what if w != "nginx_instructions"]
        if "allocs" in what or "stream_allocs" in what:
            os.environ["LD_PRELOAD"] = so
        if what:
            lr = bench.start_llmroute(args, tmp, "lr", mock.port, 1)
            os.environ.pop("LD_PRELOAD", None)
            pid = worker_pid(lr.p.pid)
            requests(lr.port, 200, BODY)    # warm: pools, buffers, connections
        if "allocs" in what:
            path = os.path.join(tmp, "mc.%d" % pid)
            a, _ = dump(pid, path)
            requests(lr.port, args.requests, BODY)
            b, sites = dump(pid, path)
            res["allocs_per_request"] = {k: round((b[k] - a[k]) / args.requests, 2) for k in a}
            if args.sites:
                sys.stderr.write("".join(sites))
        if "stream_allocs" in what:
            path = os.path.join(tmp, "mc.%d" % pid)
            streams(lr.port, 4, 4, 0)
            a, _ = dump(pid, path)
            streams(lr.port, args.streams, args.events, args.delay, args.burst)
            b, sites = dump(pid, path)
            ev = args.streams * (args.events + 2)
            res["allocs_per_stream_event"] = {k: round((b[k] - a[k]) / ev, 2) for k in a}
            if args.sites:
                sys.stderr.write("".join(sites))
        if "syscalls" in what:
            c = strace_c(pid, lambda: requests(lr.port, args.requests, BODY))
            res["syscalls_per_request"] = {k: round(v / args.requests, 2)
                                           for k, v in sorted(c.items())}
            res["syscalls_per_request_total"] = round(sum(c.values()) / args.requests, 2)
        if "stream" in what:
            streams(lr.port, 4, 4, 0)
            c = strace_c(pid, lambda: streams(lr.port, args.streams, args.events, args.delay,
                                                         args.burst))
            ev = args.streams * (args.events + 2)   # content, the last chunk, [DONE]
            res["syscalls_per_stream_event"] = {k: round(v / ev, 2)
                                                for k, v in sorted(c.items())}
            res["syscalls_per_stream_event_total"] = round(sum(c.values()) / ev, 2)
    finally:
        if lr is not None:
            lr.stop()
        mock.stop()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
