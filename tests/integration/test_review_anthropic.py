"""Review of issue 16 (Anthropic both ways) with hostile inputs: each test
here failed before the fix it names.  Real llmroute (2 workers), real mock
upstreams (the mock's Anthropic mode for anthropic/ deployments)."""
import json

from harness import Daemon, Mock, deployment, raw_exchange, request

KEY = "sk-ant-upstream-rev"
MASTER = "sk-llmroute-rev"
H = {"x-api-key": MASTER, "anthropic-version": "2023-06-01"}
USER = [{"role": "user", "content": "hi"}]


def claude(group, mock, model="claude-sonnet-4-5", params=""):
    return ('{ model_name = "%s"; litellm_params = { model = "anthropic/%s"; api_base = "%s";'
            ' api_key = "%s"; %s }; }' % (group, model, mock.base, KEY, params))


def anth_error(r, status, etype):
    """r is Anthropic's error shape with this status and type; the message."""
    assert r.status == status, r
    doc = json.loads(r.body)
    assert doc.get("type") == "error", doc
    assert doc["error"]["type"] == etype, doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"], doc
    assert MASTER not in r.body.decode() and KEY not in r.body.decode(), doc
    return doc["error"]["message"]


def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


# ------------------------------------------- 413 before the body is read

def test_review_messages_body_over_max_is_anthropic_413():
    """conn.c refuses a too-long Content-Length before any handler runs; on
    /v1/messages (and count_tokens, with a query) the refusal was in
    OpenAI's shape, which the Anthropic SDKs cannot read."""
    m = Mock("ant")
    d = Daemon([claude("claude", m)], workers=2,
               server='master_key = "%s"; max_body_bytes = 4096;' % MASTER)
    try:
        big = {"model": "claude", "max_tokens": 5,
               "messages": [{"role": "user", "content": "x" * 8000}]}
        for path in ("/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens"):
            r = request(d.port, "POST", path, big, headers=H)
            msg = anth_error(r, 413, "request_too_large")
            assert "max_body_bytes" in msg, msg
        # chunked: refused when the running total passes the limit
        body = json.dumps(big).encode()
        raw = (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: " + MASTER.encode()
               + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        out, _ = raw_exchange(d.port, raw, until="response", timeout=10)
        status, rbody = split_response(out)
        assert status == 413, out[:300]
        doc = json.loads(rbody)
        assert doc["type"] == "error" and doc["error"]["type"] == "request_too_large", doc
        # the chat API keeps OpenAI's shape, and other paths that start alike too
        for path in ("/v1/chat/completions", "/v1/messagesx"):
            r = request(d.port, "POST", path, big, headers={"Authorization": "Bearer " + MASTER})
            assert r.status == 413, r
            assert json.loads(r.body)["error"]["code"] == "request_too_large", r
        assert m.stats()["requests"] == 0, m.stats()
    finally:
        d.stop()
        m.stop()


# ------------------------------------------- what Claude cannot give: 400

def test_review_openai_n_and_logprobs_to_claude_refused():
    """n > 1 and logprobs were dropped on the way to a Claude deployment and
    the client got one choice and no log probabilities as if it had asked
    for that; now a 400 in OpenAI's shape before any upstream call."""
    m = Mock("ant")
    d = Daemon([claude("claude", m)], workers=2, server='master_key = "%s";' % MASTER)
    try:
        oh = {"Authorization": "Bearer " + MASTER}
        for extra, word in (({"n": 2}, "n:"), ({"logprobs": True}, "logprobs"),
                            ({"logprobs": True, "top_logprobs": 2}, "logprobs")):
            body = dict({"model": "claude", "messages": USER}, **extra)
            r = request(d.port, "POST", "/v1/chat/completions", body, headers=oh)
            assert r.status == 400, r
            err = json.loads(r.body)["error"]
            assert err["type"] == "invalid_request_error" and word in err["message"], err
        assert m.stats()["requests"] == 0, m.stats()
        # what Claude can give still goes through
        r = request(d.port, "POST", "/v1/chat/completions",
                    {"model": "claude", "messages": USER, "n": 1, "logprobs": False},
                    headers=oh)
        assert r.status == 200 and len(r.json()["choices"]) == 1, r
    finally:
        d.stop()
        m.stop()


def test_review_messages_empty_list_refused():
    """messages: [] was sent on (and answered 200); Anthropic answers it 400
    "at least one message is required", and so does llmroute now, on both
    endpoints, whatever the deployment."""
    m, o = Mock("ant"), Mock("oai")
    d = Daemon([claude("claude", m), deployment("gpt", o)], workers=2,
               server='master_key = "%s";' % MASTER)
    try:
        for model in ("claude", "gpt"):
            for path in ("/v1/messages", "/v1/messages/count_tokens"):
                r = request(d.port, "POST", path,
                            {"model": model, "max_tokens": 5, "messages": []}, headers=H)
                assert "at least one message" in anth_error(r, 400, "invalid_request_error")
        assert m.stats()["requests"] == 0 and o.stats()["requests"] == 0
    finally:
        d.stop()
        m.stop()
        o.stop()


# ------------------------------------------- malformed upstream answers: 502

def test_review_pass_through_malformed_answer_is_502():
    """/v1/messages to a Claude deployment relays the answer as it is; a 200
    that was truncated JSON or no message at all was relayed as a 200 the
    Anthropic SDK cannot parse.  Now a 502 api_error in Anthropic's shape,
    as the translated paths already answered (checked here too)."""
    m, o = Mock("ant"), Mock("oai")
    d = Daemon([claude("claude", m), deployment("gpt", o)], workers=2,
               server='master_key = "%s";' % MASTER, router="num_retries = 0;")
    try:
        body = {"model": "claude", "max_tokens": 5, "messages": USER}
        for knob, why in ((2, "not one JSON object"), (1, "not a message")):
            m.config(malformed=knob)
            msg = anth_error(request(d.port, "POST", "/v1/messages", body, headers=H), 502,
                             "api_error")
            assert why in msg, msg
        # the translated ways: to an OpenAI deployment, and chat to Claude
        o.config(malformed=2)
        r = request(d.port, "POST", "/v1/messages", dict(body, model="gpt"), headers=H)
        anth_error(r, 502, "api_error")
        m.config(malformed=2)
        r = request(d.port, "POST", "/v1/chat/completions",
                    {"model": "claude", "messages": USER},
                    headers={"Authorization": "Bearer " + MASTER})
        assert r.status == 502 and r.json()["error"]["code"] == "upstream_bad_response", r
        # a good answer still passes through untouched
        m.config(malformed=0)
        r = request(d.port, "POST", "/v1/messages", body, headers=H)
        assert r.status == 200 and r.json()["type"] == "message", r
    finally:
        d.stop()
        m.stop()
        o.stop()


# ------------------------------------------- a key echoed by an upstream

def test_review_upstream_echoed_key_never_reaches_the_client():
    """An OpenAI-compatible server that refuses a key may echo it ("Incorrect
    API key provided: sk-..."); that 401 was relayed with the deployment's
    key in it, on /v1/chat/completions and, translated, on /v1/messages."""
    secret = "sk-upstream-secret-rev-0123456789"
    o = Mock("oai")
    o.config(require_key="sk-another-key")
    d = Daemon([deployment("gpt", o, key=secret)], workers=2,
               server='master_key = "%s";' % MASTER, router="num_retries = 0;")
    try:
        for stream in (False, True):
            r = request(d.port, "POST", "/v1/messages",
                        {"model": "gpt", "max_tokens": 5, "messages": USER, "stream": stream},
                        headers=H)
            msg = anth_error(r, 401, "authentication_error")
            assert "Incorrect API key provided" in msg and secret not in r.body.decode(), msg
            r = request(d.port, "POST", "/v1/chat/completions",
                        {"model": "gpt", "messages": USER, "stream": stream},
                        headers={"Authorization": "Bearer " + MASTER})
            assert r.status == 401, r
            assert "Incorrect API key provided" in r.json()["error"]["message"], r
            assert secret not in r.body.decode() and secret[:12] not in r.body.decode(), r
        assert o.stats()["last"]["headers"]["authorization"] == "Bearer " + secret
    finally:
        d.stop()
        m_log = d.log_text()
        o.stop()
    assert secret not in m_log


# ------------------------------------------- an error event mid-stream

def sse_data(body):
    return [l[6:] for l in body.decode().split("\n") if l.startswith("data: ")]


def test_review_claude_error_event_mid_stream():
    """Anthropic ends a stream it cannot finish with an `error` event
    (overloaded_error).  A chat client gets the content so far, then one
    error chunk with Anthropic's type and message, and the stream ends; a
    /v1/messages client gets the events as they came, the error last."""
    m = Mock("ant")
    d = Daemon([claude("claude", m)], workers=2, server='master_key = "%s";' % MASTER,
               router="num_retries = 0;")
    try:
        m.config(malformed=2, chunks=3)
        r = request(d.port, "POST", "/v1/chat/completions",
                    {"model": "claude", "messages": USER, "stream": True},
                    headers={"Authorization": "Bearer " + MASTER})
        assert r.status == 200, r
        data = sse_data(r.body)
        chunks = [json.loads(x) for x in data if x != "[DONE]"]
        assert chunks[1]["choices"][0]["delta"]["content"] == "tok0 ", chunks
        errors = [c["error"] for c in chunks if "error" in c]
        assert len(errors) == 1, chunks
        assert errors[0]["type"] == "overloaded_error" and errors[0]["message"] == "Overloaded"
        assert "error" in chunks[-1], chunks        # nothing after it
        r = request(d.port, "POST", "/v1/messages",
                    {"model": "claude", "max_tokens": 5, "messages": USER, "stream": True},
                    headers=H)
        assert r.status == 200, r
        names = [l[7:] for l in r.body.decode().split("\n") if l.startswith("event: ")]
        assert names[0] == "message_start" and names[-1] == "error", names
        assert names.count("error") == 1, names
        assert d.p.poll() is None
    finally:
        d.stop()
        m.stop()


def test_review_malformed_chat_stream_to_messages_client_one_error_event():
    """/v1/messages to an OpenAI deployment whose stream breaks (a chunk that
    is not JSON): the translator says so in an `error` event; llmroute's own
    "failed mid-stream" event came after it, a second error for one fault."""
    o = Mock("oai")
    d = Daemon([deployment("gpt", o)], workers=2, server='master_key = "%s";' % MASTER,
               router="num_retries = 0;")
    try:
        o.config(malformed=2, chunks=3)
        r = request(d.port, "POST", "/v1/messages",
                    {"model": "gpt", "max_tokens": 5, "messages": USER, "stream": True},
                    headers=H)
        assert r.status == 200, r
        names = [l[7:] for l in r.body.decode().split("\n") if l.startswith("event: ")]
        assert names[0] == "message_start" and names[-1] == "error", names
        assert names.count("error") == 1, names
        last = json.loads(sse_data(r.body)[-1])
        assert last["type"] == "error" and last["error"]["type"] == "api_error", last
        assert d.p.poll() is None
    finally:
        d.stop()
        o.stop()


def test_review_messages_field_types_refused():
    """stream, system and tools of the wrong type went on: to an OpenAI
    deployment `"stream": "yes"` was answered 200 without a stream and
    `"system": 5` or `"tools": {}` were dropped.  Anthropic answers each
    400; so does llmroute now, before any upstream call, for any deployment."""
    m, o = Mock("ant"), Mock("oai")
    d = Daemon([claude("claude", m), deployment("gpt", o)], workers=2,
               server='master_key = "%s";' % MASTER)
    try:
        for model in ("claude", "gpt"):
            for field, value in (("stream", "yes"), ("stream", 1),
                                 ("system", 5), ("system", {"text": "x"}), ("tools", {}),
                                 ("tools", "get_weather")):
                body = {"model": model, "max_tokens": 5, "messages": USER, field: value}
                msg = anth_error(request(d.port, "POST", "/v1/messages", body, headers=H),
                                 400, "invalid_request_error")
                assert msg.startswith(field + ":"), msg
            for ok in ({"stream": False}, {"stream": None}, {"system": [{"type": "text", "text": "be brief"}]},
                       {"tools": []}):
                body = dict({"model": model, "max_tokens": 5, "messages": USER}, **ok)
                r = request(d.port, "POST", "/v1/messages", body, headers=H)
                assert r.status == 200 and r.json()["type"] == "message", (ok, r)
        assert m.stats()["requests"] == 4 and o.stats()["requests"] == 4
    finally:
        d.stop()
        m.stop()
        o.stop()
