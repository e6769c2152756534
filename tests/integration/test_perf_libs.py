"""What the fourth performance round (issue 17) changed in how llmroute
drives libcurl and evhttp, checked for what a client and an upstream see:

- each target URL is handed to libcurl parsed (CURLOPT_CURLU): the upstream
  gets the same request line, query and headers as from a URL string, for
  OpenAI-style and Azure deployments alike;
- the proxy environment is read once per worker instead of by libcurl on
  every transfer: lower case before upper case, HTTP_PROXY never (httpoxy),
  ALL_PROXY last, NO_PROXY exempting, as libcurl itself reads them;
- the Date header is formatted once a second by llmroute instead of by
  evhttp per reply: exactly one, in IMF-fixdate form, current, on every
  kind of reply."""
import email.utils
import json
import os
import re
import time

import harness
import tlskit as tlsh
from harness import Daemon, Mock, chat, deployment, raw_exchange, request, wait_for
from test_https import ConnectProxy, dep, logged, ok, tls_front

BODY = {"model": "g", "messages": [{"role": "user", "content": "hello"}]}
DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                     r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


def upstream_request(m):
    return m.stats()["last"]


def test_upstream_gets_the_same_request_from_a_parsed_url():
    """OpenAI-style and Azure deployments: method, path, query (Azure's
    api-version), Host, the key, Content-Type, Content-Length and the body
    as the client's request implies, twice on one reused handle."""
    o, z = Mock("openai"), Mock("azure")
    d = Daemon([deployment("g", o, key="sk-openai-1"),
                deployment("z", z, azure=True, dep_id="azdep", key="az-key-2")], workers=1)
    for _ in range(2):
        r = chat(d.port, model="g")
        assert r.status == 200, r
        last = upstream_request(o)
        assert last["method"] == "POST" and last["path"] == "/v1/chat/completions", last
        assert last["query"] == "", last
        h = last["headers"]
        assert h["host"] == "127.0.0.1:%d" % o.port, h
        assert h["authorization"] == "Bearer sk-openai-1", h
        assert h["content-type"] == "application/json", h
        assert int(h["content-length"]) == len(last["body"]), (h, last["body"])
        assert json.loads(last["body"])["messages"][0]["content"] == "hello", last
        r = chat(d.port, model="z")
        assert r.status == 200, r
        last = upstream_request(z)
        assert last["path"] == "/openai/deployments/azdep/chat/completions", last
        assert last["query"] == "api-version=2024-02-01", last
        h = last["headers"]
        assert h["host"] == "127.0.0.1:%d" % z.port and h["api-key"] == "az-key-2", h
    # an Azure route the client names (a one-off URL, not a target's)
    r = request(d.port, "POST", "/openai/deployments/z/embeddings?api-version=2024-06-01",
                {"input": "hi"})
    assert r.status == 200, r
    last = upstream_request(z)
    assert last["path"] == "/openai/deployments/azdep/embeddings", last
    assert "api-version=" in last["query"], last


def test_http_proxy_variables_as_libcurl_reads_them():
    """Plain http:// upstreams: http_proxy is used (the proxy gets the
    absolute-form request), HTTP_PROXY alone never is (httpoxy), ALL_PROXY
    is the fallback, and NO_PROXY naming the host goes direct."""
    m = Mock("plain")
    proxy = ConnectProxy()     # answers a non-CONNECT request 405: recorded, not served
    purl = "http://127.0.0.1:%d" % proxy.port
    want = "POST http://127.0.0.1:%d/v1/chat/completions HTTP/1.1" % m.port
    try:
        for env, via in (({"HTTP_PROXY": purl}, False),
                         ({"http_proxy": purl}, True),
                         ({"ALL_PROXY": purl}, True),
                         ({"all_proxy": purl, "NO_PROXY": "127.0.0.1"}, False),
                         ({"http_proxy": purl, "no_proxy": "*"}, False)):
            full = {k: "" for k in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY",
                                    "no_proxy", "NO_PROXY", "https_proxy", "HTTPS_PROXY")}
            full.update(env)
            before, served = len(proxy.tunnels), m.stats()["requests"]
            d = Daemon([deployment("g", m)], workers=2, env=full,
                       router="num_retries = 0; cooldown_time = 0;")
            r = chat(d.port, model="g")
            d.stop()
            if via:
                assert r.status != 200, (env, r)
                assert proxy.tunnels[before:] == [want], (env, proxy.tunnels[before:])
            else:
                assert r.status == 200, (env, r)
                assert len(proxy.tunnels) == before, (env, proxy.tunnels[before:])
                assert m.stats()["requests"] == served + 1, env
    finally:
        proxy.stop()


