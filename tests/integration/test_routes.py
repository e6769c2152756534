"""What real clients send beyond the plain OpenAI routes (issue 11, items
2-5): Azure OpenAI's deployment routes with the api-key header (the request
shapes of the AzureOpenAI client class), GET /v1/models/{id}, the
per-request controls LiteLLM's proxy accepts (fallbacks,
context_window_fallbacks, num_retries, timeout and their headers), which
never reach the upstream, and router_settings.model_group_alias.

What the upstream really received is read from the mock's /__mock/stats."""
import json
import os
import subprocess
import time

from harness import BUILD, Daemon, Mock, chat, deployment, request, slack, timeout, tmpdir

KEY = "sk-master-routes"
BEARER = {"Authorization": "Bearer " + KEY}
AZ = {"api-key": KEY}                   # what AzureOpenAI sends instead
MSGS = [{"role": "user", "content": "hello"}]
AZ_PATH = "/openai/deployments/%s/%s?api-version=2024-10-21"


def dep_of(r):
    return r.headers.get("x-llmroute-deployment")


def upstream_body(m):
    return m.stats()["last"]["body"]


# ---------------------------------------------------------------- Azure routes

@timeout(60)
def test_azure_routes_chat_stream_embeddings_with_api_key():
    m = Mock("up")
    d = Daemon([deployment("gpt-4o", m, model="gpt-4o-2024", key="upstream-secret"),
                deployment("other", m, model="other-real"),
                deployment("az", m, model="az-dep", azure=True, key="az-secret")],
               server='master_key = "%s";' % KEY)
    # AzureOpenAI sends no model: the URL names the group, the deployment's
    # model is inserted for the upstream, every other byte is the client's.
    raw = '{"messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}'
    r = request(d.port, "POST", AZ_PATH % ("gpt-4o", "chat/completions"), raw, AZ)
    assert r.status == 200, r
    assert r.json()["object"] == "chat.completion", r
    assert r.headers.get("x-llmroute-model-group") == "gpt-4o", r.headers
    last = m.stats()["last"]
    assert last["path"] == "/v1/chat/completions", last
    # the client's ?api-version= is llmroute's to ignore: never forwarded
    assert last["query"] == "", last
    assert last["body"] == '{"model":"gpt-4o-2024",' + raw[1:], last["body"]
    # the client's key never goes upstream; the deployment's does
    h = last["headers"]
    assert "api-key" not in h and KEY not in json.dumps(h), h
    assert h.get("authorization") == "Bearer upstream-secret", h

    # a body whose model differs: the URL decides, the body's is rewritten
    r = request(d.port, "POST", AZ_PATH % ("gpt-4o", "chat/completions"),
                {"model": "other", "messages": MSGS}, AZ)
    assert r.status == 200 and r.headers.get("x-llmroute-model-group") == "gpt-4o", r
    assert json.loads(upstream_body(m))["model"] == "gpt-4o-2024"

    # streaming, as AzureOpenAI(...).chat.completions.create(stream=True) sends it
    r = request(d.port, "POST", AZ_PATH % ("gpt-4o", "chat/completions"),
                {"messages": MSGS, "stream": True}, AZ)
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("text/event-stream"), r.headers
    assert r.body.rstrip().endswith(b"data: [DONE]"), r.body[-200:]
    assert b"tok0" in r.body, r.body[:300]
    assert m.stats()["last"]["query"] == "", m.stats()["last"]

    # embeddings and completions
    r = request(d.port, "POST", AZ_PATH % ("gpt-4o", "embeddings"), {"input": ["a"]}, AZ)
    assert r.status == 200 and r.json()["object"] == "list", r
    last = m.stats()["last"]
    assert last["path"] == "/v1/embeddings" and last["query"] == "", last
    r = request(d.port, "POST", AZ_PATH % ("gpt-4o", "completions"), {"prompt": "x"}, AZ)
    assert r.status == 200 and r.json()["object"] == "text_completion", r
    last = m.stats()["last"]
    assert last["path"] == "/v1/completions" and last["query"] == "", last

    # an Azure upstream gets its own deployment's api-version, only that one
    # (the client asked for 2024-10-21, the deployment says 2024-02-01)
    for op in ("chat/completions", "embeddings", "completions"):
        body = {"input": "a"} if op == "embeddings" else (
            {"prompt": "x"} if op == "completions" else {"messages": MSGS})
        r = request(d.port, "POST", AZ_PATH % ("az", op) + "&extra=1", body, AZ)
        assert r.status == 200, (op, r)
        last = m.stats()["last"]
        assert last["path"] == "/openai/deployments/az-dep/" + op, last
        assert last["query"] == "api-version=2024-02-01", last
        assert last["headers"].get("api-key") == "az-secret", last["headers"]

    # Bearer works on these routes too; a wrong api-key does not, on any route
    r = request(d.port, "POST", AZ_PATH % ("gpt-4o", "embeddings"), {"input": "a"}, BEARER)
    assert r.status == 200, r
    r = request(d.port, "POST", AZ_PATH % ("gpt-4o", "embeddings"), {"input": "a"},
                {"api-key": "wrong"})
    assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key", r
    r = chat(d.port, model="gpt-4o", headers=AZ)
    assert r.status == 200, r
    r = chat(d.port, model="gpt-4o", headers={"api-key": KEY + "x"})
    assert r.status == 401, r

    # an unknown deployment, a wrong method, an unknown operation
    n = m.stats()["requests"]
    r = request(d.port, "POST", AZ_PATH % ("nope", "chat/completions"), {"messages": MSGS}, AZ)
    assert r.status == 404 and r.json()["error"]["code"] == "model_not_found", r
    assert "nope" in r.json()["error"]["message"], r
    r = request(d.port, "GET", AZ_PATH % ("gpt-4o", "chat/completions"), None, AZ)
    assert r.status == 405 and r.headers.get("allow") == "POST", r
    r = request(d.port, "POST", AZ_PATH % ("gpt-4o", "images/generations"), {}, AZ)
    assert r.status == 404 and r.json()["error"]["code"] == "not_found", r
    # the usual checks still apply when the body has no model
    r = request(d.port, "POST", AZ_PATH % ("gpt-4o", "chat/completions"), {}, AZ)
    assert r.status == 400 and r.json()["error"]["code"] == "missing_messages", r
    r = request(d.port, "POST", AZ_PATH % ("gpt-4o", "chat/completions"),
                {"model": 3, "messages": MSGS}, AZ)
    assert r.status == 400 and r.json()["error"]["code"] == "missing_model", r
    assert m.stats()["requests"] == n
    d.stop()
    d.check_log()


