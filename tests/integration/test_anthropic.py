"""Anthropic both ways (issue 16): Claude deployments (anthropic/<model>)
behind the OpenAI API, and Anthropic's Messages API (POST /v1/messages) in
front of any group.  Real llmroute (2 workers), real mock upstreams: the
mock's Anthropic mode answers with Anthropic's shapes and refuses what
Anthropic refuses (no anthropic-version, no max_tokens), so a test that
passes saw a correct translation.  What the upstream received is read from
the mock's /__mock/stats."""
import json

from harness import Daemon, Mock, Stream, deployment, request, status_row

CLAUDE, GPT = "claude", "gpt"
KEY = "sk-ant-upstream-1"
MASTER = "sk-llmroute-anth"
MSGS = [{"role": "user", "content": "hello"}]
TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
ANTH_TOOL = {"name": "get_weather", "description": "weather of a city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def claude(group, mock, model="claude-sonnet-4-5", dep_id=None, params=""):
    return ('{ model_name = "%s"; litellm_params = { model = "anthropic/%s"; api_base = "%s";'
            ' api_key = "%s"; %s }; %s }' % (group, model, mock.base, KEY, params,
                                             'model_info = { id = "%s"; };' % dep_id
                                             if dep_id else ""))


def sse_events(body):
    """The data lines of an SSE body, parsed (the [DONE] line as the string)."""
    out = []
    for line in body.decode().split("\n"):
        if line.startswith("data: "):
            d = line[6:]
            out.append(d if d == "[DONE]" else json.loads(d))
    return out


def anth_event_names(body):
    return [l[7:] for l in body.decode().split("\n") if l.startswith("event: ")]


def last_upstream(m):
    last = m.stats()["last"]
    return last, json.loads(last["body"])


# ------------------------------------------------------ OpenAI client -> Claude

def test_openai_chat_to_claude_plain():
    m = Mock("ant")
    d = Daemon([claude(CLAUDE, m)], workers=2, server='master_key = "%s";' % MASTER)
    body = {"model": CLAUDE, "temperature": 0.3, "stop": ["END"],
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [
                             {"type": "text", "text": "what is this?"},
                             {"type": "image_url",
                              "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}
    r = request(d.port, "POST", "/v1/chat/completions", body,
                headers={"Authorization": "Bearer " + MASTER})
    assert r.status == 200, r
    doc = r.json()
    assert doc["object"] == "chat.completion", doc
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": "mock reply"}, doc
    assert doc["choices"][0]["finish_reason"] == "stop", doc
    assert doc["usage"]["completion_tokens"] == 5, doc
    assert doc["usage"]["prompt_tokens"] > 0, doc
    assert r.headers["x-llmroute-deployment"], r.headers
    last, up = last_upstream(m)
    assert last["path"] == "/v1/messages", last
    h = last["headers"]
    assert h.get("x-api-key") == KEY, h
    assert h.get("anthropic-version") == "2023-06-01", h
    assert "authorization" not in h and MASTER not in json.dumps(h), h
    assert up["model"] == "claude-sonnet-4-5", up
    assert up["max_tokens"] == 4096, up
    assert up["system"] == "be brief", up
    assert up["stop_sequences"] == ["END"] and up["temperature"] == 0.3, up
    assert up["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}}]}], up
    # a chat body the Messages API cannot say: 400, and the upstream never called
    n = m.stats()["requests"]
    r = request(d.port, "POST", "/v1/chat/completions",
                {"model": CLAUDE, "messages": [{"role": "tool", "content": "no id"}]},
                headers={"Authorization": "Bearer " + MASTER})
    assert r.status == 400, r
    assert r.json()["error"]["code"] == "invalid_request", r
    assert "tool_call_id" in r.json()["error"]["message"], r
    assert m.stats()["requests"] == n


def test_openai_chat_to_claude_stream_and_usage():
    m = Mock("ant")
    d = Daemon([claude(CLAUDE, m)], workers=2)
    body = {"model": CLAUDE, "messages": MSGS, "stream": True, "max_tokens": 50,
            "stream_options": {"include_usage": True}}
    m.config(chunks=4)     # x_mock would not survive the translation
    r = request(d.port, "POST", "/v1/chat/completions", body)
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/event-stream"), r.headers
    ev = sse_events(r.body)
    assert ev[-1] == "[DONE]", ev
    chunks = ev[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks), chunks
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant", chunks[0]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"])
    assert text == "tok0 tok1 tok2 tok3 ", text
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]
              and c["choices"][0]["finish_reason"]]
    assert finish == ["stop"], chunks
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4, chunks
    _, up = last_upstream(m)
    assert up["stream"] is True and up["max_tokens"] == 50, up
    # without include_usage: no usage chunk
    del body["stream_options"]
    ev = sse_events(request(d.port, "POST", "/v1/chat/completions", body).body)
    assert not any("usage" in c for c in ev[:-1]), ev


def test_openai_chat_to_claude_tools():
    m = Mock("ant")
    d = Daemon([claude(CLAUDE, m)], workers=2)
    body = {"model": CLAUDE, "tools": [TOOL], "tool_choice": "auto",
            "messages": MSGS + [
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_0", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
                {"role": "tool", "tool_call_id": "call_0", "content": "sunny"}]}
    m.config(tool_call=1)
    r = request(d.port, "POST", "/v1/chat/completions", body)
    assert r.status == 200, r
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "tool_calls", ch
    call = ch["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather", call
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}, call
    _, up = last_upstream(m)
    assert up["tools"] == [{"name": "get_weather", "description": "weather of a city",
                            "input_schema": TOOL["function"]["parameters"]}], up
    assert up["tool_choice"] == {"type": "auto"}, up
    assert up["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_0", "name": "get_weather",
         "input": {"city": "Rome"}}]}, up
    assert up["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_0", "content": "sunny"}]}, up
    # streamed: the call's id and name first, then its arguments in pieces
    body["stream"] = True
    ev = sse_events(request(d.port, "POST", "/v1/chat/completions", body).body)
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in ev[:-1]
             if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert calls[0]["id"].startswith("toolu_mock_") and calls[0]["function"]["name"] == \
        "get_weather", calls
    args = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(args) == {"city": "Paris"}, calls
    assert [c["choices"][0]["finish_reason"] for c in ev[:-1] if c["choices"]
            and c["choices"][0]["finish_reason"]] == ["tool_calls"], ev


