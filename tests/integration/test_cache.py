"""The response cache (README "Response cache"), local type: one LMDB store
for every worker, the key, the body's cache controls, TTL, single-flight
across workers, crash safety and the size bound.  Real daemon (>= 2
workers), real mocks."""
import http.client
import json
import os
import signal
import threading
import time

from harness import (SLOW, Daemon, Mock, chat, connection_owners, conns_per_worker, deployment,
                     request, slack, timeout, tmpdir, wait_for, worker_conns)

CHAT = "/v1/chat/completions"


class CacheDaemon(Daemon):
    """A daemon with the cache on and a `cache` section of the test's."""

    def __init__(self, deployments, cache="", router="", **kw):
        self.cache_text = cache
        self.cache_dir = os.path.join(tmpdir(), "cache")
        router = "cache_responses = true; " + router
        super().__init__(deployments, router=router, **kw)

    def write_conf(self, deployments, workers=2, server="", router=""):
        super().write_conf(deployments, workers, server, router)
        with open(self.conf_path, "a") as f:
            f.write('cache: { path = "%s"; %s };\n' % (self.cache_dir, self.cache_text))


def one(cache="", workers=2, router="", mock_args=()):
    m = Mock("m", args=mock_args)
    d = CacheDaemon([deployment("g", m, dep_id="a")], cache=cache, workers=workers,
                    router=router)
    return m, d


def ask(d, content="hello", extra=None, model="g"):
    return chat(d.port, model=model, content=content, extra=extra)


def upstream_calls(m):
    return m.stats()["requests"]


def cache_status(d):
    r = request(d.port, "GET", "/status.json")
    assert r.status == 200, r
    return r.json()["cache"]


def test_cache_hit_after_miss_same_body():
    m, d = one()
    a = ask(d, "what is two and two")
    assert a.status == 200, a
    assert a.headers["x-llmroute-cache"] == "miss", a.headers
    key = a.headers["x-llmroute-cache-key"]
    assert len(key) == 64 and int(key, 16) >= 0, key
    b = ask(d, "what is two and two")
    assert b.status == 200, b
    assert b.headers["x-llmroute-cache"] == "hit", b.headers
    assert b.headers["x-llmroute-cache-key"] == key
    assert b.body == a.body
    assert b.headers["content-type"].startswith("application/json"), b.headers
    assert upstream_calls(m) == 1
    # the body's key order, whitespace, user/metadata and model alias do not matter
    body = {"messages": [{"role": "user", "content": "what is two and two"}],
            "user": "u1", "metadata": {"x": 1}, "model": "g"}
    c = request(d.port, "POST", CHAT, json.dumps(body, indent=3))
    assert c.status == 200 and c.headers["x-llmroute-cache"] == "hit", c
    assert c.headers["x-llmroute-cache-key"] == key
    assert upstream_calls(m) == 1
    st = cache_status(d)
    assert st["hits"] == 2 and st["misses"] == 1 and st["entries"] == 1, st
    assert st["bytes"] > 0, st
    out = d.status()
    assert out.returncode == 0 and "response cache: hits 2, misses 1, coalesced 0" in out.stdout, out
    m_text = request(d.port, "GET", "/metrics").body.decode()
    assert "\nllmroute_cache_hits_total 2\n" in m_text and "\nllmroute_cache_entries 1\n" in m_text


def test_cache_miss_when_a_field_that_matters_differs():
    m, d = one()
    base = ask(d, "q")
    assert base.headers["x-llmroute-cache"] == "miss"
    keys = {base.headers["x-llmroute-cache-key"]}
    for extra, content in (({"temperature": 0.5}, "q"), ({}, "q2"),
                           ({"max_tokens": 3}, "q"), ({"stream": True}, "q")):
        r = ask(d, content, extra)
        assert r.status == 200, r
        assert r.headers["x-llmroute-cache"] == "miss", (extra, content, r.headers)
        keys.add(r.headers["x-llmroute-cache-key"])
    assert len(keys) == 5, keys
    assert upstream_calls(m) == 5
    # and each is a hit the second time
    for extra, content in (({"temperature": 0.5}, "q"), ({"max_tokens": 3}, "q")):
        assert ask(d, content, extra).headers["x-llmroute-cache"] == "hit"
    assert upstream_calls(m) == 5


