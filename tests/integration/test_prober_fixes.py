"""Fixes to the health prober (master/prober.c) found by a review: a key the
upstream echoes is blanked before the error text is cut; a key or URL as
long as the config accepts goes out whole; a reload does not re-probe a
deployment found healthy less than an interval ago."""
import os
import signal

from harness import Daemon, Mock, deployment, request, wait_for

MASTER = "mk-prober-fixes"
AUTH = {"Authorization": "Bearer " + MASTER}


def long_key(n, tag):
    """A key of n printable characters in which no 8-character piece repeats
    text the daemon prints by itself."""
    alpha = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    out = "sk-" + tag + "-"
    i = 0
    while len(out) < n:
        out += alpha[(i * 7 + i // len(alpha)) % len(alpha)]
        i += 1
    return out[:n]


def health(d):
    r = request(d.port, "GET", "/health", headers=AUTH)
    assert r.status == 200, r
    return r


def entry(d, dep_id):
    """(state, entry) of dep_id in /health: "healthy", "unhealthy" or None."""
    h = health(d).json()
    for state in ("healthy", "unhealthy"):
        for e in h[state + "_endpoints"]:
            if e["model_id"] == dep_id:
                return state, e
    return None, None


def test_prober_echoed_long_key_blanked_everywhere():
    key = long_key(228, "echo")
    m = Mock("m")
    m.config(require_key="sk-the-upstream-wants-another-key")
    d = Daemon([deployment("g", m, dep_id="m", key=key)], args=["-d"],
               server='master_key = "%s";' % MASTER,
               router="background_health_checks = true; health_check_interval = 1.0;")
    # The mock answers 401 with the whole key in the message.
    state, e = wait_for(lambda: entry(d, "m")[0] == "unhealthy" and entry(d, "m"), 10,
                        "deployment found unhealthy")
    assert "HTTP 401" in e["error"] and "Incorrect API key provided" in e["error"], e
    assert m.stats()["last"]["headers"]["authorization"] == "Bearer " + key
    wait_for(lambda: "health check of m failed" in d.log_text(), 10, "the debug log line")
    r = request(d.port, "GET", "/status.json", headers=AUTH)
    assert r.status == 200, r
    st = d.status()
    assert st.returncode == 0, st
    texts = {"/health": health(d).body.decode(), "/status.json": r.body.decode(),
             "status": st.stdout + st.stderr}
    d.stop()
    texts["log"] = d.log_text()
    for where, text in texts.items():
        for i in range(len(key) - 7):
            assert key[i:i + 8] not in text, (where, i, key[i:i + 8])


def test_prober_sends_long_key_whole():
    key = long_key(1500, "long")
    m = Mock("m")
    m.config(require_key=key)
    d = Daemon([deployment("g", m, dep_id="m", key=key)],
               server='master_key = "%s";' % MASTER,
               router="background_health_checks = true; health_check_interval = 1.0;")
    state, e = wait_for(lambda: entry(d, "m")[0] is not None and entry(d, "m"), 10,
                        "deployment checked")
    assert state == "healthy", e
    assert m.stats()["last"]["headers"]["authorization"] == "Bearer " + key
    d.stop()


def test_prober_reload_skips_recently_healthy():
    a = Mock("a")
    b = Mock("b", ["--status", "500", "--latency", "300"])
    d = Daemon([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b")],
               server='master_key = "%s";' % MASTER,
               router="background_health_checks = true; health_check_interval = 60.0;")

    def probes(m):
        return m.stats()["paths"].get("/v1/models", 0)

    wait_for(lambda: entry(d, "a")[0] == "healthy" and entry(d, "b")[0] == "unhealthy",
             15, "first round")
    assert probes(a) == 1 and probes(b) == 1, (a.stats(), b.stats())
    for n in range(2, 5):
        old = health(d).json()["prober_pid"]
        os.kill(d.p.pid, signal.SIGHUP)
        wait_for(lambda: health(d).json()["prober_pid"] not in (0, old), 15,
                 "prober replaced by reload %d" % (n - 1))
        # b, unhealthy, is probed at once by each new prober; its answer takes
        # 300 ms, long after a's probe would have gone out in the same round.
        wait_for(lambda: b.stats()["statuses"].get("500") == n, 15, "round %d done" % n)
    assert probes(a) == 1, a.stats()
    assert entry(d, "a")[0] == "healthy"
    d.stop()