def test_claude_errors_in_openai_shape_529_retried():
    bad, good = Mock("bad"), Mock("good")
    d = Daemon([claude(CLAUDE, bad, dep_id="c-bad"), claude(CLAUDE, good, dep_id="c-good")],
               workers=2, router="num_retries = 3; retry_after = 0; allowed_fails = 100;")
    bad.config(status=529)
    for _ in range(4):
        r = request(d.port, "POST", "/v1/chat/completions", {"model": CLAUDE, "messages": MSGS})
        assert r.status == 200, r       # 529 overloaded is retried on the other one
        assert r.headers["x-llmroute-deployment"] == "c-good", r.headers
    good.config(status=429)
    r = request(d.port, "POST", "/v1/chat/completions", {"model": CLAUDE, "messages": MSGS})
    assert r.status in (429, 529), r
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["type"] in ("rate_limit_error", "overloaded_error"), err


def test_claude_context_length_falls_back_to_openai_group():
    c, o = Mock("ant"), Mock("oai")
    d = Daemon([claude(CLAUDE, c), deployment(GPT, o, model="gpt-4o")], workers=2,
               router='context_window_fallbacks = ( { model = "%s"; fallbacks = [ "%s" ]; } );'
               % (CLAUDE, GPT))
    c.config(error="context_length")
    r = request(d.port, "POST", "/v1/chat/completions", {"model": CLAUDE, "messages": MSGS})
    assert r.status == 200, r
    assert r.headers.get("x-llmroute-fallback") == GPT, r.headers
    assert o.stats()["requests"] == 1 and c.stats()["requests"] == 1
    # with no fallback: Anthropic's 400 in OpenAI's shape, code context_length_exceeded
    d2 = Daemon([claude(CLAUDE, c)], workers=2)
    r = request(d2.port, "POST", "/v1/chat/completions", {"model": CLAUDE, "messages": MSGS})
    assert r.status == 400, r
    err = r.json()["error"]
    assert err["code"] == "context_length_exceeded", err
    assert err["message"].startswith("prompt is too long"), err


