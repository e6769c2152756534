"""Regression tests for defects found in a review of the worker's request
path (each fails without its fix)."""
import threading

import harness
from harness import Daemon, Mock, chat, deployment, request

WORKERS = 2


def test_final_upstream_error_keeps_its_deployment_after_a_failed_pick():
    """g's only deployment answers 500; the fallback h has one deployment
    whose max_input_tokens no prompt fits, so its pick fails.  The client
    gets g's upstream 500 as it came, saying the deployment that answered
    it, and no x-llmroute-fallback naming a group that was never tried."""
    a, b = Mock("a"), Mock("b")
    a.config(status=500)
    d = Daemon([deployment("g", a, dep_id="dep-a"),
                deployment("h", b, dep_id="dep-b", info="max_input_tokens = 1;")],
               workers=WORKERS,
               router='num_retries = 0; retry_after = 0; cooldown_time = 0; '
               'fallbacks = ( { model = "g"; fallbacks = ["h"]; } );')
    direct = request(a.port, "POST", "/v1/chat/completions",
                     {"model": "gpt-3.5-turbo", "messages": [{"role": "user",
                                                              "content": "hello"}]})
    assert direct.status == 500, direct
    for _ in range(3):
        r = chat(d.port, model="g", timeout=10)
        assert r.status == 500, r
        assert r.headers.get("x-llmroute-deployment") == "dep-a", r.headers
        assert r.headers.get("x-llmroute-attempts") == "1", r.headers
        assert r.headers.get("x-llmroute-model-group") == "g", r.headers
        assert "x-llmroute-fallback" not in r.headers, r.headers
        assert r.body == direct.body, (r.body, direct.body)
    assert b.stats()["requests"] == 0, b.stats()


def test_request_ids_of_two_workers_never_repeat():
    """Each worker seeds its own id sequence after fork: 30 ids from each
    of two workers share none (a seed made before the fork, or none at all,
    would give both workers the same sequence)."""
    m = Mock("ids")
    d = Daemon([deployment("g", m)], workers=WORKERS)
    conns = harness.worker_conns(d)
    ids = {}
    for pid, c in conns.items():
        got = []
        for _ in range(30):
            r = chat(d.port, model="g", conn=c, timeout=10)
            assert r.status == 200, r
            got.append(r.headers.get("x-request-id", ""))
        ids[pid] = got
    for c in conns.values():
        c.close()
    a, b = list(ids.values())[:2]
    assert len(set(a)) == 30 and len(set(b)) == 30, ids
    assert not set(a) & set(b), "two workers made the same ids: %s" % (set(a) & set(b))


def test_attempt_timed_out_in_our_connection_queue_charges_no_failure():
    """upstream_max_connecting = 1 to a host whose TLS handshakes never
    finish: A's handshake holds the slot, so requests to another deployment
    on that host wait in the worker's own queue.  One that runs out of time
    there (its deployment's 1 s timeout, or stream_timeout for a stream)
    gets a 504 and is not counted as a failure of a deployment it never
    reached (allowed_fails = 0 would have cooled it down); A, whose
    handshake did time out, is."""
    from test_tls import Tarpit, same_worker_connections
    pit = Tarpit()
    base = "https://127.0.0.1:%d/v1" % pit.port
    deps = ['{ model_name = "%s"; litellm_params = { model = "openai/m"; api_base = "%s"; '
            'timeout = %s; }; model_info = { id = "%s"; }; }' % (g, base, t, g)
            # A's handshake must outlast the two waits below (1 s + 0.5 s)
            for g, t in (("slow", "%.1f" % (1.5 + harness.slack(1.5))), ("fast", "1.0"))]
    try:
        d = Daemon(deps, workers=WORKERS, server="upstream_max_connecting = 1;",
                   router="num_retries = 0; allowed_fails = 0; cooldown_time = 30; "
                   "stream_timeout = 0.5;")
        ca, cb, cc = same_worker_connections(d, 3)
        answers = {}

        def ask(conn):
            answers["a"] = chat(d.port, model="slow", conn=conn, timeout=30).status
        a = threading.Thread(target=ask, args=(ca,))
        a.start()
        harness.wait_for(lambda: pit.accepted() == 1, 5, "A's connection")
        for conn, extra in ((cb, None), (cc, {"stream": True})):
            r = chat(d.port, model="fast", conn=conn, timeout=30, extra=extra)
            assert r.status == 504, r
            err = r.json()["error"]
            assert err["code"] == "timeout" and "upstream_max_connecting" in err["message"] \
                and "attempt(s)" not in err["message"], err
        assert pit.accepted() == 1, "%d connections while one handshake was in progress" \
            % pit.accepted()
        a.join(30)
        assert answers.get("a") == 504, answers
        rows = harness.status_rows(d)
        assert rows["fast"]["FAILED"] == "0" and rows["fast"]["COOLDOWNS"] == "0", rows["fast"]
        assert rows["slow"]["FAILED"] == "1", rows["slow"]
        # not cooling down: the next request to fast is tried (and queues no more)
        r = chat(d.port, model="fast", conn=ca, timeout=30)
        assert r.status == 504 and pit.accepted() == 2, (r, pit.accepted())
    finally:
        pit.stop()
