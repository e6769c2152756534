"""The HTTPS upstream scenario of `make bench` (issue 17).

A local TLS upstream (nginx with a test CA made here by the openssl CLI,
TLS 1.3, HTTP/2 offered in ALPN, a fixed chat completion), and under the same
wrk load: nginx with `proxy_ssl` and a keep-alive upstream pool, llmroute
speaking HTTP/1.1 to it (http2 = false, the same protocol as nginx) and
llmroute speaking HTTP/2 (one multiplexed connection per worker).  Reports
CPU microseconds per request of the proxy (and of the upstream, which should
be the same for both), the upstream connections open at the end, and the
same without keep-alive (the upstream closes every connection after one
answer, so each request is a new TLS connection) with TLS session resumption
on and off at the upstream.  Used by scripts/bench.py.
"""
import os
import subprocess

COMPLETION = ('{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"m",'
              '"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},'
              '"finish_reason":"stop"}],'
              '"usage":{"prompt_tokens":20,"completion_tokens":2,"total_tokens":22}}')


def make_pki(tmp):
    """A test CA and a certificate for IP 127.0.0.1 it signed (P-256)."""
    d = os.path.join(tmp, "pki")
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    for args in (["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                                          "-subj", "/CN=llmroute bench CA"],
                 ["req"] + ec + ["-keyout", "srv.key", "-out", "srv.csr",
                                 "-subj", "/CN=127.0.0.1"],
                 ["x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                  "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf"]):
        subprocess.run(["openssl"] + args, cwd=d, check=True, capture_output=True)
    return d


def nginx_conf(tmp, name, workers, body):
    path = os.path.join(tmp, name + ".conf")
    temps = "".join("  %s_temp_path %s;\n" % (t, os.path.join(tmp, name + "-" + t))
                    for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(path, "w") as f:
        f.write("""%sdaemon off;
master_process on;
worker_processes %d;
pid %s/%s.pid;
error_log %s/%s-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
%s%s
}
""" % ("user root;\n" if os.getuid() == 0 else "", workers, tmp, name, tmp, name, temps,
            body))
    return path


def upstream_conf(tmp, pki, port, keepalive, resume):
    """The TLS upstream: one nginx worker, h2 and http/1.1 in ALPN.  It reads
    the request body before answering (the mirror reads it; the static
    handler's 404 (no such file) becomes the fixed answer): over HTTP/2 a
    `return` alone answers first and resets the stream, which libcurl takes
    for a framing error.  Without
    keep-alive it closes after each answer; without resumption it keeps no
    session cache and issues no tickets, so each connection is a full
    handshake."""
    resumption = "" if resume else "    ssl_session_tickets off;\n    ssl_session_cache off;\n"
    return nginx_conf(tmp, "tls-up", 1, """
  server {
    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s/srv.pem;
    ssl_certificate_key %s/srv.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams 1024;
%s    keepalive_requests %d;
    location = /v1/models { default_type application/json; return 200 '{"data":[]}'; }
    location / { mirror /drain; error_page 404 405 =200 @answer; root %s; }
    location = /drain { internal; return 204; }
    location @answer { default_type application/json; return 200 '%s'; }
  }""" % (port, pki, pki, resumption, 1000000 if keepalive else 1, pki, COMPLETION))


def proxy_conf(tmp, pki, port, upstream, workers):
    """nginx as the reference proxy: proxy_ssl with verification and a pool
    of keep-alive connections (nginx reuses TLS sessions by default)."""
    return nginx_conf(tmp, "nginx-tls", workers, """
  upstream up { server 127.0.0.1:%d; keepalive 1024; }
  server {
    listen 127.0.0.1:%d;
    location = /health/readiness { return 200 "ok"; }
    location / {
      proxy_pass https://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_trusted_certificate %s/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_name 127.0.0.1;
    }
  }""" % (upstream, port, pki))


def upstream_conns(port):
    """Established TCP connections to the upstream's port (seen from the
    proxy's side)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "dst",
                          "127.0.0.1:%d" % port], capture_output=True, text=True).stdout
    return len([ln for ln in out.splitlines() if ln.strip()])


def run(bm, args, tmp, lua, workers_list=(1, 2)):
    """bm is scripts/bench.py's module (Server, measure, start_llmroute,
    free_port).  Returns the results as a dict."""
    pki = make_pki(tmp)
    path = "/v1/chat/completions"
    res = {}

    def up_server(keepalive, resume):
        port = bm.free_port()
        conf = upstream_conf(tmp, pki, port, keepalive, resume)
        return bm.Server("tls-up", ["nginx", "-c", conf], port, None, tmp,
                         tls_ready=os.path.join(pki, "ca.pem"))

    def llmroute(name, up_port, workers, h2):
        dep = ('ssl_verify = "%s/ca.pem"; http2 = %s;' % (pki, "true" if h2 else "false"))
        return bm.start_llmroute(args, tmp, name, up_port, workers, scheme="https",
                                 params=dep)

    def one(key, up, make):
        srv = make()
        try:
            cpu_up0 = up.cpu_ns()
            r = bm.measure(srv, srv.port, path, args, lua)
            r["upstream_cpu_us_per_req"] = (up.cpu_ns() - cpu_up0) / 1e3 / max(r["requests"], 1)
            r["upstream_conns"] = upstream_conns(up.port)
            res[key] = r
        finally:
            srv.stop()

    up = up_server(True, True)
    try:
        for workers in workers_list:
            # Interleaved: nginx, llmroute h1, llmroute h2, per worker count.
            def ng(w=workers):
                port = bm.free_port()
                return bm.Server("nginx-tls", ["nginx", "-c",
                                               proxy_conf(tmp, pki, port, up.port, w)],
                                 port, "/health/readiness", tmp)
            one("nginx_%dw" % workers, up, ng)
            one("llmroute_h1_%dw" % workers, up,
                lambda w=workers: llmroute("llmroute-tls-h1", up.port, w, False))
            one("llmroute_h2_%dw" % workers, up,
                lambda w=workers: llmroute("llmroute-tls-h2", up.port, w, True))
    finally:
        up.stop()
    # A new TLS connection per request: the upstream answers once and
    # closes.  With and without session resumption, 1 worker each, HTTP/1.1.
    for resume in (True, False):
        up = up_server(False, resume)
        tag = "resume" if resume else "noresume"
        try:
            def ng():
                port = bm.free_port()
                return bm.Server("nginx-tls", ["nginx", "-c",
                                               proxy_conf(tmp, pki, port, up.port, 1)],
                                 port, "/health/readiness", tmp)
            one("nginx_newconn_%s" % tag, up, ng)
            one("llmroute_newconn_%s" % tag, up,
                lambda: llmroute("llmroute-tls-new", up.port, 1, False))
        finally:
            up.stop()
    return res


ROWS = [("nginx_%dw", "nginx proxy_ssl %dw"), ("llmroute_h1_%dw", "llmroute h1 %dw"),
        ("llmroute_h2_%dw", "llmroute h2 %dw")]


def report(res, workers_list=(1, 2)):
    print("\nHTTPS upstream (local nginx, TLS 1.3, test CA), keep-alive:")
    print("%-26s %9s %8s %9s %10s %11s %6s %7s" % (
        "scenario", "req/s", "p50 us", "p99 us", "cpu us/r", "up cpu us/r", "conns",
        "errors"))
    keys = [(k % w, n % w) for w in workers_list for k, n in ROWS]
    keys += [("nginx_newconn_resume", "nginx new conn, resumed"),
             ("llmroute_newconn_resume", "llmroute new conn, resumed"),
             ("nginx_newconn_noresume", "nginx new conn, full hs"),
             ("llmroute_newconn_noresume", "llmroute new conn, full hs")]
    for k, name in keys:
        r = res.get(k)
        if r is None:
            continue
        print("%-26s %9.0f %8.0f %9.0f %10.1f %11.1f %6d %7d" % (
            name, r["rps"], r["p50_us"], r["p99_us"], r["cpu_us_per_req"],
            r["upstream_cpu_us_per_req"], r["upstream_conns"], r["errors"]))
    for w in workers_list:
        n = res.get("nginx_%dw" % w)
        for proto in ("h1", "h2"):
            r = res.get("llmroute_%s_%dw" % (proto, w))
            if n and r:
                ratio = r["cpu_us_per_req"] / n["cpu_us_per_req"]
                res["cpu_ratio_%s_%dw" % (proto, w)] = round(ratio, 2)
                print("llmroute %s %dw over TLS: CPU per request %.2fx nginx's, "
                      "throughput %.2fx" % (proto, w, ratio, r["rps"] / n["rps"]))
