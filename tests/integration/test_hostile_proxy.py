"""Hostile testing of one request's life (issue 9): our own lack of file
descriptors must not be blamed on the upstreams; libcurl must not send a
POST twice behind llmroute's back; no cooldown is longer than
max_cooldown_time, and a group's last usable deployment is never cooled
longer than its Retry-After; huge usage numbers from an upstream are
clamped; every retry backs off; the shipped defaults do not turn one 429
burst into a minute-long block.

Every daemon runs 2 workers and real mock upstreams on 127.0.0.1.
"""
import http.client
import os
import signal
import time

from harness import (attempts, connection_owners, minute_room, slack, status_row, status_rows,
                     worker_conns)
from harness import Daemon, Mock, TestFailure, chat, deployment, request, wait_for


# ---------------------------------------------------------------- helpers

def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise TestFailure("no open-file limit for pid %d" % pid)


def reload(d, deps, router):
    d.write_conf(deps, workers=2, router=router)
    old = set(d.workers())
    os.kill(d.p.pid, signal.SIGHUP)
    wait_for(lambda: old.isdisjoint(d.workers()) and len(d.workers()) == 2, 5, "the reload")


# ---------------------------------------------------------------- item 4

def fill_worker_fds(d, limit):
    """Opens idle keep-alive connections (each one answered, so accepted)
    until one worker has every descriptor its limit allows in use.  Returns
    (that worker's pid, its connections, the last one last, every connection
    opened).  No connection is left waiting to be accepted."""
    pids = d.workers()
    for p in pids:
        assert fd_limit(p) == limit, "worker %d has limit %d, wanted %d" % (
            p, fd_limit(p), limit)
    everything = []
    for _ in range(4 * limit):
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
        everything.append(c)
        r = request(d.port, "GET", "/health/readiness", conn=c)
        assert r.status == 200, r
        full = [p for p in pids if fd_count(p) >= limit]
        if full:
            owners = connection_owners(d, everything, pids)
            mine = [c for c, o in zip(everything, owners) if o == full[0]]
            assert mine and mine[-1] is c, "the last connection is not the full worker's"
            return full[0], mine, everything
    raise TestFailure("no worker reached %d descriptors: %s" % (
        limit, {p: fd_count(p) for p in pids}))


def test_fd_exhaustion_not_blamed_on_upstreams():
    """A worker out of descriptors cannot open its upstream socket: the
    client gets 503 local_resource_exhausted at once, neither deployment is
    charged with a failure or cooled (allowed_fails = 0 would cool at the
    first), and once descriptors are free again both serve at once."""
    limit = 256
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b")],
               workers=2, server="worker_rlimit_nofile = %d;" % limit,
               router="num_retries = 2; allowed_fails = 0; cooldown_time = 30;")
    full, conns, everything = fill_worker_fds(d, limit)
    try:
        t0 = time.monotonic()
        r = chat(d.port, model="g", conn=conns[-1], timeout=10)
        took = time.monotonic() - t0
        assert r.status == 503, "fd exhaustion answered %r %s" % (r, r.headers)
        err = r.json()["error"]
        assert err["type"] == "server_error" and err["code"] == "local_resource_exhausted", err
        assert "open files" in err["message"], err
        assert attempts(r) == 0, r.headers
        assert "x-llmroute-deployment" not in r.headers, r.headers
        assert r.headers.get("retry-after") == "1", r.headers
        assert took < slack(2.0), "the 503 took %.2fs" % took
        for _ in range(30):         # every one the same: logged once a second at most
            r = chat(d.port, model="g", conn=conns[-1], timeout=10)
            assert r.status == 503 and attempts(r) == 0, r
        took = time.monotonic() - t0
        lines = d.log_text().count("no upstream call could be made")
        assert 1 <= lines <= took + 2, "%d log lines for 31 refusals in %.1fs" % (lines, took)
        assert a.stats()["requests"] == 0 and b.stats()["requests"] == 0
        for dep in ("a", "b"):
            st = status_row(d, dep)
            assert st["FAILED"] == "0" and st["COOLDOWNS"] == "0", st
            assert float(st["COOLING_S"]) == 0.0 and st["FAILS_MIN"] == "0", st
            assert st["INFLIGHT"] == "0" and st["REQUESTS"] == "0", st
        # free some descriptors of that worker: it serves again at once
        keep = conns[-1]
        for c in conns[:-1][:8]:
            c.close()
        wait_for(lambda: fd_count(full) <= limit - 8, 5, "the worker to close 8 connections")
        served = set()
        for i in range(20):
            r = chat(d.port, model="g", conn=keep, content="x%d" % i, timeout=10)
            assert r.status == 200 and attempts(r) == 1, (r, r.headers)
            served.add(r.headers["x-llmroute-deployment"])
        assert served == {"a", "b"}, "after fd exhaustion only %s served" % served
        for dep in ("a", "b"):
            assert status_row(d, dep)["FAILED"] == "0", status_row(d, dep)
        assert "Too many open files" in d.log_text()
    finally:
        for c in everything:
            c.close()