def test_https_proxy_lower_case_first_and_all_proxy():
    """https:// upstreams: https_proxy before HTTPS_PROXY (which points at
    a port nothing listens on), and ALL_PROXY when neither is set."""
    pki = tlsh.make_pki()
    m = Mock("tls-behind-proxy")
    front = tls_front(pki, m)
    proxy = ConnectProxy()
    ca = 'ssl_verify = "%s";' % os.path.join(pki, "ca.pem")
    good, dead = "http://127.0.0.1:%d" % proxy.port, "http://127.0.0.1:%d" % harness.free_port()
    want = "CONNECT 127.0.0.1:%d HTTP/1.1" % front.port
    try:
        n = 0
        for env in ({"https_proxy": good, "HTTPS_PROXY": dead, "NO_PROXY": ""},
                    {"ALL_PROXY": good, "NO_PROXY": ""}):
            d = Daemon([dep(front.port, ca)], workers=1, env=env)
            ok(d, 2)
            d.stop()
            n += 2
            assert proxy.tunnels and all(t == want for t in proxy.tunnels), proxy.tunnels
            assert len(logged(front, n)) == n
    finally:
        proxy.stop()


def dates(raw):
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")[1:]
            if ln.lower().startswith("date:")]


def one_date(port, req):
    raw, _ = raw_exchange(port, req, until="close")
    got = dates(raw)
    assert len(got) == 1, (got, raw[:400])
    assert DATE_RE.match(got[0]), got
    when = email.utils.parsedate_to_datetime(got[0]).timestamp()
    assert abs(when - time.time()) < 5, (got, time.time())
    return raw, when


def post(path, body, extra=b""):
    data = json.dumps(body).encode()
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(data) + data)


def test_one_current_date_header_on_every_kind_of_reply():
    """A proxied answer, a stream, llmroute's own errors (404 for an unknown
    group, 400 for bad JSON), /health and /v1/models each carry one Date,
    IMF-fixdate, within seconds of now; over a few seconds it advances with
    the clock (the once-a-second cache does not stick)."""
    m = Mock("dates")
    d = Daemon([deployment("g", m)], workers=2)
    raw, _ = one_date(d.port, post("/v1/chat/completions", BODY))
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    body = dict(BODY, stream=True, x_mock={"chunks": 3})
    raw, _ = one_date(d.port, post("/v1/chat/completions", body))
    assert b"text/event-stream" in raw and b"[DONE]" in raw, raw[:400]
    raw, _ = one_date(d.port, post("/v1/chat/completions", dict(BODY, model="nope")))
    assert raw.startswith(b"HTTP/1.1 404") or raw.startswith(b"HTTP/1.1 400"), raw[:200]
    raw, _ = one_date(d.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\nContent-Length: 5\r\n\r\n{bad}")
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    for path in (b"/health/liveliness", b"/v1/models"):
        raw, _ = one_date(d.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    first = one_date(d.port, post("/v1/chat/completions", BODY))[1]
    wait_for(lambda: one_date(d.port, post("/v1/chat/completions", BODY))[1] >= first + 2, 10,
             "the Date header to advance with the clock")


def environ_of(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)


def test_daemon_runs_with_a_deeper_malloc_cache():
    """The daemon executes itself once with GLIBC_TUNABLES (glibc reads it
    only at start-up, so a process that merely set it would show nothing in
    /proc/PID/environ, which is the environment an exec() was given): the
    master keeps its pid and serves, its workers inherit it; one that
    someone started with GLIBC_TUNABLES of their own keeps theirs."""
    m = Mock("tcache")
    d = Daemon([deployment("g", m)], workers=2)
    conns = harness.worker_conns(d)
    pids = [d.p.pid] + list(conns.keys())
    for c in conns.values():
        c.close()
    assert len(pids) == 3, pids
    for pid in pids:
        assert environ_of(pid).get(b"GLIBC_TUNABLES") == b"glibc.malloc.tcache_count=32", pid
    assert chat(d.port, model="g").status == 200
    d.stop()
    for mine in ("glibc.malloc.tcache_count=7", ""):     # empty: "leave glibc's default"
        d = Daemon([deployment("g", m)], workers=1, env={"GLIBC_TUNABLES": mine})
        assert environ_of(d.p.pid).get(b"GLIBC_TUNABLES") == mine.encode(), mine
        assert chat(d.port, model="g").status == 200
        d.stop()
