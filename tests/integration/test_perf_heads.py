"""Reply heads after the fifth performance round (issue 17): llmroute's own
headers reach evhttp as one entry whose value carries the other lines
(worker/hblock.c), and the Content-Length of a reply is set by llmroute.
What a client reads must not change: checked here on the raw bytes, not
through a client library that would forgive a folded or doubled line.

- every line of a head is "name: value" with a token name and no CR or LF
  inside it, and each header llmroute sends appears exactly once;
- proxied answers, streams, fallbacks, cache misses and hits, llmroute's
  own errors, HTTP/1.0 clients;
- Content-Length is the body's length on every reply that has one, HTTP/1.0
  included; a HEAD reply has the length and no body (evhttp sent the body,
  which a kept-alive client read as the start of the next response);
- GET resources answer HEAD (as nginx and LiteLLM do), not 405."""
import json
import re

import harness
from harness import Daemon, Mock, deployment, raw_exchange
from test_cache import CacheDaemon

LINE_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\r\n]*$")
BODY = {"model": "g", "messages": [{"role": "user", "content": "hello"}]}


def post(path, body, version=b"1.1"):
    data = json.dumps(body).encode()
    return (b"POST " + path.encode() + b" HTTP/" + version + b"\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)


def head_of(raw):
    """(status line, {lower-case name: [values]}, body) of one response,
    every header line checked for shape."""
    end = raw.find(b"\r\n\r\n")
    assert end > 0, raw[:300]
    lines = raw[:end].split(b"\r\n")
    names = {}
    for line in lines[1:]:
        assert LINE_RE.match(line), (line, raw[:end])
        name, value = line.split(b": ", 1)
        names.setdefault(name.decode().lower(), []).append(value.decode())
    return lines[0], names, raw[end + 4:]


def once(names, *wanted):
    for n in wanted:
        assert len(names.get(n, [])) == 1, (n, names)


def exchange(port, data):
    raw, _ = raw_exchange(port, data, until="close")
    return head_of(raw)


def test_proxied_heads_have_each_header_once():
    """A proxied answer with the upstream's ids and rate-limit headers, a
    stream, and an upstream's error passed on."""
    m = Mock("heads")
    d = Daemon([deployment("g", m, dep_id="dep-a")], workers=2)
    three = dict(BODY, x_mock={"upstream_headers": 3})
    status, h, body = exchange(d.port, post("/v1/chat/completions", three))
    assert status == b"HTTP/1.1 200 OK", status
    once(h, "x-request-id", "x-llmroute-deployment", "x-llmroute-attempts",
         "x-llmroute-model-group", "openai-processing-ms", "x-ratelimit-remaining-requests",
         "content-type", "date", "content-length")
    assert h["x-llmroute-deployment"] == ["dep-a"] and h["x-llmroute-attempts"] == ["1"], h
    assert h["x-llmroute-model-group"] == ["g"], h
    assert h["x-request-id"][0].startswith("req-mock-"), h
    assert int(h["content-length"][0]) == len(body), (h, len(body))
    assert json.loads(body)["object"] == "chat.completion", body[:200]

    stream = dict(three, stream=True)
    stream["x_mock"] = dict(three["x_mock"], chunks=3)
    status, h, body = exchange(d.port, post("/v1/chat/completions", stream))
    assert status == b"HTTP/1.1 200 OK", status
    once(h, "x-request-id", "x-llmroute-deployment", "x-llmroute-attempts",
         "x-llmroute-model-group", "x-ratelimit-remaining-requests", "content-type",
         "cache-control", "transfer-encoding", "date")
    assert "content-length" not in h and b"[DONE]" in body, (h, body[-200:])

    err = dict(BODY, x_mock={"upstream_headers": 1, "status": 400})
    status, h, body = exchange(d.port, post("/v1/chat/completions", err))
    assert status.startswith(b"HTTP/1.1 400"), status
    once(h, "x-request-id", "x-llmroute-attempts", "content-length")
    assert int(h["content-length"][0]) == len(body), (h, body)

    # 40 upstream headers: at most 12 kept, each a line of its own
    many = dict(BODY, x_mock={"upstream_headers": 40})
    status, h, body = exchange(d.port, post("/v1/chat/completions", many))
    assert status == b"HTTP/1.1 200 OK", status
    extra = [n for n in h if n.startswith("x-ratelimit-extra-")]
    assert 0 < len(extra) and len(extra) + 3 <= 12, h
    for n in extra:
        once(h, n)


def test_fallback_and_own_error_heads():
    """The fallback's name in its own line; llmroute's own 404 and 400."""
    m = Mock("fb")
    dead = harness.free_port()
    gone = ('{ model_name = "a"; litellm_params = { model = "openai/x"; '
            'api_base = "http://127.0.0.1:%d/v1"; }; model_info = { id = "dead"; }; }' % dead)
    d = Daemon([gone, deployment("b", m, dep_id="live")], workers=2,
               router='num_retries = 0; fallbacks = ( { model = "a"; fallbacks = ["b"]; } );')
    status, h, body = exchange(d.port, post("/v1/chat/completions", dict(BODY, model="a")))
    assert status == b"HTTP/1.1 200 OK", (status, body[:300])
    once(h, "x-llmroute-fallback", "x-llmroute-deployment", "x-llmroute-model-group",
         "x-llmroute-attempts", "content-length")
    assert h["x-llmroute-fallback"] == ["b"] and h["x-llmroute-deployment"] == ["live"], h
    assert h["x-llmroute-model-group"] == ["a"] and h["x-llmroute-attempts"] == ["2"], h
    for body in (dict(BODY, model="nope"), "{bad"):
        data = body if isinstance(body, str) else json.dumps(body)
        req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(data), data.encode()))
        status, h, out = exchange(d.port, req)
        assert status.startswith(b"HTTP/1.1 4"), status
        once(h, "x-request-id", "content-type", "date", "content-length")
        assert int(h["content-length"][0]) == len(out), (h, out)
        assert "error" in json.loads(out), out


