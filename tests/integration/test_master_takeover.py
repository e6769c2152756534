"""A master that takes over the segment of a master killed with SIGKILL
counts its uptime from its own start, not from the dead master's."""
import os
import signal

from harness import BUILD, Daemon, Mock, Proc, alive, deployment, request, slack, wait_for

LLMROUTE = os.path.join(BUILD, "llmroute")


def uptime(port):
    r = request(port, "GET", "/status.json", timeout=2)
    assert r.status == 200, r
    return r.json()["uptime_s"]


def test_takeover_resets_uptime():
    m = Mock("m")
    d = Daemon([deployment("g", m)], workers=2)
    wait_for(lambda: uptime(d.port) >= 4, 10, "4 s of uptime", interval=0.2)
    victims = [d.p.pid] + d.workers()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    d.p.wait(10)
    wait_for(lambda: not any(alive(p) for p in victims[1:]), 10, "workers gone")
    d2 = Proc([LLMROUTE, "-c", d.conf_path], "llmroute-restarted")
    wait_for(lambda: d2.p.poll() is not None
             or request(d.port, "GET", "/health/readiness", timeout=2).status == 200,
             20, "the restarted master")
    assert d2.p.poll() is None, d2.log_text()
    # Before the fix the segment kept the dead master's start: >= 4 s.
    up = uptime(d.port)
    assert 0 <= up < 4 and up <= slack(2, 3), up
    d2.stop(signal.SIGQUIT, 30)
