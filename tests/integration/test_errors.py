"""Bad input and upstream faults (issue 2, item 6; DESIGN.md section 6).

Every error must come back in OpenAI's shape
{"error": {"message", "type", "param", "code"}} with the right status, and the
worker that produced it must stay up: a normal request still succeeds
afterwards and the master's children keep their pids.
"""
import json
import socket
import time

import harness
from harness import slack, status_rows
from harness import (Daemon, Mock, Proc, Response, TestFailure, chat, deployment, free_port,
                     request, wait_for)

GROUP = "gpt-3.5-turbo"
CHAT_OK = {"model": GROUP, "messages": [{"role": "user", "content": "hi"}]}


# ---------------------------------------------------------------- helpers

def check_error(r, status, param=..., code=..., etype=...):
    """Asserts r is an OpenAI-shaped error with `status`; returns the error object.
    param/code/etype are checked only when given."""
    assert r.status == status, "expected %d, got %r" % (status, r)
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith("application/json"), "Content-Type %r on %r" % (ctype, r)
    try:
        doc = json.loads(r.body)
    except ValueError:
        raise TestFailure("error body is not JSON: %r" % r.body)
    assert isinstance(doc, dict) and set(doc) == {"error"}, doc
    err = doc["error"]
    assert isinstance(err, dict), doc
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    assert err["param"] is None or isinstance(err["param"], str), err
    assert err["code"] is None or isinstance(err["code"], (str, int)), err
    if param is not ...:
        assert err["param"] == param, "param %r, wanted %r: %r" % (err["param"], param, err)
    if code is not ...:
        assert err["code"] == code, "code %r, wanted %r: %r" % (err["code"], code, err)
    if etype is not ...:
        assert err["type"] == etype, "type %r, wanted %r: %r" % (err["type"], etype, err)
    return err


def still_serving(d, pids_before):
    """The daemon answers a normal request and no worker was replaced."""
    r = chat(d.port, timeout=5)
    assert r.status == 200, "a normal request after the errors failed: %r" % r
    assert r.json()["object"] == "chat.completion", r
    assert d.p.poll() is None, "master exited with %s" % d.p.returncode
    after = sorted(d.workers())
    assert after == pids_before, "workers changed from %s to %s" % (pids_before, after)


def started(d):
    # readiness needs only one worker to answer: the other may still be
    # forking (seen under ASan)
    pids = sorted(wait_for(lambda: len(d.workers()) == 2 and d.workers(), 10,
                           "both workers to start"))
    assert len(pids) == 2, "expected 2 workers, got %s" % pids
    return pids




class _DebugArgs(Proc):
    def __init__(self, argv, name, env=None):
        super().__init__(list(argv) + ["-d"], name, env=env)


# One attempt per request and no cooldowns: these tests look at how one
# upstream answer is passed on; retries and cooldowns are tested apart.
SINGLE_ATTEMPT = "num_retries = 0; cooldown_time = 0.0;"


class DebugDaemon(Daemon, _DebugArgs):
    """A Daemon started with -d, so that every debug log line is checked too."""


# ---------------------------------------------------------------- bad input

