"""The Responses API (issue 11, item 1): POST /v1/responses routed like chat,
its event stream relayed intact with usage counted, GET/DELETE by id and
input_items reaching the deployment that created the response from any
worker, deployments that declare they do not serve it skipped, and the
Azure URL form.  What each upstream received is read from the mock."""
import http.client
import json
import os
import signal
import socket
import time

from harness import (Daemon, Mock, connection_owner, deployment, minute_room, request, slack,
                     status_rows, wait_for)

WORKERS = 2


def create(d, model="g", stream=False, extra=None, headers=None):
    body = {"model": model, "input": "hello there", "instructions": "be brief"}
    if stream:
        body["stream"] = True
    body.update(extra or {})
    return request(d.port, "POST", "/v1/responses", body, headers=headers)


def usage_matches(d, dep, mock):
    st = mock.stats()
    row = status_rows(d).get(dep)
    return (row is not None and row["INFLIGHT"] == "0"
            and row["PROMPT_TOK"] == str(st["prompt_tokens"])
            and row["COMPL_TOK"] == str(st["completion_tokens"]))


def test_responses_routed_with_model_rewrite_and_usage():
    m = Mock("oa")
    d = Daemon([deployment("g", m, model="gpt-4o-up", dep_id="oa")], workers=WORKERS)
    for path in ("/v1/responses", "/responses"):
        r = request(d.port, "POST", path, {"model": "g", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "temperature": 0.5})
        assert r.status == 200, r
        doc = r.json()
        assert doc["object"] == "response" and doc["id"].startswith("resp_"), doc
        assert doc["usage"]["input_tokens"] > 0 and doc["usage"]["output_tokens"] == 5, doc
        assert r.headers.get("x-llmroute-deployment") == "oa", r.headers
        last = m.stats()["last"]
        assert last["method"] == "POST" and last["path"] == "/v1/responses", last
        sent = json.loads(last["body"])
        assert sent["model"] == "gpt-4o-up" and sent["temperature"] == 0.5, sent
    wait_for(lambda: usage_matches(d, "oa", m), 5, "status to count the Responses usage")
    assert status_rows(d)["oa"]["COMPL_TOK"] == "10", status_rows(d)["oa"]


def test_responses_stream_relayed_intact_with_usage():
    m = Mock("oa", ["--chunks", "4"])
    d = Daemon([deployment("g", m, dep_id="oa")], workers=WORKERS)
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    conn.request("POST", "/v1/responses", json.dumps(
        {"model": "g", "input": "hello", "stream": True}),
        {"Content-Type": "application/json"})
    r = conn.getresponse()
    raw = r.read().decode()
    conn.close()
    assert r.status == 200, raw
    assert r.getheader("Content-Type", "").startswith("text/event-stream"), r.getheaders()
    events = [e for e in raw.split("\n\n") if e]
    kinds = [e.split("\n")[0] for e in events]
    assert kinds == (["event: response.created"] + ["event: response.output_text.delta"] * 4
                     + ["event: response.completed"]), kinds
    for e in events:                    # each event whole: its event: and data: lines
        name, data = e.split("\n")
        assert data.startswith("data: "), e
        assert json.loads(data[6:])["type"] == name[len("event: "):], e
    done = json.loads(events[-1].split("\n")[1][6:])
    assert done["response"]["usage"]["output_tokens"] == 4, done
    wait_for(lambda: usage_matches(d, "oa", m), 5, "status to count the stream's usage")
    assert status_rows(d)["oa"]["COMPL_TOK"] == "4", status_rows(d)["oa"]
    # the id read from response.created is known to every worker
    rid = json.loads(events[0].split("\n")[1][6:])["response"]["id"]
    assert request(d.port, "GET", "/v1/responses/" + rid).status == 200


