"""Deployment health checks (issue 12, item 3): one prober process per host,
forked and supervised by the master, probes every deployment each
health_check_interval and records the outcome in the segment; GET /health
answers LiteLLM's shape from it, enable_health_check_routing skips the
unhealthy deployments (a group with none healthy still routes to all)."""
import json
import os
import signal
import time

from harness import Daemon, Mock, alive, chat, deployment, free_port, request, wait_for

KEY = "sk-health-secret-0123456789"
MASTER = "mk-health-test"
AUTH = {"Authorization": "Bearer " + MASTER}
ROUTER = ("background_health_checks = true; health_check_interval = 1.0;"
          " enable_health_check_routing = true; num_retries = 0;")


class Dead:
    """A deployment target on a closed port."""
    def __init__(self):
        self.base = "http://127.0.0.1:%d" % free_port()


def health(d):
    r = request(d.port, "GET", "/health", headers=AUTH)
    assert r.status == 200, r
    assert KEY not in r.body.decode(), r.body
    return r.json()


def ids(lst):
    return sorted(e["model_id"] for e in lst)


def settled(d, healthy, unhealthy):
    """/health once it lists exactly these ids, else None."""
    h = health(d)
    if ids(h["healthy_endpoints"]) == healthy and ids(h["unhealthy_endpoints"]) == unhealthy:
        return h
    return None


def chat_count(m):
    return m.stats()["paths"].get("/v1/chat/completions", 0)


def test_health_lists_and_routing_skips_unhealthy():
    a, b, s = Mock("a"), Mock("b", ["--status", "500"]), Mock("s", ["--status", "500"])
    dead = Dead()
    d = Daemon([deployment("g", a, dep_id="a", key=KEY),
                deployment("g", b, dep_id="b", key=KEY),
                deployment("solo", s, dep_id="s", key=KEY, info='health_check = "completion";'),
                deployment("gone", dead, dep_id="dead", key=KEY)],
               workers=2, server='master_key = "%s";' % MASTER, router=ROUTER)
    # /health needs the master key, like LiteLLM's; the probes need none.
    assert request(d.port, "GET", "/health").status == 401
    h = wait_for(lambda: settled(d, ["a"], ["b", "dead", "s"]), 15, "/health settled", interval=0.1)
    bad = {e["model_id"]: e for e in h["unhealthy_endpoints"]}
    assert h["healthy_count"] == 1 and h["unhealthy_count"] == 3, h
    assert bad["b"]["error"].startswith("HTTP 500"), bad["b"]
    assert "onnect" in bad["dead"]["error"], bad["dead"]
    good = h["healthy_endpoints"][0]
    assert good["model_name"] == "g" and good["api_base"] == a.base + "/v1", good
    assert good["model"] == "openai/gpt-3.5-turbo" and good["latency_ms"] >= 0, good
    assert good["last_checked"] > time.time() - 30, good
    # The default probe is GET /models, with the deployment's key; "solo"
    # asked for a completion.
    assert a.stats()["paths"].get("/v1/models", 0) > 0, a.stats()
    assert chat_count(s) > 0 and s.stats()["paths"].get("/v1/models", 0) == 0, s.stats()
    # /status.json (and so `status --json` and the /ui page) carries the same.
    sj = {e["id"]: e["health"] for e in
          request(d.port, "GET", "/status.json", headers=AUTH).json()["deployments"]}
    assert sj["a"]["state"] == "healthy" and sj["b"]["state"] == "unhealthy", sj
    assert sj["b"]["error"].startswith("HTTP 500") and KEY not in str(sj), sj
    ready = request(d.port, "GET", "/health/readiness").json()
    assert ready["groups"]["g"]["usable"] is True, ready
    assert ready["groups"]["gone"]["usable"] is False, ready
    # Routing avoids b (a shuffle would send it about half of these).
    before = chat_count(b)
    for _ in range(20):
        r = chat(d.port, model="g", headers=AUTH)
        assert r.status == 200, r
    assert chat_count(b) == before, b.stats()
    # Every deployment of "solo" is unhealthy: it still routes to them.
    sent = chat_count(s)
    r = chat(d.port, model="solo", headers=AUTH, extra={"x_mock": {"status": 200}})
    assert r.status == 200, r
    assert chat_count(s) > sent
    # A deployment that recovers is healthy again at the next round.
    b.config(status=200)
    wait_for(lambda: settled(d, ["a", "b"], ["dead", "s"]), 15, "b healthy again", interval=0.1)
    assert KEY not in d.log_text()


