"""Streaming (issue 4): SSE relayed chunk by chunk without buffering, order
and content under many concurrent streams, bounded memory for a slow
reader, upstream aborted on a client disconnect, errors before and after
the first byte, stream_timeout, and usage / time-to-first-token counters.

The streams are read from raw sockets with an incremental chunked-encoding
parser, so the tests see when each byte arrives and that every chunked
reply ends with its terminating chunk."""
import json
import math
import re
import resource
import socket
import threading
import time

import harness
from harness import (CHAT, Daemon, Mock, Stream, TestFailure, chat, data_of, deployment,
                     request, stream_body, wait_for)

COMPLETIONS = "/v1/completions"


# ---------------------------------------------------------------- helpers

def number(v):
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


def numbers(row):
    return {k: number(v) for k, v in row.items()}


def status_rows(d):
    """`llmroute status` by header name, numbers as numbers."""
    return {dep: numbers(row) for dep, row in harness.status_rows(d).items()}


def status_row(d, dep_id):
    return numbers(harness.status_row(d, dep_id))


def content_of(obj):
    ch = obj["choices"][0]
    return ch["delta"].get("content") if "delta" in ch else ch.get("text")


def check_complete(events, n, path=CHAT, usage=False):
    """events (texts) are exactly what the mock sends for n chunks: n
    content events tok0..tok{n-1} in order, the stop event, an optional
    usage event, then [DONE]."""
    want = n + 2 + (1 if usage else 0)
    assert len(events) == want, (len(events), want, events[-3:])
    assert events[-1] == "data: [DONE]", events[-1]
    objs = [json.loads(data_of(e)) for e in events[:-1]]
    obj_type = "chat.completion.chunk" if path == CHAT else "text_completion"
    for i in range(n):
        o = objs[i]
        assert o["object"] == obj_type, o
        assert content_of(o) == "tok%d " % i, (i, o)
        assert o["choices"][0]["finish_reason"] is None, o
    if path == CHAT:
        assert objs[0]["choices"][0]["delta"]["role"] == "assistant", objs[0]
    assert objs[n]["choices"][0]["finish_reason"] == "stop", objs[n]
    if usage:
        assert objs[n + 1]["choices"] == [] and "usage" in objs[n + 1], objs[n + 1]
    return objs


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        new = n if hard == resource.RLIM_INFINITY else min(n, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise TestFailure("no VmRSS for %d" % pid)


def send_queue(port):
    """Bytes waiting in the kernel send queues of established TCP sockets
    whose local port is `port` (the mock's side of upstream connections):
    data the peer is not reading."""
    total = 0
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] == "01" and int(p[1].rsplit(":", 1)[1], 16) == port:
                        total += int(p[4].split(":")[0], 16)
        except FileNotFoundError:
            pass
    return total


# ------------------------------------------------------------------ tests

def test_stream_first_event_not_buffered():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2)
    s = Stream(d.port, stream_body(chunks=5, chunk_delay_ms=1500))
    status, headers = s.head()
    assert status == 200, (status, headers)
    assert headers.get("content-type", "").startswith("text/event-stream"), headers
    assert headers.get("transfer-encoding") == "chunked", headers
    assert headers.get("x-llmroute-deployment") == "a", headers
    first = s.next_event()
    assert first is not None
    t_first, ev = first
    # The mock still holds the other four chunks: it has not finished.
    st = m.stats()
    assert st["inflight"] == 1 and st["completion_tokens"] == 0, st
    # a first event held back with the next one would come after >= 1.5 s
    assert t_first < harness.slack(0.3, cap=1.2), "first event after %.3fs" % t_first
    obj = json.loads(data_of(ev))
    assert obj["object"] == "chat.completion.chunk", obj
    assert obj["id"].startswith("chatcmpl-mock-"), obj
    assert obj["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": "tok0 "},
                               "finish_reason": None}], obj
    rest = s.events()
    t_end = time.monotonic() - s.t0
    assert s.ended
    s.close()
    events = [ev] + [e for _, e in rest]
    check_complete(events, 5)
    # Each content event arrived on its own, paced by the mock's 1.5 s.
    times = [t_first] + [t for t, _ in rest[:4]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g > 1.0 for g in gaps), gaps
    assert t_end >= 5.9, "whole stream took only %.3fs" % t_end
    # All events of one upstream response carry the same id.
    assert {json.loads(data_of(e))["id"] for e in events[:-1]} == {obj["id"]}