def test_cache_ttl_expiry():
    m, d = one(cache="ttl = 1.0;")
    assert ask(d, "t").headers["x-llmroute-cache"] == "miss"
    assert ask(d, "t").headers["x-llmroute-cache"] == "hit"
    t0 = time.monotonic()
    wait_for(lambda: ask(d, "t").headers["x-llmroute-cache"] == "miss", 10,
             "the entry to expire")
    assert time.monotonic() - t0 >= 0.5
    # a per-request ttl replaces the configured one
    r = ask(d, "t2", {"cache": {"ttl": 600}})
    assert r.headers["x-llmroute-cache"] == "miss"
    t1 = time.monotonic()
    wait_for(lambda: time.monotonic() - t1 > 1.5, 5, "past the configured ttl")
    assert ask(d, "t2", {"cache": {"ttl": 600}}).headers["x-llmroute-cache"] == "hit"


def test_cache_controls_no_cache_no_store_s_maxage_namespace():
    m, d = one()
    assert ask(d, "c").headers["x-llmroute-cache"] == "miss"
    n = upstream_calls(m)
    # no-cache: not read (bypass), but the answer is stored again
    r = ask(d, "c", {"cache": {"no-cache": True}})
    assert r.status == 200 and r.headers["x-llmroute-cache"] == "bypass", r.headers
    assert upstream_calls(m) == n + 1
    # the cache object is not part of the key: a plain ask hits
    assert ask(d, "c").headers["x-llmroute-cache"] == "hit"
    # no-store: a miss that stores nothing
    assert ask(d, "s", {"cache": {"no-store": True}}).headers["x-llmroute-cache"] == "miss"
    assert ask(d, "s").headers["x-llmroute-cache"] == "miss"
    # s-maxage: only an entry younger than that
    assert ask(d, "m").headers["x-llmroute-cache"] == "miss"
    t0 = time.monotonic()
    wait_for(lambda: time.monotonic() - t0 > 1.2, 5, "the entry to age")
    assert ask(d, "m", {"cache": {"s-maxage": 1}}).headers["x-llmroute-cache"] == "miss"
    assert ask(d, "m", {"cache": {"s-maxage": 600}}).headers["x-llmroute-cache"] == "hit"
    # namespace: a separate key space
    r1 = ask(d, "c", {"cache": {"namespace": "team-b"}})
    assert r1.headers["x-llmroute-cache"] == "miss", r1.headers
    assert ask(d, "c", {"cache": {"namespace": "team-b"}}).headers["x-llmroute-cache"] == "hit"
    for bad, what in (({"no-cache": "yes"}, "no-cache"), ({"ttl": -1}, "ttl"),
                      ("x", "cache must be an object"), ({"namespace": 3}, "namespace")):
        r = ask(d, "c", {"cache": bad})
        assert r.status == 400, r
        e = r.json()["error"]
        assert e["param"] == "cache" and what in e["message"], e


def test_cache_stream_is_stored_and_replayed_as_the_same_events():
    m, d = one()
    body = {"stream": True, "stream_options": {"include_usage": True}}
    a = ask(d, "s", body)
    assert a.status == 200 and a.headers["x-llmroute-cache"] == "miss", a
    assert a.headers["content-type"].startswith("text/event-stream")
    b = ask(d, "s", body)
    assert b.status == 200 and b.headers["x-llmroute-cache"] == "hit", b.headers
    assert b.headers["content-type"].startswith("text/event-stream")
    assert b.body == a.body and b.body.endswith(b"data: [DONE]\n\n"), b.body[-80:]
    # a stream that fails mid-way is not stored
    bad = {"stream": True, "x_mock": {"drop_after": 1}}
    r = ask(d, "broken", bad)
    assert r.status == 200
    assert ask(d, "broken", bad).headers["x-llmroute-cache"] == "miss"
    # nor is an error answer
    e = ask(d, "err", {"x_mock": {"status": 400}})
    assert e.status == 400 and e.headers["x-llmroute-cache"] == "miss", e
    assert ask(d, "err", {"x_mock": {"status": 400}}).headers["x-llmroute-cache"] == "miss"
    assert upstream_calls(m) == 5


