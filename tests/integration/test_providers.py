"""Providers, the body rewrite, the informational endpoints, the response
headers and the usage counters (issue 2, items 5 and 8; DESIGN.md section 6).
What the upstream really received is read from the mock's /__mock/stats."""
import json

from harness import status_rows
from harness import Daemon, Mock, TestFailure, chat, deployment, request, wait_for

GROUP = "gpt-3.5-turbo"
MSGS = [{"role": "user", "content": "hello"}]
OPS = (("chat/completions", {"messages": MSGS}, "chat.completion"),
       ("completions", {"prompt": "hello"}, "text_completion"),
       ("embeddings", {"input": "hello"}, "list"))




def without_model(body_text):
    doc = json.loads(body_text)
    doc.pop("model", None)
    return doc


# ---------------------------------------------------------------- providers

def test_azure_url_api_version_and_api_key():
    m = Mock("az")
    d = Daemon([deployment(GROUP, m, model="my-azure-dep", azure=True, key="azure-key-1")],
               workers=2)
    for op, extra, obj in OPS:
        for prefix in ("/v1/", "/"):
            body = dict(extra, model=GROUP, temperature=0.5)
            # the client's own Authorization must not reach Azure either
            r = request(d.port, "POST", prefix + op, body,
                        headers={"Authorization": "Bearer client-token-zzz"})
            assert r.status == 200, (prefix + op, r)
            assert r.json()["object"] == obj, r
            last = m.stats()["last"]
            assert last["method"] == "POST", last
            assert last["path"] == "/openai/deployments/my-azure-dep/" + op, last
            assert last["query"] == "api-version=2024-02-01", last
            h = last["headers"]
            assert h.get("api-key") == "azure-key-1", h
            assert "authorization" not in h, h
            assert "client-token-zzz" not in json.dumps(h), h
            assert h.get("content-type", "").startswith("application/json"), h
            # everything but the model goes through unchanged
            assert without_model(last["body"]) == without_model(json.dumps(body)), last["body"]
    assert m.stats()["requests"] == 6


def test_azure_api_version_from_config():
    m = Mock("az")
    entry = ('{ model_name = "%s"; litellm_params = { model = "azure/dep-x"; api_base = "%s";'
             ' api_version = "2023-05-15"; api_key = "k2"; }; }' % (GROUP, m.base))
    d = Daemon([entry], workers=2)
    r = chat(d.port)
    assert r.status == 200, r
    last = m.stats()["last"]
    assert last["path"] == "/openai/deployments/dep-x/chat/completions", last
    assert last["query"] == "api-version=2023-05-15", last
    assert last["headers"].get("api-key") == "k2", last["headers"]


def test_openai_paths_and_bearer():
    m = Mock("oa")
    d = Daemon([deployment(GROUP, m, model="gpt-4o-up", key="sk-openai-1")], workers=2)
    expected_paths = {}
    for op, extra, obj in OPS:
        for prefix in ("/v1/", "/"):
            body = dict(extra, model=GROUP)
            r = request(d.port, "POST", prefix + op, body,
                        headers={"Authorization": "Bearer client-token-zzz"})
            assert r.status == 200, (prefix + op, r)
            assert r.json()["object"] == obj, r
            last = m.stats()["last"]
            assert last["path"] == "/v1/" + op, (prefix + op, last)
            assert last["query"] == "", last
            h = last["headers"]
            assert h.get("authorization") == "Bearer sk-openai-1", h
            assert "client-token-zzz" not in json.dumps(h), h
            assert "api-key" not in h, h
            assert json.loads(last["body"])["model"] == "gpt-4o-up", last["body"]
            expected_paths["/v1/" + op] = expected_paths.get("/v1/" + op, 0) + 1
    assert m.stats()["paths"] == expected_paths, m.stats()["paths"]


def test_openai_without_key_sends_no_authorization():
    m = Mock("oa")
    d = Daemon([deployment(GROUP, m)], workers=2)
    r = chat(d.port, headers={"Authorization": "Bearer client-token-zzz"})
    assert r.status == 200, r
    h = m.stats()["last"]["headers"]
    assert "authorization" not in h, h
    assert "client-token-zzz" not in json.dumps(h), h


def test_bare_model_name_is_openai():
    """A model without provider prefix is an OpenAI model (DESIGN.md section 4)."""
    m = Mock("oa")
    entry = ('{ model_name = "%s"; litellm_params = { model = "gpt-4o-mini"; api_base = "%s/v1";'
             ' api_key = "sk-bare"; }; }' % (GROUP, m.base))
    d = Daemon([entry], workers=2)
    r = chat(d.port)
    assert r.status == 200, r
    last = m.stats()["last"]
    assert last["path"] == "/v1/chat/completions", last
    assert last["headers"].get("authorization") == "Bearer sk-bare", last["headers"]
    assert json.loads(last["body"])["model"] == "gpt-4o-mini", last["body"]


# ---------------------------------------------------------------- body rewrite