def test_stream_500_concurrent_in_order():
    n = 500
    raise_nofile(4096)
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2)
    results = [None] * n
    barrier = threading.Barrier(n, timeout=30)

    def one(i):
        try:
            barrier.wait()
            # latency_ms holds every stream at the mock until the others
            # have arrived, so all 500 really run side by side.
            s = Stream(d.port, stream_body(chunks=10, chunk_delay_ms=20, latency_ms=500,
                                           content="c%d" % i), timeout=20)
            try:
                status, _ = s.head()
                evs = [e for _, e in s.events()] if status == 200 else s.plain_body()
                results[i] = (status, evs, s.ended)
            finally:
                s.close()
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = ("exception", repr(e), False)

    t0 = time.monotonic()
    old = threading.stack_size(256 * 1024)
    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
    finally:
        threading.stack_size(old)
    for t in threads:
        t.join(60)
    took = time.monotonic() - t0
    bad = []
    for i, r in enumerate(results):
        if r is None or r[0] != 200 or not r[2]:
            bad.append((i, r))
            continue
        try:
            check_complete(r[1], 10)
        except AssertionError as e:
            bad.append((i, str(e)[:300]))
    assert not bad, "%d of %d streams bad, e.g. %r" % (len(bad), n, bad[:3])
    st = m.stats()
    assert st["requests"] == n and st["statuses"] == {"200": n}, st
    # They really ran side by side.
    assert st["max_inflight"] >= 0.9 * n, st
    print("    %d streams in %.2fs, mock max_inflight %d" % (n, time.monotonic() - t0,
                                                          st["max_inflight"]))
    row = wait_for(lambda: (lambda r: r if r["INFLIGHT"] == 0 else None)(status_row(d, "a")),
                   5, "inflight back to 0")
    assert row["REQUESTS"] == n and row["SUCCESS"] == n and row["FAILED"] == 0, row
    assert took < harness.slack(20), "500 streams took %.1fs" % took


def test_stream_slow_reader_bounded_rss():
    # The mock allows at most 100000 chunks; a long upstream model name (the
    # mock echoes it in every event) makes each event ~1 KB: a ~40 MB stream.
    chunks = 40000
    model = "m" * 800
    m = Mock("a")
    # Under ASan freed memory sits in a quarantine and RSS grows with the
    # bytes relayed; without the quarantine RSS measures what is held.
    d = Daemon([deployment("g", m, dep_id="a", model=model)], workers=1,
               env={"ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:quarantine_size_mb=0:"
                                    "thread_local_quarantine_size_kb=0"})
    [wpid] = d.workers()
    # A small stream first, so the baseline includes what any stream allocates.
    warm = Stream(d.port, stream_body(chunks=50))
    assert warm.head()[0] == 200
    check_complete([e for _, e in warm.events()], 50)
    warm.close()
    base = vm_rss_kb(wpid)

    s = Stream(d.port, stream_body(chunks=chunks), rcvbuf=64 * 1024, timeout=60)
    samples = []

    def blocked():
        # The daemon stopped reading its upstream (the mock's socket has a
        # send queue) and the worker's RSS has stopped moving.
        samples.append(vm_rss_kb(wpid))
        if samples[-1] - base >= 8 * 1024:
            return True             # buffering without bound: fails below
        last = samples[-5:]
        return (send_queue(m.port) > 0 and len(last) == 5
                and max(last) - min(last) <= 256)
    wait_for(blocked, 20, "upstream blocked behind the slow reader", interval=0.1)
    peak = max(samples)
    growth_kb = peak - base
    st = m.stats()
    assert growth_kb < 8 * 1024, "worker RSS grew %d KB (base %d KB, samples %r)" % (
        growth_kb, base, samples[-10:])
    # Still holding: nothing has been read, the mock's socket is backed up.  The
    # kernel may still grow the worker's send buffer now and then, so the worker
    # drains into it, reads a little more upstream and pauses again: poll.
    wait_for(lambda: send_queue(m.port) > 0, 5, "the mock's socket backed up again")
    assert growth_kb < 8 * 1024, "worker RSS grew %d KB (base %d KB, samples %r)" % (
        growth_kb, base, samples[-10:])

    status, headers = s.head()
    assert status == 200, (status, headers)
    raw = s.rest_raw()
    s.close()
    assert s.ended
    size = len(raw)
    assert size > 30 * 1024 * 1024, size          # the stream dwarfs the growth
    text = raw.decode()
    toks = re.findall(r'"content":"tok(\d+) "', text)
    assert len(toks) == chunks, (len(toks), chunks)
    assert all(int(t) == i for i, t in enumerate(toks)), "content out of order"
    assert text.endswith('"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'), text[-300:]
    assert text.count("data: ") == chunks + 2
    assert text.count('"model":"%s"' % model) == chunks + 1
    row = wait_for(lambda: (lambda r: r if r["SUCCESS"] == 2 else None)(status_row(d, "a")),
                   5, "stream counted")
    assert row["FAILED"] == 0 and row["INFLIGHT"] == 0, row
    print("    slow reader: stream %.1f MB, worker RSS %d KB -> peak %d KB (+%d KB), mock %r"
          % (size / 1e6, base, peak, growth_kb, {k: st[k] for k in ("inflight", "requests")}))