def test_responses_retry_and_fallback():
    """A failing deployment is retried on the group's other one; a group
    that fails entirely falls back, for a stream too."""
    bad, good = Mock("bad", ["--status", "500"]), Mock("good")
    f, other = Mock("f", ["--status", "503"]), Mock("other")
    d = Daemon([deployment("g", bad, dep_id="bad", params="order = 1;"),
                deployment("g", good, dep_id="good", params="order = 2;"),
                deployment("f", f, dep_id="f"), deployment("h", other, dep_id="other")],
               workers=WORKERS,
               router='num_retries = 2; retry_after = 0; allowed_fails = 100; '
                      'fallbacks = ( { model = "f"; fallbacks = ["h"]; } );')
    r = create(d)
    assert r.status == 200, r
    assert r.headers.get("x-llmroute-deployment") == "good", r.headers
    assert int(r.headers["x-llmroute-attempts"]) >= 2, r.headers
    assert bad.stats()["requests"] >= 1 and good.stats()["requests"] == 1
    assert bad.stats()["last"]["path"] == "/v1/responses", bad.stats()["last"]
    r = create(d, model="f", stream=True)
    assert r.status == 200, r
    assert r.headers.get("x-llmroute-fallback") == "h", r.headers
    assert b"event: response.completed" in r.body, r
    assert f.stats()["requests"] >= 1 and other.stats()["requests"] == 1
    assert f.stats()["last"]["path"] == "/v1/responses", f.stats()["last"]


def test_get_delete_by_id_reach_the_creating_deployment_from_any_worker():
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b")],
               workers=WORKERS)
    made = {}                           # id -> deployment that created it
    for _ in range(12):
        r = create(d)
        assert r.status == 200, r
        made[r.json()["id"]] = r.headers["x-llmroute-deployment"]
    assert set(made.values()) == {"a", "b"}, made
    seen_workers = set()
    for rid, dep in made.items():
        for _ in range(2):              # each id on fresh connections: both workers
            conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
            conn.connect()
            seen_workers.add(connection_owner(d, conn))
            r = request(d.port, "GET", "/v1/responses/" + rid, conn=conn)
            conn.close()
            assert r.status == 200, (rid, r)
            assert r.json()["id"] == rid and r.headers["x-llmroute-deployment"] == dep, r
        r = request(d.port, "GET", "/v1/responses/%s/input_items?limit=5" % rid)
        assert r.status == 200 and r.json()["object"] == "list", r
        mock = a if dep == "a" else b
        assert mock.stats()["last"]["query"] == "limit=5", mock.stats()["last"]
    assert len(seen_workers - {None}) == WORKERS, seen_workers
    rid = next(iter(made))
    r = request(d.port, "DELETE", "/v1/responses/" + rid)
    assert r.status == 200 and r.json()["deleted"] is True, r
    assert (a if made[rid] == "a" else b).stats()["last"]["method"] == "DELETE"
    r = request(d.port, "GET", "/v1/responses/" + rid)   # the upstream's own 404 now
    assert r.status == 404 and r.headers["x-llmroute-deployment"] == made[rid], r
    before = a.stats()["requests"] + b.stats()["requests"]
    r = request(d.port, "GET", "/v1/responses/resp_never_made")
    assert r.status == 404, r
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "resp_never_made" in err["message"], err
    assert a.stats()["requests"] + b.stats()["requests"] == before
    assert request(d.port, "PUT", "/v1/responses/" + rid).status == 405


def test_no_responses_deployment_skipped_and_400_without_any():
    chat_only, full, lonely = Mock("chat_only"), Mock("full"), Mock("lonely")
    d = Daemon([deployment("g", chat_only, dep_id="chat_only",
                           info="supports_responses = false;"),
                deployment("g", full, dep_id="full"),
                deployment("c", lonely, dep_id="lonely", info="supports_responses = false;")],
               workers=WORKERS)
    for _ in range(10):
        r = create(d)
        assert r.status == 200 and r.headers["x-llmroute-deployment"] == "full", r
    assert chat_only.stats()["requests"] == 0
    # chat still goes to both
    r = request(d.port, "POST", "/v1/chat/completions",
                {"model": "c", "messages": [{"role": "user", "content": "x"}]})
    assert r.status == 200, r
    r = create(d, model="c")
    assert r.status == 400, r
    err = r.json()["error"]
    assert err["code"] == "responses_not_supported" and "model group c" in err["message"], err
    assert lonely.stats()["requests"] == 1          # only the chat call