def test_invalid_json_is_400():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m)], workers=2)
    pids = started(d)
    bodies = [
        b"garbage",
        b"not json at all {",
        b'{"model": "gpt-3.5-turbo", "messages": [{"role": "user"',    # truncated
        b'{"model": "gpt-3.5-turbo", "messages": []',                   # no closing brace
        b'{"model": "gpt-3.5-turbo", "messages": []} trailing',         # trailing junk
        b'{"model": "gpt-3.5-turbo", "messages": []}}',                 # extra brace
        b'{"model": "gpt-3.5-turbo", "messages": []}{"a": 1}',          # two documents
        b'[{"model": "gpt-3.5-turbo", "messages": []}]',                # an array
        b'"gpt-3.5-turbo"',                                             # a string
        b"42",
        b"null",
        b"",                                                            # empty
        b"   \n\t ",                                                    # only white space
        b"{'model': 'gpt-3.5-turbo', 'messages': []}",                  # single quotes
        b'{"model": "gpt-3.5-turbo", "messages": [],}',                 # trailing comma
        b'{model: "gpt-3.5-turbo", "messages": []}',                    # bare key
        b'{"model": "gpt-3.5-turbo" "messages": []}',                   # missing comma
        # malformed values inside an otherwise well-formed object
        b'{"model": "gpt-3.5-turbo", "messages": [], "stream": tru}',
        b'{"model": "gpt-3.5-turbo", "messages": [], "n": 01}',
        b'{"model": "gpt-3.5-turbo", "messages": [], "n": 1.}',
        b'{"model": "gpt-3.5-turbo", "messages": [], "n": -}',
        b'{"model": "gpt-3.5-turbo", "messages": [], "n": 0x10}',
        b'{"model": "gpt-3.5-turbo", "messages": [], "user": "a\x01b"}',   # raw control char
        b'{"model": "gpt-3.5-turbo", "messages": [], "user": "\\x"}',     # bad escape
        b'{"model": "gpt-3.5-turbo", "messages": [], "user": "\\u12"}',   # short \u escape
    ]
    bad = []
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                 "/chat/completions"):
        for b in bodies:
            if path.endswith("embeddings"):
                b = b.replace(b'"messages": []', b'"input": "x"')
            before = m.stats()["requests"]
            r = request(d.port, "POST", path, b)
            try:
                check_error(r, 400, etype="invalid_request_error")
                # the daemon itself must refuse it: an upstream's 400 does not count
                assert m.stats()["requests"] == before, "the invalid body went upstream"
            except AssertionError as e:
                bad.append("POST %s %r: %s" % (path, b, e))
    still_serving(d, pids)
    assert not bad, "%d of %d invalid bodies mishandled:\n  %s" % (
        len(bad), 4 * len(bodies), "\n  ".join(bad))


def test_model_missing_or_not_a_string_is_400():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m)], workers=2)
    pids = started(d)
    msgs = ', "messages": [{"role": "user", "content": "hi"}]'
    bodies = ['{"messages": [{"role": "user", "content": "hi"}]}', "{}"]
    for v in ("123", "null", "true", '["gpt-3.5-turbo"]', '{"name": "gpt-3.5-turbo"}', "1.5"):
        bodies.append('{"model": %s%s}' % (v, msgs))
    # a "model" key only inside a nested object is not the top-level model
    bodies.append('{"metadata": {"model": "gpt-3.5-turbo"}%s}' % msgs)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        for b in bodies:
            if "embeddings" in path:
                b = b[:-1] + (', "input": "x"}' if b != "{}" else '"input": "x"}')
            r = request(d.port, "POST", path, b)
            try:
                check_error(r, 400, param="model", etype="invalid_request_error")
            except AssertionError as e:
                raise TestFailure("POST %s %s: %s" % (path, b, e))
    assert m.stats()["requests"] == 0, m.stats()
    still_serving(d, pids)


def test_missing_messages_or_input_is_400():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m)], workers=2)
    pids = started(d)
    for b in ({"model": GROUP}, {"model": GROUP, "prompt": "hi"},
              {"model": GROUP, "metadata": {"messages": []}}):
        for path in ("/v1/chat/completions", "/chat/completions"):
            r = request(d.port, "POST", path, b)
            check_error(r, 400, param="messages", etype="invalid_request_error")
    for b in ({"model": GROUP}, {"model": GROUP, "messages": []},
              {"model": GROUP, "metadata": {"input": "x"}}):
        for path in ("/v1/embeddings", "/embeddings"):
            r = request(d.port, "POST", path, b)
            check_error(r, 400, param="input", etype="invalid_request_error")
    assert m.stats()["requests"] == 0, m.stats()
    # the same bodies with the field present go through
    assert request(d.port, "POST", "/v1/embeddings", {"model": GROUP, "input": "x"}).status == 200
    still_serving(d, pids)


