"""Idle upstream connections (issue 17): a worker keeps the read event of a
keep-alive upstream connection registered while the connection waits in
libcurl's pool (parked), so that reusing it costs no epoll_ctl.  The risk
such a change brings is an idle connection that the upstream closes: its
socket stays readable, and a worker that kept waking for it would spin.
Here a real nginx in front of the mock closes idle connections after 1 s;
the workers must stay quiet once it has, and the next requests must be
answered on new connections."""
import subprocess
import threading
import time

import harness
import tlskit
from harness import Daemon, Mock, chat, wait_for

GROUP = "g"


def closing_front(mock):
    """nginx in front of the mock that closes a keep-alive connection after
    1 s idle."""
    port = harness.free_port()
    return tlskit.Nginx("closing-front", """
  server {
    listen 127.0.0.1:%d;
    keepalive_timeout 1s;
    keepalive_requests 100000;
    location = /ready { return 200 "ok"; }
    location / {
      proxy_pass http://127.0.0.1:%d;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }""" % (port, mock.port), port)


def established_to(port):
    """Established TCP connections whose peer is 127.0.0.1:port."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "dst",
                          "127.0.0.1:%d" % port], capture_output=True, text=True).stdout
    return len([ln for ln in out.splitlines() if ln.strip()])


def burst(port, n):
    """n chat requests at once; their statuses."""
    got = []

    def one():
        got.append(chat(port, GROUP, timeout=harness.slack(20)).status)
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(harness.slack(30))
    return got


def workers_cpu(d):
    return sum(harness.proc_cpu_s(p) for p in d.workers())


@harness.timeout(120)
def test_idle_upstream_connections_closed_by_the_upstream_neither_spin_nor_fail():
    mock = Mock()
    front = closing_front(mock)
    d = None
    try:
        base = "http://127.0.0.1:%d" % front.port
        d = Daemon(['{ model_name = "%s"; litellm_params = { model = "openai/m"; '
                    'api_base = "%s/v1"; }; }' % (GROUP, base)], workers=2)
        statuses = burst(d.port, 16)
        if statuses != [200] * 16:
            raise harness.TestFailure("first burst: %r" % statuses)
        # Some connections are now idle in the workers' pools, their read
        # events parked.  nginx closes them after 1 s.
        wait_for(lambda: established_to(front.port) == 0, harness.slack(15),
                 "nginx closing the idle upstream connections")
        # A worker woken for each closed socket without end would burn a
        # core: over 1 s of measurement, the two must stay near idle.
        cpu0, t0 = workers_cpu(d), time.monotonic()
        time.sleep(1.0)  # a measurement window, not a synchronisation
        used = workers_cpu(d) - cpu0
        elapsed = time.monotonic() - t0
        print("    workers' CPU over %.2f s with closed idle connections: %.3f s" %
              (elapsed, used))
        if used > 0.25 * elapsed:
            raise harness.TestFailure("the workers used %.2f s of CPU in %.2f s with only "
                                      "closed idle upstream connections" % (used, elapsed))
        # libcurl finds the closed connections dead and connects anew.
        statuses = burst(d.port, 16)
        if statuses != [200] * 16:
            raise harness.TestFailure("burst after the upstream closed: %r" % statuses)
        if mock.stats()["requests"] < 32:
            raise harness.TestFailure("the mock saw %r" % mock.stats())
    finally:
        if d is not None:
            d.stop()
        front.stop()
        mock.stop()


@harness.timeout(120)
def test_keep_alive_reuse_many_requests_on_few_upstream_connections():
    """Parked connections are reused: 200 sequential requests through one
    worker use one upstream connection (nginx's $connection serial)."""
    mock = Mock()
    port = harness.free_port()
    log = harness.tmpdir() + "/access.log"
    front = tlskit.Nginx("counting-front", """
  log_format conn '$connection';
  server {
    listen 127.0.0.1:%d;
    keepalive_requests 100000;
    location = /ready { return 200 "ok"; }
    location / {
      access_log %s conn;
      proxy_pass http://127.0.0.1:%d;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }""" % (port, log, mock.port), port)
    d = None
    try:
        d = Daemon(['{ model_name = "%s"; litellm_params = { model = "openai/m"; '
                    'api_base = "http://127.0.0.1:%d/v1"; }; }' % (GROUP, port)], workers=1)
        for i in range(200):
            r = chat(d.port, GROUP)
            if r.status != 200:
                raise harness.TestFailure("request %d: %r" % (i, r))

        def lines():
            with open(log) as f:
                return f.read().split()
        wait_for(lambda: len(lines()) == 200, harness.slack(10), "nginx's access log")
        conns = set(lines())
        if len(conns) != 1:
            raise harness.TestFailure("200 sequential requests used %d upstream connections"
                                      % len(conns))
    finally:
        if d is not None:
            d.stop()
        front.stop()
        mock.stop()
