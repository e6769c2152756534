"""Several llmroute hosts sharing limits, cooldowns and usage through one
real redis-server (issue 14; README "Several hosts (Redis)").

Each test starts its own redis-server on a free loopback port (no disk:
--save "" --appendonly no), three llmroute instances (own ports, own
segment names, several workers each) and one mock upstream.  The state is
read from `llmroute status --json`; every wait polls with a deadline.
"""
import json
import os
import signal
import subprocess
import threading
import time

from harness import Daemon, Mock, Proc, TestFailure, cli, chat, deployment, free_port
from harness import minute_room, wait_for, SLOW, timeout

INTERVAL_MS = 50
WORKERS = 3


class Redis(Proc):
    """A redis-server of its own on a free port; restartable on that port."""

    def __init__(self, port=None):
        self.port = port or free_port()
        super().__init__(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no"], "redis")
        wait_for(lambda: self.cmd("PING") == "PONG", 10, "redis-server to answer")

    def cmd(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port)] + list(args),
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def commands(self):
        """Commands Redis has run, from INFO commandstats."""
        n = 0
        for line in self.cmd("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                n += int(line.split("calls=")[1].split(",")[0])
        return n


def sync_router(redis, extra=""):
    return ('redis_host = "127.0.0.1"; redis_port = %d; redis_sync_interval_ms = %d; '
            'redis_prefix = "t%d"; %s' % (redis.port, INTERVAL_MS, redis.port, extra))


def status(d):
    env = dict(os.environ)
    env.update(d.env)
    out = cli(d.conf_path, "status", "--json", env=env)
    if out.returncode != 0:
        raise TestFailure("status failed: %s %s" % (out.stdout, out.stderr))
    return json.loads(out.stdout)


def dep_of(st, dep_id):
    for x in st["deployments"]:
        if x["id"] == dep_id:
            return x
    raise TestFailure("no deployment %s in %r" % (dep_id, st))


def hosts(redis, deps, router="", workers=WORKERS):
    ds = [Daemon(deps, workers=workers, router=sync_router(redis, router)) for _ in range(3)]
    for d in ds:
        d.allowed.append("sync: Redis unavailable")
    wait_for(lambda: all(status(d)["sync"]["state"] == "shared"
                         and status(d)["sync"]["hosts"] == 3 for d in ds),
             20, "three hosts sharing through Redis")
    return ds


def claims(ds, dep_id, kind="rpm"):
    """What each host holds of this minute's quota: its grant less what
    it handed back."""
    out = []
    for d in ds:
        s = dep_of(status(d), dep_id)["sync"]
        out.append(s[kind + "_granted"] - s[kind + "_handed_back"])
    return out


def fire(ports, n, model="g", threads=60):
    """n chat requests spread evenly over ports, `threads` at a time;
    returns the list of statuses."""
    out, lock, it = [], threading.Lock(), iter(range(n))

    def run():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            try:
                r = chat(ports[i % len(ports)], model=model, timeout=30 * SLOW)
                st = r.status
            except Exception as e:     # counted as a failure below
                st = repr(e)
            with lock:
                out.append(st)
    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


@timeout(180)
def test_sync_rpm_60_exact_over_three_hosts():
    """rpm = 60 on one deployment, three hosts: 300 concurrent requests
    spread over them; the mock sees exactly 60, the rest are 429 at-limit
    answers (a host whose grant is spent answers at once, it never waits
    on Redis)."""
    redis, mock = Redis(), Mock()
    ds = hosts(redis, [deployment("g", mock, dep_id="d1", params="rpm = 60;")])
    minute_room(50 if SLOW > 1 else 30)
    wait_for(lambda: sum(claims(ds, "d1")) == 60 and min(claims(ds, "d1")) >= 17, 10,
             "the hosts to hold about their share, 20, of this minute's 60")
    before = mock.stats()["requests"]
    res = fire([d.port for d in ds], 300, threads=300)   # all 300 at once
    ok = sum(1 for s in res if s == 200)
    limited = sum(1 for s in res if s == 429)
    seen = mock.stats()["requests"] - before
    assert seen == 60, "mock saw %d requests, wanted 60 (200s: %d)" % (seen, ok)
    assert ok == 60 and limited == 240, "200: %d, 429: %d, other: %r" % (
        ok, limited, [s for s in res if s not in (200, 429)][:5])
    r = chat(ds[0].port, model="g")
    assert r.status == 429 and r.json()["error"]["code"] is not None, r
    assert r.headers.get("retry-after", "").isdigit(), r.headers

    def fleet_sees_60(d):
        x = dep_of(status(d), "d1")
        return x["sync"]["fleet_rpm_others"] + x["rpm_used"] - x["sync"]["rpm_handed_back"]
    # the merged figures: each host's own requests plus the others' = 60
    wait_for(lambda: [fleet_sees_60(d) for d in ds] == [60, 60, 60], 5,
             "every host to see the fleet's 60 requests this minute")
    for d in ds:
        d.stop()
    redis.stop()


@timeout(180)
def test_sync_cooldown_reaches_every_host():
    """A deployment failing on one host is cooled down on the other two
    within a few sync intervals, and they stop sending it requests."""
    redis, good, bad = Redis(), Mock("good"), Mock("bad", ["--status", "500"])
    deps = [deployment("g", bad, dep_id="bad"), deployment("g", good, dep_id="good")]
    ds = hosts(redis, deps, router="allowed_fails = 0; cooldown_time = 60.0; num_retries = 3;")
    for _ in range(10):         # until the bad one fails once on host 0
        if dep_of(status(ds[0]), "bad")["cooldown_left_s"] > 0:
            break
        assert chat(ds[0].port, model="g").status == 200
    assert dep_of(status(ds[0]), "bad")["cooldown_left_s"] > 0
    wait_for(lambda: all(dep_of(status(d), "bad")["cooldown_left_s"] > 30 for d in ds[1:]),
             2.0, "the cooldown to reach hosts 1 and 2")
    seen = bad.stats()["requests"]
    for d in ds[1:]:
        for _ in range(10):
            assert chat(d.port, model="g").status == 200
    assert bad.stats()["requests"] == seen, "a cooled deployment got requests"
    # Whatever another host publishes, no cooldown outlasts max_cooldown_time
    # (300 s by default), and words that are not "<deadline> <id>" are ignored.
    ch = "t%d:cooldown" % redis.port
    redis.cmd("PUBLISH", ch, "hello")
    redis.cmd("PUBLISH", ch, "99999999999999999999999 good")
    wait_for(lambda: all(0 < dep_of(status(d), "good")["cooldown_left_s"] <= 300 for d in ds),
             2.0, "the hostile cooldown capped on every host")
    for d in ds:
        d.stop()
    redis.stop()


@timeout(240)
def test_sync_redis_killed_and_restarted():
    """Redis killed in the middle of traffic: no request fails, each host
    falls back to its share (limit / 3 hosts), shows it in status and
    /metrics; Redis back on the same port: shared again, and the claims
    this minute are in Redis once more."""
    redis, mock = Redis(), Mock()
    # rpm high enough that the traffic below never reaches it, even under ASan
    ds = hosts(redis, [deployment("g", mock, dep_id="d1", params="rpm = 60000;")])
    minute_room(50 if SLOW > 1 else 30)
    stop, results = threading.Event(), []

    def traffic():
        while not stop.is_set():
            results.extend(fire([d.port for d in ds], 30, threads=6))
    t = threading.Thread(target=traffic)
    t.start()
    try:
        wait_for(lambda: len(results) >= 30, 20, "traffic to flow")
        redis.p.send_signal(signal.SIGKILL)
        redis.p.wait()
        wait_for(lambda: all(status(d)["sync"]["state"] == "local" for d in ds), 10,
                 "every host to fall back to its local share")
        for d in ds:
            st = status(d)
            assert st["sync"]["hosts"] == 3, st["sync"]
            assert dep_of(st, "d1")["sync"]["rpm_granted"] >= 20000, dep_of(st, "d1")
            m = chat(d.port, model="g")     # still served
            assert m.status == 200, m
        from harness import request
        metrics = request(ds[0].port, "GET", "/metrics").body.decode()
        assert 'llmroute_sync_state{state="local"} 1' in metrics
        n = len(results)
        wait_for(lambda: len(results) >= n + 30, 20, "traffic while Redis is down")
        redis2 = Redis(port=redis.port)
        wait_for(lambda: all(status(d)["sync"]["state"] == "shared" for d in ds), 15,
                 "every host to share through Redis again")
        n = len(results)
        wait_for(lambda: len(results) >= n + 30, 20, "traffic after Redis is back")
    finally:
        stop.set()
        t.join()
    bad = [s for s in results if s != 200]
    assert not bad, "%d of %d requests failed: %r" % (len(bad), len(results), bad[:5])
    minute = int(status(ds[0])["now_ms"] // 60000)
    wait_for(lambda: int(redis2.cmd("HLEN", "t%d:rpm:d1:%d" % (redis.port, minute)) or 0) == 3,
             10, "the three hosts' claims back in Redis")
    for d in ds:
        d.stop()
    redis2.stop()


@timeout(180)
def test_sync_process_sigkilled_is_respawned():
    """The sync process SIGKILLed: the master starts another, the grants
    the segment holds stay, traffic goes on, and sync resumes."""
    redis, mock = Redis(), Mock()
    ds = hosts(redis, [deployment("g", mock, dep_id="d1", params="rpm = 600;")])
    minute_room(50 if SLOW > 1 else 20)
    wait_for(lambda: sum(claims(ds, "d1")) == 600, 10, "shares granted")
    st = status(ds[0])
    pid, before = st["sync"]["pid"], dep_of(st, "d1")["sync"]["rpm_granted"]
    ds[0].allowed.append("sync process exited on signal 9")
    os.kill(pid, signal.SIGKILL)
    assert chat(ds[0].port, model="g").status == 200   # admission never needed it
    wait_for(lambda: status(ds[0])["sync"]["pid"] not in (0, pid), 10,
             "a new sync process")
    assert dep_of(status(ds[0]), "d1")["sync"]["rpm_granted"] >= before
    assert "sync process exited on signal 9; respawning" in ds[0].log_text()
    for d in ds:
        d.stop()
    redis.stop()


def test_sync_off_without_redis_settings():
    """Without redis_host / redis_url nothing changes: no sync process and
    the local limits as before."""
    mock = Mock()
    d = Daemon([deployment("g", mock, dep_id="d1", params="rpm = 2;")], workers=2)
    minute_room(10)
    st = status(d)
    assert st["sync"]["state"] == "off" and st["sync"]["pid"] == 0, st["sync"]
    assert [chat(d.port, model="g").status for _ in range(3)] == [200, 200, 429]
    d.stop()


@timeout(180)
def test_sync_stop_hands_back_and_shares_parallel():
    """max_parallel_requests = 9 over 3 hosts: 3 each.  A host stopped
    gracefully hands its unused grant back to Redis, and once its
    heartbeat is gone the two left take their new share, 30 of 60.
    `llmroute status` shows the sync state, the hosts and the leases."""
    import socket
    redis, mock = Redis(), Mock()
    ds = hosts(redis, [deployment("g", mock, dep_id="d1",
                                  params="rpm = 60; max_parallel_requests = 9;")])
    minute_room(50 if SLOW > 1 else 30)
    wait_for(lambda: sum(claims(ds, "d1")) == 60, 10, "the minute's 60 claimed")
    for d in ds:
        assert dep_of(status(d), "d1")["sync"]["parallel_granted"] == 3
    text = ds[0].status().stdout
    assert "sync: shared, 3 host(s) seen" in text, text
    assert any(line.split()[:1] == ["d1"] and len(line.split()) == 6
               for line in text.splitlines() if "LEASES" not in line), text
    minute = int(status(ds[0])["now_ms"] // 60000)
    key = "t%d:rpm:d1:%d" % (redis.port, minute)
    gone = "%s:%s" % (socket.gethostname(), ds[2].shm_name)
    assert int(redis.cmd("HGET", key, gone)) > 0
    ds[2].stop()
    assert redis.cmd("HGET", key, gone) == "0", "the stopped host kept its claim"
    if int(time.time() // 60) == minute:
        wait_for(lambda: claims(ds[:2], "d1") == [30, 30], 15,
                 "the two hosts left to hold 30 each")
    for d in ds[:2]:
        wait_for(lambda: dep_of(status(d), "d1")["sync"]["parallel_granted"] == 4, 15,
                 "the parallel share of 2 hosts")
        d.stop()
    redis.stop()


def test_sync_reload_replaces_the_sync_process():
    """A reload replaces the sync process like the prober: a new pid, sync
    still shared, this minute's grant kept in the segment; a reload that
    removes the Redis settings stops it and shows sync off."""
    redis, mock = Redis(), Mock()
    d = Daemon([deployment("g", mock, dep_id="d1", params="rpm = 600;")], workers=2,
               router=sync_router(redis))
    wait_for(lambda: status(d)["sync"]["state"] == "shared"
             and claims([d], "d1")[0] == 600, 20, "one host holding the whole 600")
    pid = status(d)["sync"]["pid"]
    minute_room(10)
    r = cli(d.conf_path, "-s", "reload")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: status(d)["sync"]["pid"] not in (0, pid)
             and status(d)["sync"]["state"] == "shared", 15, "a new sync process")
    wait_gone(pid)
    assert chat(d.port, model="g").status == 200
    d.write_conf([deployment("g", mock, dep_id="d1", params="rpm = 2;")], workers=2)
    assert cli(d.conf_path, "-s", "reload").returncode == 0
    wait_for(lambda: status(d)["sync"]["state"] == "off" and status(d)["sync"]["pid"] == 0,
             15, "sync off after the reload")
    d.stop()
    redis.stop()


def wait_gone(pid):
    """Waits for pid to exit (a zombie counts as gone); fails past 10 s."""
    wait_for(lambda: not os.path.exists("/proc/%d" % pid)
             or open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] == "Z",
             10, "the old sync process %d to exit" % pid)


@timeout(120)
def test_sync_first_request_after_readiness_is_served():
    """Regression: a host started with Redis settings refused every request
    of a limited deployment (429, no grant yet) until its first leases came
    back.  Readiness now waits for them, so the first request after it is
    served, on a deployment with rpm, tpm and max_parallel_requests."""
    redis, mock = Redis(), Mock()
    minute_room(10)
    d = Daemon([deployment("g", mock, dep_id="d1",
                           params="rpm = 600; tpm = 1000000; max_parallel_requests = 8;")],
               workers=2, router=sync_router(redis))
    r = chat(d.port, model="g")
    assert r.status == 200, r
    assert status(d)["sync"]["state"] == "shared"
    d.stop()
    redis.stop()


@timeout(120)
def test_sync_redis_unreachable_at_start_serves_the_local_share():
    """Redis not there when the host starts: readiness comes once the
    connection attempt fails (local state), and requests are served
    against this host's share instead of being refused."""
    port = free_port()          # nothing listens there
    mock = Mock()
    minute_room(10)
    d = Daemon([deployment("g", mock, dep_id="d1", params="rpm = 600;")], workers=2,
               router='redis_host = "127.0.0.1"; redis_port = %d; redis_sync_interval_ms = %d;'
               % (port, INTERVAL_MS))
    d.allowed.append("sync: Redis unavailable")
    r = chat(d.port, model="g")
    assert r.status == 200, r
    assert status(d)["sync"]["state"] == "local"
    d.stop()