def test_unknown_model_is_404_model_not_found():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m)], workers=2)
    pids = started(d)
    names = ["gpt-5-nonexistent", "GPT-3.5-TURBO", "gpt-3.5-turbo ", "gpt-3.5",
             'we"ird\\name\n\u00e9\U0001f389', "x" * 5000]
    for name in names:
        for path, extra in (("/v1/chat/completions", {"messages": []}),
                            ("/v1/completions", {"prompt": "hi"}),
                            ("/v1/embeddings", {"input": "hi"})):
            body = dict(extra, model=name)
            r = request(d.port, "POST", path, body)
            try:
                err = check_error(r, 404, code="model_not_found")
            except AssertionError as e:
                raise TestFailure("POST %s model=%r: %s" % (path, name[:40], e))
            if 0 < len(name) < 100 and name.isprintable():
                assert name in err["message"], err
    assert m.stats()["requests"] == 0, m.stats()
    still_serving(d, pids)


def test_unknown_model_message_names_the_model():
    """The 404's message quotes the model the client asked for, as the client
    wrote it once decoded (not escaped twice)."""
    m = Mock("a")
    d = Daemon([deployment(GROUP, m)], workers=2)
    for name in ('my "quoted" model', "back\\slash", "caf\u00e9-model", "tab\there"):
        r = request(d.port, "POST", "/v1/chat/completions",
                    {"model": name, "messages": []})
        err = check_error(r, 404, code="model_not_found")
        assert name in err["message"], "model %r, message %r" % (name, err["message"])


def test_body_over_max_body_bytes_is_413():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m)], workers=2, server="max_body_bytes = 1000;")
    pids = started(d)

    def body_of(size):
        b = json.dumps({"model": GROUP, "messages": [{"role": "user", "content": ""}]})
        b = b.replace('"content": ""', '"content": "%s"' % ("a" * (size - len(b))))
        assert len(b) == size
        return b

    assert chat(d.port).status == 200
    r = request(d.port, "POST", "/v1/chat/completions", body_of(1000))
    assert r.status == 200, "a body of exactly max_body_bytes was refused: %r" % r
    for size in (1001, 5000, 200000):
        r = request(d.port, "POST", "/v1/chat/completions", body_of(size))
        check_error(r, 413)
    # the limit holds for every routed path, and before any other check
    for path in ("/v1/completions", "/v1/embeddings"):
        check_error(request(d.port, "POST", path, "x" * 1500), 413)
    assert m.stats()["requests"] == 2, m.stats()
    still_serving(d, pids)


def raw_response(port, head, body, timeout=5.0):
    """Sends head + body on a raw socket, tolerating a server that answers and
    closes before the whole body is sent; returns harness.Response."""
    data, _ = harness.raw_exchange(port, head + body, until="response", timeout=timeout)
    hdr_end = data.find(b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.") and hdr_end > 0, "no HTTP response: %r" % data[:300]
    lines = data[:hdr_end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return Response(status, headers, data[hdr_end + 4:])


def _big_post(d, size):
    body = b"x" * size
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    return raw_response(d.port, head, body)


def test_body_far_over_max_body_bytes_is_413_json():
    """3000 times max_body_bytes: still the daemon's own OpenAI-shaped 413."""
    m = Mock("a")
    d = Daemon([deployment(GROUP, m)], workers=2, server="max_body_bytes = 1000;")
    pids = started(d)
    check_error(_big_post(d, 3000 * 1000), 413)
    assert m.stats()["requests"] == 0, m.stats()
    still_serving(d, pids)


def test_body_past_evhttp_cap_is_413_and_readable():
    """16 MiB against max_body_bytes = 1000 is past the hard cap the worker
    gives evhttp (4 * max_body_bytes + 4 MiB).  libevent 2.1 has no hook
    between headers and body, so this 413 is libevent's own (documented in
    the README); the client must still be able to read it: the body is
    discarded with a lingering close instead of a reset."""
    m = Mock("a")
    d = Daemon([deployment(GROUP, m)], workers=2, server="max_body_bytes = 1000;")
    pids = started(d)
    r = _big_post(d, 16 << 20)
    assert r.status == 413, r
    assert m.stats()["requests"] == 0, m.stats()
    still_serving(d, pids)


def test_wrong_method_405_and_unknown_path_404():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m)], workers=2)
    pids = started(d)
    for method, path, allow in (("GET", "/v1/chat/completions", "POST"),
                                ("GET", "/chat/completions", "POST"),
                                ("PUT", "/v1/completions", "POST"),
                                ("DELETE", "/v1/embeddings", "POST"),
                                ("POST", "/v1/models", "GET"),
                                ("POST", "/models", "GET"),
                                ("PUT", "/v1/models", "GET")):
        body = json.dumps(CHAT_OK) if method != "GET" else None
        r = request(d.port, method, path, body)
        try:
            check_error(r, 405)
        except AssertionError as e:
            raise TestFailure("%s %s: %s" % (method, path, e))
        assert allow in r.headers.get("allow", ""), "%s %s: Allow %r" % (
            method, path, r.headers.get("allow"))
    for method, path in (("POST", "/v1/chat/completion"), ("POST", "/v2/chat/completions"),
                         ("POST", "/v1/chat/completions/extra"), ("GET", "/"),
                         ("GET", "/v1"), ("GET", "/health/x"), ("POST", "/v1/images/generations"),
                         ("GET", "/V1/MODELS")):
        body = json.dumps(CHAT_OK) if method == "POST" else None
        r = request(d.port, method, path, body)
        try:
            check_error(r, 404)
        except AssertionError as e:
            raise TestFailure("%s %s: %s" % (method, path, e))
    assert m.stats()["requests"] == 0, m.stats()
    still_serving(d, pids)


