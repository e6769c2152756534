"""Issue 11, items 6 and 8: the upstream's request id and rate-limit headers
reach the client, llmroute answers every response with an x-request-id of
its own when the upstream gave none, and the mock's embeddings answer one
vector per input, as base64 float32 when asked (the SDKs' default)."""
import base64
import re
import struct

import harness
from harness import Daemon, Mock, chat, deployment, raw_exchange, request, wait_for

GROUP = "emb"


def embed(port, **body):
    r = request(port, "POST", "/v1/embeddings", dict(body, model=GROUP))
    assert r.status == 200, r
    return r.json()["data"]


def test_embeddings_one_per_input_and_base64():
    m = Mock("emb")
    d = Daemon([deployment(GROUP, m)], workers=2)
    floats = [0.1, 0.2, 0.3]
    cases = (("hello", 1), (["a", "b", "c"], 3), ([1, 2, 3, 4], 1),
             ([[1, 2], [3], [4, 5, 6]], 3))
    for inp, n in cases:
        data = embed(d.port, input=inp)
        assert [e["index"] for e in data] == list(range(n)), (inp, data)
        for e in data:
            assert e["embedding"] == floats, e
        data = embed(d.port, input=inp, encoding_format="base64")
        assert len(data) == n, (inp, data)
        for e in data:
            raw = base64.b64decode(e["embedding"], validate=True)
            got = struct.unpack("<%df" % (len(raw) // 4), raw)
            assert len(got) == 3 and all(abs(a - b) < 1e-6 for a, b in zip(got, floats)), got
    # an odd byte count exercises the padding; many dimensions several blocks
    for dims in (1, 2, 1000):
        r = request(d.port, "POST", "/v1/embeddings",
                    {"model": GROUP, "input": ["x", "y"], "encoding_format": "base64",
                     "x_mock": {"embedding_dims": dims}})
        assert r.status == 200, r
        for e in r.json()["data"]:
            raw = base64.b64decode(e["embedding"], validate=True)
            assert len(raw) == 4 * dims, (dims, len(raw))
            got = struct.unpack("<%df" % dims, raw)
            if dims == 1000:
                assert abs(got[1] - (-7919 / 1e10)) < 1e-12, got[:3]
    # the embeddings knob still wins when given
    r = request(d.port, "POST", "/v1/embeddings",
                {"model": GROUP, "input": "x", "x_mock": {"embeddings": 4}})
    assert len(r.json()["data"]) == 4, r


# ------------------------------------------------------------- item 6: ids

ID_RE = re.compile(r"^req_[0-9a-f]{24}$")
KEPT = ("x-request-id", "openai-processing-ms", "x-ratelimit-remaining-requests")


def test_upstream_request_id_and_ratelimit_headers_reach_the_client():
    m = Mock("ids")
    d = Daemon([deployment("chat", m)], workers=2)
    three = {"x_mock": {"upstream_headers": 3}}
    r = chat(d.port, model="chat", extra=three)
    assert r.status == 200, r
    assert re.match(r"^req-mock-\d+$", r.headers.get("x-request-id", "")), r.headers
    assert r.headers.get("openai-processing-ms") == "7", r.headers
    assert r.headers.get("x-ratelimit-remaining-requests") == "99", r.headers
    r = chat(d.port, model="chat", content="hi", extra=dict(three, stream=True))
    status, h, body = r.status, r.headers, r.body
    assert status == 200 and b"[DONE]" in body, (status, body)
    assert re.match(r"^req-mock-\d+$", h.get("x-request-id", "")), h
    assert all(k in h for k in KEPT), h
    # the upstream's failure passed on keeps its id, and the log names it
    r = chat(d.port, model="chat", extra={"x_mock": {"upstream_headers": 1, "status": 400}})
    assert r.status == 400, r
    up = r.headers.get("x-request-id", "")
    assert up.startswith("req-mock-"), r.headers
    wait_for(lambda: ("upstream x-request-id " + up) in d.log_text(), 10, "the log line")
    # bounded: of 40 such headers at most 12 come through, each once
    r = chat(d.port, model="chat", extra={"x_mock": {"upstream_headers": 40}})
    assert r.status == 200, r
    extra = [k for k in r.headers if k.startswith("x-ratelimit-extra-")]
    assert 0 < len(extra) and len(extra) + 3 <= 12, r.headers


def test_own_request_id_on_every_response_when_upstream_gave_none():
    m = Mock("noid")
    dead = harness.free_port()
    gone = ('{ model_name = "gone"; litellm_params = { model = "openai/x"; '
            'api_base = "http://127.0.0.1:%d/v1"; }; }' % dead)
    d = Daemon([deployment("chat", m), gone], workers=2, router="num_retries = 0;")
    seen = set()
    for _ in range(4):
        r = chat(d.port, model="chat")
        assert r.status == 200, r
        seen.add(r.headers.get("x-request-id", ""))
        assert not any(k in r.headers for k in KEPT[1:]), r.headers
    r = chat(d.port, model="chat", content="hi", extra={"stream": True})
    status, h = r.status, r.headers
    assert status == 200 and b"[DONE]" in r.body, (status, r.body)
    seen.add(h.get("x-request-id", ""))
    # llmroute's own errors: unknown model, bad JSON, unknown path, /v1/models
    for r in (chat(d.port, model="nope"),
              request(d.port, "POST", "/v1/chat/completions", "{not json"),
              request(d.port, "GET", "/v1/nothing"),
              request(d.port, "GET", "/v1/models")):
        assert r.status in (200, 400, 404), r
        seen.add(r.headers.get("x-request-id", ""))
    # a request refused at the framing layer (two Content-Lengths)
    head, _ = raw_exchange(d.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", until="head")
    assert head.startswith(b"HTTP/1.1 400"), head
    m_id = re.search(rb"\r\nx-request-id: (\S+)\r\n", head)
    assert m_id, head
    seen.add(m_id.group(1).decode())
    assert len(seen) == 10 and all(ID_RE.match(i) for i in seen), seen
    # an upstream that cannot be reached: our 502 carries our id, and the
    # warn line of the failed attempt names the same id
    r = chat(d.port, model="gone")
    assert r.status == 502, r
    rid = r.headers.get("x-request-id", "")
    assert ID_RE.match(rid), r.headers
    wait_for(lambda: any(rid in ln and "failed" in ln for ln in d.log_text().splitlines()),
             10, "the failure's log line with the request id")
