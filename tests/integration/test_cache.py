"""The response cache (README "Response cache"), local type: one LMDB store
for every worker, the key, the body's cache controls, TTL, single-flight
across workers, crash safety and the size bound.  Real daemon (>= 2
workers), real mocks."""
import json
import os
import signal
import threading
import time

from harness import (Daemon, Mock, TestFailure, chat, deployment, request, slack, timeout,
                     tmpdir, wait_for)

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
