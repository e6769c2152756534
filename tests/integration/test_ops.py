"""Operations: several workers behind one port, weighted spread, reload
under traffic, a killed worker replaced, counters against the mock."""
import os
import re
import signal
import subprocess
import threading

import harness
from harness import (BUILD, ROOT, Daemon, Load, Mock, chat, deployment, request,
                     wait_for)


def status_row(d, dep_id):
    """The `llmroute status -w` row of dep_id, the counters as ints, read by
    column name."""
    row = harness.status_row(d, dep_id)
    cols = {"requests": "REQUESTS", "success": "SUCCESS", "failed": "FAILED",
            "inflight": "INFLIGHT", "prompt": "PROMPT_TOK", "completion": "COMPL_TOK"}
    return {k: int(row[c]) for k, c in cols.items()}


def test_weighted_spread_across_workers():
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("g", a, dep_id="a", params="weight = 1;"),
                deployment("g", b, dep_id="b", params="weight = 3;")], workers=3)
    n = 800
    seen = {"a": 0, "b": 0}
    for _ in range(n):
        r = chat(d.port, model="g")
        assert r.status == 200, r
        seen[r.headers["x-llmroute-deployment"]] += 1
    # Expected share of b is 0.75; binomial sd over 800 is ~0.015, so 0.06
    # is four standard deviations.
    share = seen["b"] / n
    assert abs(share - 0.75) < 0.06, seen
    assert a.stats()["requests"] == seen["a"] and b.stats()["requests"] == seen["b"]


def test_rpm_weights_when_no_weight_set():
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("g", a, dep_id="a", params="rpm = 100;"),
                deployment("g", b, dep_id="b", params="rpm = 900;")])
    seen = {"a": 0, "b": 0}
    for _ in range(400):
        seen[chat(d.port, model="g").headers["x-llmroute-deployment"]] += 1
    assert abs(seen["b"] / 400 - 0.9) < 0.06, seen


def test_counters_match_mock():
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b")], workers=2)
    for i in range(60):
        assert chat(d.port, model="g", content="x" * i).status == 200
    for m, dep in ((a, "a"), (b, "b")):
        st, row = m.stats(), status_row(d, dep)
        assert row["requests"] == st["requests"] == row["success"], (row, st)
        assert row["prompt"] == st["prompt_tokens"] and row["completion"] == st["completion_tokens"], (row, st)
        assert row["inflight"] == 0 and row["failed"] == 0, row


def test_reload_under_traffic_loses_nothing():
    a, b = Mock("a", ["--latency", "20"]), Mock("b")
    deps = [deployment("g", a, dep_id="a")]
    d = Daemon(deps, workers=2)
    old = set(d.workers())
    load = Load(d.port)
    try:
        wait_for(lambda: load.ok > 20, 10, "traffic before reload")
        # New config: a second deployment appears, "a" survives.
        d.write_conf(deps + [deployment("g", b, dep_id="b")], workers=2)
        os.kill(d.p.pid, signal.SIGHUP)
        wait_for(lambda: old.isdisjoint(d.workers()) and len(d.workers()) == 2, 15,
                 "old workers replaced")
        before = load.ok
        wait_for(lambda: load.ok > before + 20, 10, "traffic after reload")
        wait_for(lambda: b.stats()["requests"] > 0, 10, "new deployment used")
    finally:
        load.stop()
    assert not load.errors, load.errors[:5]
    # "a" kept its slot and counters across the reload.
    assert status_row(d, "a")["requests"] == a.stats()["requests"]
    assert "reloaded: generation 2" in d.log_text()


def test_bad_reload_changes_nothing():
    a = Mock("a")
    deps = [deployment("g", a, dep_id="a")]
    d = Daemon(deps, workers=2)
    pids = set(d.workers())
    with open(d.conf_path, "w") as f:
        f.write('server: { listen = "127.0.0.1:%d"; workers = 2; bogus_key = 1; };\n' % d.port)
    r = subprocess.run([os.path.join(BUILD, "llmroute"), "-s", "reload", "-c", d.conf_path],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    # -s needs the config to find the pid file, and this one is broken.
    assert r.returncode == 1 and "bogus_key" in r.stderr, r
    os.kill(d.p.pid, signal.SIGHUP)
    wait_for(lambda: "reload failed, configuration unchanged" in d.log_text(), 10, "reload error")
    log = d.log_text()
    assert re.search(r"llmroute\.conf:1: server\.bogus_key", log), log[-2000:]
    assert set(d.workers()) == pids
    assert chat(d.port, model="g").status == 200


def test_killed_worker_is_replaced():
    a = Mock("a")
    d = Daemon([deployment("g", a, dep_id="a")], workers=2)
    d.allowed.append("exited on signal 9")
    victim = d.workers()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in d.workers() and len(d.workers()) == 2, 10, "respawn")
    for _ in range(20):
        assert chat(d.port, model="g").status == 200
    assert "exited on signal 9; respawning" in d.log_text()


def test_signals_through_cli():
    a = Mock("a")
    d = Daemon([deployment("g", a, dep_id="a")], workers=2)
    r = harness.cli(d.conf_path, "-t")
    assert r.returncode == 0, r
    old = set(d.workers())
    r = harness.cli(d.conf_path, "-s", "reload")
    assert r.returncode == 0, r
    wait_for(lambda: old.isdisjoint(d.workers()) and len(d.workers()) == 2, 15, "reload")
    r = harness.cli(d.conf_path, "-s", "quit")
    assert r.returncode == 0, r
    d.p.wait(20)
    assert d.p.returncode == 0
    assert not os.path.exists(d.pid_file)


def test_drain_finishes_inflight_request():
    a = Mock("a", ["--latency", "800"])
    d = Daemon([deployment("g", a, dep_id="a")], workers=1)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=chat(d.port, model="g")))
    t.start()
    wait_for(lambda: a.stats()["inflight"] == 1, 5, "request at the mock")
    os.kill(d.p.pid, signal.SIGQUIT)
    t.join(10)
    assert result["r"].status == 200, result
    d.p.wait(10)
    assert d.p.returncode == 0
