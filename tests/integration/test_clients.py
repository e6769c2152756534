"""The official client SDKs against a real llmroute (issue 11: "Tried as a new
user would with the official OpenAI SDK, the Vercel AI SDK and LangChain JS").

Each test starts llmroute (2 workers, a master key) in front of a mock
upstream and runs a script of tests/clients/ in node, the SDK set up the way
the README's "Clients" section shows; it asserts on what the SDK returned AND
on what the mock upstream received.  The SDKs are the exact versions of
tests/clients/package-lock.json, installed by scripts/install-clients.sh
(`scripts/install-deps.sh test` runs it; the first test here runs it too,
which costs nothing once they are installed)."""
import json
import os
import subprocess

from harness import ROOT, SLOW, Daemon, Mock, TestFailure, deployment, minute_room, timeout

CLIENTS = os.path.join(ROOT, "tests", "clients")
MASTER = "sk-llmroute-client-test"
UPSTREAM_KEY = "sk-upstream-secret-1"
CHAT, EMBED = "gpt-4o", "text-embedding-3-small"
STREAM_TEXT = "tok0 tok1 tok2 "     # the mock's default 3 chunks
_installed = []


def install():
    """scripts/install-clients.sh once per run (a checksum test when nothing
    changed; the npm registry only on a fresh tree)."""
    if _installed:
        return
    r = subprocess.run([os.path.join(ROOT, "scripts", "install-clients.sh")],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise TestFailure("scripts/install-clients.sh failed (%d):\n%s%s" %
                          (r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    _installed.append(True)


def setup(router="num_retries = 0;"):
    """A mock and llmroute with a chat and an embeddings group, the client's
    key as master_key; num_retries 0 so that each SDK call is one upstream
    call unless a test asks for more."""
    install()
    m = Mock("up")
    d = Daemon([deployment(CHAT, m, model="mock-gpt", key=UPSTREAM_KEY),
                deployment(EMBED, m, model="mock-embed", key=UPSTREAM_KEY)],
               workers=2, server='master_key = "%s";' % MASTER, router=router)
    return m, d


def node(script, case, d, model=CHAT, root=False, key=MASTER):
    """Runs tests/clients/<script>.mjs <case>; returns its JSON line.  The
    base URL is llmroute's /v1 (root=True: without it, for AzureOpenAI)."""
    env = dict(os.environ, LLMR_BASE_URL="http://127.0.0.1:%d%s" % (d.port, "" if root else "/v1"),
               LLMR_API_KEY=key, LLMR_MODEL=model)
    try:
        r = subprocess.run(["node", script + ".mjs", case], cwd=CLIENTS, env=env,
                           capture_output=True, text=True, timeout=30 * SLOW)
    except subprocess.TimeoutExpired as e:
        raise TestFailure("node %s %s ran past 30 s: %s" % (script, case, e.stderr))
    if r.returncode != 0 or not r.stdout.strip():
        raise TestFailure("node %s %s exited %d:\n%s" % (script, case, r.returncode,
                                                         r.stderr[-3000:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


def result(out):
    assert "result" in out, "the SDK threw: %r" % out
    return out["result"]


def upstream_saw(m, path):
    """The mock's last request: at path, with the deployment's key and none
    of the client's."""
    last = m.stats()["last"]
    assert last["path"] == path, last
    h = last["headers"]
    assert h.get("authorization") == "Bearer " + UPSTREAM_KEY, h
    assert MASTER not in json.dumps(h), h
    return last, json.loads(last["body"])


# ---------------------------------------------------------------- OpenAI SDK

@timeout(90)
def test_openai_node_sdk_chat_stream_completions_models():
    """new OpenAI({baseURL: ".../v1", apiKey}): chat, streamed chat
    assembled from its chunks, legacy completions, the models list."""
    m, d = setup()
    r = result(node("openai", "chat", d))
    assert r["content"] == "mock reply" and r["finish"] == "stop", r
    assert r["model"] == "mock-gpt" and r["usage"]["completion_tokens"] == 5, r
    last, body = upstream_saw(m, "/v1/chat/completions")
    assert body["model"] == "mock-gpt", body
    assert body["messages"] == [{"role": "user", "content": "hello from the OpenAI SDK"}], body

    r = result(node("openai", "stream", d))
    assert r["content"] == STREAM_TEXT and r["finish"] == "stop", r
    assert r["usage"] and r["usage"]["completion_tokens"] == 3, r    # one per chunk
    last, body = upstream_saw(m, "/v1/chat/completions")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}, body

    r = result(node("openai", "completions", d))
    assert r["model"] == "mock-gpt" and r["text"] == "mock reply", r
    last, body = upstream_saw(m, "/v1/completions")
    assert body["prompt"] == "say hi" and body["max_tokens"] == 5, body

    r = result(node("openai", "models", d))
    assert CHAT in r["ids"] and EMBED in r["ids"], r
    assert m.stats()["requests"] == 3      # the models list is llmroute's own


def test_openai_node_sdk_embeddings():
    m, d = setup()
    r = result(node("openai", "embeddings", d, model=EMBED))
    assert r["count"] == 1 and r["embedding"] == [0.1, 0.2, 0.3], r
    last, body = upstream_saw(m, "/v1/embeddings")
    assert body == {"model": "mock-embed", "input": "embed me", "encoding_format": "float"}, body


def test_openai_node_sdk_tools_request_shape_passes_through():
    """Function calling: the tools and tool_choice the SDK sends reach the
    upstream as they were sent."""
    m, d = setup()
    r = result(node("openai", "tools", d))
    assert r["content"] == "mock reply", r
    last, body = upstream_saw(m, "/v1/chat/completions")
    assert body["tool_choice"] == "auto", body
    fn = body["tools"][0]["function"]
    assert body["tools"][0]["type"] == "function" and fn["name"] == "get_weather", body
    assert fn["parameters"]["required"] == ["city"], fn


def test_openai_node_sdk_errors_are_its_error_classes():
    """llmroute's 404 model_not_found is the SDK's NotFoundError with that
    code; a wrong key its AuthenticationError; an upstream 429 passed through
    its RateLimitError with the Retry-After (maxRetries 0, num_retries 0:
    exactly one upstream call)."""
    m, d = setup()
    t = node("openai", "error", d, model="no-such-model")["thrown"]
    assert (t["name"], t["status"], t["code"]) == ("NotFoundError", 404, "model_not_found"), t
    assert "no-such-model" in t["message"], t
    t = node("openai", "error", d, key="sk-wrong")["thrown"]
    assert (t["name"], t["status"], t["code"]) == \
        ("AuthenticationError", 401, "invalid_api_key"), t
    assert m.stats()["requests"] == 0

    m.config(status=429, retry_after=7)
    t = node("openai", "error", d)["thrown"]
    assert (t["name"], t["status"]) == ("RateLimitError", 429), t
    assert t["retryAfter"] == "7", t
    assert m.stats()["requests"] == 1


def test_openai_node_sdk_default_retries_stack_with_llmroutes():
    """The README's "retries stack with the client's", as the SDK really
    does it: with its default 2 retries and llmroute's default num_retries 2,
    an upstream that fails with 500 gets 3 calls for the SDK's first try and
    a 4th for its second, which cools the group's only deployment; the SDK's
    third try is answered 429 no_deployment_available without an upstream
    call, and that is what the caller gets.  The four failures must fall in
    one calendar minute to add up (a boundary between them made CI red)."""
    m, d = setup(router="")
    m.config(status=500)
    minute_room(8 * SLOW)
    t = node("openai", "error_default_retries", d)["thrown"]
    assert (t["name"], t["status"], t["code"]) == \
        ("RateLimitError", 429, "no_deployment_available"), t
    st = m.stats()
    assert st["requests"] == 4 and st["statuses"] == {"500": 4}, st

# ---------------------------------------------------------------- Vercel AI SDK

def test_vercel_ai_sdk_chat_model_generate_and_stream():
    """createOpenAI({baseURL, apiKey}) with openai.chat(id): generateText and
    streamText over /chat/completions."""
    m, d = setup()
    r = result(node("vercel", "chat", d))
    assert r["text"] == "mock reply" and r["finish"] == "stop", r
    assert r["usage"]["outputTokens"] == 5, r
    last, body = upstream_saw(m, "/v1/chat/completions")
    assert body["model"] == "mock-gpt", body
    assert body["messages"] == [{"role": "user", "content": "hello from the Vercel AI SDK"}], \
        body

    r = result(node("vercel", "stream", d))
    assert r["text"] == STREAM_TEXT and r["finish"] == "stop", r
    last, body = upstream_saw(m, "/v1/chat/completions")
    assert body["stream"] is True, body
    assert m.stats()["requests"] == 2


# ---------------------------------------------------------------- LangChain JS

def test_langchain_chat_openai_invoke_and_stream():
    """new ChatOpenAI({model, apiKey, configuration: {baseURL}})."""
    m, d = setup()
    r = result(node("langchain", "chat", d))
    assert r["content"] == "mock reply", r
    last, body = upstream_saw(m, "/v1/chat/completions")
    assert body["model"] == "mock-gpt", body
    assert body["messages"] == [{"role": "user", "content": "hello from LangChain"}], body

    r = result(node("langchain", "stream", d))
    assert r["content"] == STREAM_TEXT, r
    last, body = upstream_saw(m, "/v1/chat/completions")
    assert body["stream"] is True, body
    assert m.stats()["requests"] == 2


# ---------------------------------------------------------------- more of each SDK

def test_openai_node_sdk_embeddings_base64_default():
    """The SDK's default embeddings call asks for base64 and decodes the
    float32s itself; one embedding per input (the mock of h11-upfeat, item 8)."""
    m, d = setup()
    r = result(node("openai", "embeddings_default", d, model=EMBED))
    assert r["count"] == 2, r
    for e in r["embeddings"]:
        assert [round(x, 6) for x in e] == [0.1, 0.2, 0.3], r
    last, body = upstream_saw(m, "/v1/embeddings")
    assert body["encoding_format"] == "base64" and body["input"] == ["one", "two"], body


def test_azure_openai_client_chat_stream_embeddings():
    """new AzureOpenAI({endpoint, apiKey, apiVersion, deployment}) unchanged:
    /openai/deployments/{name}/...?api-version= with the api-key header, the
    deployment name taken as the model group (item 2 of h11-routes)."""
    m, d = setup()
    r = result(node("azure", "chat", d, root=True))
    assert r["content"] == "mock reply" and r["model"] == "mock-gpt", r
    last, body = upstream_saw(m, "/v1/chat/completions")
    assert body["model"] == "mock-gpt", body
    assert body["messages"] == [{"role": "user", "content": "hello from AzureOpenAI"}], body

    r = result(node("azure", "stream", d, root=True))
    assert r["content"] == STREAM_TEXT, r
    last, body = upstream_saw(m, "/v1/chat/completions")
    assert body["stream"] is True, body

    r = result(node("azure", "embeddings", d, model=EMBED, root=True))
    assert r["count"] == 1 and r["embedding"] == [0.1, 0.2, 0.3], r
    upstream_saw(m, "/v1/embeddings")

    t = node("azure", "chat", d, root=True, key="sk-wrong")["thrown"]
    assert (t["name"], t["status"]) == ("AuthenticationError", 401), t
    assert m.stats()["requests"] == 3


def test_vercel_ai_sdk_default_model_uses_responses():
    """generateText({model: openai(id)}), the first line of the Vercel AI
    SDK's examples, and streamText with it: /v1/responses (h11-resp, item 1)."""
    m, d = setup()
    r = result(node("vercel", "responses", d))
    assert r["text"] == "mock reply", r
    last, body = upstream_saw(m, "/v1/responses")
    assert body["model"] == "mock-gpt", body
    assert "hello from the Vercel AI SDK" in json.dumps(body["input"]), body

    r = result(node("vercel", "responses_stream", d))
    assert r["text"] == STREAM_TEXT, r
    last, body = upstream_saw(m, "/v1/responses")
    assert body["stream"] is True, body
    assert m.stats()["requests"] == 2


def test_openai_node_sdk_responses_plain_and_streamed():
    """client.responses.create, as OpenAI's newer examples write it: the
    answer's output_text, and the stream's events from response.created to
    response.completed with its usage (h11-resp, item 1)."""
    m, d = setup()
    r = result(node("openai", "responses", d))
    assert r["status"] == "completed" and r["text"] == "mock reply", r
    assert r["usage"]["output_tokens"] == 5, r
    last, body = upstream_saw(m, "/v1/responses")
    assert body == {"model": "mock-gpt", "input": "hello from responses"}, body

    r = result(node("openai", "responses_stream", d))
    assert r["text"] == STREAM_TEXT, r
    assert (r["first"], r["last"]) == ("response.created", "response.completed"), r
    assert r["usage"]["output_tokens"] == 3, r
    last, body = upstream_saw(m, "/v1/responses")
    assert body["stream"] is True, body
    assert m.stats()["requests"] == 2