# ---------------------------------------------------------------- upstream faults

def test_upstream_refused_is_502():
    m = Mock("a")
    dead = free_port()        # nothing listens here
    dead_mock = type("M", (), {"base": "http://127.0.0.1:%d" % dead})()
    d = Daemon([deployment(GROUP, m, dep_id="ok"),
                deployment("dead", dead_mock, dep_id="dead-1")], workers=2,
               router=SINGLE_ATTEMPT)
    pids = started(d)
    for path, extra in (("/v1/chat/completions", {"messages": []}),
                        ("/v1/completions", {"prompt": "x"}),
                        ("/v1/embeddings", {"input": "x"})):
        t0 = time.monotonic()
        r = request(d.port, "POST", path, dict(extra, model="dead"), timeout=10)
        check_error(r, 502)
        assert time.monotonic() - t0 < slack(2.0), "a refused connection took %.1fs" % (
            time.monotonic() - t0)
        assert r.headers.get("x-llmroute-model-group") == "dead", r.headers
    # an upstream that closes the connection without answering is also 502
    r = chat(d.port, extra={"x_mock": {"drop": 1}}, timeout=10)
    check_error(r, 502)
    wait_for(lambda: m.stats()["dropped"] == 1, 3, "the mock to have dropped one request")
    still_serving(d, pids)


def test_upstream_timeout_is_504():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m)], workers=2, router="timeout = 1.0;")
    pids = started(d)
    t0 = time.monotonic()
    r = chat(d.port, extra={"x_mock": {"latency_ms": 3000}}, timeout=10)
    took = time.monotonic() - t0
    check_error(r, 504)
    assert 0.8 < took < 1.0 + slack(1.5, cap=1.9), "504 after %.2fs, wanted about 1s" % took
    still_serving(d, pids)


def test_upstream_errors_pass_through():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, model="upstream-model")], workers=2,
               router=SINGLE_ATTEMPT)
    pids = started(d)
    cases = [{"status": 500}, {"status": 503}, {"status": 502}, {"status": 401},
             {"status": 404}, {"status": 429, "retry_after": "5"},
             {"error": "context_length"}, {"error": "content_policy"}]
    for knobs in cases:
        for path, extra in (("/v1/chat/completions", {"messages": [{"role": "user",
                                                                    "content": "hi"}]}),
                            ("/v1/completions", {"prompt": "hi"}),
                            ("/v1/embeddings", {"input": "hi"})):
            body = dict(extra, x_mock=knobs)
            direct = request(m.port, "POST", path, dict(body, model="upstream-model"))
            assert direct.status >= 400, (knobs, direct)
            r = request(d.port, "POST", path, dict(body, model=GROUP))
            assert r.status == direct.status, "%s %s: %r, the mock says %r" % (
                path, knobs, r, direct)
            assert r.body == direct.body, "%s %s: body %r, the mock says %r" % (
                path, knobs, r.body, direct.body)
            assert m.stats()["last"]["path"] == path
    still_serving(d, pids)


