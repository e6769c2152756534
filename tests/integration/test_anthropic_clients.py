"""The official SDKs with Anthropic both ways (issue 16): the Anthropic Node
SDK (@anthropic-ai/sdk, pinned in tests/clients/package-lock.json) against
/v1/messages routed to an OpenAI deployment (translated) and to a Claude
deployment (passed through), and the OpenAI Node SDK against a Claude
deployment.  The SDK checks what it receives (event order, shapes) itself;
the tests assert on what it returned and what the mock upstream got."""
import json

from harness import Daemon, Mock, deployment
from test_anthropic import claude
from test_clients import MASTER, node, result

GPT, CLAUDE = "gpt-4o", "claude"


def setup():
    from test_clients import install
    install()
    o, c = Mock("oai"), Mock("ant")
    d = Daemon([deployment(GPT, o, model="mock-gpt"), claude(CLAUDE, c, model="claude-up")],
               workers=2, server='master_key = "%s";' % MASTER, router="num_retries = 0;")
    return o, c, d


def run(case, d, model):
    return result(node("anthropic", case, d, model=model, root=True))


def test_anthropic_sdk_to_openai_deployment():
    o, _, d = setup()
    r = run("messages", d, GPT)
    assert r["type"] == "message" and r["role"] == "assistant", r
    assert r["content"] == [{"type": "text", "text": "mock reply"}], r
    assert r["stop"] == "end_turn" and r["usage"]["output_tokens"] == 5, r
    up = json.loads(o.stats()["last"]["body"])
    assert up["messages"][0] == {"role": "system", "content": "be brief"}, up
    r = run("messages_stream", d, GPT)
    assert r["text"] == "tok0 tok1 tok2 ", r
    assert r["types"][0] == "message_start" and r["types"][-1] == "message_stop", r
    assert r["final"] == [{"type": "text", "text": "tok0 tok1 tok2 "}], r
    assert r["stop"] == "end_turn" and r["usage"]["output_tokens"] == 3, r
    o.config(tool_call=1)
    r = run("messages_tools", d, GPT)
    assert r["stop"] == "tool_use" and r["name"] == "get_weather", r
    assert r["input"] == {"city": "Paris"}, r
    up = json.loads(o.stats()["last"]["body"])
    assert up["messages"][-1]["role"] == "tool" and up["messages"][-1]["content"] == "sunny", up
    r = run("messages_tools_stream", d, GPT)
    assert r["stop"] == "tool_use" and r["input"] == {"city": "Paris"}, r
    assert json.loads(r["json"]) == {"city": "Paris"}, r
    r = run("count_tokens", d, GPT)
    assert r["input_tokens"] > 0, r
    out = node("anthropic", "error", d, model="no-such-group", root=True)
    assert out["thrown"]["status"] == 404 and out["thrown"]["name"] == "NotFoundError", out


def test_anthropic_sdk_to_claude_pass_through():
    _, c, d = setup()
    r = run("messages", d, CLAUDE)
    assert r["content"] == [{"type": "text", "text": "mock reply"}], r
    last = c.stats()["last"]
    assert last["path"] == "/v1/messages", last
    assert MASTER not in json.dumps(last["headers"]), last["headers"]
    assert json.loads(last["body"])["model"] == "claude-up", last
    r = run("messages_stream", d, CLAUDE)
    assert r["text"] == "tok0 tok1 tok2 " and r["types"][-1] == "message_stop", r
    c.config(tool_call=1)
    r = run("messages_tools_stream", d, CLAUDE)
    assert r["stop"] == "tool_use" and r["input"] == {"city": "Paris"}, r
    c.config(tool_call=0, status=529)
    out = node("anthropic", "error", d, model=CLAUDE, root=True)
    assert out["thrown"]["status"] == 529, out


def test_openai_sdk_to_claude_deployment():
    _, c, d = setup()
    out = node("openai", "chat", d, model=CLAUDE)
    r = result(out)
    assert r["content"] == "mock reply" and r["finish"] == "stop", r
    assert r["usage"]["completion_tokens"] == 5, r
    r = result(node("openai", "stream", d, model=CLAUDE))
    assert r["content"] == "tok0 tok1 tok2 " and r["finish"] == "stop", r
    assert r["usage"]["completion_tokens"] == 3, r
    c.config(tool_call=1)
    r = run("openai_tools", d, CLAUDE)
    assert r["finish"] == "tool_calls", r
    assert r["calls"][0]["function"]["name"] == "get_weather", r
    assert json.loads(r["calls"][0]["function"]["arguments"]) == {"city": "Paris"}, r
    r = run("openai_tools_stream", d, CLAUDE)
    assert r["name"] == "get_weather" and json.loads(r["args"]) == {"city": "Paris"}, r
    assert r["finish"] == "tool_calls" and r["usage"]["completion_tokens"] == 3, r