def test_azure_responses_url_form():
    m = Mock("az")
    entry = ('{ model_name = "g"; litellm_params = { model = "azure/my-dep"; api_base = "%s";'
             ' api_version = "2025-03-01-preview"; api_key = "az-key"; }; }' % m.base)
    d = Daemon([entry], workers=WORKERS)
    r = create(d)
    assert r.status == 200, r
    last = m.stats()["last"]
    assert last["path"] == "/openai/responses", last
    assert last["query"] == "api-version=2025-03-01-preview", last
    assert last["headers"].get("api-key") == "az-key", last["headers"]
    assert json.loads(last["body"])["model"] == "my-dep", last["body"]
    rid = r.json()["id"]
    r = request(d.port, "GET", "/v1/responses/%s/input_items?order=asc" % rid)
    assert r.status == 200, r
    last = m.stats()["last"]
    assert last["path"] == "/openai/responses/%s/input_items" % rid, last
    assert last["query"] == "api-version=2025-03-01-preview&order=asc", last


def test_responses_stream_cut_ends_with_a_responses_error_event():
    """An upstream that dies mid-stream: the client gets the deltas it was
    sent, then a Responses-shaped `event: error`, not a chat-shaped one."""
    m = Mock("cut")
    d = Daemon([deployment("g", m, dep_id="cut")], workers=WORKERS)
    r = create(d, stream=True, extra={"x_mock": {"drop_after": 2}})
    assert r.status == 200, r
    events = [e for e in r.body.decode().split("\n\n") if e]
    kinds = [e.split("\n")[0] for e in events]
    assert kinds == (["event: response.created"] + ["event: response.output_text.delta"] * 2
                     + ["event: error"]), kinds
    err = json.loads(events[-1].split("\n")[1][6:])
    assert err["type"] == "error" and "cut" in err["message"], err


def test_response_ids_survive_a_reload():
    """The id map is in the shared segment, keyed by the deployment's slot:
    the workers of a new generation still find who created an id."""
    a, b = Mock("a"), Mock("b")
    deps = [deployment("g", a, dep_id="a")]
    d = Daemon(deps, workers=WORKERS)
    rid = create(d).json()["id"]
    old = set(d.workers())
    d.write_conf([deployment("g", b, dep_id="b")] + deps, workers=WORKERS)
    os.kill(d.p.pid, signal.SIGHUP)
    wait_for(lambda: old.isdisjoint(d.workers()) and len(d.workers()) == WORKERS, 15,
             "old workers replaced")
    for _ in range(4):
        r = request(d.port, "GET", "/v1/responses/" + rid)
        assert r.status == 200 and r.headers["x-llmroute-deployment"] == "a", r
    assert b.stats()["requests"] == 0


def test_previous_response_id_goes_to_its_creator():
    """A stateful chain: a request naming previous_response_id goes to the
    deployment holding that response (on any worker) while it is available;
    when it cools down, another one serves."""
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b")],
               workers=WORKERS, router="allowed_fails = 0; cooldown_time = 30; num_retries = 1;"
               " retry_after = 0;")
    first = create(d)
    rid, creator = first.json()["id"], first.headers["x-llmroute-deployment"]
    for _ in range(12):
        r = create(d, extra={"previous_response_id": rid})
        assert r.status == 200 and r.headers["x-llmroute-deployment"] == creator, r
    other = "b" if creator == "a" else "a"
    (a if creator == "a" else b).config(status=500)
    for _ in range(3):                  # the creator fails once, cools down: the other serves
        r = create(d, extra={"previous_response_id": rid})
        assert r.status == 200 and r.headers["x-llmroute-deployment"] == other, r