def test_cache_hits_touch_no_deployment_counter():
    m, d = one(router="")
    assert ask(d, "h").status == 200
    before = request(d.port, "GET", "/status.json").json()
    for _ in range(5):
        assert ask(d, "h").headers["x-llmroute-cache"] == "hit"
    after = request(d.port, "GET", "/status.json").json()
    dep_b = [x for x in before["deployments"] if x["id"] == "a"][0]
    dep_a = [x for x in after["deployments"] if x["id"] == "a"][0]
    for k in ("requests", "successes", "prompt_tokens", "completion_tokens", "rpm_used",
              "tpm_used", "inflight"):
        assert dep_a[k] == dep_b[k], (k, dep_b, dep_a)
    assert dep_a["requests"] == 1, dep_a
    assert upstream_calls(m) == 1


def test_cache_survives_reload():
    m, d = one()
    first = ask(d, "r")
    assert first.headers["x-llmroute-cache"] == "miss"
    old = set(d.workers())
    os.kill(d.p.pid, signal.SIGHUP)
    wait_for(lambda: old.isdisjoint(d.workers()) and len(d.workers()) == 2, 15,
             "old workers replaced")
    r = ask(d, "r")
    assert r.headers["x-llmroute-cache"] == "hit" and r.body == first.body, r.headers
    assert upstream_calls(m) == 1