def test_stream_disconnect_aborts_upstream():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2)
    s = Stream(d.port, stream_body(chunks=50, chunk_delay_ms=100))   # ~5 s in all
    assert s.head()[0] == 200
    _, ev = s.next_event()
    assert content_of(json.loads(data_of(ev))) == "tok0 "
    assert m.stats()["inflight"] == 1
    t0 = time.monotonic()
    s.close()
    st = wait_for(lambda: (lambda st: st if st["client_closed"] == 1 and st["inflight"] == 0
                           else None)(m.stats()), 5, "mock sees the upstream close")
    took = time.monotonic() - t0
    assert took < harness.slack(1.0, cap=2.0), "upstream aborted only after %.2fs" % took
    assert st["stream_client_closed"] == 1, st
    assert st["completion_tokens"] == 0, st       # the stream never finished
    row = wait_for(lambda: (lambda r: r if r["INFLIGHT"] == 0 else None)(status_row(d, "a")),
                   2, "status inflight 0")
    assert row["REQUESTS"] == 1, row
    # The daemon is fine afterwards.
    assert chat(d.port, model="g").status == 200


def test_stream_mid_stream_drop_error_event():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2)
    s = Stream(d.port, stream_body(chunks=5, drop_after=2))
    status, headers = s.head()
    assert status == 200, (status, headers)
    events = [e for _, e in s.events()]
    assert s.ended, "chunked reply not terminated"
    s.close()
    assert len(events) == 3, events
    for i in range(2):
        assert content_of(json.loads(data_of(events[i]))) == "tok%d " % i, events[i]
    err = json.loads(data_of(events[2]))
    assert set(err) == {"error"}, err
    e = err["error"]
    assert isinstance(e["message"], str) and e["message"], e
    assert isinstance(e["type"], str) and e["type"], e
    assert e["param"] is None, e
    assert e["code"] == "connection_error", e
    assert "[DONE]" not in "".join(events)
    row = wait_for(lambda: (lambda r: r if r["INFLIGHT"] == 0 else None)(status_row(d, "a")),
                   2, "status inflight 0")
    assert row["FAILED"] == 1 and row["SUCCESS"] == 0 and row["REQUESTS"] == 1, row
    st = m.stats()
    assert st["requests"] == 1 and st["dropped"] == 1, st     # no retry after the first byte


def test_stream_failure_before_first_byte():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2,
               router="num_retries = 0; cooldown_time = 0.0;")
    body = stream_body(chunks=5, status=500)
    direct = request(m.port, "POST", CHAT, dict(body, model="gpt-3.5-turbo"))
    assert direct.status == 500, direct
    m.reset()
    s = Stream(d.port, body)
    status, headers = s.head()
    raw = s.plain_body()
    s.close()
    assert status == 500, (status, headers, raw)
    assert not headers.get("content-type", "").startswith("text/event-stream"), headers
    assert "json" in headers.get("content-type", ""), headers
    assert json.loads(raw) == json.loads(direct.body), (raw, direct.body)
    assert m.stats()["requests"] == 1
    row = status_row(d, "a")
    assert row["FAILED"] == 1 and row["INFLIGHT"] == 0, row


def test_stream_timeout_first_byte():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2,
               router="stream_timeout = 0.5; num_retries = 0; cooldown_time = 0.0;")
    t0 = time.monotonic()
    s = Stream(d.port, stream_body(chunks=3, latency_ms=3000))
    status, headers = s.head()
    raw = s.plain_body()
    took = time.monotonic() - t0
    s.close()
    assert status == 504, (status, headers, raw)
    assert 0.45 <= took <= 0.5 + harness.slack(1.0, cap=2.0), "504 after %.3fs" % took
    err = json.loads(raw)["error"]
    assert err["code"] == "timeout", err
    # The abandoned attempt's connection is closed at the mock.
    wait_for(lambda: m.stats()["client_closed"] == 1, 2, "mock sees the abandoned attempt")
    row = status_row(d, "a")
    assert row["FAILED"] == 1 and row["INFLIGHT"] == 0, row