# @M@ marks the top-level model's value.
REWRITE_BODIES = [
    # unicode, raw and escaped
    '{"model": @M@, "messages": [{"role": "user", "content": "h\u00e9llo \u65e5\u672c'
    '\u8a9e \U0001f389 \\u00e9\\ud83c\\udf89"}]}',
    # every escape JSON has
    '{"model":@M@,"messages":[{"role":"user","content":"q\\"b\\\\s\\/n\\nt\\tr\\rb\\bf\\f"}]}',
    # numbers written unusually, nested objects, literals
    '{"model": @M@, "messages": [], "temperature": 1.0e2, "top_p": 1E-7, '
    '"n": -0, "seed": 123456789012345678901234567890, "x": [0.10, 2.50, -1.5e+3], '
    '"logit_bias": {"50256": -100, "1": 0.0}, "a": {"b": {"c": [true, false, null, {}]}}}',
    # white space variety, model last, CRLF and tabs, space before colon
    '\n\t {\r\n  "messages"\t:\t[ ] ,\r\n  "stream" : false ,\n  "model"  :  @M@\n}\n\t',
    # "model" elsewhere in the body is not the top-level model and stays as is
    '{"metadata": {"model": "gpt-3.5-turbo"}, "messages": [{"role": "user", "content": '
    '"gpt-3.5-turbo", "model": "gpt-3.5-turbo"}], "model": @M@, '
    '"tools": [{"type": "function", "function": {"name": "model", "parameters": {"model": '
    '{"type": "string", "enum": ["gpt-3.5-turbo"]}}}}]}',
    # keys that only contain "model"
    '{"model_name": "x", "xmodel": "gpt-3.5-turbo", "model": @M@, "messages": []}',
    # a larger body (about 60 KB, thousands of tokens)
    '{"model": @M@, "messages": [{"role": "user", "content": "%s"}], "v": [%s]}' % (
        "w\\u00e9 " * 2000, ",".join(["1.5", "[]", "{}", "\"s\"", "null"] * 800)),
]


def test_model_rewrite_is_byte_for_byte():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, model="gpt-35-upstream")], workers=2)
    for i, tmpl in enumerate(REWRITE_BODIES):
        body = tmpl.replace("@M@", '"gpt-3.5-turbo"')
        want = tmpl.replace("@M@", '"gpt-35-upstream"')
        json.loads(body)                       # the test's own bodies are valid JSON
        r = request(d.port, "POST", "/v1/chat/completions", body)
        assert r.status == 200, "body %d: %r" % (i, r)
        got = m.stats()["last"]["body"]
        if got != want:
            n = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]),
                     min(len(got), len(want)))
            raise TestFailure("body %d differs at %d: wanted %r, upstream got %r" % (
                i, n, want[max(0, n - 40):n + 40], got[max(0, n - 40):n + 40]))


def test_model_rewrite_on_every_operation():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, model="up-model")], workers=2)
    for op, extra, _ in OPS:
        body = '{"model" : "gpt-3.5-turbo" ,%s, "user": "u\\u00e9"}' % json.dumps(extra)[1:-1]
        r = request(d.port, "POST", "/v1/" + op, body)
        assert r.status == 200, (op, r)
        assert m.stats()["last"]["body"] == body.replace('"gpt-3.5-turbo"', '"up-model"', 1)


def test_upstream_model_with_slashes_and_colon():
    """Only the provider prefix is stripped: "openai/accounts/x/models/m:v1"
    goes upstream as "accounts/x/models/m:v1" (Fireworks-style names)."""
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, model="accounts/fw/models/llama-v3p1:8b")], workers=2)
    body = '{"model": "gpt-3.5-turbo", "messages": []}'
    r = request(d.port, "POST", "/v1/chat/completions", body)
    assert r.status == 200, r
    last = m.stats()["last"]
    assert last["path"] == "/v1/chat/completions", last
    assert last["body"] == '{"model": "accounts/fw/models/llama-v3p1:8b", "messages": []}', last


def test_escaped_model_name_in_request_matches_group():
    """"gpt-3.5\\u002dturbo" is the same JSON string as "gpt-3.5-turbo"."""
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, model="up")], workers=2)
    body = '{"model": "gpt\\u002d3.5-turbo", "messages": []}'
    r = request(d.port, "POST", "/v1/chat/completions", body)
    assert r.status == 200, r
    assert m.stats()["last"]["body"] == '{"model": "up", "messages": []}'


# ---------------------------------------------------------------- informational endpoints

def test_models_list_and_health():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, dep_id="a1"), deployment(GROUP, m, dep_id="a2"),
                deployment("gpt-4", m, dep_id="b1"),
                deployment("text-embedding-3-small", m, dep_id="c1")], workers=2)
    for path in ("/v1/models", "/models"):
        r = request(d.port, "GET", path)
        assert r.status == 200, (path, r)
        assert r.headers.get("content-type", "").startswith("application/json"), r.headers
        doc = r.json()
        assert doc["object"] == "list", doc
        ids = [e["id"] for e in doc["data"]]
        assert sorted(ids) == sorted([GROUP, "gpt-4", "text-embedding-3-small"]), ids
        for e in doc["data"]:
            assert e["object"] == "model", e
            assert isinstance(e.get("created"), int), e
            assert isinstance(e.get("owned_by"), str), e
    for path in ("/health/liveliness", "/health/liveness"):
        r = request(d.port, "GET", path)
        assert r.status == 200, (path, r)
    r = request(d.port, "GET", "/health/readiness")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert isinstance(r.json(), dict), r
    assert m.stats()["requests"] == 0, "an informational endpoint called the upstream"


