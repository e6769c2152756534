"""Streams that outlive a limit (issue 9): a stream whose upstream goes
silent past stream_idle_timeout, and a stream still running when a reload's
drain_timeout passes, both end with an SSE error event and a clean end of
the chunked reply instead of being cut off."""
import json
import os
import signal
import time

from harness import Daemon, Mock, Stream, TestFailure, deployment, slack, stream_body, wait_for


def error_of(event):
    data = event[1].split("data:", 1)[1].strip()
    return json.loads(data).get("error")


def test_silent_upstream_ends_stream_with_error_event():
    mock = Mock()
    d = Daemon([deployment("g", mock, dep_id="a")], workers=2,
               server="stream_idle_timeout = 1.0;")
    # gaps shorter than the limit pass
    s = Stream(d.port, stream_body(chunks=4, chunk_delay_ms=400))
    assert s.head()[0] == 200
    evs = s.events()
    assert s.ended and not any("error" in e[1] for e in evs), evs
    # an upstream that stops sending: error event, then the end
    s = Stream(d.port, stream_body(chunks=5, stall_after=1))
    assert s.head()[0] == 200
    t0 = time.monotonic()
    evs = s.events()
    took = time.monotonic() - t0
    assert s.ended, "stream not ended cleanly"
    err = error_of(evs[-1])
    print("    silent upstream: stream ended %.1fs after its first byte with %r" % (took, err))
    assert err and err["code"] == "timeout" and "stream_idle_timeout" in err["message"], evs
    assert 0.8 < took < 1.0 + slack(5), took
    d.stop()


def test_reload_deadline_ends_stream_with_error_event():
    mock = Mock()
    d = Daemon([deployment("g", mock, dep_id="a")], workers=2, drain_timeout=2.0)
    s = Stream(d.port, stream_body(chunks=300, chunk_delay_ms=100), timeout=20)
    assert s.head()[0] == 200
    first = s.next_event()
    assert first is not None
    os.kill(d.p.pid, signal.SIGHUP)
    t0 = time.monotonic()
    evs = s.events()
    took = time.monotonic() - t0
    if not s.ended:
        raise TestFailure("stream cut without the end of its chunked reply")
    err = error_of(evs[-1])
    print("    stream at reload: ended %.1fs after SIGHUP with %r" % (took, err))
    assert err and err["code"] == "server_shutting_down", evs[-3:]
    assert "reloading" in err["message"], err
    assert 1.5 < took < 2.0 + slack(8, cap=20), took    # the stream lasts 30 s
    wait_for(lambda: mock.stats()["inflight"] == 0, 10, "the upstream stream aborted")
    d.stop()