# ---------------------------------------------------------------- /v1/models/{id}

@timeout(60)
def test_model_by_id_and_aliases_listed():
    m = Mock("up")
    d = Daemon([deployment("gpt-4o", m), deployment("small", m, model="gpt-4o-mini")],
               server='master_key = "%s";' % KEY,
               router='model_group_alias = { gpt-4 = "gpt-4o"; '
                      'secret = { model = "small"; hidden = true; }; };')
    for path in ("/v1/models/", "/models/"):
        for mid in ("gpt-4o", "small", "gpt-4", "secret"):
            r = request(d.port, "GET", path + mid, None, BEARER)
            assert r.status == 200, (path, mid, r)
            assert r.json() == {"id": mid, "object": "model", "created": 0,
                                "owned_by": "llmroute"}, r
        r = request(d.port, "GET", path + "gpt-5", None, BEARER)
        assert r.status == 404, r
        err = r.json()["error"]
        assert err["code"] == "model_not_found" and "gpt-5" in err["message"], err
    r = request(d.port, "GET", "/v1/models/gpt-4o", None, AZ)
    assert r.status == 200, r
    r = request(d.port, "GET", "/v1/models/gpt-4o")
    assert r.status == 401, r
    r = request(d.port, "POST", "/v1/models/gpt-4o", {}, BEARER)
    assert r.status == 405 and r.headers.get("allow") == "GET, HEAD", r
    # the list: groups, then the aliases that are not hidden
    ids = [x["id"] for x in request(d.port, "GET", "/v1/models", None, BEARER).json()["data"]]
    assert ids == ["gpt-4o", "small", "gpt-4"], ids
    d.stop()
    d.check_log()


# ---------------------------------------------------------------- aliases

@timeout(60)
def test_alias_routes_to_its_group():
    m = Mock("up")
    d = Daemon([deployment("gpt-4o", m, model="gpt-4o-real", dep_id="real")],
               router='model_group_alias = ( { alias = "gpt-3.5-turbo"; model = "gpt-4o"; },'
                      ' { alias = "hid"; model = "gpt-4o"; hidden = true; } );')
    for name in ("gpt-3.5-turbo", "hid", "gpt-4o"):
        r = chat(d.port, model=name)
        assert r.status == 200, (name, r)
        assert r.headers.get("x-llmroute-model-group") == "gpt-4o", r.headers
        assert dep_of(r) == "real", r.headers
        assert json.loads(upstream_body(m))["model"] == "gpt-4o-real"
    r = chat(d.port, model="gpt-4")
    assert r.status == 404 and r.json()["error"]["code"] == "model_not_found", r
    d.stop()
    d.check_log()