def test_cache_hit_head():
    m = Mock("c")
    d = CacheDaemon([deployment("g", m, dep_id="a")], workers=1)
    body = dict(BODY, messages=[{"role": "user", "content": "heads of a hit"}])
    status, h, first = exchange(d.port, post("/v1/chat/completions", body))
    assert status == b"HTTP/1.1 200 OK" and h["x-llmroute-cache"] == ["miss"], (status, h)
    once(h, "x-llmroute-cache-key", "x-llmroute-deployment", "x-llmroute-model-group")
    key = h["x-llmroute-cache-key"][0]
    harness.wait_for(lambda: exchange(d.port, post("/v1/chat/completions", body))[1]
                     .get("x-llmroute-cache") == ["hit"], 10, "a cache hit")
    status, h, again = exchange(d.port, post("/v1/chat/completions", body))
    assert status == b"HTTP/1.1 200 OK", status
    once(h, "x-llmroute-cache", "x-llmroute-cache-key", "x-llmroute-model-group",
         "content-type", "content-length", "date", "x-request-id")
    assert h["x-llmroute-cache"] == ["hit"] and h["x-llmroute-cache-key"] == [key], h
    assert int(h["content-length"][0]) == len(again) and again == first, (h, again, first)


def test_content_length_as_evhttp_sent_it():
    """HTTP/1.0 and 1.1 get the body's length; HEAD its length without the
    body; a keep-alive 1.1 connection carries two answers framed by it."""
    m = Mock("cl")
    d = Daemon([deployment("g", m)], workers=1)
    for version in (b"1.0", b"1.1"):
        status, h, body = exchange(d.port, b"GET /health/liveliness HTTP/" + version +
                                   b"\r\nHost: x\r\n\r\n" if version == b"1.0" else
                                   b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n")
        assert status.startswith(b"HTTP/" + version + b" 200"), status
        once(h, "content-length")
        assert int(h["content-length"][0]) == len(body) > 0, (h, body)
        status, h, body = exchange(d.port, post("/v1/chat/completions", BODY, version))
        assert status.startswith(b"HTTP/" + version + b" 200"), status
        assert int(h["content-length"][0]) == len(body), (h, body)
    # HEAD: the length the body would have had, and no body
    status, h, body = exchange(d.port, b"HEAD /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: close\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 405") and body == b"", (status, h, body)
    once(h, "content-length")
    assert int(h["content-length"][0]) > 0 and h["allow"] == ["POST"], h
    two = (b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw, _ = raw_exchange(d.port, two, until="close")
    status, h, rest = head_of(raw)
    n = int(h["content-length"][0])
    status2, h2, body2 = head_of(rest[n:])
    assert status2 == b"HTTP/1.1 200 OK", rest[:300]
    assert int(h2["content-length"][0]) == len(body2), (h2, body2)
    assert json.loads(body2)["object"] == "list", body2


def test_head_reply_has_no_body_on_a_kept_alive_connection():
    """Regression: evhttp wrote a HEAD reply's body, so the next response
    on the connection began with the JSON of the 405 and the client lost
    the framing."""
    m = Mock("head")
    d = Daemon([deployment("g", m)], workers=1)
    two = (b"HEAD /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw, _ = raw_exchange(d.port, two, until="close")
    status, h, rest = head_of(raw)
    assert status.startswith(b"HTTP/1.1 405"), raw[:300]
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), raw
    status2, h2, body2 = head_of(rest)
    assert int(h2["content-length"][0]) == len(body2), (h2, body2)


def test_get_resources_answer_head():
    """GET resources answer HEAD as nginx and LiteLLM do: the GET's status
    and head, its length, no body; the connection stays in step. A 405 of
    a GET resource allows "GET, HEAD"; the master key still applies."""
    m = Mock("head")
    d = Daemon([deployment("g", m)], workers=1, server='master_key = "sk-master";')
    auth = b"Authorization: Bearer sk-master\r\n"
    for path in (b"/health/liveliness", b"/health/readiness", b"/v1/models", b"/v1/models/g",
                 b"/metrics", b"/status.json", b"/ui"):
        get = exchange(d.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + auth +
                       b"Connection: close\r\n\r\n")
        two = (b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
               b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw, _ = raw_exchange(d.port, two, until="close")
        status, h, rest = head_of(raw)
        assert status == get[0] == b"HTTP/1.1 200 OK", (path, status, get[0])
        assert h["content-length"] == get[1]["content-length"], (path, h, get[1])
        assert h["content-type"] == get[1]["content-type"], (path, h, get[1])
        assert int(h["content-length"][0]) == len(get[2]) > 0, (path, h, len(get[2]))
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), (path, raw[:400])
    # the key is checked for HEAD as for GET
    status, h, body = exchange(d.port, b"HEAD /v1/models HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: close\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 401") and body == b"", (status, h, body)
    status, h, body = exchange(d.port, b"POST /v1/models HTTP/1.1\r\nHost: x\r\n" + auth +
                               b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert status.startswith(b"HTTP/1.1 405") and h["allow"] == ["GET, HEAD"], (status, h)