# ---------------------------------------------------------------- response headers

def test_routed_response_headers():
    ma, mb = Mock("a"), Mock("b")
    mc = Mock("c")
    d = Daemon([deployment(GROUP, ma, dep_id="dep-a"), deployment(GROUP, mb, dep_id="dep-b"),
                deployment("other", mc)], workers=2)
    seen = set()
    for i in range(20):
        op, extra, _ = OPS[i % 3]
        before = (ma.stats()["requests"], mb.stats()["requests"])
        r = request(d.port, "POST", "/v1/" + op, dict(extra, model=GROUP))
        assert r.status == 200, r
        after = (ma.stats()["requests"], mb.stats()["requests"])
        served = "dep-a" if after[0] > before[0] else "dep-b"
        assert after[0] + after[1] == before[0] + before[1] + 1, (before, after)
        assert r.headers.get("x-llmroute-deployment") == served, (served, r.headers)
        assert r.headers.get("x-llmroute-attempts") == "1", r.headers
        assert r.headers.get("x-llmroute-model-group") == GROUP, r.headers
        seen.add(served)
    assert seen == {"dep-a", "dep-b"}, "20 requests all went to %s" % seen
    # without model_info.id the id is a stable hash, the same one status shows
    r = chat(d.port, model="other")
    assert r.status == 200, r
    dep = r.headers.get("x-llmroute-deployment")
    assert dep and dep not in ("dep-a", "dep-b"), r.headers
    assert r.headers.get("x-llmroute-model-group") == "other", r.headers
    assert dep in status_rows(d), (dep, status_rows(d))
    assert chat(d.port, model="other").headers.get("x-llmroute-deployment") == dep
    # an upstream error is a routed response too
    r = chat(d.port, model="other", extra={"x_mock": {"status": 500}})
    assert r.status == 500, r
    assert r.headers.get("x-llmroute-deployment") == dep, r.headers
    assert r.headers.get("x-llmroute-model-group") == "other", r.headers
    assert r.headers.get("x-llmroute-attempts", "").isdigit(), r.headers


# ---------------------------------------------------------------- usage counters

def test_usage_counters_match_the_mock():
    ma, mb = Mock("a"), Mock("b")
    d = Daemon([deployment(GROUP, ma, dep_id="use-a"), deployment("emb", mb, dep_id="use-b")],
               workers=2)
    n_a = 0
    for i in range(9):
        op, extra, _ = OPS[i % 2]            # chat and completions
        body = dict(extra, model=GROUP, user="x" * (i * 37))
        assert request(d.port, "POST", "/v1/" + op, body).status == 200
        n_a += 1
    n_b = 0
    for i in range(4):
        op, extra, _ = OPS[2 if i % 2 else 0]  # embeddings and chat
        body = dict(extra, model="emb", user="y" * (i * 101))
        assert request(d.port, "POST", "/v1/" + op, body).status == 200
        n_b += 1
    for m, dep, n in ((ma, "use-a", n_a), (mb, "use-b", n_b)):
        st = m.stats()
        assert st["requests"] == n, st
        assert st["prompt_tokens"] > 0, st

        def matches():
            row = status_rows(d)[dep]
            return (row["REQUESTS"] == str(n) and row["SUCCESS"] == str(n)
                    and row["FAILED"] == "0" and row["INFLIGHT"] == "0"
                    and row["PROMPT_TOK"] == str(st["prompt_tokens"])
                    and row["COMPL_TOK"] == str(st["completion_tokens"]))
        try:
            wait_for(matches, 3, "status of %s to match the mock" % dep)
        except TestFailure:
            raise TestFailure("%s: status %s, mock requests %d prompt_tokens %d "
                              "completion_tokens %d" % (dep, status_rows(d)[dep], st["requests"],
                                                        st["prompt_tokens"],
                                                        st["completion_tokens"]))


def test_usage_not_counted_for_upstream_errors():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, dep_id="u")], workers=2,
               router="num_retries = 0; cooldown_time = 0.0;")
    assert chat(d.port).status == 200
    assert chat(d.port, extra={"x_mock": {"status": 500}}).status == 500
    assert chat(d.port, extra={"x_mock": {"error": "context_length"}}).status == 400
    st = m.stats()
    row = status_rows(d)["u"]
    assert row["REQUESTS"] == "3", row
    assert row["SUCCESS"] == "1" and row["FAILED"] == "2", row
    assert row["PROMPT_TOK"] == str(st["prompt_tokens"]), (row, st)
    assert row["COMPL_TOK"] == str(st["completion_tokens"]), (row, st)
