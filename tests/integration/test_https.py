"""HTTPS upstreams (issue 11, item 7): a real local TLS upstream (nginx in
front of the mock, with a CA and certificate made for the test by
tlskit.py) and what llmroute does with it: verification against
the configured bundle (a wrong CA is a 502 that names TLS, never a silent
success), router_settings.ssl_verify as the deployments' default,
ssl_verify = false, HTTP/2 when the upstream offers it (many requests on a
few connections) and HTTP/1.1 when forced, TLS sessions resumed on new
connections, and the HTTPS_PROXY / NO_PROXY environment.  nginx's access log
says, per request, which connection served it, whether its TLS session was
resumed and which protocol it spoke."""
import os
import socket
import threading

import harness
import tlskit as tlsh
from harness import Daemon, Mock, chat, wait_for

GROUP = "secure"


def tls_front(pki, mock, keepalive_requests=100000, h2=True):
    """nginx terminating TLS (h2 offered in ALPN) in front of the mock, its
    access log one line per request: connection serial, session resumed
    ("r" or "."), protocol."""
    port = harness.free_port()
    log = os.path.join(harness.tmpdir(), "access.log")
    n = tlsh.Nginx("tls-front", """
  log_format conn '$connection $ssl_session_reused $server_protocol';
  server {
    listen 127.0.0.1:%d ssl%s;
    ssl_certificate %s/srv.pem;
    ssl_certificate_key %s/srv.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests %d;
    http2_max_concurrent_streams 256;
    location = /ready { return 200 "ok"; }
    location / {
      access_log %s conn;
      proxy_pass http://127.0.0.1:%d;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }""" % (port, " http2" if h2 else "", pki, pki, keepalive_requests, log, mock.port),
        port, lambda: tlsh.https_get(pki, port, "/ready"))
    n.access_log = log
    return n


def access(nginx):
    """[(connection, reused, protocol)] of every request nginx served."""
    if not os.path.exists(nginx.access_log):
        return []
    with open(nginx.access_log) as f:
        return [tuple(ln.split()) for ln in f.read().splitlines() if ln.strip()]


def logged(nginx, n):
    """The access log once it has n lines: nginx writes a request's line
    after it has sent the answer, so the client may be ahead of it."""
    wait_for(lambda: len(access(nginx)) >= n, 10, "%d lines in nginx's access log" % n)
    return access(nginx)


def dep(port, params="", model="gpt-4o"):
    return ('{ model_name = "%s"; litellm_params = { model = "openai/%s"; '
            'api_base = "https://127.0.0.1:%d/v1"; %s }; }' % (GROUP, model, port, params))


def ok(d, n=1):
    for _ in range(n):
        r = chat(d.port, model=GROUP)
        assert r.status == 200, r
        assert r.json()["object"] == "chat.completion", r


def concurrent(d, n, latency_ms):
    """n chat requests at once, each held latency_ms by the mock."""
    results = []

    def one():
        results.append(chat(d.port, model=GROUP, extra={"x_mock": {"latency_ms": latency_ms}},
                            timeout=60).status)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results == [200] * n, results


def test_wrong_ca_is_a_502_naming_tls_and_router_default_applies():
    pki, other = tlsh.make_pki(), tlsh.make_pki()
    m = Mock("behind-tls")
    front = tls_front(pki, m)
    wrong = os.path.join(other, "ca.pem")
    right = os.path.join(pki, "ca.pem")
    for params, router in (('ssl_verify = "%s";' % wrong, ""),
                           ("", 'ssl_verify = "%s";' % wrong),
                           ("", "")):           # the system bundle lacks the test CA
        d = Daemon([dep(front.port, params)], workers=2, router="num_retries = 1; " + router)
        r = chat(d.port, model=GROUP)
        assert r.status == 502, (params, router, r)
        err = r.json()["error"]
        assert err["code"] == "upstream_tls_error", err
        assert "TLS" in err["message"] and "certificate" in err["message"], err
        d.stop()
    assert access(front) == [], "a request reached the upstream without verification"
    assert m.stats()["requests"] == 0
    # the right CA from router_settings; a deployment's own value wins over it
    d = Daemon([dep(front.port)], workers=2, router='ssl_verify = "%s";' % right)
    ok(d)
    d.stop()
    d = Daemon([dep(front.port, 'ssl_verify = "%s";' % right)], workers=2,
               router='ssl_verify = "%s";' % wrong)
    ok(d)
    d.stop()
    # ssl_verify = false: no verification at all, per deployment or as the default
    for params, router in (("ssl_verify = false;", ""), ("", "ssl_verify = false;")):
        d = Daemon([dep(front.port, params)], workers=2, router=router)
        ok(d)
        d.stop()