def fire_together(conns, body, results):
    """One request on each connection, sent as close together as threads allow."""
    gate = threading.Barrier(len(conns))

    def one_req(i, c):
        try:
            gate.wait(30)
            results[i] = request(0, "POST", CHAT, body, conn=c, timeout=60)
        except Exception as e:     # recorded, asserted on by the caller
            results[i] = e
    threads = [threading.Thread(target=one_req, args=(i, c)) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    return threads


@timeout(180)
def test_cache_fifty_identical_requests_over_four_workers_reach_upstream_once():
    m, d = one(workers=4)
    # at least 5 on each worker (smaller batches than 13 each: a loaded box
    # accepts 100 connections at once slowly), the rest wherever they land
    held = conns_per_worker(d, 5, workers=4)
    conns = [c for cs in held.values() for c in cs]
    while len(conns) < 50:
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
        c.connect()
        conns.append(c)
    assert len(set(connection_owners(d, conns[:20]))) == 4
    # the leader's answer takes long enough for every other one to arrive
    body = {"model": "g", "messages": [{"role": "user", "content": "burst"}],
            "x_mock": {"latency_ms": int(1500 * SLOW)}}
    results = [None] * len(conns)
    threads = fire_together(conns, body, results)
    for t in threads:
        t.join(120)
    for c in conns:
        c.close()
    bad = [r for r in results if not hasattr(r, "status") or r.status != 200]
    assert not bad, bad[:3]
    assert upstream_calls(m) == 1, m.stats()
    how = [r.headers["x-llmroute-cache"] for r in results]
    assert how.count("miss") == 1, how
    assert how.count("coalesced") + how.count("hit") == 49, how
    assert how.count("coalesced") >= 25, how
    assert len({r.body for r in results}) == 1
    assert len({r.headers["x-llmroute-cache-key"] for r in results}) == 1
    st = cache_status(d)
    assert st["misses"] == 1 and st["coalesced"] == how.count("coalesced"), st


def test_cache_leader_gone_a_waiter_leads():
    m, d = one()
    slow = {"x_mock": {"latency_ms": int(1500 * SLOW)}}
    conns = worker_conns(d)
    (pa, ca), (pb, cb) = list(conns.items())[:2]
    body = json.dumps({"model": "g", "messages": [{"role": "user", "content": "lead"}],
                       **slow})
    ca.request("POST", CHAT, body, {"Content-Type": "application/json"})
    wait_for(lambda: upstream_calls(m) == 1, 10, "the leader's call upstream")
    got = [None]
    t = threading.Thread(target=lambda: got.__setitem__(
        0, request(0, "POST", CHAT, body, conn=cb, timeout=60)))
    t.start()
    # the second one waits on the first (on another worker), then the first's
    # client leaves: its request is cancelled and the waiter leads
    wait_for(lambda: cache_status(d)["misses"] == 1, 10, "the leader counted")
    ca.sock.shutdown(2)
    ca.close()
    t.join(60 * SLOW)
    r = got[0]
    assert r is not None and r.status == 200, r
    assert r.headers["x-llmroute-cache"] == "miss", r.headers
    assert upstream_calls(m) == 2
    assert ask(d, "lead", slow).headers["x-llmroute-cache"] == "hit"
    cb.close()


def test_cache_waiter_keeps_its_own_timeout():
    m, d = one()
    lead_body = {"x_mock": {"latency_ms": int(4000 * SLOW)}}
    got = [None]
    t = threading.Thread(target=lambda: got.__setitem__(0, ask(d, "w", lead_body)))
    t.start()
    wait_for(lambda: upstream_calls(m) == 1, 10, "the leader's call upstream")
    t0 = time.monotonic()
    r = ask(d, "w", dict(lead_body, timeout=0.5))   # `timeout` is not part of the key
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert "identical request in flight" in r.json()["error"]["message"], r.json()
    assert took < 0.5 + slack(1.0, cap=3.0), took
    t.join(60)
    assert got[0].status == 200 and got[0].headers["x-llmroute-cache"] == "miss"
    assert upstream_calls(m) == 1


@timeout(240)
def test_cache_worker_sigkilled_while_writing_leaves_store_usable():
    # room for every write of the test: nothing is evicted, so every
    # reference entry must still be there, whole, after each kill
    m, d = one(cache="max_size_mb = 1024;")
    refs = {}
    for k in range(3):
        r = ask(d, "ref %d" % k)
        assert r.headers["x-llmroute-cache"] == "miss"
        refs[k] = r.body
    # 256 KiB answers, at most 4 x 500 of them (500 MiB): under the 80%
    # high-water mark of the 1 GiB store however fast the writers go, so a
    # reference entry can only go missing if a kill damaged the store (an
    # unbounded writer loop on a fast box once filled it and evicted them)
    big = {"x_mock": {"pad_bytes": 1 << 18}}
    stop = threading.Event()

    def writer(n):
        i = 0
        while not stop.is_set() and i < 500:
            try:
                ask(d, "big %d %d" % (n, i), big)
            except Exception:       # a killed worker's connection: expected
                pass
            i += 1
    ws = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for w in ws:
        w.start()
    try:
        for _ in range(8):
            before = cache_status(d)["stores"]
            # kill while the writers keep a 1 MiB write transaction going
            wait_for(lambda: cache_status(d)["stores"] >= before + 2, 30, "stores under way")
            victim = d.workers()[0]
            d.allowed.append("exited on signal")
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: victim not in d.workers() and len(d.workers()) == 2, 20,
                     "the worker respawned")
            for k, body in refs.items():
                r = ask(d, "ref %d" % k)
                assert r.headers["x-llmroute-cache"] == "hit" and r.body == body, r.headers
    finally:
        stop.set()
        for w in ws:
            w.join(60)
    assert cache_status(d)["evictions"] == 0
    # writable: new entries store and read back, big ones whole
    for k in range(3):
        a = ask(d, "after %d" % k, big)
        assert a.status == 200 and a.headers["x-llmroute-cache"] == "miss", a
        b = ask(d, "after %d" % k, big)
        assert b.headers["x-llmroute-cache"] == "hit" and b.body == a.body, b.headers
    assert upstream_calls(m) <= cache_status(d)["misses"]