# ---------------------------------------------------------------- item 12

def test_dropped_reused_connection_not_resent():
    """An upstream that closes a reused keep-alive connection without
    answering: libcurl would send the POST again on a new connection (a
    second, billed generation).  Each client request now makes exactly as
    many upstream POSTs as x-llmroute-attempts says, and status agrees."""
    m = Mock("m")
    d = Daemon([deployment("g", m, dep_id="m")], workers=2,
               router="num_retries = 0; cooldown_time = 0;")
    conns = worker_conns(d)
    drops = 0
    for _ in range(2):
        for conn in conns.values():
            r = chat(d.port, model="g", conn=conn, timeout=10)   # keeps an upstream conn
            assert r.status == 200, r
            before = m.stats()
            r = chat(d.port, model="g", conn=conn, extra={"x_mock": {"drop": 1}}, timeout=10)
            drops += 1
            after = m.stats()
            assert r.status == 502, r
            assert attempts(r) == 1, r.headers
            assert after["requests"] - before["requests"] == 1, (
                "one client request with num_retries = 0 made %d upstream POSTs"
                % (after["requests"] - before["requests"]))
    st = m.stats()
    assert st["dropped"] == drops == 4, st
    rows = status_row(d, "m")
    assert rows["FAILED"] == str(drops) and rows["REQUESTS"] == str(2 * drops), rows
    assert "closed a reused connection without answering" in d.log_text()
    # with retries, each one is an attempt of llmroute, seen and counted
    reload(d, [deployment("g", m, dep_id="m")], "num_retries = 2; cooldown_time = 0;")
    conn = next(iter(worker_conns(d).values()))
    assert chat(d.port, model="g", conn=conn, timeout=10).status == 200
    before = m.stats()["requests"]
    r = chat(d.port, model="g", conn=conn, extra={"x_mock": {"drop": 1}}, timeout=10)
    assert r.status == 502 and attempts(r) == 3, (r, r.headers)
    assert m.stats()["requests"] - before == 3, m.stats()


# ---------------------------------------------------------------- item 8

def test_retry_after_cooldown_capped_and_reload_caps_old_ones():
    """Retry-After: 999999 cooled a deployment for 11.6 days.  Now a cooldown
    ends by max_cooldown_time (300 s by default), and a reload that lowers
    max_cooldown_time shortens the cooldowns already running."""
    bad = Mock("bad", ["--status", "429", "--retry-after", "999999"])
    good = Mock("good")
    deps = [deployment("g", bad, dep_id="bad"), deployment("g", good, dep_id="good")]
    d = Daemon(deps, workers=2, router="num_retries = 1; allowed_fails = 0;")
    wait_for(lambda: chat(d.port, model="g", timeout=10).status == 200
             and bad.stats()["requests"] > 0, 10, "a request to reach the bad deployment")
    st = status_row(d, "bad")
    assert st["COOLDOWNS"] == "1", st
    assert 290 <= float(st["COOLING_S"]) <= 300, "a Retry-After of 999999 s cooled %s s" % (
        st["COOLING_S"])
    # a reload with max_cooldown_time = 2: bad is tried again within 2 s
    reload(d, deps, "num_retries = 1; allowed_fails = 0; cooldown_time = 1; "
           "max_cooldown_time = 2;")
    wait_for(lambda: float(status_row(d, "bad")["COOLING_S"]) <= 2.0, 5,
             "the new workers to cap the cooldown")
    t0 = time.monotonic()
    before = bad.stats()["requests"]
    wait_for(lambda: chat(d.port, model="g", timeout=10).status == 200
             and bad.stats()["requests"] > before, 6, "the bad deployment to be tried again")
    assert time.monotonic() - t0 < 2.0 + slack(2.0)   # not the 300 s of before the reload
    # and a new Retry-After: 999999 now cools it for 2 s at most
    st = status_row(d, "bad")
    assert 0 < float(st["COOLING_S"]) <= 2.0, st