def test_one_prober_respawned_replaced_and_stopped():
    a = Mock("a")
    d = Daemon([deployment("g", a, dep_id="a", key=KEY)], workers=3,
               server='master_key = "%s";' % MASTER, router=ROUTER)
    d.allowed.append("health prober exited on signal 9")
    pid = wait_for(lambda: health(d)["prober_pid"], 10, "prober pid")
    # One prober for the host, not one per worker: 3 workers + 1 prober,
    # and about one probe a second.
    assert pid in d.workers() and len(d.workers()) == 4, d.workers()
    n0, t0 = a.stats()["paths"].get("/v1/models", 0), time.time()
    wait_for(lambda: time.time() - t0 > 3.0, 5, "3 s of probes", interval=0.1)
    n1, t1 = a.stats()["paths"].get("/v1/models", 0), time.time()
    assert 1 <= n1 - n0 <= (t1 - t0) / 1.0 + 2, (n0, n1, t1 - t0)
    # Killed, it is respawned.
    os.kill(pid, signal.SIGKILL)
    pid2 = wait_for(lambda: health(d)["prober_pid"] not in (0, pid) and health(d)["prober_pid"],
                    10, "prober respawned")
    assert not alive(pid) or pid not in d.workers()
    assert len(d.workers()) == 4, d.workers()
    # A reload replaces it (the new config is the one probed).
    os.kill(d.p.pid, signal.SIGHUP)
    pid3 = wait_for(lambda: health(d)["prober_pid"] not in (0, pid2) and health(d)["prober_pid"],
                    15, "prober replaced on reload")
    wait_for(lambda: pid2 not in d.workers(), 10, "old prober gone")
    wait_for(lambda: len(d.workers()) == 4, 15, "3 workers + 1 prober after reload")
    # Quit stops it with the workers.
    d.stop()
    wait_for(lambda: not alive(pid3), 10, "prober stopped")


def test_no_prober_without_background_checks():
    a = Mock("a")
    d = Daemon([deployment("g", a, dep_id="a")], workers=2)
    h = request(d.port, "GET", "/health").json()
    assert h["prober_pid"] == 0 and h["unchecked_count"] == 1, h
    assert h["healthy_count"] == 0 and h["unhealthy_count"] == 0, h
    assert len(d.workers()) == 2
    assert a.stats()["paths"].get("/v1/models", 0) == 0


def test_probe_requests_by_mode_and_provider():
    # An embedding deployment is probed with an embedding, never GET
    # /models; an Azure one at its Azure URL with its api-version and its
    # key in api-key. Each mock here sees nothing but probes.
    e, az, aze = Mock("e"), Mock("az"), Mock("aze")
    d = Daemon([deployment("emb", e, dep_id="e", key=KEY, info='mode = "embedding";'),
                deployment("azchat", az, dep_id="az", azure=True, model="az-dep", key=KEY),
                deployment("azemb", aze, dep_id="aze", azure=True, model="aze-dep", key=KEY,
                           info='mode = "embedding";')],
               workers=2, server='master_key = "%s";' % MASTER, router=ROUTER)
    wait_for(lambda: settled(d, ["az", "aze", "e"], []), 15, "every probe answered",
             interval=0.1)
    st = e.stats()
    assert st["paths"].get("/v1/embeddings", 0) >= 1, st
    assert set(st["paths"]) == {"/v1/embeddings"}, st
    last = st["last"]
    assert last["method"] == "POST" and last["query"] == "", last
    assert json.loads(last["body"])["input"] == "ping", last
    assert last["headers"].get("authorization") == "Bearer " + KEY, last
    st = az.stats()
    assert set(st["paths"]) == {"/openai/models"}, st
    last = st["last"]
    assert last["method"] == "GET" and last["query"] == "api-version=2024-02-01", last
    assert last["headers"].get("api-key") == KEY and "authorization" not in last["headers"], last
    st = aze.stats()
    assert set(st["paths"]) == {"/openai/deployments/aze-dep/embeddings"}, st
    last = st["last"]
    assert last["method"] == "POST" and last["query"] == "api-version=2024-02-01", last
    assert json.loads(last["body"]) == {"model": "aze-dep", "input": "ping"}, last
    assert last["headers"].get("api-key") == KEY, last
