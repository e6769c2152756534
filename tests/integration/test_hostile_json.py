"""Hostile JSON (issue 9, items 2, 6 and 11).

- Parsing and validating a request body is linear whatever its shape: a
  1 MiB body built to be slow (wide arrays of empty containers, deep nests,
  many keys) costs a worker under 100 ms of CPU, measured from
  /proc/<pid>/stat.  The old parser took 46 s on the first of them.
- A big upstream answer is relayed byte for byte and its usage counted, at a
  cost linear in its size.
- A body that repeats a field llmroute reads ("model", also written
  "mod\\u0065l") is refused before anything goes upstream.
- An error naming a client's bytes is valid JSON whatever the bytes.
"""
import hashlib
import json
import os
import sys

from harness import (ROOT, SANITIZED, Daemon, Mock, deployment, free_port, proc_cpu_s,
                     raw_exchange, request, status_rows, wait_for)

sys.path.insert(0, os.path.join(ROOT, "tests", "fuzz"))
import big_seeds  # noqa: E402  (tests/fuzz is not a package)

MIB = big_seeds.MIB

ROUTER = "num_retries = 0; allowed_fails = 1000;"


def worker_cpu(d):
    """CPU seconds (user + system) used so far by the master's children."""
    return sum(proc_cpu_s(pid) for pid in d.workers())


def hostile_bodies():
    """(name, body, status) for tests/fuzz/big_seeds.py's 1 MiB bodies:
    502 when parsed and routed to the dead upstream, 400 when too deep."""
    return [(name, body, 502 if parses else 400)
            for name, body, parses in big_seeds.bodies(model="g")]


def test_hostile_bodies_cost_under_100ms_cpu():
    dead = type("M", (), {"base": "http://127.0.0.1:%d" % free_port()})()  # nothing listens
    d = Daemon([deployment("g", dead, dep_id="dead")], workers=2, router=ROUTER)
    limit = 0.5 if SANITIZED else 0.1
    slow, costs = [], []
    for name, body, status in hostile_bodies():
        assert MIB - 4096 < len(body) <= MIB + 64, (name, len(body))
        c0 = worker_cpu(d)
        r = request(d.port, "POST", "/v1/chat/completions", body, timeout=20)
        used = worker_cpu(d) - c0
        err = r.json()["error"]
        # 502: parsed, validated, estimated and routed to the dead upstream;
        # 400: refused by the depth bound.
        assert r.status == status, (name, r)
        if status == 400:
            assert err["code"] == "invalid_json" and "nested too deeply" in err["message"], err
        costs.append("%s: %.2f s" % (name, used))
        slow += [name] if used >= limit else []
    assert not slow, "worker CPU over %.0f ms for %s (%s)" % (limit * 1000, ", ".join(slow),
                                                               "; ".join(costs))
    assert request(d.port, "GET", "/health/readiness").status == 200


def test_big_upstream_answer_relayed_with_usage():
    # 3000 embeddings of 1536 numbers: a 60 MB answer.  The old code parsed
    # every number into a token, quadratically: 6 to 9 s of worker CPU.
    m = Mock("big", ["--embeddings", "3000", "--embedding-dims", "1536"])
    d = Daemon([deployment("emb", m, dep_id="e", model="text-embedding-3-small")],
               workers=2, router=ROUTER)
    body = {"model": "emb", "input": ["hello"] * 10}
    direct = request(m.port, "POST", "/v1/embeddings",
                     dict(body, model="text-embedding-3-small"), timeout=60)
    assert direct.status == 200 and len(direct.body) > 55e6, direct
    m.reset()
    c0 = worker_cpu(d)
    r = request(d.port, "POST", "/v1/embeddings", body, timeout=60)
    used = worker_cpu(d) - c0
    assert r.status == 200, r
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(direct.body).digest(), \
        "the answer was not relayed byte for byte"
    doc = r.json()
    assert len(doc["data"]) == 3000 and len(doc["data"][2999]["embedding"]) == 1536
    reported = doc["usage"]["prompt_tokens"]
    assert reported == m.stats()["prompt_tokens"] > 0
    wait_for(lambda: status_rows(d)["e"]["PROMPT_TOK"] == str(reported), 5,
             "the reported usage to be counted")
    limit = 6.0 if SANITIZED else 2.5
    assert used < limit, "relaying a 60 MB answer took %.2f s of worker CPU" % used


def two_groups():
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("a", a, model="up-a"), deployment("b", b, model="up-b")],
               workers=2)
    return a, b, d


