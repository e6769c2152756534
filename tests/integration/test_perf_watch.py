"""The client's socket keeps its epoll registration (issue 17).  evhttp
stops reading a connection while its request is answered, and the worker
used to add an EV_CLOSED event for that time to notice a client leaving:
two epoll_ctl per proxied request (EPOLLIN -> EPOLLRDHUP -> EPOLLIN).  A
read-and-close watch held for the connection's life (worker/conn.c) keeps
the registration as it is.  What it must not break: a client leaving while
its request waits is still noticed at once, bytes of a pipelined request
arriving while the first waits neither spin the worker nor get lost, and
the requests are answered in order."""
import json
import os
import re
import shutil
import socket
import threading
import time

import harness
from harness import Daemon, Mock, TestFailure, deployment, status_rows, wait_for

GROUP = "g"


def body(latency_ms=0, content="hi"):
    b = {"model": GROUP, "messages": [{"role": "user", "content": content}]}
    if latency_ms:
        b["x_mock"] = {"latency_ms": latency_ms}
    return json.dumps(b).encode()


def post(b):
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n" % len(b)) + b


def read_replies(s, n, timeout):
    """Reads n Content-Length replies from s; their (status, body) in order."""
    buf, out = b"", []
    deadline = time.monotonic() + timeout
    s.settimeout(0.2)
    while len(out) < n and time.monotonic() < deadline:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            m = re.search(rb"(?im)^content-length:\s*(\d+)", buf[:end])
            if m and len(buf) >= end + 4 + int(m.group(1)):
                size = int(m.group(1))
                out.append((int(buf.split(b" ", 2)[1]), buf[end + 4:end + 4 + size]))
                buf = buf[end + 4 + size:]
                continue
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
    return out


def strace_epoll_ctl(pid, fn):
    """Runs fn() with strace counting the worker's epoll_ctl calls."""
    out = os.path.join(harness.tmpdir(), "strace-%d" % pid)
    st = harness.strace(pid, "epoll_ctl", out, count=True)
    try:
        fn()
    finally:
        st.terminate()
        st.wait(harness.slack(10))
    calls = 0
    with open(out) as f:
        for line in f:
            p = line.split()
            if p and p[-1] == "epoll_ctl" and p[0][0].isdigit():
                calls = int(p[3])
    return calls


@harness.timeout(120)
def test_proxied_requests_leave_the_epoll_registration_alone():
    if shutil.which("strace") is None:
        raise TestFailure("strace is not installed (scripts/install-deps.sh installs it)")
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, dep_id="a")], workers=1)
    try:
        pid = d.workers()[0]
        n_seq, n_par, par = 300, 8, 40
        conns = [socket.create_connection(("127.0.0.1", d.port), timeout=10)
                 for _ in range(n_par)]
        got = []

        def keep_alive(s, n):
            for i in range(n):
                s.sendall(post(body(content="r%d" % i)))
                got.extend(r[0] for r in read_replies(s, 1, harness.slack(10)))

        def load():
            keep_alive(conns[0], n_seq)
            ts = [threading.Thread(target=keep_alive, args=(s, par)) for s in conns]
            for t in ts:
                t.start()
            for t in ts:
                t.join(harness.slack(60))
        try:
            calls = strace_epoll_ctl(pid, load)
        finally:
            for s in conns:
                s.close()
        total = n_seq + n_par * par
        print("    %d proxied requests on %d kept-alive connections: %d epoll_ctl"
              % (total, n_par, calls))
        assert got == [200] * total, (len(got), sorted(set(got)))
        # Before: one per request when the upstream answered within the
        # same loop pass, two when it did not.  Left: the upstream
        # connection's first registration and the like.
        if calls > total // 20:
            raise TestFailure("%d epoll_ctl for %d proxied requests on kept-alive "
                              "connections" % (calls, total))
    finally:
        d.stop()
        m.stop()


@harness.timeout(120)
def test_pipelined_bytes_while_a_request_waits_neither_spin_nor_get_lost():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, dep_id="a")], workers=1)
    try:
        pid = d.workers()[0]
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        try:
            s.sendall(post(body(latency_ms=1500, content="first")))
            wait_for(lambda: m.stats()["inflight"] == 1, harness.slack(5),
                     "the first request to reach the mock")
            # The next request's bytes arrive while evhttp does not read:
            # the socket stays readable for as long as the first waits.
            s.sendall(post(body(content="second")))
            cpu0, t0 = harness.proc_cpu_s(pid), time.monotonic()
            time.sleep(0.8)     # a measurement window, not a synchronisation
            used, took = harness.proc_cpu_s(pid) - cpu0, time.monotonic() - t0
            print("    worker CPU while pipelined bytes waited %.2f s: %.3f s" % (took, used))
            if used > 0.3 * took:
                raise TestFailure("the worker used %.2f s of CPU in %.2f s with a pipelined "
                                  "request waiting: it spins" % (used, took))
            replies = read_replies(s, 2, harness.slack(15))
        finally:
            s.close()
        assert [r[0] for r in replies] == [200, 200], replies
        # The mock numbers its answers as the requests reach it: the second
        # request was read only after the first was answered, and its reply
        # follows the first's.
        ids = [int(json.loads(r[1])["id"].rsplit("-", 1)[1]) for r in replies]
        assert ids[0] < ids[1], ids
        assert m.stats()["requests"] == 2, m.stats()
    finally:
        d.stop()
        m.stop()


@harness.timeout(120)
def test_client_leaving_after_pipelined_bytes_is_still_noticed():
    """Once pipelined bytes have been seen the watch looks only for the end:
    the client closing then still cancels the upstream call at once."""
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, dep_id="dep-slow")], workers=2)
    try:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        try:
            s.sendall(post(body(latency_ms=3000)))
            wait_for(lambda: m.stats()["inflight"] == 1, harness.slack(5),
                     "the request to reach the mock")
            s.sendall(post(body()))
            wait_for(lambda: status_rows(d)["dep-slow"]["INFLIGHT"] == "1", harness.slack(5),
                     "the segment to show the request in flight")
        finally:
            s.close()
        t_close = time.monotonic()
        wait_for(lambda: m.stats()["inflight"] == 0, harness.slack(5),
                 "the mock to see the request end")
        took = time.monotonic() - t_close
        assert took < harness.slack(1.5, cap=2.5), \
            "the upstream call ran %.2f s after the client left (latency 3 s)" % took
        wait_for(lambda: status_rows(d)["dep-slow"]["INFLIGHT"] == "0", harness.slack(3),
                 "INFLIGHT 0")
        assert m.stats()["requests"] == 1, m.stats()
    finally:
        d.stop()
        m.stop()
