"""The request head guard (worker/conn.c) reads a head a line at a time
since issue 17's third round (it read every byte one by one, and was the
costliest code of llmroute's own on a proxied request).  What that must keep:
the same checks wherever the socket's reads cut a head — a line split over
several reads, a head dripped a byte at a time, a header name longer than
the bytes kept of a line refused, a long request line or header value not —
and the smuggling checks after a split line."""
import json
import socket
import time

import harness
from harness import Daemon, Mock, TestFailure, deployment

CHAT = b"/v1/chat/completions"


def body():
    return json.dumps({"model": "g", "messages": [{"role": "user", "content": "hi"}]}).encode()


def head(extra=b"", target=CHAT):
    return (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n"
            + extra + b"Content-Length: %d\r\n\r\n" % len(body()))


def exchange(port, pieces, pause=0.0, timeout=10.0):
    """Sends pieces as separate writes (pause seconds apart, TCP_NODELAY),
    then reads until the server closes or timeout; returns the bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = b""
    try:
        for p in pieces:
            s.sendall(p)
            if pause:
                time.sleep(pause)   # pacing the writes, not a synchronisation
        deadline = time.monotonic() + timeout
        s.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                if b"\r\n\r\n" in out and out.count(b"HTTP/1.1 ") >= 1 \
                        and len(out) > out.index(b"\r\n\r\n") + 4:
                    break
                continue
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out


def status(raw):
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.") else None


@harness.timeout(120)
def test_head_split_anywhere_or_dripped_is_read_the_same():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=1)
    try:
        data = head() + body()
        # Cut at every place in the head: in the request line, in a name,
        # right before and after a '\r' or '\n', in the blank line.
        cuts = list(range(1, len(head()) + 1, 7)) + [len(head()) - 1, len(head()) - 2]
        for cut in cuts:
            raw = exchange(d.port, [data[:cut], data[cut:]], pause=0.02)
            if status(raw) != 200:
                raise TestFailure("cut at %d (%r): %r" % (cut, data[cut - 3:cut + 3], raw[:200]))
        raw = exchange(d.port, [data[i:i + 1] for i in range(len(head()))] + [body()],
                       pause=0.002)
        assert status(raw) == 200, raw[:200]
        assert m.stats()["requests"] == len(cuts) + 1, m.stats()
    finally:
        d.stop()
        m.stop()


@harness.timeout(120)
def test_long_lines_kept_or_refused_as_before():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=1)
    try:
        # A header name over the 512 bytes kept of a line: refused, the
        # connection closed, nothing upstream; cut inside the name too.
        long_name = head(b"X-" + b"n" * 700 + b": v\r\n") + body()
        for pieces in ([long_name], [long_name[:300], long_name[300:600], long_name[600:]]):
            raw = exchange(d.port, pieces, pause=0.02)
            assert status(raw) == 400, raw[:300]
            assert b"header name too long" in raw, raw[:400]
        # A long value after a short name, and a long request target: not
        # the guard's to refuse.
        long_value = head(b"X-Long: " + b"v" * 3000 + b"\r\n") + body()
        raw = exchange(d.port, [long_value[:100], long_value[100:1700], long_value[1700:]],
                       pause=0.02)
        assert status(raw) == 200, raw[:300]
        raw = exchange(d.port, [head(target=CHAT + b"?x=" + b"q" * 2000) + body()])
        assert status(raw) == 200, raw[:300]
        assert m.stats()["requests"] == 2, m.stats()
    finally:
        d.stop()
        m.stop()


@harness.timeout(120)
def test_smuggling_checks_hold_when_the_lines_are_split():
    """Two Content-Length headers, each cut in the middle of its name or
    value across reads: still refused with 400 and a close."""
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=1)
    try:
        b = body()
        data = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                b"\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(b), len(b) + 5)) + b
        at = data.index(b"Content-Length")
        for cut in (at + 3, at + 16, at + 18, data.index(b"\r\n\r\n") + 1):
            raw = exchange(d.port, [data[:cut], data[cut:]], pause=0.02)
            assert status(raw) == 400, (cut, raw[:300])
        trailer = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                   b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n" % len(b) + b + b"\r\n0\r\nX-Trailer: t\r\n\r\n")
        cut = trailer.index(b"X-Trailer") + 4
        raw = exchange(d.port, [trailer[:cut], trailer[cut:]], pause=0.02)
        assert status(raw) == 200, raw[:300]
        assert m.stats()["requests"] == 1, m.stats()
    finally:
        d.stop()
        m.stop()