def test_fallbacks_across_providers_both_ways():
    c, o = Mock("ant"), Mock("oai")
    d = Daemon([claude(CLAUDE, c), deployment(GPT, o, model="gpt-4o")], workers=2,
               router='num_retries = 0; fallbacks = ( { model = "%s"; fallbacks = [ "%s" ]; }, '
               '{ model = "%s"; fallbacks = [ "%s" ]; } );' % (CLAUDE, GPT, GPT, CLAUDE))
    c.config(status=529)
    r = request(d.port, "POST", "/v1/chat/completions", {"model": CLAUDE, "messages": MSGS})
    assert r.status == 200 and r.json()["object"] == "chat.completion", r
    assert r.headers.get("x-llmroute-fallback") == GPT, r.headers
    c.config(status=200)
    o.config(status=500)
    r = request(d.port, "POST", "/v1/chat/completions", {"model": GPT, "messages": MSGS})
    assert r.status == 200, r
    assert r.headers.get("x-llmroute-fallback") == CLAUDE, r.headers
    assert r.json()["choices"][0]["message"]["content"] == "mock reply", r
    # the Anthropic API in front: a failing Claude group falls back to OpenAI
    o.config(status=200)
    c.config(status=529)
    r = request(d.port, "POST", "/v1/messages",
                {"model": CLAUDE, "max_tokens": 10, "messages": MSGS})
    assert r.status == 200, r
    assert r.json()["type"] == "message", r
    assert r.headers.get("x-llmroute-fallback") == GPT, r.headers


def test_malformed_claude_answer_is_502():
    m = Mock("ant")
    d = Daemon([claude(CLAUDE, m, dep_id="c1")], workers=2)
    d.allowed += ["cannot be read", "malformed stream"]
    m.config(malformed=1)
    r = request(d.port, "POST", "/v1/chat/completions", {"model": CLAUDE, "messages": MSGS})
    assert r.status == 502, r
    err = r.json()["error"]
    assert err["code"] == "upstream_bad_response" and "c1" in err["message"], err
    r = request(d.port, "POST", "/v1/messages", {"model": CLAUDE, "max_tokens": 5,
                                                 "messages": MSGS})
    # pass-through relays Anthropic's bytes, but not a 200 that is no message
    assert r.status == 502 and r.json()["error"]["type"] == "api_error", r
    # streamed: the chunks before it, then an error event, then the end
    r = request(d.port, "POST", "/v1/chat/completions", {"model": CLAUDE, "messages": MSGS,
                                                         "stream": True})
    ev = sse_events(r.body)
    assert ev[0]["choices"][0]["delta"]["role"] == "assistant", ev
    assert any(isinstance(e, dict) and "error" in e for e in ev), ev
    assert d.p.poll() is None


# ---------------------------------------------------- Anthropic API in front

def test_messages_to_openai_deployment_plain_stream_tools():
    o = Mock("oai")
    d = Daemon([deployment(GPT, o, model="gpt-4o", key="sk-oai")], workers=2,
               server='master_key = "%s";' % MASTER)
    hdr = {"x-api-key": MASTER, "anthropic-version": "2023-06-01"}
    body = {"model": GPT, "max_tokens": 100, "system": "be brief", "messages": MSGS}
    r = request(d.port, "POST", "/v1/messages", body, headers=hdr)
    assert r.status == 200, r
    doc = r.json()
    assert doc["type"] == "message" and doc["role"] == "assistant", doc
    assert doc["content"] == [{"type": "text", "text": "mock reply"}], doc
    assert doc["stop_reason"] == "end_turn", doc
    assert doc["usage"]["output_tokens"] == 5 and doc["usage"]["input_tokens"] > 0, doc
    last, up = last_upstream(o)
    assert last["path"] == "/v1/chat/completions", last
    assert last["headers"].get("authorization") == "Bearer sk-oai", last["headers"]
    assert up == {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        "max_tokens": 100}, up
    # streamed: Anthropic's event sequence
    body["stream"] = True
    r = request(d.port, "POST", "/v1/messages", body, headers=hdr)
    assert r.status == 200, r
    names = anth_event_names(r.body)
    assert names == ["message_start", "content_block_start"] + ["content_block_delta"] * 3 + \
        ["content_block_stop", "message_delta", "message_stop"], names
    ev = sse_events(r.body)
    assert "".join(e["delta"]["text"] for e in ev if e["type"] == "content_block_delta") == \
        "tok0 tok1 tok2 ", ev
    delta = [e for e in ev if e["type"] == "message_delta"][0]
    assert delta["delta"]["stop_reason"] == "end_turn", delta
    assert delta["usage"]["output_tokens"] == 3, delta
    _, up = last_upstream(o)
    assert up["stream"] is True and up["stream_options"] == {"include_usage": True}, up
    # tools, plain and streamed
    body = {"model": GPT, "max_tokens": 100, "messages": MSGS, "tools": [ANTH_TOOL],
            "tool_choice": {"type": "any"}}
    o.config(tool_call=1)
    del hdr["anthropic-version"]
    r = request(d.port, "POST", "/v1/messages", body, headers=hdr)
    assert r.status == 200, r
    doc = r.json()
    assert doc["stop_reason"] == "tool_use", doc
    assert doc["content"] == [{"type": "tool_use", "id": doc["content"][0]["id"],
                               "name": "get_weather", "input": {"city": "Paris"}}], doc
    _, up = last_upstream(o)
    assert up["tools"][0]["function"]["name"] == "get_weather", up
    assert up["tool_choice"] == "required", up
    body["stream"] = True
    ev = sse_events(request(d.port, "POST", "/v1/messages", body, headers=hdr).body)
    start = [e for e in ev if e["type"] == "content_block_start"]
    assert start[0]["content_block"]["type"] == "tool_use", start
    args = "".join(e["delta"]["partial_json"] for e in ev if e["type"] == "content_block_delta")
    assert json.loads(args) == {"city": "Paris"}, ev
    assert [e for e in ev if e["type"] == "message_delta"][0]["delta"]["stop_reason"] == \
        "tool_use", ev