def _conf_test(router):
    """`llmroute -t` on a config with this router_settings: (rc, stderr)."""
    m_line = '{ model_name = "gpt-4o"; litellm_params = { model = "gpt-4o"; }; }'
    conf = os.path.join(tmpdir(), "llmroute.conf")
    with open(conf, "w") as f:
        f.write('server: { listen = "127.0.0.1:1"; };\nmodel_list = ( %s );\n'
                'router_settings: {\n %s };\n' % (m_line, router))
    try:
        p = subprocess.run([os.path.join(BUILD, "llmroute"), "-c", conf, "-t"],
                           capture_output=True, text=True, timeout=30)
        return p.returncode, p.stderr, conf
    finally:
        os.unlink(conf)


@timeout(60)
def test_alias_config_errors_name_file_line_key():
    rc, err, conf = _conf_test('model_group_alias = { gpt-4 = "nope"; };')
    assert rc != 0, err
    assert "%s:4: router_settings.model_group_alias.gpt-4: " % conf in err, err
    assert "unknown model group \"nope\"" in err, err
    rc, err, conf = _conf_test('model_group_alias = { gpt-4o = "gpt-4o"; };')
    assert rc != 0 and "cannot shadow" in err, err
    assert "%s:4: router_settings.model_group_alias.gpt-4o: " % conf in err, err
    rc, err, conf = _conf_test('model_group_alias = { gpt-4 = "gpt-4o"; };')
    assert rc == 0, err


# ---------------------------------------------------------------- per-request controls

@timeout(60)
def test_controls_never_reach_the_upstream_byte_for_byte():
    m = Mock("up")
    d = Daemon([deployment("a", m, model="a-real"), deployment("b", m, model="b-real")])
    raw = ('{ "timeout": 20,\n "model" : "a",  "fallbacks": ["b"],"messages":[{"role":"user",'
           '"content":"timeout fallbacks"}], "num_retries" :1,\n "x":{"timeout":1},'
           '"context_window_fallbacks":[] }')
    r = request(d.port, "POST", "/v1/chat/completions", raw)
    assert r.status == 200, r
    assert upstream_body(m) == ('{ "model" : "a-real",  "messages":[{"role":"user",'
                                '"content":"timeout fallbacks"}], "x":{"timeout":1} }'), \
        upstream_body(m)
    # the headers are read, never forwarded (no client header is)
    r = chat(d.port, model="a", headers={"x-llmroute-timeout": "20",
                                         "x-llmroute-num-retries": "1"})
    assert r.status == 200, r
    h = m.stats()["last"]["headers"]
    assert not any(k.startswith("x-llmroute") for k in h), h
    # a duplicated control is refused like any field llmroute reads
    r = request(d.port, "POST", "/v1/chat/completions",
                '{"model":"a","messages":[],"num_retries":1,"num_retries":5}')
    assert r.status == 400 and r.json()["error"]["code"] == "duplicate_key", r
    assert "num_retries" in r.json()["error"]["message"], r
    d.stop()
    d.check_log()


@timeout(60)
def test_controls_bad_values_are_400():
    m = Mock("up")
    d = Daemon([deployment("a", m)])
    bad = [({"fallbacks": "b"}, "fallbacks", "invalid_value"),
           ({"fallbacks": [1]}, "fallbacks", "invalid_value"),
           ({"fallbacks": ["a", "ghost-group"]}, "fallbacks", "model_not_found"),
           ({"context_window_fallbacks": ["ghost-group"]}, "context_window_fallbacks",
            "model_not_found"),
           ({"num_retries": -1}, "num_retries", "invalid_value"),
           ({"num_retries": 11}, "num_retries", "invalid_value"),
           ({"num_retries": 1.5}, "num_retries", "invalid_value"),
           ({"num_retries": "2"}, "num_retries", "invalid_value"),
           ({"timeout": 0}, "timeout", "invalid_value"),
           ({"timeout": "5"}, "timeout", "invalid_value"),
           ({"timeout": True}, "timeout", "invalid_value")]
    for extra, param, code in bad:
        r = chat(d.port, model="a", extra=extra)
        assert r.status == 400, (extra, r)
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error", err
        assert err["param"] == param and err["code"] == code, (extra, err)
        if code == "model_not_found":
            assert "ghost-group" in err["message"], err
    for h in ({"x-llmroute-timeout": "soon"}, {"x-llmroute-timeout": "-1"},
              {"x-llmroute-num-retries": "99"}, {"x-llmroute-num-retries": "x"}):
        r = chat(d.port, model="a", headers=h)
        assert r.status == 400, (h, r)
        assert r.json()["error"]["param"] == list(h)[0], r
    assert m.stats()["requests"] == 0
    d.stop()
    d.check_log()


