"""The proxy path: routing, rewrite, provider URLs and headers, usage."""
import json

from harness import Daemon, Mock, chat, deployment, request, wait_for


def test_chat_roundtrip_and_model_rewrite():
    m = Mock("a")
    d = Daemon([deployment("gpt-3.5-turbo", m, model="gpt-35-upstream", dep_id="dep-a")])
    body = '{"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi \\u00e9"}], "temperature": 0.25, "x": [1, 2.50, {"a": null}]}'
    r = request(d.port, "POST", "/v1/chat/completions", body)
    assert r.status == 200, r
    assert r.json()["object"] == "chat.completion"
    assert r.headers["x-llmroute-deployment"] == "dep-a"
    assert r.headers["x-llmroute-attempts"] == "1"
    assert r.headers["x-llmroute-model-group"] == "gpt-3.5-turbo"
    last = m.stats()["last"]
    assert last["path"] == "/v1/chat/completions", last
    # byte for byte except the model value
    assert last["body"] == body.replace('"gpt-3.5-turbo"', '"gpt-35-upstream"'), last["body"]
    assert "authorization" not in last["headers"] or last["headers"]["authorization"] != ""