def test_master_key():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, dep_id="with-key", key="sk-upstream-1"),
                deployment("nokey", m, dep_id="no-key")], workers=2,
               server='master_key = "os.environ/LLMR_TEST_MASTER_KEY";',
               env={"LLMR_TEST_MASTER_KEY": "sk-master-123"})
    pids = started(d)
    good = {"Authorization": "Bearer sk-master-123"}
    bad = [{}, {"Authorization": "Bearer sk-master-12"}, {"Authorization": "Bearer sk-master-1234"},
           {"Authorization": "Bearer "}, {"Authorization": "Bearer"},
           {"Authorization": "sk-master-123"}, {"Authorization": "Basic sk-master-123"},
           {"Authorization": "Bearer sk-master-124"}, {"Authorization": "Bearer SK-MASTER-123"},
           {"Authorization": "Bearer wrong"}, {"api-key": "sk-master-12"},
           {"api-key": "Bearer sk-master-123"}]   # api-key (Azure's) is accepted: issue 11
    for h in bad:
        for method, path, body in (("POST", "/v1/chat/completions", CHAT_OK),
                                   ("POST", "/v1/embeddings", {"model": GROUP, "input": "x"}),
                                   ("POST", "/chat/completions", CHAT_OK),
                                   ("GET", "/v1/models", None)):
            r = request(d.port, method, path, body, headers=h)
            try:
                check_error(r, 401)
            except AssertionError as e:
                raise TestFailure("%s %s with %r: %s" % (method, path, h, e))
            assert "sk-master-123" not in r.body.decode("utf-8", "replace"), r
    assert m.stats()["requests"] == 0, "an unauthorised call reached the upstream"
    # health needs no key
    for path in ("/health/liveliness", "/health/liveness", "/health/readiness"):
        assert request(d.port, "GET", path).status == 200, path
    # the right key works, and never goes upstream
    r = chat(d.port, headers=good)
    assert r.status == 200, r
    assert request(d.port, "GET", "/v1/models", headers=good).status == 200
    last = m.stats()["last"]
    assert last["headers"].get("authorization") == "Bearer sk-upstream-1", last["headers"]
    assert "sk-master-123" not in json.dumps(last), last
    r = chat(d.port, model="nokey", headers=good)
    assert r.status == 200, r
    last = m.stats()["last"]
    assert "authorization" not in last["headers"], last["headers"]
    assert "sk-master-123" not in json.dumps(last), last
    assert "sk-master-123" not in d.log_text()
    still_serving_key(d, pids, good)


def still_serving_key(d, pids, headers):
    r = chat(d.port, headers=headers)
    assert r.status == 200, r
    assert sorted(d.workers()) == pids, (d.workers(), pids)