def test_last_usable_deployment_cooled_for_its_retry_after_only():
    """A group's only deployment answers 429 with Retry-After: 1 past
    allowed_fails: it cools for 1 s, not cooldown_time (20 s), so one
    answer cannot take the group out for long."""
    m = Mock("m")
    d = Daemon([deployment("g", m, dep_id="m")], workers=2,
               router="num_retries = 0; allowed_fails = 0; cooldown_time = 20;")
    r = chat(d.port, model="g", extra={"x_mock": {"status": 429, "retry_after": 1}},
             timeout=10)
    t0 = time.monotonic()
    assert r.status == 429 and r.headers.get("retry-after") == "1", (r, r.headers)
    st = status_row(d, "m")
    assert st["COOLDOWNS"] == "1" and 0 < float(st["COOLING_S"]) <= 1.0, st
    r = chat(d.port, model="g", timeout=10)
    if r.status == 429:     # still inside the 1 s
        assert r.json()["error"]["code"] == "no_deployment_available", r
        assert r.headers.get("retry-after") == "1", r.headers
    wait_for(lambda: chat(d.port, model="g", timeout=10).status == 200, 5,
             "the group to serve again")
    assert time.monotonic() - t0 < 1.0 + slack(2.0, cap=15), "the only deployment was out %.1fs" % (
        time.monotonic() - t0)


# ---------------------------------------------------------------- item 10

def test_huge_usage_numbers_clamped():
    """An upstream reporting 9e18 tokens (twice that summed: a signed
    overflow) is clamped to 2^31 per count, for answers and for streams."""
    m = Mock("m")
    d = Daemon([deployment("g", m, dep_id="m")], workers=2, router="num_retries = 0;")
    huge = {"usage_tokens": "9000000000000000000"}
    for extra in ({"x_mock": huge}, {"x_mock": dict(huge, usage=1), "stream": True}):
        for _ in range(2):
            r = chat(d.port, model="g", extra=extra, timeout=10)
            assert r.status == 200, r
            assert b"9000000000000000000" in r.body, r.body[-300:]     # relayed untouched
    st = status_row(d, "m")
    assert int(st["PROMPT_TOK"]) == 4 * 2 ** 31, st
    assert int(st["COMPL_TOK"]) == 4 * 2 ** 31, st
    assert 0 <= int(st["TPM_MIN"]) <= 2 ** 32 - 1, st
    r = chat(d.port, model="g", timeout=10)      # and ordinary answers still count
    assert r.status == 200
    assert int(status_row(d, "m")["COMPL_TOK"]) == 4 * 2 ** 31 + 5


# ---------------------------------------------------------------- back-off and defaults

def test_5xx_retries_back_off():
    """Three attempts on an always-500 deployment were made within 1 ms; now
    every retry waits (100 ms, then 200 ms, +-25%)."""
    m = Mock("m", ["--status", "500"])
    d = Daemon([deployment("g", m, dep_id="m")], workers=2,
               router="num_retries = 2; cooldown_time = 0;")
    for _ in range(2):
        t0 = time.monotonic()
        r = chat(d.port, model="g", timeout=10)
        took = time.monotonic() - t0
        assert r.status == 500 and attempts(r) == 3, (r, r.headers)
        assert 0.22 <= took < 0.3 + slack(1.2), "3 attempts after 500s took %.3fs" % took


def test_default_settings_429_burst_blocks_briefly():
    """With the shipped defaults, an only deployment answering 429 with
    Retry-After: 1 to a client that retries (as the OpenAI SDKs do) gets
    cooled past allowed_fails = 3 for its Retry-After, not for a minute: the
    group serves again about 1 s after the upstream does."""
    m = Mock("m")
    d = Daemon([deployment("g", m, dep_id="m")], workers=2)
    m.config(status=429, retry_after="1")
    minute_room(10)
    codes = []
    for _ in range(3):              # the SDK's first try and its 2 retries
        r = chat(d.port, model="g", timeout=20)
        codes.append(r.json()["error"].get("code"))
        assert r.status == 429, r
        if status_row(d, "m")["COOLDOWNS"] != "0":
            break
    st = status_row(d, "m")
    assert st["COOLDOWNS"] == "1", (st, codes)
    assert float(st["COOLING_S"]) <= 1.0, "the burst cooled the group for %s s" % (
        st["COOLING_S"])
    m.config(status=200, retry_after=None)
    t0 = time.monotonic()
    wait_for(lambda: chat(d.port, model="g", timeout=10).status == 200, 5,
             "the group to serve again")
    assert time.monotonic() - t0 < 1.0 + slack(1.0)   # not a minute