def test_duplicate_interpreted_keys_are_refused():
    a, b, d = two_groups()
    bodies = [
        ("model", b'{"model":"a","messages":[],"model":"b"}'),
        ("model", b'{"model":"a","messages":[],"mod\\u0065l":"b"}'),
        ("model", b'{"\\u006dodel":"a","messages":[],"model":"b"}'),
        ("stream", b'{"model":"a","stream":false,"messages":[],"stream":true}'),
        ("stream", b'{"model":"a","stream":false,"messages":[],"str\\u0065am":true}'),
        ("stream_options", b'{"model":"a","messages":[],"stream_options":{},'
                           b'"stream_options":{"include_usage":true}}'),
        ("messages", b'{"model":"a","messages":[],"messages":[{"role":"user",'
                     b'"content":"a long prompt the estimate would not see"}]}'),
    ]
    for key, body in bodies:
        r = request(d.port, "POST", "/v1/chat/completions", body)
        assert r.status == 400, (body, r)
        err = r.json()["error"]
        assert (err["type"], err["code"], err["param"]) == \
            ("invalid_request_error", "duplicate_key", key), (body, err)
        assert "`%s`" % key in err["message"], err
    for key, body in (("prompt", b'{"model":"a","prompt":"x","prompt":"y"}'),
                      ("input", b'{"model":"a","input":"x","input":["y"]}')):
        path = "/v1/completions" if key == "prompt" else "/v1/embeddings"
        r = request(d.port, "POST", path, body)
        assert r.status == 400 and r.json()["error"]["param"] == key, (body, r)
    assert a.stats()["requests"] == 0 and b.stats()["requests"] == 0, \
        "a body with a repeated field went upstream"
    # Keys llmroute does not read may repeat, and nested ones are not top-level.
    ok = b'{"model":"a","messages":[],"user":"x","user":"y","x":{"model":"b","model":"c"}}'
    r = request(d.port, "POST", "/v1/chat/completions", ok)
    assert r.status == 200, r
    assert a.stats()["last"]["body"] == ok.decode().replace('"a"', '"up-a"', 1)


def test_escaped_model_key_routes_on_what_the_upstream_reads():
    a, b, d = two_groups()
    body = '{"mod\\u0065l":"b","messages":[{"role":"user","content":"hi"}]}'
    r = request(d.port, "POST", "/v1/chat/completions", body)
    assert r.status == 200, r
    assert r.headers["x-llmroute-model-group"] == "b", r.headers
    assert a.stats()["requests"] == 0
    assert b.stats()["last"]["body"] == body.replace('"b"', '"up-b"'), b.stats()["last"]
    # An escaped value names the group too.
    r = request(d.port, "POST", "/v1/chat/completions",
                '{"model":"\\u0061","messages":[]}')
    assert r.status == 200 and r.headers["x-llmroute-model-group"] == "a", r


def strict_json(r):
    """The body, decoded strictly as UTF-8 then parsed as JSON."""
    return json.loads(r.body.decode("utf-8", errors="strict"))


def test_error_naming_client_bytes_is_valid_json():
    m = Mock("a")
    d = Daemon([deployment("gpt-3.5-turbo", m)], workers=2)
    models = [
        b"\xff\xfe bad \xc3( \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82",    # invalid UTF-8
        b"caf\xc3\xa9 \xf0\x9f\x98\x80",                             # valid UTF-8, kept
        b"ctl \\u0001\\u001f \\\" \\\\ \\n end",                      # decoded to controls
        b"x" * 5000,                                                 # long
        b"\xc3" * 3000,                                              # long and invalid
    ]
    for raw in models:
        body = b'{"model":"' + raw + b'","messages":[]}'
        r = request(d.port, "POST", "/v1/chat/completions", body)
        assert r.status == 404, (raw[:40], r)
        err = strict_json(r)["error"]
        assert err["code"] == "model_not_found", err
        assert len(err["message"]) < 400, "the model name was not truncated: %d chars" % len(
            err["message"])
    err = strict_json(request(d.port, "POST", "/v1/chat/completions",
                              b'{"model":"\xff\xfeA","messages":[]}'))["error"]
    assert "\ufffd\ufffdA" in err["message"], err
    err = strict_json(request(d.port, "POST", "/v1/chat/completions",
                              '{"model":"caf\u00e9","messages":[]}'.encode()))["error"]
    assert "caf\u00e9" in err["message"], err
    # A path of raw bytes, on a socket: http.client would refuse to send it.
    data, closed = raw_exchange(d.port, b"GET /v1/\xff\xfe" + b"p" * 3000 +
                                b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert closed, data[:300]
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404"), head
    err = json.loads(payload.decode("utf-8", errors="strict"))["error"]
    assert err["code"] == "not_found" and len(err["message"]) < 400, err
    assert m.stats()["requests"] == 0
