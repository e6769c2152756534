"""Usage-aware routing (issue 6; DESIGN.md sections 7-8): rpm, tpm and
max_parallel_requests exact across 4 workers, least-busy, latency-based,
order, the max_input_tokens pre-call check, and a killed worker's in-flight
share given back.

Every daemon runs 4 workers.  Concurrent load is sent on connections opened
beforehand whose owning worker is read from /proc, so a test can show that
the load really was spread over every worker; the requests start together
behind a barrier.  rpm and tpm windows are calendar minutes (wall clock ms /
60000), so a test that counts in one window first makes sure the current
minute has enough left (waiting for the next one if not).

The token estimate (worker/stream.c) is computed here from the same formula:
ceil(bytes of the string values under messages/prompt/input / 4) + 4 per
message + 3.  The mock reports prompt = upstream body length / 4 + 1 and
completion = 5, always more than the estimate (the body holds the keys and
punctuation too), so correcting a window with the reported usage only ever
makes it larger.
"""
import http.client
import json
import os
import signal
import threading
import time

from harness import BAD_LOG, Daemon, Mock, TestFailure, chat, deployment, wait_for
from harness import conns_per_worker, minute_room, status_rows as harness_status_rows

WORKERS = 4
UPSTREAM_MODEL = "gpt-3.5-turbo"        # what harness.deployment() routes to


# ---------------------------------------------------------------- helpers

def status_rows(d):
    """harness.status_rows(), with the columns these tests read."""
    rows = harness_status_rows(d)
    for row in rows.values():
        for c in ("INFLIGHT", "RPM_MIN", "TPM_MIN", "EWMA_MS", "TTFT_MS"):
            assert c in row, "no %s column in status: %s" % (c, row)
    return rows


def col(d, dep, name):
    return float(status_rows(d)[dep][name])




def check_retry_after(r, t0, t1):
    """Retry-After of a limit 429 is the seconds left in the minute of the
    request, rounded up (t0 <= request time <= t1)."""
    ra = r.headers.get("retry-after", "")
    assert ra.isdigit(), "no Retry-After on %r: %s" % (r, r.headers)
    lo, hi = 60 - t1 % 60, 60 - t0 % 60
    assert int(lo) <= int(ra) <= int(hi) + 1 and 1 <= int(ra) <= 60, \
        "Retry-After %s, wanted the %.1f-%.1f s left in the minute" % (ra, lo, hi)


def limit_429(r, group, limit):
    assert r.status == 429, "expected a 429, got %r" % r
    err = r.json()["error"]
    assert err["code"] == "rate_limit_exceeded", err
    assert err["message"] == "model group %s: every deployment is at its %s limit" % (
        group, limit), err
    assert r.headers.get("x-llmroute-model-group") == group, r.headers


def esc_len(s):
    return len(json.dumps(s)[1:-1].encode())


def estimate(messages):
    """The daemon's prompt token estimate for a messages array."""
    def strings(v):
        if isinstance(v, str):
            return esc_len(v)
        if isinstance(v, dict):
            return sum(strings(x) for x in v.values())
        if isinstance(v, list):
            return sum(strings(x) for x in v)
        return 0
    return (strings(messages) + 3) // 4 + 4 * len(messages) + 3


def user(content):
    return [{"role": "user", "content": content}]


def content_for(tokens):
    """A user message content whose estimate is exactly `tokens`."""
    c = "x" * (4 * (tokens - 7) - 4)
    assert estimate(user(c)) == tokens
    return c


def mock_usage(group, content, extra=None):
    """prompt + completion tokens the mock reports for chat(model=group,
    content=content): the upstream body is the client's with "model"
    rewritten."""
    body = {"model": group, "messages": user(content)}
    body.update(extra or {})
    up = json.dumps(body).replace('"model": "%s"' % group, '"model": "%s"' % UPSTREAM_MODEL, 1)
    return len(up.encode()) // 4 + 1 + 5