def test_no_upstream_key_leak():
    secret = "sk-secret-upstream-XYZ"
    m = Mock("a")
    slow = Mock("slow", args=["--latency", "3000"])
    dead = type("M", (), {"base": "http://127.0.0.1:%d" % free_port()})()
    d = DebugDaemon([deployment(GROUP, m, dep_id="live", key=secret),
                     deployment("azure-live", m, model="az-dep", azure=True, key=secret),
                     deployment("dead", dead, dep_id="dead", key=secret),
                     deployment("dead-azure", dead, model="az-dead", azure=True, key=secret),
                     deployment("slow", slow, dep_id="slow", key=secret,
                                params="timeout = 1.0;")],
                    workers=2, router=SINGLE_ATTEMPT)
    pids = started(d)
    responses = []

    def send(*a, **kw):
        r = request(d.port, *a, **kw)
        responses.append(r)
        return r

    msgs = [{"role": "user", "content": "hi"}]
    check_error(send("POST", "/v1/chat/completions", {"model": "dead", "messages": msgs}), 502)
    check_error(send("POST", "/v1/chat/completions", {"model": "dead-azure", "messages": msgs}),
                502)
    t0 = time.monotonic()
    check_error(send("POST", "/v1/chat/completions", {"model": "slow", "messages": msgs},
                     timeout=10), 504)
    assert time.monotonic() - t0 < 1.0 + slack(1.5, cap=1.9)   # not the 3 s latency
    for g in (GROUP, "azure-live"):
        for knobs in ({"status": 500}, {"status": 401}, {"status": 429, "retry_after": "1"},
                      {"error": "context_length"}, {"drop": 1}):
            r = send("POST", "/v1/chat/completions", {"model": g, "messages": msgs,
                                                      "x_mock": knobs})
            assert r.status >= 400, r
    check_error(send("POST", "/v1/chat/completions", {"model": "nope", "messages": msgs}), 404)
    check_error(send("POST", "/v1/chat/completions", "{bad"), 400)
    check_error(send("GET", "/v1/chat/completions"), 405)
    check_error(send("GET", "/nowhere"), 404)
    assert send("GET", "/v1/models").status == 200
    assert send("POST", "/v1/chat/completions", {"model": GROUP, "messages": msgs}).status == 200
    # the key is really configured: the upstream got it
    hdrs = m.stats()["last"]["headers"]
    assert hdrs.get("authorization") == "Bearer " + secret, hdrs
    assert send("POST", "/v1/embeddings", {"model": "azure-live", "input": "x"}).status == 200
    assert m.stats()["last"]["headers"].get("api-key") == secret
    for r in responses:
        text = r.body.decode("utf-8", "replace") + json.dumps(r.headers)
        assert secret not in text, "the upstream key leaked in %r %r" % (r, r.headers)
        assert "secret-upstream" not in text, r
    log = d.log_text()
    assert log, "the daemon logged nothing at all with -d"
    assert secret not in log and "secret-upstream" not in log, \
        "the upstream key is in the daemon's log:\n" + "\n".join(
            l for l in log.splitlines() if "secret-upstream" in l)
    # the status table must not show it either
    st = d.status()
    assert secret not in st.stdout + st.stderr, st.stdout
    still_serving(d, pids)


def _send_then_leave(d, m, dep_id):
    """Sends a chat request to a 2 s upstream on a raw socket, waits until the
    mock and the segment both show it in flight, then closes the socket.
    Returns the monotonic time of the close."""
    body = json.dumps({"model": GROUP, "messages": [{"role": "user", "content": "hi"}],
                       "x_mock": {"latency_ms": 2000}}).encode()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        wait_for(lambda: m.stats()["inflight"] == 1, 3, "the request to reach the mock")
        wait_for(lambda: status_rows(d)[dep_id]["INFLIGHT"] == "1", 3,
                 "status to show the request in flight")
    finally:
        s.close()
    return time.monotonic()


def test_client_disconnect_while_upstream_slow():
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, dep_id="dep-slow")], workers=2)
    pids = started(d)
    _send_then_leave(d, m, "dep-slow")
    wait_for(lambda: status_rows(d)["dep-slow"]["INFLIGHT"] == "0", 5,
             "INFLIGHT 0 after the client left")
    row = status_rows(d)["dep-slow"]
    assert row["REQUESTS"] == "1", row
    still_serving(d, pids)
    wait_for(lambda: m.stats()["inflight"] == 0, 3, "the mock to be idle")
    row = status_rows(d)["dep-slow"]
    assert row["INFLIGHT"] == "0" and row["REQUESTS"] == "2", row


def test_client_disconnect_cancels_upstream_call():
    """When the client leaves, the upstream call is abandoned at once (the
    proxy's on_client_close): it is not waited out, and it is not counted as
    a success of the deployment."""
    m = Mock("a")
    d = Daemon([deployment(GROUP, m, dep_id="dep-slow")], workers=2)
    pids = started(d)
    t_close = _send_then_leave(d, m, "dep-slow")
    # the mock's latency is 2 s: well before that, the upstream must see its
    # request end, and the segment must show nothing in flight
    wait_for(lambda: m.stats()["inflight"] == 0, 5, "the mock to see the request end")
    wait_for(lambda: status_rows(d)["dep-slow"]["INFLIGHT"] == "0", 3, "INFLIGHT 0")
    took = time.monotonic() - t_close
    row = status_rows(d)["dep-slow"]
    assert took < slack(1.0, cap=1.8), ("the upstream call ran %.2fs after the client left (mock latency "
                        "2 s): it was not cancelled; status: %s" % (took, row))
    assert row["SUCCESS"] == "0", "a request whose client left counted as a success: %s" % row
    still_serving(d, pids)