def test_forward_to_a_silent_creator_times_out_and_stops_cleanly():
    """The creating deployment stops answering (its api_base now points at
    a listener that never reads): a GET by id ends in 502 naming it after
    the timeout; a client that leaves first and a fast stop with a forward
    in flight leave no crash or leak (the sanitizer build checks)."""
    a = Mock("a")
    d = Daemon([deployment("g", a, dep_id="a")], workers=WORKERS, router="timeout = 1.5;")
    rid = create(d).json()["id"]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        entry = ('{ model_name = "g"; litellm_params = { model = "openai/gpt-3.5-turbo"; '
                 'api_base = "http://127.0.0.1:%d/v1"; }; model_info = { id = "a"; }; }'
                 % silent.getsockname()[1])
        old = set(d.workers())
        d.write_conf([entry], workers=WORKERS, router="timeout = 1.5;")
        os.kill(d.p.pid, signal.SIGHUP)
        wait_for(lambda: old.isdisjoint(d.workers()) and len(d.workers()) == WORKERS, 15,
                 "old workers replaced")
        t0 = time.monotonic()
        r = request(d.port, "GET", "/v1/responses/" + rid)
        took = time.monotonic() - t0
        assert r.status == 502 and r.headers["x-llmroute-deployment"] == "a", r
        assert r.json()["error"]["code"] == "upstream_unreachable", r
        assert 1.0 <= took < 1.5 + slack(2.0), took
        gone = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        gone.request("GET", "/v1/responses/" + rid)
        gone.close()                    # leaves before the answer
        pending = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        pending.request("GET", "/v1/responses/" + rid)
        assert request(d.port, "GET", "/health/readiness").status == 200
        d.stop(signal.SIGTERM)          # a forward still in flight
        pending.close()
    finally:
        silent.close()


def test_responses_stream_ttft_runs_to_the_first_delta():
    """response.created comes at once, the first output 400 ms later: the
    deployment's time to first token (latency-based routing) is the 400 ms,
    not the time to the first byte."""
    m = Mock("slow", ["--chunk-delay", "400", "--chunks", "1"])
    d = Daemon([deployment("g", m, dep_id="slow")], workers=WORKERS)
    r = create(d, stream=True)
    assert r.status == 200 and b"response.completed" in r.body, r
    wait_for(lambda: status_rows(d)["slow"]["INFLIGHT"] == "0", 5, "the stream to end")
    ttft = float(status_rows(d)["slow"]["TTFT_MS"])
    assert ttft >= 380, "ttft measured to response.created, not the first delta: %s" % ttft


def test_responses_admission_counts_instructions():
    """The prompt estimate of a Responses create counts its instructions, not
    only its input: "hi" with ~600 characters of instructions (about 150
    tokens) does not fit a max_input_tokens of 100 and is refused before any
    upstream call, while "hi" alone fits.  And a deployment's rpm limits
    Responses creates as it does chat."""
    small, lim = Mock("small"), Mock("lim")
    d = Daemon([deployment("small", small, dep_id="small", info="max_input_tokens = 100;"),
                deployment("lim", lim, dep_id="lim", params="rpm = 2;")],
               workers=WORKERS)
    long_instructions = "Answer in one short sentence. " * 20          # 600 characters
    assert len(long_instructions) == 600
    for stream in (False, True):
        body = {"model": "small", "input": "hi", "instructions": long_instructions}
        if stream:
            body["stream"] = True
        r = request(d.port, "POST", "/v1/responses", body)
        assert r.status == 400, (stream, r)
        err = r.json()["error"]
        assert err["code"] == "context_length_exceeded", err
        assert "maximum context length is 100 tokens" in err["message"], err
        assert "model group small" in err["message"], err
    assert small.stats()["requests"] == 0, small.stats()
    r = request(d.port, "POST", "/v1/responses", {"model": "small", "input": "hi"})
    assert r.status == 200 and r.headers["x-llmroute-deployment"] == "small", r
    r = request(d.port, "POST", "/v1/responses",
                {"model": "small", "input": "hi", "instructions": "be brief"})
    assert r.status == 200, r
    assert small.stats()["requests"] == 2, small.stats()

    # rpm = 2: two creates in the minute go upstream, the third is refused
    minute_room(5)
    for _ in range(2):
        r = create(d, model="lim")
        assert r.status == 200 and r.headers["x-llmroute-deployment"] == "lim", r
    r = create(d, model="lim")
    assert r.status == 429, r
    err = r.json()["error"]
    assert err["code"] == "rate_limit_exceeded" and "rpm" in err["message"], err
    assert r.headers.get("retry-after", "").isdigit(), r.headers
    assert lim.stats()["requests"] == 2, lim.stats()