def test_deployment_stream_timeout_wins_over_the_routers():
    """litellm_params.stream_timeout (LiteLLM allows it per deployment; the
    YAML mapping refused it before) bounds the first byte of that deployment
    only: a router stream_timeout of 30 s does not apply to it."""
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a", params="stream_timeout = 0.5;")], workers=2,
               router="stream_timeout = 30.0; num_retries = 0; cooldown_time = 0.0;")
    t0 = time.monotonic()
    s = Stream(d.port, stream_body(chunks=3, latency_ms=3000))
    status, headers = s.head()
    raw = s.plain_body()
    took = time.monotonic() - t0
    s.close()
    assert status == 504, (status, headers, raw)
    assert 0.45 <= took <= 0.5 + harness.slack(1.0, cap=2.0), "504 after %.3fs" % took
    assert json.loads(raw)["error"]["code"] == "timeout", raw


def test_stream_usage_accounting():
    mu, me = Mock("u"), Mock("e")
    d = Daemon([deployment("gu", mu, dep_id="u"), deployment("ge", me, dep_id="e")],
               workers=2)
    # 1. The upstream's usage chunk is what gets counted.
    for i in range(3):
        s = Stream(d.port, stream_body(model="gu", content="usage " * (i + 1), chunks=4 + i,
                                       extra={"stream_options": {"include_usage": True}}))
        assert s.head()[0] == 200
        objs = check_complete([e for _, e in s.events()], 4 + i, usage=True)
        s.close()
        assert objs[-1]["usage"]["completion_tokens"] == 4 + i, objs[-1]
    st = mu.stats()
    row = wait_for(lambda: (lambda r: r if r["SUCCESS"] == 3 else None)(status_row(d, "u")),
                   2, "usage streams counted")
    assert row["PROMPT_TOK"] == st["prompt_tokens"] and row["COMPL_TOK"] == st[
        "completion_tokens"], (row, st)
    assert row["REQUESTS"] == 3 and row["FAILED"] == 0 and row["INFLIGHT"] == 0, row

    # 2. No usage chunk: estimated from the content streamed and the prompt.
    msgs = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": "count to twelve, please"}]
    body = {"model": "ge", "messages": msgs, "stream": True,
            "x_mock": {"chunks": 12, "latency_ms": 100}}
    s = Stream(d.port, body)
    assert s.head()[0] == 200
    objs = check_complete([e for _, e in s.events()], 12)
    s.close()
    contents = [content_of(o) for o in objs if o["choices"] and content_of(o)]
    content_bytes = sum(len(json.dumps(c)) - 2 for c in contents)
    want_compl = max(len(contents), math.ceil(content_bytes / 4))
    string_bytes = sum(len(m["role"]) + len(m["content"]) for m in msgs)
    want_prompt = math.ceil(string_bytes / 4) + 4 * len(msgs) + 3
    row = wait_for(lambda: (lambda r: r if r["SUCCESS"] == 1 else None)(status_row(d, "e")),
                   2, "estimated stream counted")
    assert row["COMPL_TOK"] == want_compl, (row, want_compl, contents)
    assert row["PROMPT_TOK"] == want_prompt, (row, want_prompt)
    assert me.stats()["completion_tokens"] == 12
    # Time to first token: the mock waited 100 ms before its first byte.
    assert "TTFT_MS" in row, "no TTFT_MS column in llmroute status: %r" % row
    assert row["TTFT_MS"] > 0, row
    assert 90 <= row["TTFT_MS"] < 2000, row


def test_stream_completions_endpoint():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2)
    s = Stream(d.port, stream_body(chunks=6, chunk_delay_ms=10, path=COMPLETIONS,
                                   content="once upon a time"), path=COMPLETIONS)
    status, headers = s.head()
    assert status == 200, (status, headers)
    assert headers.get("content-type", "").startswith("text/event-stream"), headers
    assert headers.get("transfer-encoding") == "chunked", headers
    events = [e for _, e in s.events()]
    s.close()
    objs = check_complete(events, 6, path=COMPLETIONS)
    assert all("text" in o["choices"][0] for o in objs), objs
    assert "".join(content_of(o) for o in objs[:6]) == "".join("tok%d " % i for i in range(6))
    st = m.stats()
    assert st["paths"] == {COMPLETIONS: 1}, st
    row = wait_for(lambda: (lambda r: r if r["SUCCESS"] == 1 else None)(status_row(d, "a")),
                   2, "completions stream counted")
    want_compl = max(6, math.ceil(sum(len("tok%d " % i) for i in range(6)) / 4))
    assert row["COMPL_TOK"] == want_compl and row["INFLIGHT"] == 0, (row, want_compl)