def test_messages_pass_through_to_claude():
    c = Mock("ant")
    d = Daemon([claude(CLAUDE, c, model="claude-up", dep_id="c1")], workers=2)
    body = {"model": CLAUDE, "max_tokens": 20, "messages": MSGS, "top_k": 5,
            "anthropic_only_field": {"kept": True}}
    beta = "interleaved-thinking-2025-05-14,context-management-2025-06-27"
    r = request(d.port, "POST", "/v1/messages", body,
                headers={"anthropic-version": "x", "anthropic-beta": beta})
    assert r.status == 200, r
    doc = r.json()
    assert doc["id"].startswith("msg_mock_") and doc["model"] == "claude-up", doc
    last, up = last_upstream(c)
    assert last["path"] == "/v1/messages", last
    assert last["headers"].get("x-api-key") == KEY, last["headers"]
    assert last["headers"].get("anthropic-beta") == beta, last["headers"]   # Claude Code's
    assert last["headers"].get("anthropic-version") == "2023-06-01", last["headers"]
    assert up == dict(body, model="claude-up"), up      # untouched but the model
    body["stream"] = True
    r = request(d.port, "POST", "/v1/messages", body)
    assert "anthropic-beta" not in c.stats()["last"]["headers"], c.stats()["last"]
    names = anth_event_names(r.body)
    assert names[:3] == ["message_start", "content_block_start", "ping"], names
    assert names[-2:] == ["message_delta", "message_stop"], names
    # usage read from the relayed events reaches the deployment's counters:
    # 5 output tokens of the answer, 3 of the stream's message_delta
    row = status_row(d, "c1")
    assert row["SUCCESS"] == "2" and row["COMPL_TOK"] == "8", row
    assert int(row["PROMPT_TOK"]) > 0 and float(row["TTFT_MS"]) > 0, row


def test_messages_errors_in_anthropic_shape():
    o = Mock("oai")
    d = Daemon([deployment(GPT, o, model="gpt-4o")], workers=2,
               server='master_key = "%s";' % MASTER)
    hdr = {"x-api-key": MASTER}

    def err(r, status, etype):
        assert r.status == status, r
        doc = r.json()
        assert doc["type"] == "error" and doc["error"]["type"] == etype, doc
        return doc["error"]["message"]

    err(request(d.port, "POST", "/v1/messages", {"model": GPT, "max_tokens": 1,
                                                 "messages": MSGS}), 401, "authentication_error")
    err(request(d.port, "POST", "/v1/messages", {"model": GPT, "max_tokens": 1,
                                                 "messages": MSGS},
                headers={"x-api-key": "wrong"}), 401, "authentication_error")
    assert "max_tokens" in err(request(d.port, "POST", "/v1/messages",
                                       {"model": GPT, "messages": MSGS}, headers=hdr),
                               400, "invalid_request_error")
    err(request(d.port, "POST", "/v1/messages", "{nope", headers=hdr), 400,
        "invalid_request_error")
    err(request(d.port, "POST", "/v1/messages", {"model": "nope", "max_tokens": 1,
                                                 "messages": MSGS}, headers=hdr),
        404, "not_found_error")
    err(request(d.port, "GET", "/v1/messages", headers=hdr), 405, "invalid_request_error")
    err(request(d.port, "POST", "/v1/messages",
                {"model": GPT, "max_tokens": 1, "messages": [{"role": "wizard",
                                                              "content": "x"}]}, headers=hdr),
        400, "invalid_request_error")
    # llmroute's per-request controls are refused in Anthropic's shape here too
    assert "num_retries" in err(request(d.port, "POST", "/v1/messages",
                                        {"model": GPT, "max_tokens": 1, "messages": MSGS,
                                         "num_retries": 99}, headers=hdr),
                                400, "invalid_request_error")
    # the upstream's errors, translated
    o.config(status=429)
    err(request(d.port, "POST", "/v1/messages", {"model": GPT, "max_tokens": 1,
                                                 "messages": MSGS, "num_retries": 0},
                headers=hdr), 429, "rate_limit_error")
    # Bearer works too
    o.config(status=200)
    r = request(d.port, "POST", "/v1/messages", {"model": GPT, "max_tokens": 1,
                                                 "messages": MSGS},
                headers={"Authorization": "Bearer " + MASTER})
    assert r.status == 200 and r.json()["type"] == "message", r