def balanced_conns(d, n):
    """n connections, n / WORKERS accepted by each worker: [(pid, conn)]."""
    return [(p, c) for p, cs in conns_per_worker(d, n // WORKERS).items() for c in cs]


def spread(conns):
    by = {}
    for pid, _ in conns:
        by[pid] = by.get(pid, 0) + 1
    return by


def fire(conns, send):
    """Runs send(conn, i) for every connection at once (threads released
    together by a barrier).  Returns [(response or exception, monotonic time
    it came back)] in connection order, and the monotonic start time."""
    out = [None] * len(conns)
    gate = threading.Barrier(len(conns) + 1)

    def run(i, c):
        gate.wait()
        try:
            r = send(c, i)
        except Exception as e:      # noqa: BLE001 - reported by the caller
            r = e
        out[i] = (r, time.monotonic())
    ts = [threading.Thread(target=run, args=(i, c)) for i, (_, c) in enumerate(conns)]
    for t in ts:
        t.start()
    gate.wait()
    t0 = time.monotonic()
    for t in ts:
        t.join(60)
    assert not any(t.is_alive() for t in ts), "requests still running after 60 s"
    errors = [r for r, _ in out if isinstance(r, Exception)]
    assert not errors, "%d requests raised, first: %r" % (len(errors), errors[0])
    for _, c in conns:
        c.close()
    return out, t0


def hammer(port, threads, per_thread, **kw):
    """threads clients, each sending per_thread requests in a row on its own
    keep-alive connection.  Returns the responses."""
    out, lock = [], threading.Lock()
    errors = []

    def run():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for _ in range(per_thread):
                r = chat(port, conn=c, **kw)
                with lock:
                    out.append(r)
        except Exception as e:      # noqa: BLE001
            errors.append(e)
        finally:
            c.close()
    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, "requests raised: %r" % errors[:3]
    return out


def by_dep(responses):
    seen = {}
    for r in responses:
        assert r.status == 200, r
        k = r.headers.get("x-llmroute-deployment")
        seen[k] = seen.get(k, 0) + 1
    return seen


def ask(d, **kw):
    """chat() that, when the daemon drops the connection, fails with the
    crash lines of its log instead of a bare RemoteDisconnected."""
    try:
        return chat(d.port, **kw)
    except (ConnectionError, http.client.HTTPException) as e:
        wait_for(lambda: BAD_LOG.search(d.log_text()), 3, "the worker's crash to be logged")
        raise TestFailure("no answer (%r); the daemon's log has:\n%s" % (e, "\n".join(
            l for l in d.log_text().splitlines() if BAD_LOG.search(l) or "#" in l)[:3000]))


def context_400(r, group, tokens, window):
    """OpenAI's own wording (LangChain and others look for it), then ours."""
    assert r.status == 400, r
    err = r.json()["error"]
    assert err["code"] == "context_length_exceeded", err
    assert err["message"].startswith(
        "This model's maximum context length is %d tokens. However, your messages resulted "
        "in %d tokens. Please reduce the length of the messages." % (window, tokens)), err
    assert "model group %s" % group in err["message"], err
    assert "retry-after" not in r.headers, r.headers


def statuses(results):
    s = {}
    for r, _ in results:
        s[r.status] = s.get(r.status, 0) + 1
    return s


# ---------------------------------------------------------------- rpm

def test_rpm_exact_across_workers():
    """rpm = 60 and 200 concurrent requests through the 4 workers in one
    minute: the mock receives exactly 60, the other 140 get 429
    rate_limit_exceeded naming the rpm limit, with Retry-After = the seconds
    left in the minute, and no upstream call."""
    m = Mock("lim")
    d = Daemon([deployment("g", m, dep_id="lim", params="rpm = 60;")], workers=WORKERS)
    conns = balanced_conns(d, 200)
    t_wall0 = minute_room(10)
    out, _ = fire(conns, lambda c, i: chat(d.port, model="g", content="r%d" % i, conn=c))
    t_wall1 = time.time()
    assert int(t_wall0 // 60) == int(t_wall1 // 60), "the burst straddled a minute"
    st = statuses(out)
    assert st == {200: 60, 429: 140}, "answers %s (requests per worker: %s)" % (st, spread(conns))
    for r, _ in out:
        if r.status == 200:
            assert r.headers.get("x-llmroute-deployment") == "lim", r.headers
        else:
            limit_429(r, "g", "rpm")
            check_retry_after(r, t_wall0, t_wall1)
            assert r.headers.get("x-llmroute-attempts") == "0", r.headers
    assert m.stats()["requests"] == 60, m.stats()
    row = status_rows(d)["lim"]
    assert (row["RPM_MIN"], row["REQUESTS"], row["INFLIGHT"]) == ("60", "60", "0"), row


def test_rpm_overflow_goes_to_unlimited_deployment():
    """The same burst with a second deployment without limits
    (usage-based-routing): every request is served, the limited one gets
    exactly 60, the other the remaining 140."""
    lim, free = Mock("lim"), Mock("free")
    d = Daemon([deployment("g", lim, dep_id="lim", params="rpm = 60;"),
                deployment("g", free, dep_id="free")], workers=WORKERS,
               router='routing_strategy = "usage-based-routing";')
    conns = balanced_conns(d, 200)
    t_wall0 = minute_room(10)
    out, _ = fire(conns, lambda c, i: chat(d.port, model="g", content="r%d" % i, conn=c))
    assert int(t_wall0 // 60) == int(time.time() // 60), "the burst straddled a minute"
    seen = by_dep([r for r, _ in out])
    assert seen == {"lim": 60, "free": 140}, seen
    assert lim.stats()["requests"] == 60 and free.stats()["requests"] == 140, (
        lim.stats()["requests"], free.stats()["requests"])
    rows = status_rows(d)
    assert rows["lim"]["RPM_MIN"] == "60" and rows["free"]["RPM_MIN"] == "140", rows


# ---------------------------------------------------------------- tpm

def test_tpm_exact_under_concurrent_burst():
    """tpm = 1000 and 200 concurrent requests of estimate E = 33 tokens: the
    window admits on the estimate, so exactly floor(1000 / 33) = 30 reach the
    mock, provided every refusal comes before the first response corrects the
    window (the mock waits 2 s; the 429s must all be back long before).  Once
    the 30 are answered the window holds their reported usage exactly."""
    latency = 2.0
    content = content_for(33)
    est, used, tpm = 33, mock_usage("g", content), 1000
    assert used > est, (used, est)
    m = Mock("t", ["--latency", str(int(latency * 1000))])
    d = Daemon([deployment("g", m, dep_id="t", params="tpm = %d;" % tpm)], workers=WORKERS,
               router='routing_strategy = "least-busy";')
    conns = balanced_conns(d, 200)
    t_wall0 = minute_room(10)
    out, t0 = fire(conns, lambda c, i: chat(d.port, model="g", content=content, conn=c))
    t_wall1 = time.time()
    assert int(t_wall0 // 60) == int(t_wall1 // 60), "the burst straddled a minute"
    last_429 = max([t for r, t in out if r.status == 429], default=t0) - t0
    assert last_429 < 0.8 * latency, (
        "the last 429 came %.2fs after the burst began, with responses due after %.1fs: "
        "the burst was too slow to test the estimate alone" % (last_429, latency))
    k = tpm // est
    st = statuses(out)
    assert st == {200: k, 429: 200 - k}, "answers %s, wanted %d served (tpm %d / estimate %d)" \
        % (st, k, tpm, est)
    for r, _ in out:
        if r.status == 429:
            limit_429(r, "g", "tpm")
            check_retry_after(r, t_wall0, t_wall1)
    st = m.stats()
    assert st["requests"] == k, st
    assert st["prompt_tokens"] + st["completion_tokens"] == k * used, (st, k, used)
    row = status_rows(d)["t"]
    assert int(row["TPM_MIN"]) == k * used, "TPM_MIN %s, wanted %d requests x %d reported " \
        "tokens" % (row["TPM_MIN"], k, used)
    assert row["RPM_MIN"] == str(k) and row["INFLIGHT"] == "0", row


def test_tpm_window_corrected_by_reported_usage():
    """One request at a time, round-robin over the workers: each response
    replaces its estimate E by the mock's reported usage U > E before the next
    is admitted, so the tpm deployment (order 1) takes exactly
    floor((tpm - E) / U) + 1 requests, then the order-2 deployment serves."""
    content = content_for(40)
    est, used, tpm = 40, mock_usage("g", content), 1500
    m, spare = Mock("t"), Mock("spare")
    d = Daemon([deployment("g", m, dep_id="t", params="tpm = %d; order = 1;" % tpm),
                deployment("g", spare, dep_id="spare", params="order = 2;")],
               workers=WORKERS)
    conns = [c for cs in conns_per_worker(d, 1).values() for c in cs]
    k = (tpm - est) // used + 1
    minute_room(10)
    got = []
    for i in range(k + 8):
        r = chat(d.port, model="g", content=content, conn=conns[i % len(conns)])
        assert r.status == 200, r
        got.append(r.headers["x-llmroute-deployment"])
    want = ["t"] * k + ["spare"] * 8
    assert got == want, "deployments in turn %s, wanted %d on t (tpm %d, estimate %d, " \
        "reported %d) then spare" % (got, k, tpm, est, used)
    assert m.stats()["requests"] == k, m.stats()
    row = status_rows(d)["t"]
    assert int(row["TPM_MIN"]) == k * used, (row, k, used)
    # the mock's usage is what was predicted
    st = m.stats()
    assert st["prompt_tokens"] + st["completion_tokens"] == k * used, (st, k, used)


def test_failed_attempts_give_tokens_back():
    """tpm = 100 and requests of estimate 33 that the upstream fails (500):
    each failed attempt gives its tokens back, so all 10 reach the mock
    (without that only 3 would fit) and the window ends empty; the rpm
    window keeps every attempt sent."""
    content = content_for(33)
    m = Mock("t")
    d = Daemon([deployment("g", m, dep_id="t", params="tpm = 100;")], workers=WORKERS,
               router="num_retries = 0; cooldown_time = 0;")
    minute_room(5)
    for _ in range(10):
        r = chat(d.port, model="g", content=content, timeout=5,
                 extra={"x_mock": {"status": 500}})
        assert r.status == 500, "a failing request was refused: %r" % r
    assert m.stats()["requests"] == 10, m.stats()
    row = status_rows(d)["t"]
    assert (row["TPM_MIN"], row["RPM_MIN"], row["INFLIGHT"]) == ("0", "10", "0"), row
    r = chat(d.port, model="g", content=content, timeout=5)
    assert r.status == 200, r
    assert int(status_rows(d)["t"]["TPM_MIN"]) == mock_usage("g", content), status_rows(d)


def test_stream_usage_corrects_window():
    """A stream's estimate is replaced by the usage its last chunk reports
    (stream_options.include_usage), on every worker."""
    m = Mock("t")
    d = Daemon([deployment("g", m, dep_id="t", params="tpm = 100000;")], workers=WORKERS)
    extra = {"stream": True, "stream_options": {"include_usage": True}}
    minute_room(5)
    for cs in conns_per_worker(d, 1).values():
        r = chat(d.port, model="g", content="s" * 50, extra=extra, conn=cs[0], timeout=5)
        assert r.status == 200 and b'"usage"' in r.body, r
        assert r.body.rstrip().endswith(b"data: [DONE]"), r.body[-200:]
    st = m.stats()
    assert st["requests"] == WORKERS, st
    row = status_rows(d)["t"]
    assert int(row["TPM_MIN"]) == st["prompt_tokens"] + st["completion_tokens"], (row, st)
    assert int(row["PROMPT_TOK"]) == st["prompt_tokens"], (row, st)


# ---------------------------------------------------------------- strategies

def test_least_busy_prefers_fast_deployment():
    """least-busy with a slow (300 ms) and a fast deployment under 16
    concurrent clients: the slow one holds its requests in flight, so most
    traffic goes to the fast one."""
    slow, fast = Mock("slow", ["--latency", "300"]), Mock("fast")
    d = Daemon([deployment("g", slow, dep_id="slow"), deployment("g", fast, dep_id="fast")],
               workers=WORKERS, router='routing_strategy = "least-busy";')
    seen = by_dep(hammer(d.port, 16, 15, model="g", timeout=10))
    total = sum(seen.values())
    assert total == 240, seen
    assert seen.get("fast", 0) >= 0.8 * total, \
        "least-busy sent %s: the fast deployment should take most of the load" % seen
    assert slow.stats()["requests"] == seen.get("slow", 0), slow.stats()
    assert slow.stats()["max_inflight"] >= 1, slow.stats()
    rows = status_rows(d)
    assert rows["slow"]["INFLIGHT"] == "0" and rows["fast"]["INFLIGHT"] == "0", rows


def test_least_busy_counts_every_workers_inflight():
    """Three slow requests held through one worker leave one deployment with
    more in flight than the other (2 and 1, or 3 and 0); requests through the
    other three workers then all go to the less busy one, which they can
    only know from the shared counts."""
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b")],
               workers=WORKERS, router='routing_strategy = "least-busy";')
    by_worker = conns_per_worker(d, 3)
    holder, *others = list(by_worker)
    held_results = []

    def hold(c):
        held_results.append(chat(d.port, model="g", conn=c, timeout=10,
                                 extra={"x_mock": {"latency_ms": 1500}}))
    held = [threading.Thread(target=hold, args=(c,)) for c in by_worker[holder]]
    for t in held:
        t.start()
    wait_for(lambda: a.stats()["inflight"] + b.stats()["inflight"] == 3, 3,
             "3 held requests at the mocks")
    rows = status_rows(d)
    busy = {k: int(rows[k]["INFLIGHT"]) for k in ("a", "b")}
    assert sorted(busy.values()) in ([1, 2], [0, 3]), busy
    idle = min(busy, key=busy.get)
    got = []
    for i in range(12):
        r = chat(d.port, model="g", conn=by_worker[others[i % 3]][0], timeout=5)
        assert r.status == 200, r
        got.append(r.headers["x-llmroute-deployment"])
    assert got == [idle] * 12, "in flight %s (all through worker %d); requests through the " \
        "other workers went to %s" % (busy, holder, got)
    for t in held:
        t.join(10)
    assert [r.status for r in held_results] == [200] * 3, held_results


def _latency_phase(d, fast_dep, stream, n, threads):
    """Warms latency-based routing up (one request to each unmeasured
    deployment), then sends n requests on `threads` clients; returns
    {deployment: count} of those n."""
    extra = {"stream": True} if stream else None
    column = "TTFT_MS" if stream else "EWMA_MS"
    warm = 0
    while not all(float(r[column]) > 0 for r in status_rows(d).values()):
        r = chat(d.port, model="g", extra=extra, timeout=5)
        assert r.status == 200, r
        warm += 1
        assert warm <= 4, "unmeasured deployments are not tried first: %d warm-up " \
            "requests, status %s" % (warm, status_rows(d))
    assert warm == 2, "both deployments measured after %d requests" % warm
    rows = status_rows(d)
    slow_ms = [float(r[column]) for k, r in rows.items() if k != fast_dep][0]
    assert float(rows[fast_dep][column]) < slow_ms, rows
    return by_dep(hammer(d.port, threads, n // threads, model="g", extra=extra, timeout=10))


def test_latency_based_prefers_fast_deployment():
    """latency-based-routing with mocks at 10 ms and 100 ms: after one
    request each (unmeasured first), at least 90% goes to the fast one, for
    whole responses (latency EWMA) and for streams (time-to-first-token EWMA,
    measured on their own)."""
    slow, fast = Mock("slow", ["--latency", "100"]), Mock("fast", ["--latency", "10"])
    d = Daemon([deployment("g", slow, dep_id="slow"), deployment("g", fast, dep_id="fast")],
               workers=WORKERS, router='routing_strategy = "latency-based-routing";')
    for stream in (False, True):
        seen = _latency_phase(d, "fast", stream, 96, 8)
        assert seen.get("fast", 0) >= 0.9 * 96, "%s: latency-based sent %s" % (
            "streams" if stream else "requests", seen)


def test_latency_buffer_spreads_load():
    """lowest_latency_buffer = 20 (2000%): 10 ms and 100 ms are both within
    the buffer of the best, so both get traffic."""
    slow, fast = Mock("slow", ["--latency", "100"]), Mock("fast", ["--latency", "10"])
    d = Daemon([deployment("g", slow, dep_id="slow"), deployment("g", fast, dep_id="fast")],
               workers=WORKERS, router='routing_strategy = "latency-based-routing"; '
               'routing_strategy_args = { lowest_latency_buffer = 20.0; };')
    seen = _latency_phase(d, "fast", False, 48, 8)
    # uniform between the two: P(slow < 8 of 48) < 1e-6
    assert seen.get("slow", 0) >= 8 and seen.get("fast", 0) >= 8, seen


# ---------------------------------------------------------------- max_parallel_requests

def test_max_parallel_never_exceeded():
    """max_parallel_requests = 5 holds across the 4 workers under 100
    concurrent requests that overlap (the mock answers after 300 ms): alone,
    the mock never has more than 5 in flight and the rest get 429 naming the
    limit with Retry-After: 1; beside a deployment without limits
    (least-busy), every request is served and the limited one still never
    sees more than 5 at once."""
    solo = Mock("solo", ["--latency", "300"])
    par, other = Mock("par", ["--latency", "300"]), Mock("other", ["--latency", "300"])
    d = Daemon([deployment("solo", solo, dep_id="solo", params="max_parallel_requests = 5;"),
                deployment("g", par, dep_id="par", params="max_parallel_requests = 5;"),
                deployment("g", other, dep_id="other")], workers=WORKERS,
               router='routing_strategy = "least-busy";')
    conns = balanced_conns(d, 100)
    out, _ = fire(conns, lambda c, i: chat(d.port, model="solo", conn=c, timeout=10))
    st, ms = statuses(out), solo.stats()
    assert ms["max_inflight"] == 5, "max_inflight %d at the mock, wanted 5: %s" % (
        ms["max_inflight"], ms)
    assert st.get(200, 0) == ms["requests"] and st.get(200, 0) + st.get(429, 0) == 100, (st, ms)
    for r, _ in out:
        if r.status == 429:
            limit_429(r, "solo", "max_parallel_requests")
            assert r.headers.get("retry-after") == "1", r.headers
    conns = balanced_conns(d, 100)
    out, _ = fire(conns, lambda c, i: chat(d.port, model="g", conn=c, timeout=10))
    seen = by_dep([r for r, _ in out])
    ps = par.stats()
    assert 1 <= ps["max_inflight"] <= 5, "max_inflight %d at the limited mock: %s" % (
        ps["max_inflight"], ps)
    assert seen.get("par", 0) == ps["requests"] >= 5, (seen, ps)
    assert seen.get("other", 0) == other.stats()["requests"], (seen, other.stats())
    rows = status_rows(d)
    assert all(rows[k]["INFLIGHT"] == "0" for k in ("solo", "par", "other")), rows


def test_killed_worker_gives_back_inflight():
    """A worker SIGKILLed while it holds 2 slow requests: the master takes
    back its in-flight share when it reaps it, at once (INFLIGHT 5 -> 3
    while the other 3 are still running), so max_parallel_requests = 5
    admits again; after the rest finish INFLIGHT is 0."""
    slow = 2500
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a", params="max_parallel_requests = 5;")],
               workers=WORKERS)
    d.allowed.append("exited on signal 9")
    by_worker = conns_per_worker(d, 2)
    victim, *others = list(by_worker)
    held = [(victim, c) for c in by_worker[victim]] + [(p, by_worker[p][0]) for p in others]
    results = {}

    def send(i, c):
        try:
            results[i] = chat(d.port, model="g", conn=c, timeout=15,
                              extra={"x_mock": {"latency_ms": slow}})
        except Exception as e:      # noqa: BLE001
            results[i] = e
    ts = [threading.Thread(target=send, args=(i, c)) for i, (_, c) in enumerate(held)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    wait_for(lambda: m.stats()["inflight"] == 5, 3, "5 slow requests at the mock")
    assert col(d, "a", "INFLIGHT") == 5, status_rows(d)["a"]
    r = chat(d.port, model="g", timeout=5)
    limit_429(r, "g", "max_parallel_requests")
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: col(d, "a", "INFLIGHT") == 3, 2, "INFLIGHT back to 3 after the kill")
    assert time.monotonic() - t0 < slow / 1000.0 - 0.5, "too slow to tell"
    # two places are free again, while the 3 slow requests still run
    r = chat(d.port, model="g", timeout=5)
    assert r.status == 200, "a free place after the reap was refused: %r" % r
    assert m.stats()["inflight"] >= 3, m.stats()
    for t in ts:
        t.join(15)
    for i, (pid, _) in enumerate(held):
        if pid == victim:
            assert isinstance(results[i], (ConnectionError, http.client.HTTPException)), \
                results[i]
        else:
            assert not isinstance(results[i], Exception) and results[i].status == 200, \
                results[i]
    wait_for(lambda: col(d, "a", "INFLIGHT") == 0, 3, "INFLIGHT back to 0")
    wait_for(lambda: len(d.workers()) == WORKERS, 5, "the killed worker to be replaced")
    r = chat(d.port, model="g", timeout=5)
    assert r.status == 200, r


# ---------------------------------------------------------------- order

def test_order_falls_through_at_limit():
    """order = 1 with rpm = 5, order = 2 with rpm = 5, and one without an
    order: one request at a time, round-robin over the workers, the first 5
    go to order 1, the next 5 to order 2, then to the unordered one, which
    comes after every set order although latency-based-routing would try it
    first (it is unmeasured)."""
    m1, m2, m3 = Mock("o1"), Mock("o2"), Mock("none")
    d = Daemon([deployment("g", m3, dep_id="none"),
                deployment("g", m2, dep_id="o2", params="order = 2; rpm = 5;"),
                deployment("g", m1, dep_id="o1", params="order = 1; rpm = 5;")],
               workers=WORKERS, router='routing_strategy = "latency-based-routing";')
    conns = [c for cs in conns_per_worker(d, 1).values() for c in cs]
    minute_room(5)
    got = []
    for i in range(15):
        r = chat(d.port, model="g", conn=conns[i % len(conns)], timeout=5)
        assert r.status == 200, r
        got.append(r.headers["x-llmroute-deployment"])
    assert got == ["o1"] * 5 + ["o2"] * 5 + ["none"] * 5, got
    assert [m.stats()["requests"] for m in (m1, m2, m3)] == [5, 5, 5]


# ---------------------------------------------------------------- pre-call check

def test_max_input_tokens_pre_call_check():
    """A prompt estimated above a deployment's max_input_tokens skips it
    (exactly: an estimate equal to the window still fits); with none left,
    context_window_fallbacks serve, else 400 context_length_exceeded without
    any upstream call."""
    small, big = Mock("small"), Mock("big")
    tiny, large, alone = Mock("tiny"), Mock("large"), Mock("alone")
    d = Daemon([deployment("mix", small, dep_id="small", info="max_input_tokens = 100;"),
                deployment("mix", big, dep_id="big", info="max_input_tokens = 1000;"),
                deployment("tiny", tiny, dep_id="tiny", info="max_input_tokens = 100;"),
                deployment("large", large, dep_id="large"),
                deployment("alone", alone, dep_id="alone", info="max_input_tokens = 100;")],
               workers=WORKERS,
               router='context_window_fallbacks = ( { model = "tiny"; fallbacks = ["large"]; } );')
    fits, over, huge = content_for(100), content_for(101), content_for(1001)
    for _ in range(20):
        r = ask(d, model="mix", content=over, timeout=5)
        assert r.status == 200 and r.headers["x-llmroute-deployment"] == "big", r
    assert small.stats()["requests"] == 0, small.stats()
    seen = by_dep([ask(d, model="mix", content=fits, timeout=5) for _ in range(20)])
    assert seen.get("small", 0) >= 1, "an estimate equal to max_input_tokens was refused: " \
        "%s" % seen
    context_400(ask(d, model="mix", content=huge, timeout=5), "mix", 1001, 1000)
    # with context_window_fallbacks
    r = ask(d, model="tiny", content=over, timeout=5)
    assert r.status == 200, r
    assert r.headers.get("x-llmroute-deployment") == "large", r.headers
    assert r.headers.get("x-llmroute-fallback") == "large", r.headers
    assert r.headers.get("x-llmroute-model-group") == "tiny", r.headers
    assert tiny.stats()["requests"] == 0, tiny.stats()
    r = ask(d, model="tiny", content=fits, timeout=5)
    assert r.status == 200 and r.headers.get("x-llmroute-deployment") == "tiny", r
    # without
    context_400(ask(d, model="alone", content=over, timeout=5), "alone", 101, 100)
    assert alone.stats()["requests"] == 0, alone.stats()
    r = ask(d, model="alone", content=fits, timeout=5)
    assert r.status == 200 and r.headers.get("x-llmroute-deployment") == "alone", r
