"""Stream events batched per loop iteration (issue 17): libcurl hands a
chunked upstream answer over one chunk at a time, so an upstream read that
holds several events used to make one send to the client for each.  The
worker now gathers what one loop iteration reads and sends it as one
chunk.  These tests check what that must not change (every event, in
order, the error event after the events read before it) and that it
batches: the mock's chunk_burst sends several events in one write."""
import json
import socket

import harness
from harness import CHAT, Daemon, Mock, TestFailure, data_of, deployment, stream_body


def raw_stream(port, body, timeout):
    """POSTs body with Connection: close and reads the whole reply; returns
    (status, the chunks' payloads as the client's reads framed them)."""
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n" % (CHAT.encode(), len(data))
                  + data)
        buf = bytearray()
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            buf += d
    finally:
        s.close()
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if b"transfer-encoding: chunked" not in head.lower():
        raise TestFailure("reply not chunked: %r" % head)
    chunks, pos = [], 0
    while True:
        nl = rest.index(b"\r\n", pos)
        size = int(rest[pos:nl], 16)
        if size == 0:
            return status, chunks
        chunks.append(rest[nl + 2:nl + 2 + size].decode())
        pos = nl + 2 + size + 2


def events_of(chunks):
    return [e for e in "".join(chunks).split("\n\n") if e]


def content(ev):
    return json.loads(data_of(ev))["choices"][0]["delta"].get("content")


@harness.timeout(60)
def test_stream_bursts_relayed_whole_in_order_one_send_per_burst():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2)
    bursts, per = 6, 4
    status, chunks = raw_stream(d.port, stream_body(chunks=bursts * per, chunk_delay_ms=40,
                                                    chunk_burst=per), harness.slack(20))
    assert status == 200, status
    events = events_of(chunks)
    assert len(events) == bursts * per + 2, (len(events), events[-3:])
    for i in range(bursts * per):
        assert content(events[i]) == "tok%d " % i, (i, events[i])
    assert events[-1] == "data: [DONE]", events[-1]
    # One chunk per burst, give or take the first (it may go out with the
    # head or apart) and the end (stop event and [DONE] after the last
    # pause): sent one by one, there would be 26.
    if len(chunks) > bursts + 3:
        raise TestFailure("%d chunks for %d bursts of %d events: %r" %
                          (len(chunks), bursts, per, [c[:40] for c in chunks]))


@harness.timeout(60)
def test_stream_error_event_follows_the_events_read_with_the_drop():
    """The events of the upstream's last write and its close arrive in one
    read: the events still gathered go out before the error event."""
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2)
    status, chunks = raw_stream(d.port, stream_body(chunks=9, chunk_delay_ms=30, chunk_burst=3,
                                                    drop_after=6), harness.slack(20))
    assert status == 200, status
    events = events_of(chunks)
    assert len(events) == 7, events
    for i in range(6):
        assert content(events[i]) == "tok%d " % i, (i, events[i])
    err = json.loads(data_of(events[6]))
    assert err["error"]["code"] == "connection_error", err
    assert "[DONE]" not in "".join(chunks)