@timeout(180)
def test_cache_size_bound_holds_under_a_flood_of_distinct_requests():
    m, d = one(cache="max_size_mb = 2;")
    pad = {"x_mock": {"pad_bytes": 40000}}
    for i in range(150):            # about 6 MB of answers into a 2 MB store
        r = ask(d, "flood %d" % i, pad)
        assert r.status == 200 and r.headers["x-llmroute-cache"] == "miss", r
    data = os.path.join(d.cache_dir, "data.mdb")
    assert os.path.getsize(data) <= 2 << 20, os.path.getsize(data)
    st = cache_status(d)
    assert st["evictions"] > 0 and st["bytes"] <= 2 << 20, st
    assert st["stores"] >= 140, st
    # the newest answers are still there, the oldest went first
    assert ask(d, "flood 149", pad).headers["x-llmroute-cache"] == "hit"
    assert ask(d, "flood 0", pad).headers["x-llmroute-cache"] == "miss"


def test_cache_identical_streams_coalesce_after_the_leaders_end():
    m, d = one()
    body = {"stream": True, "x_mock": {"chunks": 4, "chunk_delay_ms": int(300 * SLOW)}}
    got = [None]
    t = threading.Thread(target=lambda: got.__setitem__(0, ask(d, "st", body)))
    t.start()
    wait_for(lambda: upstream_calls(m) == 1, 10, "the leading stream upstream")
    second = ask(d, "st", body)
    t.join(60)
    first = got[0]
    assert first.status == 200 and first.headers["x-llmroute-cache"] == "miss", first
    assert second.status == 200 and second.headers["x-llmroute-cache"] == "coalesced", second
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.body == first.body and first.body.endswith(b"data: [DONE]\n\n")
    assert upstream_calls(m) == 1


def server_read_all(d, conn):
    """Whether the worker's end of conn has no unread bytes (it took the request)."""
    mine = conn.sock.getsockname()[1]
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if int(p[1].split(":")[1], 16) == d.port and int(p[2].split(":")[1], 16) == mine:
                return int(p[4].split(":")[1], 16) == 0
    return False


def test_cache_waiters_are_answered_at_the_drain_deadline():
    m = Mock("m")
    d = CacheDaemon([deployment("g", m, dep_id="a")], drain_timeout=1.0)
    slow = {"x_mock": {"latency_ms": int(8000 * SLOW)}}
    conns = list(worker_conns(d).values())
    body = json.dumps({"model": "g", "messages": [{"role": "user", "content": "dr"}], **slow})
    hdrs = {"Content-Type": "application/json"}
    conns[0].request("POST", CHAT, body, hdrs)
    wait_for(lambda: upstream_calls(m) == 1, 10, "the leader upstream")
    conns[1].request("POST", CHAT, body, hdrs)
    wait_for(lambda: server_read_all(d, conns[1]), 10, "the waiter's request read")
    old = set(d.workers())
    d.write_conf([deployment("g", m, dep_id="a")], workers=2,
                 router="cache_responses = true;")
    t0 = time.monotonic()
    os.kill(d.p.pid, signal.SIGHUP)
    for c in conns:
        r = c.getresponse()
        body_out = json.loads(r.read())
        assert r.status == 503, (r.status, body_out)
        assert body_out["error"]["code"] == "server_shutting_down", body_out
    assert time.monotonic() - t0 < 8.0, "answered by the upstream, not at the drain deadline"
    wait_for(lambda: old.isdisjoint(d.workers()), 20, "old workers gone")
    for c in conns:
        c.close()


def test_cache_waiter_that_leads_has_only_the_rest_of_its_timeout():
    m, d = one(router="num_retries = 0; cooldown_time = 0.0;")
    lat = 2.0 * SLOW
    fail = {"x_mock": {"latency_ms": int(lat * 1000), "status": 500}}
    got = [None]
    t = threading.Thread(target=lambda: got.__setitem__(0, ask(d, "fl", fail)))
    t.start()
    wait_for(lambda: upstream_calls(m) == 1, 10, "the leader upstream")
    t0 = time.monotonic()
    # waits for the leader (about lat), which fails: it leads with what is
    # left of its 1.5 lat, not a fresh 1.5 lat that would see the 500
    r = ask(d, "fl", dict(fail, timeout=1.5 * lat))
    took = time.monotonic() - t0
    t.join(60)
    assert got[0].status == 500, got[0]
    assert r.status == 504, r
    assert upstream_calls(m) == 2
    assert took < 1.5 * lat + slack(1.0, cap=lat / 2), took