@timeout(90)
def test_per_request_fallbacks_replace_the_configs():
    bad, good, cfg = Mock("bad", ["--status", "500"]), Mock("good"), Mock("cfg")
    d = Daemon([deployment("a", bad, dep_id="a1"), deployment("b", good, dep_id="b1"),
                deployment("c", cfg, dep_id="c1")],
               router='num_retries = 0; fallbacks = ( { model = "a"; fallbacks = ["c"]; } ); '
                      'model_group_alias = { bee = "b"; };')
    r = chat(d.port, model="a")
    assert r.status == 200 and dep_of(r) == "c1", (r, r.headers)
    r = chat(d.port, model="a", extra={"fallbacks": ["b"]})
    assert r.status == 200 and dep_of(r) == "b1", (r, r.headers)
    assert r.headers.get("x-llmroute-fallback") == "b", r.headers
    assert cfg.stats()["requests"] == 1
    # an alias in the list stands for its group: the fallback header names
    # the real group, the upstream gets that group's model
    r = chat(d.port, model="a", extra={"fallbacks": ["bee"]})
    assert r.status == 200 and dep_of(r) == "b1", (r, r.headers)
    assert r.headers.get("x-llmroute-fallback") == "b", r.headers
    assert r.headers.get("x-llmroute-model-group") == "a", r.headers
    assert "fallbacks" not in json.loads(upstream_body(good)), upstream_body(good)
    assert cfg.stats()["requests"] == 1 and good.stats()["requests"] == 2
    # an empty list: no fallback at all for this request
    r = chat(d.port, model="a", extra={"fallbacks": []})
    assert r.status == 500, r
    assert cfg.stats()["requests"] == 1 and good.stats()["requests"] == 2
    d.stop()
    d.check_log()


@timeout(90)
def test_per_request_context_window_fallbacks():
    small, big = Mock("small", ["--error", "context_length"]), Mock("big")
    d = Daemon([deployment("s", small, dep_id="s1"), deployment("l", big, dep_id="l1")])
    r = chat(d.port, model="s")
    assert r.status == 400, r               # no configured context-window fallback
    r = chat(d.port, model="s", extra={"context_window_fallbacks": ["l"]})
    assert r.status == 200 and dep_of(r) == "l1", (r, r.headers)
    d.stop()
    d.check_log()


@timeout(90)
def test_per_request_num_retries_body_and_header():
    m = Mock("up", ["--status", "500"])
    d = Daemon([deployment("a", m)], router="num_retries = 3; retry_after = 0; cooldown_time = 0;")
    for extra, headers, want in (({"num_retries": 0}, None, 1),
                                 (None, {"x-llmroute-num-retries": "1"}, 2),
                                 ({"num_retries": 0}, {"x-llmroute-num-retries": "2"}, 1),
                                 (None, None, 4)):
        m.reset()
        m.config(status=500)
        r = chat(d.port, model="a", extra=extra, headers=headers)
        assert r.status == 500, r
        assert m.stats()["requests"] == want, (extra, headers, m.stats()["requests"])
        assert r.headers.get("x-llmroute-attempts") == str(want), r.headers
    d.stop()
    d.check_log()


@timeout(90)
def test_per_request_timeout_only_shortens():
    m = Mock("slow", ["--latency", "4000"])
    d = Daemon([deployment("a", m)], router="timeout = 30; num_retries = 0;")
    for extra, headers in (({"timeout": 0.5}, None), (None, {"x-llmroute-timeout": "0.5"})):
        t0 = time.monotonic()
        r = chat(d.port, model="a", extra=extra, headers=headers)
        took = time.monotonic() - t0
        assert r.status == 504, r
        assert took < 0.5 + slack(1.5, cap=3.0), took
    d.stop()
    d.check_log()
    # a longer timeout than the configured one does not lengthen it
    d = Daemon([deployment("a", m)], router="timeout = 0.5; num_retries = 0;")
    t0 = time.monotonic()
    r = chat(d.port, model="a", extra={"timeout": 100})
    assert r.status == 504 and time.monotonic() - t0 < 0.5 + slack(1.5, cap=3.0), r
    d.stop()
    d.check_log()
