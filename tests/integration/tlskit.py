"""TLS test kit, not a test file (run.py collects only test_*.py): a test CA
and a certificate for 127.0.0.1 made at test time by the openssl CLI, and
nginx as a TLS upstream or as a TLS-verifying proxy.  Used by test_tls.py
and test_https.py."""
import http.client
import os
import ssl
import subprocess

import harness
from harness import TestFailure

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
COMPLETION = ('{"id":"chatcmpl-tls","object":"chat.completion","created":1,"model":"m",'
              '"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},'
              '"finish_reason":"stop"}],'
              '"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise TestFailure("openssl %s failed: %s" % (" ".join(args), r.stderr))


def make_pki():
    """A test CA, a certificate for IP 127.0.0.1 it signed, and a bundle of
    the system CAs plus the test CA.  Returns the directory."""
    d = harness.tmpdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=llmroute test CA", cwd=d)
    openssl("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1",
            cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    with open(os.path.join(d, "bundle.pem"), "w") as out:
        for src in (SYSTEM_BUNDLE, os.path.join(d, "ca.pem")):
            with open(src) as f:
                out.write(f.read())
    with open(os.path.join(d, "bundle.pem")) as f:
        n = f.read().count("BEGIN CERTIFICATE")
    if n < 100:
        raise TestFailure("the system CA bundle has only %d certificates" % n)
    return d


class Nginx(harness.Proc):
    """nginx in the foreground with its own conf, pid, log and temp paths;
    `http` is the body of its http block.  Ready when GET /ready answers,
    which touches no upstream."""

    def __init__(self, name, http, port, ready=None):
        d = harness.tmpdir()
        self.port = port
        self.pid_path = os.path.join(d, "nginx.pid")
        temps = "".join("%s_temp_path %s;\n" % (t, os.path.join(d, t))
                        for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = """%s
worker_processes 1;
daemon off;
pid %s;
error_log %s warn;
events { worker_connections 4096; }
http {
  access_log off;
  %s
  %s
}
""" % ("user root;" if os.getuid() == 0 else "", self.pid_path,
            os.path.join(d, "error.log"), temps, http)
        conf_path = os.path.join(d, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        super().__init__(["nginx", "-c", conf_path, "-e", os.path.join(d, "error.log")],
                         name)
        ready = ready or (lambda: harness.request(port, "GET", "/ready", timeout=2).status)
        harness.wait_for(lambda: self.p.poll() is not None or ready() == 200, 10,
                         name + " readiness")
        if self.p.poll() is not None:
            raise TestFailure("%s exited: %s" % (name, self.log_text()))

    def worker(self):
        out = subprocess.run(["pgrep", "-P", str(self.p.pid)], capture_output=True,
                             text=True)
        pids = [int(x) for x in out.stdout.split()]
        if len(pids) != 1:
            raise TestFailure("%s has %d workers" % (self.name, len(pids)))
        return pids[0]


def https_get(pki, port, path):
    """GET over TLS, verified with the test CA alone; returns the status."""
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        c.request("GET", path)
        return c.getresponse().status
    finally:
        c.close()


def tls_upstream(pki):
    """TLS 1.3 where both ends allow it, as public APIs do (nginx 1.22's
    default stops at 1.2)."""
    port = harness.free_port()
    return Nginx("tls-upstream", """
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s/srv.pem;
    ssl_certificate_key %s/srv.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 100000;
    location = /ready { return 200 "ok"; }
    location / { default_type application/json; return 200 '%s'; }
  }""" % (port, pki, pki, COMPLETION), port, lambda: https_get(pki, port, "/ready"))


def nginx_proxy(pki, upstream_port):
    port = harness.free_port()
    return Nginx("nginx-proxy", """
  upstream up { server 127.0.0.1:%d; keepalive 1024; }
  server {
    listen 127.0.0.1:%d;
    location = /ready { return 200 "ok"; }
    location / {
      proxy_pass https://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_trusted_certificate %s/bundle.pem;
      proxy_ssl_verify on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_name 127.0.0.1;
    }
  }""" % (upstream_port, port, pki), port)