def test_count_tokens():
    o = Mock("oai")
    d = Daemon([deployment(GPT, o, model="gpt-4o")], workers=2)
    small = request(d.port, "POST", "/v1/messages/count_tokens",
                    {"model": GPT, "messages": MSGS})
    big = request(d.port, "POST", "/v1/messages/count_tokens",
                  {"model": GPT, "system": "x" * 4000, "messages": MSGS})
    assert small.status == 200 and big.status == 200, (small, big)
    assert 0 < small.json()["input_tokens"] < big.json()["input_tokens"], (small, big)
    assert big.json()["input_tokens"] >= 1000, big
    assert o.stats()["requests"] == 0


def test_stream_events_relayed_one_for_one():
    """Each Anthropic event becomes its chunk as it arrives: with a pause
    between the mock's deltas, the client holds the first text chunk while
    the upstream is still generating."""
    c = Mock("ant")
    d = Daemon([claude(CLAUDE, c)], workers=2)
    body = {"model": CLAUDE, "messages": MSGS, "stream": True}
    c.config(chunks=3, chunk_delay_ms=400)
    s = Stream(d.port, body)
    status, _ = s.head()
    assert status == 200
    seen = b""
    while b"tok0" not in seen:
        seen += s.chunk()
    assert b"tok1" not in seen, seen       # not buffered until the end
    rest = b""
    while True:
        ch = s.chunk()
        if ch is None:
            break
        rest += ch
    assert b"tok2" in rest and rest.endswith(b"data: [DONE]\n\n"), rest


def test_messages_stream_cut_ends_with_anthropic_error_event():
    """An OpenAI upstream that drops the stream after a chunk: the
    /v1/messages client has its message_start and first delta, then
    Anthropic's error event, then the end of the reply."""
    o = Mock("oai")
    d = Daemon([deployment(GPT, o, model="gpt-4o")], workers=2)
    d.allowed.append("failed mid-stream")
    o.config(drop_after=1)
    r = request(d.port, "POST", "/v1/messages",
                {"model": GPT, "max_tokens": 5, "messages": MSGS, "stream": True})
    assert r.status == 200, r
    names = anth_event_names(r.body)
    assert names[:3] == ["message_start", "content_block_start", "content_block_delta"], names
    assert names[-1] == "error" and "message_stop" not in names, names
    err = sse_events(r.body)[-1]
    assert err["type"] == "error" and err["error"]["type"] == "api_error", err
    assert "mid-stream" in err["error"]["message"], err


def test_time_to_first_token_runs_to_the_first_content_event():
    """message_start comes at once, the first text delta after 300 ms: the
    deployment's TTFT (latency-based routing) is the 300 ms, for a chat
    client (translated) and a /v1/messages client (passed through) alike."""
    c = Mock("ant")
    d = Daemon([claude(CLAUDE, c, dep_id="c1")], workers=1)
    c.config(chunks=1, chunk_delay_ms=300)
    r = request(d.port, "POST", "/v1/chat/completions",
                {"model": CLAUDE, "messages": MSGS, "stream": True})
    assert r.status == 200 and b"tok0" in r.body, r
    assert float(status_row(d, "c1")["TTFT_MS"]) >= 250, status_row(d, "c1")
    d2 = Daemon([claude(CLAUDE, c, dep_id="c2")], workers=1)
    r = request(d2.port, "POST", "/v1/messages",
                {"model": CLAUDE, "messages": MSGS, "stream": True, "max_tokens": 5})
    assert r.status == 200 and b"tok0" in r.body, r
    assert float(status_row(d2, "c2")["TTFT_MS"]) >= 250, status_row(d2, "c2")