def test_h2_when_offered_many_requests_on_few_connections_h1_when_forced():
    pki = tlsh.make_pki()
    m = Mock("behind-h2")
    front = tls_front(pki, m)
    ca = 'ssl_verify = "%s";' % os.path.join(pki, "ca.pem")
    d = Daemon([dep(front.port, ca)], workers=2)
    concurrent(d, 64, 400)
    h2 = logged(front, 64)
    d.stop()
    conns_h2 = {c for c, _, _ in h2}
    assert len(h2) == 64 and {p for _, _, p in h2} == {"HTTP/2.0"}, h2
    # one connection per worker, give or take a race at the very start
    assert len(conns_h2) <= 4, conns_h2
    # http2 = false (router default, then the deployment's own): HTTP/1.1,
    # one connection per request in flight
    for params, router in ((ca, "http2 = false;"), (ca + " http2 = false;", "")):
        open(front.access_log, "w").close()
        d = Daemon([dep(front.port, params)], workers=2, router=router)
        concurrent(d, 16, 400)
        h1 = logged(front, 16)
        d.stop()
        assert len(h1) == 16 and {p for _, _, p in h1} == {"HTTP/1.1"}, h1
        assert len({c for c, _, _ in h1}) >= 8, h1
    print("64 concurrent requests: %d HTTP/2 connection(s); 16 on HTTP/1.1: %d"
          % (len(conns_h2), len({c for c, _, _ in h1})))


def test_requests_in_flight_at_once_where_no_h2_is_offered():
    """Offering h2 must not serialise requests to an upstream that speaks
    only HTTP/1.1: with PIPEWAIT on a plain http:// upstream (whose HTTP
    version libcurl learns only from its first answer) every request waited
    for the one before it to finish."""
    pki = tlsh.make_pki()
    m = Mock("h1-only")
    front = tls_front(pki, m, h2=False)
    ca = 'ssl_verify = "%s";' % os.path.join(pki, "ca.pem")
    plain = ('{ model_name = "%s"; litellm_params = { model = "openai/x"; '
             'api_base = "%s/v1"; }; }' % (GROUP, m.base))
    for deployments in ([dep(front.port, ca)], [plain]):
        m.reset()
        d = Daemon(deployments, workers=1)
        concurrent(d, 8, 1500)
        d.stop()
        assert m.stats()["max_inflight"] == 8, (deployments, m.stats()["max_inflight"])


def test_connections_kept_and_tls_sessions_resumed():
    pki = tlsh.make_pki()
    m = Mock("behind-reuse")
    ca = 'ssl_verify = "%s";' % os.path.join(pki, "ca.pem")
    # keep-alive: sequential requests ride the connections already set up
    front = tls_front(pki, m)
    d = Daemon([dep(front.port, ca)], workers=2)
    ok(d, 20)
    log = logged(front, 20)
    conns = {c for c, _, _ in log}
    assert len(log) == 20 and len(conns) <= 2, log
    d.stop()
    # nginx closes after each request: every new connection of a worker
    # after its first resumes the TLS session instead of a full handshake
    closing = tls_front(pki, m, keepalive_requests=1)
    d = Daemon([dep(closing.port, ca + " http2 = false;")], workers=2)
    ok(d, 12)
    log = logged(closing, 12)
    d.stop()
    assert len({c for c, _, _ in log}) == 12, log
    full = [c for c, reused, _ in log if reused != "r"]
    assert len(full) <= 2, "full handshakes on %d of 12 connections: %s" % (len(full), log)
    print("12 new connections: %d full TLS handshake(s), %d resumed" % (len(full), 12 - len(full)))


class ConnectProxy:
    """A tiny HTTP CONNECT proxy on loopback that records each tunnel."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.tunnels = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        head = b""
        with c:
            while b"\r\n\r\n" not in head:
                b = c.recv(4096)
                if not b:
                    return
                head += b
            line = head.split(b"\r\n", 1)[0].decode()
            method, target = line.split()[:2]
            self.tunnels.append(line)
            if method != "CONNECT":
                c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as up:
                c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                t = threading.Thread(target=self._pipe, args=(up, c), daemon=True)
                t.start()
                self._pipe(c, up)
                t.join(10)

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stop(self):
        self.stopped = True
        self.sock.close()


def test_https_proxy_and_no_proxy_from_the_environment():
    pki = tlsh.make_pki()
    m = Mock("behind-proxy")
    front = tls_front(pki, m)
    proxy = ConnectProxy()
    ca = 'ssl_verify = "%s";' % os.path.join(pki, "ca.pem")
    env = {"HTTPS_PROXY": "http://127.0.0.1:%d" % proxy.port, "NO_PROXY": ""}
    try:
        d = Daemon([dep(front.port, ca)], workers=2, env=env)
        ok(d, 4)
        d.stop()
        want = "CONNECT 127.0.0.1:%d HTTP/1.1" % front.port
        assert proxy.tunnels and all(t == want for t in proxy.tunnels), proxy.tunnels
        assert len(logged(front, 4)) == 4, access(front)
        n = len(proxy.tunnels)
        # NO_PROXY names the upstream: straight there, the proxy unused
        env["NO_PROXY"] = "127.0.0.1"
        d = Daemon([dep(front.port, ca)], workers=2, env=env)
        ok(d, 4)
        d.stop()
        assert len(proxy.tunnels) == n, proxy.tunnels
        assert len(logged(front, 8)) == 8, access(front)
    finally:
        proxy.stop()
