"""The response cache's Redis type: a real redis-server started here, two
llmroute instances sharing its entries, and Redis killed mid-run with no
request failing (misses and a log line instead)."""
import os
import signal
import socket

from harness import (Mock, Proc, TestFailure, deployment, free_port, request, timeout, wait_for)
from test_cache import CacheDaemon, ask, cache_status, upstream_calls


class Redis(Proc):
    def __init__(self, port=None):
        self.port = port or free_port()
        super().__init__(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no"], "redis")
        wait_for(self.ping, 10, "redis-server to answer PING")

    def ping(self):
        if self.p.poll() is not None:
            raise TestFailure("redis-server exited: %s" % self.log_text()[-1000:])
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(out)
            return s.recv(65536)


def redis_daemon(m, r, **kw):
    return CacheDaemon([deployment("g", m, dep_id="a")],
                       cache='type = "redis"; url = "redis://127.0.0.1:%d";' % r.port, **kw)


def test_cache_redis_two_instances_share_hits():
    r = Redis()
    m = Mock("m")
    a, b = redis_daemon(m, r), redis_daemon(m, r)
    wait_for(lambda: "redis connected" in a.log_text() and "redis connected" in b.log_text(),
             10, "both instances connected to redis")
    first = ask(a, "shared")
    assert first.status == 200 and first.headers["x-llmroute-cache"] == "miss", first
    key = first.headers["x-llmroute-cache-key"]
    # the write is asynchronous: it lands just after the answer went out
    wait_for(lambda: r.cmd("EXISTS", "llmroute:cache:" + key) == b":1\r\n", 10,
             "the entry in redis")
    # the entry is in Redis, with Redis's own expiry (the TTL)
    assert b":" in r.cmd("PTTL", "llmroute:cache:" + key)
    ttl = int(r.cmd("PTTL", "llmroute:cache:" + key)[1:].split(b"\r\n")[0])
    assert 3500 * 1000 < ttl <= 3600 * 1000, ttl
    second = ask(b, "shared")
    assert second.headers["x-llmroute-cache"] == "hit", second.headers
    assert second.body == first.body and second.headers["x-llmroute-cache-key"] == key
    assert upstream_calls(m) == 1
    assert cache_status(b)["hits"] == 1 and cache_status(a)["misses"] == 1
    # streams too
    s1 = ask(a, "s", {"stream": True})
    wait_for(lambda: r.cmd("EXISTS", "llmroute:cache:" + s1.headers["x-llmroute-cache-key"])
             == b":1\r\n", 10, "the stream's entry in redis")
    s2 = ask(b, "s", {"stream": True})
    assert s2.headers["x-llmroute-cache"] == "hit" and s2.body == s1.body, s2.headers
    assert upstream_calls(m) == 2


@timeout(180)
def test_cache_redis_killed_mid_run_fails_no_request():
    r = Redis()
    m = Mock("m")
    d = redis_daemon(m, r)
    wait_for(lambda: "redis connected" in d.log_text(), 10, "connected to redis")
    assert ask(d, "k").headers["x-llmroute-cache"] == "miss"
    assert ask(d, "k").headers["x-llmroute-cache"] == "hit"
    r.p.send_signal(signal.SIGKILL)
    r.p.wait(10)
    statuses = []
    for i in range(30):
        x = ask(d, "k" if i % 2 else "other %d" % i)
        statuses.append((x.status, x.headers.get("x-llmroute-cache")))
    assert all(s == 200 for s, _ in statuses), statuses
    assert all(h == "miss" for _, h in statuses), statuses
    wait_for(lambda: "redis unavailable" in d.log_text(), 10, "the log line")
    # one line per worker that lost it, not one per request
    assert d.log_text().count("redis unavailable") <= 2 * 2, d.log_text()[-2000:]
    assert cache_status(d)["errors"] > 0
    # back again: stores and hits resume
    r2 = Redis(port=r.port)
    wait_for(lambda: ask(d, "back").headers["x-llmroute-cache"] == "hit", 30,
             "hits once redis is back")
    assert r2.ping()


def test_cache_redis_defaults_to_router_settings_redis():
    """A `cache` section of type redis that names no server uses
    router_settings.redis_* and their prefix (the Redis the hosts already
    share for multi-host sync), so one Redis setting serves both."""
    r = Redis()
    m = Mock("m")
    router = 'redis_host = "127.0.0.1"; redis_port = %d; redis_prefix = "team1";' % r.port
    a, b = [CacheDaemon([deployment("g", m, dep_id="a")], cache='type = "redis";',
                        router=router) for _ in range(2)]
    wait_for(lambda: "redis connected" in a.log_text() and "redis connected" in b.log_text(),
             10, "both instances connected to the router_settings redis")
    first = ask(a, "shared-by-router-settings")
    assert first.headers["x-llmroute-cache"] == "miss", first.headers
    key = first.headers["x-llmroute-cache-key"]
    wait_for(lambda: r.cmd("EXISTS", "team1:cache:" + key) == b":1\r\n", 10,
             "the entry under the redis_prefix")
    assert r.cmd("EXISTS", "llmroute:cache:" + key) == b":0\r\n"
    second = ask(b, "shared-by-router-settings")
    assert second.headers["x-llmroute-cache"] == "hit" and second.body == first.body
    assert upstream_calls(m) == 1
