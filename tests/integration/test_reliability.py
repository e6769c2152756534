"""Reliability (issue 5; DESIGN.md section 7): retries with back-off,
fallbacks, context-window and content-policy fallbacks, and cooldowns kept in
the shared segment so that every worker skips a cooling deployment.

Every daemon runs 2 workers.  "Nothing more arrives" is checked by sending
requests for the whole period and counting at the mock; a cooldown shared by
the workers is checked on one keep-alive connection per worker (which worker
holds a connection is read from /proc), so the failures are made through one
worker and the skipping is seen through the other.
"""
import http.client
import os
import signal
import threading
import time

from harness import attempts, minute_room, slack, status_rows, worker_conns
from harness import BAD_LOG, Daemon, Mock, TestFailure, chat, deployment, request, wait_for


# ---------------------------------------------------------------- helpers

def served(r, status=200, dep=None, fallback=..., n=None, group=None):
    """Asserts what a routed response says about itself."""
    assert r.status == status, "expected %d, got %r %s" % (status, r, r.headers)
    if dep is not None:
        assert r.headers.get("x-llmroute-deployment") == dep, (dep, r.headers)
    if fallback is None:
        assert "x-llmroute-fallback" not in r.headers, r.headers
    elif fallback is not ...:
        assert r.headers.get("x-llmroute-fallback") == fallback, (fallback, r.headers)
    if n is not None:
        assert attempts(r) == n, "x-llmroute-attempts %d, wanted %d: %r %s" % (
            attempts(r), n, r, r.headers)
    if group is not None:
        assert r.headers.get("x-llmroute-model-group") == group, (group, r.headers)


def count(*mocks):
    return sum(m.stats()["requests"] for m in mocks)


def fallbacks(key, entries):
    """router_settings text: key = ( { model = "a"; fallbacks = ["b"]; }, ... );"""
    return "%s = ( %s );" % (key, ", ".join(
        '{ model = "%s"; fallbacks = [%s]; }' % (m, ", ".join('"%s"' % f for f in fbs))
        for m, fbs in entries))






class Bg:
    """A request run on a thread, timed."""

    def __init__(self, fn):
        self.r = self.exc = None
        self.took = None
        self.t = threading.Thread(target=self._run, args=(fn,))
        self.t.start()

    def _run(self, fn):
        t0 = time.monotonic()
        try:
            self.r = fn()
        except Exception as e:
            self.exc = e
        self.took = time.monotonic() - t0

    def result(self, timeout=15):
        self.t.join(timeout)
        if self.t.is_alive():
            raise TestFailure("request still running after %.0fs" % timeout)
        if self.exc is not None:
            raise self.exc
        return self.r, self.took


def first_attempt_answers(mock, knobs, send):
    """Runs send() on a thread while `mock` answers with `knobs` (e.g. a 429)
    until the first request of the call has reached it, then normally again.
    Returns (response, seconds the call took)."""
    base = mock.stats()["requests"]
    mock.config(**knobs)
    bg = Bg(send)
    try:
        wait_for(lambda: mock.stats()["requests"] > base, 5, "the first attempt at the mock")
    finally:
        mock.config(**{k: None for k in knobs})
    return bg.result()


def quiet_period(d, conns, until, bad, expected_bad, good_dep):
    """Until `until` (monotonic), sends requests round-robin on every worker's
    connection: each must be served by good_dep at the first attempt while
    `bad` receives nothing.  The time is checked before each request, so the
    last one starts before `until`: pass the cooldown's end less a slack().
    Returns requests sent per worker."""
    sent = {pid: 0 for pid in conns}
    while time.monotonic() < until:
        for pid, conn in conns.items():
            if time.monotonic() >= until:     # each request, not each round
                break
            r = chat(d.port, model="g", conn=conn, timeout=5)
            served(r, 200, dep=good_dep, n=1)
            sent[pid] += 1
        got = bad.stats()["requests"]
        assert got == expected_bad, (
            "the cooling deployment received a request %.2fs before its cooldown ends "
            "(%d requests, wanted %d); sent per worker: %s" % (
                until - time.monotonic(), got, expected_bad, sent))
    return sent


def cool_down(d, conn, bad, fails):
    """Sends requests on `conn` (one worker) until `bad` has received `fails`
    requests; every request must still be served.  Returns the monotonic time
    just before the request that made the last failure.  The failures must
    add up in one minute: room for the whole loop."""
    minute_room(slack(3))
    deadline = time.monotonic() + slack(3)
    while time.monotonic() < deadline:
        t = time.monotonic()
        r = chat(d.port, model="g", conn=conn, timeout=5)
        served(r, 200, dep="good")
        if bad.stats()["requests"] >= fails:
            assert bad.stats()["requests"] == fails, bad.stats()
            return t
    raise TestFailure("only %d failures on the bad deployment after %.0fs, wanted %d"
                      % (bad.stats()["requests"], slack(3), fails))


def back_again(d, conns, bad, before, t_cool, cooldown, what):
    """Sends requests until `bad` receives one again; it must not be before
    t_cool + cooldown, and not much later."""
    conns = list(conns.values())
    deadline = t_cool + cooldown + slack(2.0)
    i = 0
    while bad.stats()["requests"] == before:
        if time.monotonic() > deadline:
            raise TestFailure("the %s deployment received nothing %.1fs after its cooldown "
                              "of %.1fs began" % (what, time.monotonic() - t_cool, cooldown))
        i += 1
        r = chat(d.port, model="g", conn=conns[i % len(conns)], timeout=5)
        served(r, 200, dep="good")
    after = time.monotonic() - t_cool
    assert after >= cooldown - 0.05, "traffic again %.2fs after the cooldown began, " \
        "before cooldown_time = %.1fs" % (after, cooldown)
    return after


# ---------------------------------------------------------------- retries in a group

def test_failing_deployment_never_fails_a_request():
    """One always-500 deployment and one healthy one: every request is served.
    cooldown_time = 0 disables cooldowns, so the bad one keeps being picked and
    every pick of it is retried on the good one at once."""
    bad, good = Mock("bad", ["--status", "500"]), Mock("good")
    d = Daemon([deployment("g", bad, dep_id="bad"), deployment("g", good, dep_id="good")],
               workers=2, router="num_retries = 2; allowed_fails = 0; cooldown_time = 0;")
    retried = 0
    t0 = time.monotonic()
    for i in range(60):
        r = chat(d.port, model="g", content="x%d" % i, timeout=5)
        served(r, 200, dep="good", fallback=None, group="g")
        assert r.json()["object"] == "chat.completion", r
        assert attempts(r) in (1, 2), r.headers
        retried += attempts(r) == 2
    took = time.monotonic() - t0
    # every attempt on bad failed and was followed by exactly one on good
    assert bad.stats()["requests"] == retried, (bad.stats()["requests"], retried)
    assert good.stats()["requests"] == 60, good.stats()
    assert retried >= 10, "only %d of 60 requests picked the bad deployment" % retried
    assert took < slack(3.0, cap=5.0), "60 requests took %.2fs: a 500 must be retried at once" % took
    rows = status_rows(d)
    assert int(rows["bad"]["FAILED"]) == retried, rows["bad"]
    assert rows["bad"]["COOLDOWNS"] == "0", rows["bad"]   # cooldown_time = 0


def test_cooldown_shared_by_all_workers():
    """After allowed_fails+1 failures (made through one worker) the bad
    deployment receives nothing, through any worker, until cooldown_time has
    passed; then it is tried again."""
    cooldown, allowed = 3.0, 2
    bad, good = Mock("bad", ["--status", "500"]), Mock("good")
    d = Daemon([deployment("g", bad, dep_id="bad"), deployment("g", good, dep_id="good")],
               workers=2, router="num_retries = 2; allowed_fails = %d; cooldown_time = %.1f;"
               % (allowed, cooldown))
    conns = worker_conns(d)
    first, *others = list(conns)
    t_cool = cool_down(d, conns[first], bad, allowed + 1)
    # at once, through another worker
    r = chat(d.port, model="g", conn=conns[others[0]], timeout=5)
    served(r, 200, dep="good", n=1)
    assert bad.stats()["requests"] == allowed + 1, bad.stats()
    rows = status_rows(d)
    assert int(rows["bad"]["FAILED"]) == allowed + 1, rows["bad"]
    assert rows["bad"]["COOLDOWNS"] == "1", rows["bad"]
    assert 1.0 < float(rows["bad"]["COOLING_S"]) <= cooldown, rows["bad"]
    sent = quiet_period(d, conns, t_cool + cooldown - slack(0.25, cap=1.0), bad, allowed + 1, "good")
    assert all(n >= 10 for n in sent.values()), "too few requests per worker: %s" % sent
    back_again(d, conns, bad, allowed + 1, t_cool, cooldown, "bad")


def test_429_retry_after_is_waited_out():
    """A single deployment answers 429 with Retry-After: 1 once: the proxy waits
    about 1 s (a timer, the worker keeps serving) and the retry succeeds."""
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2, router="num_retries = 2;")
    r, took = first_attempt_answers(m, {"status": 429, "retry_after": 1},
                                    lambda: chat(d.port, model="g", timeout=10))
    served(r, 200, dep="a", n=2, fallback=None)
    assert 0.95 <= took < 1.0 + slack(0.6, cap=0.9), "the retry came %.2fs after the 429 with Retry-After: 1" % took
    st = m.stats()
    assert st["requests"] == 2 and st["statuses"] == {"429": 1, "200": 1}, st


def test_429_backoff_without_usable_retry_after():
    """Without Retry-After, or with one past 60 s, a 429 backs off 0.5 s doubling
    (+-25%): 3 attempts wait 0.5 + 1.0 s.  Both run at once, so the workers keep
    serving while the back-off timers run: each worker also holds a request
    backing off 1.5 s twice (Retry-After: 1.5), so a worker that blocked on a
    back-off would hold the request served meanwhile >= 1.5 s, far past the
    bound even in a sanitizer build."""
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2,
               router="num_retries = 2; cooldown_time = 0;")
    conns = worker_conns(d)
    plain = Bg(lambda: chat(d.port, model="g", extra={"x_mock": {"status": 429}}, timeout=10))
    long_ra = Bg(lambda: chat(d.port, model="g", timeout=10,
                              extra={"x_mock": {"status": 429, "retry_after": 120}}))
    slow = [Bg(lambda c=c: chat(d.port, model="g", conn=c, timeout=10,
                                extra={"x_mock": {"status": 429, "retry_after": "1.5"}}))
            for c in conns.values()]
    wait_for(lambda: m.stats()["statuses"].get("429", 0) >= 2 + len(slow), 5,
             "the first attempt of every back-off")
    t0 = time.monotonic()
    r = chat(d.port, model="g", timeout=5)     # served meanwhile
    served(r, 200, n=1)
    assert time.monotonic() - t0 < slack(0.3, cap=1.0), "a request waited behind back-off timers"
    for bg in slow:
        r, took = bg.result()
        served(r, 429, dep="a", n=3)
        assert r.headers.get("retry-after") == "1.5", r.headers
        # libevent arms a timer from the loop's cached time, taken before the
        # 429 was handled, so under load a wait may end a few ms early
        assert 2.95 <= took < 3.0 + slack(0.5, cap=1.0), "3 attempts after 429s with " \
            "Retry-After: 1.5 took %.2fs, wanted 1.5+1.5 s" % took
    for bg, ra in ((plain, None), (long_ra, "120")):
        r, took = bg.result()
        served(r, 429, dep="a", n=3)
        assert r.json()["error"]["code"] == "rate_limit_exceeded", r
        assert r.headers.get("retry-after") == ra, r.headers
        assert 1.1 <= took < 1.5 + slack(0.5, cap=1.0), "3 attempts after 429s (Retry-After %s) took %.2fs, " \
            "wanted 0.5+1.0 s +-25%%" % (ra, took)
    assert m.stats()["statuses"] == {"429": 6 + 3 * len(slow), "200": 1}, \
        m.stats()


def test_retry_after_floor_and_timeout_cap():
    """router_settings.retry_after is a floor for every retry (a 500 included);
    a wait that would run past `timeout` is not started: the answer comes at
    once."""
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2,
               router="num_retries = 2; retry_after = 0.6; timeout = 1.5; cooldown_time = 0;")
    r, took = first_attempt_answers(m, {"status": 500},
                                    lambda: chat(d.port, model="g", timeout=10))
    served(r, 200, dep="a", n=2)
    assert 0.6 <= took < 0.6 + slack(0.6, cap=1.0), "a 500 with retry_after = 0.6 was retried after %.2fs" % took
    # Retry-After 5 > what is left of timeout = 1.5: answered at once
    t0 = time.monotonic()
    r = chat(d.port, model="g", extra={"x_mock": {"status": 429, "retry_after": 5}}, timeout=10)
    took = time.monotonic() - t0
    served(r, 429, dep="a", n=1)
    assert r.headers.get("retry-after") == "5", r.headers
    assert took < slack(0.5, cap=1.0), "a back-off past the timeout delayed the answer %.2fs" % took


def test_non_retryable_errors_not_retried_nor_cooled():
    """400/401/403/404 go to the client at the first attempt (no retry, no
    cooldown even with allowed_fails = 0)."""
    m1, m2 = Mock("s1"), Mock("s2")
    d = Daemon([deployment("g", m1, dep_id="s1"), deployment("g", m2, dep_id="s2")],
               workers=2, router="num_retries = 3; allowed_fails = 0; cooldown_time = 30;")
    for i, status in enumerate((401, 403, 404, 400, 401)):
        r = chat(d.port, model="g", extra={"x_mock": {"status": status}}, timeout=5)
        served(r, status, n=1)      # x-llmroute-fallback: test_all_failing_headers_...
        assert r.json()["error"]["message"] == "mock error %d" % status, r
        assert count(m1, m2) == i + 1, "a %d was retried: %s %s" % (
            status, m1.stats()["statuses"], m2.stats()["statuses"])
    rows = status_rows(d)
    for dep in ("s1", "s2"):
        assert rows[dep]["COOLDOWNS"] == "0", rows[dep]
    for _ in range(40):         # both still picked: neither is cooling (2**-39 to fail)
        served(chat(d.port, model="g", timeout=5), 200, n=1)
    assert m1.stats()["statuses"].get("200") and m2.stats()["statuses"].get("200"), (
        m1.stats(), m2.stats())


# ---------------------------------------------------------------- fallbacks

def test_401_not_retried_but_falls_back():
    a1, a2 = Mock("a1", ["--status", "401"]), Mock("a2", ["--status", "401"])
    b = Mock("b")
    d = Daemon([deployment("a", a1, dep_id="a1"), deployment("a", a2, dep_id="a2"),
                deployment("b", b, dep_id="b1")], workers=2,
               router="num_retries = 2; allowed_fails = 0; cooldown_time = 30; "
               + fallbacks("fallbacks", [("a", ["b"])]))
    for i in range(1, 5):
        r = chat(d.port, model="a", timeout=5)
        served(r, 200, dep="b1", fallback="b", n=2, group="a")
        assert count(a1, a2) == i, "a 401 was retried in its group: %d requests after %d" % (
            count(a1, a2), i)
    assert b.stats()["requests"] == 4


def test_context_window_fallback_skips_retries():
    """A context-length error goes straight to context_window_fallbacks: no retry
    in the group, the general fallbacks unused; no cooldown either."""
    a1 = Mock("a1", ["--error", "context_length"])
    a2 = Mock("a2", ["--error", "context_length"])
    big, other = Mock("big"), Mock("other")
    d = Daemon([deployment("a", a1, dep_id="a1"), deployment("a", a2, dep_id="a2"),
                deployment("big", big, dep_id="big1"), deployment("other", other, dep_id="o1")],
               workers=2,
               router="num_retries = 2; allowed_fails = 0; cooldown_time = 30; "
               + fallbacks("fallbacks", [("a", ["other"])])
               + fallbacks("context_window_fallbacks", [("a", ["big"])]))
    for i in range(1, 5):
        r = chat(d.port, model="a", timeout=5)
        served(r, 200, dep="big1", fallback="big", n=2, group="a")
        assert count(a1, a2) == i, "the context-length error was retried in the group: " \
            "a1 %s, a2 %s after %d requests" % (a1.stats()["statuses"], a2.stats()["statuses"], i)
    assert big.stats()["requests"] == 4 and other.stats()["requests"] == 0, (
        big.stats()["requests"], other.stats()["requests"])


def test_content_policy_fallback_skips_retries():
    p1 = Mock("p1", ["--error", "content_policy"])
    p2 = Mock("p2", ["--error", "content_policy"])
    safe, other = Mock("safe"), Mock("other")
    d = Daemon([deployment("p", p1, dep_id="p1"), deployment("p", p2, dep_id="p2"),
                deployment("safe", safe, dep_id="safe1"), deployment("other", other)],
               workers=2,
               router="num_retries = 2; "
               + fallbacks("fallbacks", [("p", ["other"])])
               + fallbacks("content_policy_fallbacks", [("p", ["safe"])]))
    for i in range(1, 4):
        r = chat(d.port, model="p", timeout=5)
        served(r, 200, dep="safe1", fallback="safe", n=2, group="p")
        assert count(p1, p2) == i, (p1.stats(), p2.stats())
    assert other.stats()["requests"] == 0


def test_fallback_chain_walked_in_order():
    """a -> [b, c, x]: a and b always fail, each gets num_retries+1 attempts in
    turn, c serves, x is never reached.  Only the requested group's entry
    applies, default_fallbacks serves a group without one, and a group is
    tried at most once per request (e is in its own default_fallbacks)."""
    ma, mb = Mock("a", ["--status", "500"]), Mock("b", ["--status", "503"])
    mc, mx = Mock("c"), Mock("x")
    md, me = Mock("d", ["--status", "502"]), Mock("e", ["--status", "500"])
    nr = 2
    d = Daemon([deployment("a", ma, dep_id="a1"), deployment("b", mb, dep_id="b1"),
                deployment("c", mc, dep_id="c1"), deployment("x", mx, dep_id="x1"),
                deployment("d", md, dep_id="d1"), deployment("e", me, dep_id="e1")],
               workers=2, router="num_retries = %d; cooldown_time = 0; " % nr
               + fallbacks("fallbacks", [("a", ["b", "c", "x"]), ("b", ["a", "c"])])
               + 'default_fallbacks = ["e", "c"];')
    group = nr + 1      # attempts per failing group

    def at():
        return [m.stats()["requests"] for m in (ma, mb, mc, mx, md, me)]
    t0 = time.monotonic()
    r = chat(d.port, model="a", timeout=5)
    took = time.monotonic() - t0
    served(r, 200, dep="c1", fallback="c", n=2 * group + 1, group="a")
    assert at() == [group, group, 1, 0, 0, 0], "requests at a b c x d e: %s" % at()
    assert took < slack(1.0, cap=1.5), "5xx retries and fallbacks must not wait: %.2fs" % took
    # b -> a -> c (b's own entry, not a's; not default_fallbacks)
    r = chat(d.port, model="b", timeout=5)
    served(r, 200, dep="c1", fallback="c", n=2 * group + 1, group="b")
    assert at() == [2 * group, 2 * group, 2, 0, 0, 0], "requests at a b c x d e: %s" % at()
    # d has no entry: default_fallbacks e, then c
    r = chat(d.port, model="d", timeout=5)
    served(r, 200, dep="c1", fallback="c", n=2 * group + 1, group="d")
    assert at() == [2 * group, 2 * group, 3, 0, group, group], "requests at a b c x d e: %s" % at()
    # e -> default_fallbacks [e (already tried: skipped), c]
    r = chat(d.port, model="e", timeout=5)
    served(r, 200, dep="c1", fallback="c", n=group + 1, group="e")
    assert at() == [2 * group, 2 * group, 4, 0, group, 2 * group], \
        "requests at a b c x d e: %s" % at()


def test_all_failing_gives_last_upstream_error():
    """Every deployment fails: x-llmroute-attempts is num_retries+1 per group and
    the client gets the last upstream answer's status and body."""
    a1, a2 = Mock("a1", ["--status", "500"]), Mock("a2", ["--status", "500"])
    b = Mock("b", ["--status", "503"])
    solo = Mock("solo", ["--status", "502"])
    nr = 3
    d = Daemon([deployment("a", a1, dep_id="a1"), deployment("a", a2, dep_id="a2"),
                deployment("b", b, dep_id="b1"), deployment("solo", solo, dep_id="solo1")],
               workers=2, router="num_retries = %d; cooldown_time = 0; " % nr
               + fallbacks("fallbacks", [("a", ["b"])]))
    direct = {}
    for name, m in (("b", b), ("solo", solo)):
        direct[name] = request(m.port, "POST", "/v1/chat/completions",
                               {"model": "gpt-3.5-turbo", "messages": []})
        m.reset()
    r = chat(d.port, model="solo", timeout=5)
    assert (r.status, r.body) == (direct["solo"].status, direct["solo"].body), (r, direct)
    served(r, 502, dep="solo1", n=nr + 1, group="solo")
    assert solo.stats()["requests"] == nr + 1, solo.stats()
    r = chat(d.port, model="a", timeout=5)
    assert (r.status, r.body) == (direct["b"].status, direct["b"].body), (r, direct)
    served(r, 503, dep="b1", n=2 * (nr + 1), group="a")
    assert count(a1, a2) == nr + 1 and b.stats()["requests"] == nr + 1, (
        count(a1, a2), b.stats()["requests"])
    # a retry picks a deployment that has not failed yet while one remains
    assert a1.stats()["requests"] >= 1 and a2.stats()["requests"] >= 1, (
        a1.stats()["requests"], a2.stats()["requests"])


def test_all_failing_headers_name_real_groups():
    """On a final upstream error, x-llmroute-fallback is absent when no
    fallback group was tried, and names the group that gave the answer when
    one was (never an unrelated group of the config)."""
    first = Mock("first")                                   # groups[0] of the config
    bad = Mock("bad", ["--status", "500"])
    fb = Mock("fb", ["--status", "503"])
    d = Daemon([deployment("first", first, dep_id="first1"),
                deployment("solo", bad, dep_id="bad1"), deployment("chain", bad, dep_id="bad2"),
                deployment("fb", fb, dep_id="fb1")], workers=2,
               router="num_retries = 1; cooldown_time = 0; "
               + fallbacks("fallbacks", [("chain", ["fb"])]))
    wrong = []
    r = chat(d.port, model="solo", timeout=5)
    assert r.status == 500, r
    if "x-llmroute-fallback" in r.headers:
        wrong.append("solo (no fallbacks) answered with x-llmroute-fallback: %s"
                     % r.headers["x-llmroute-fallback"])
    r = chat(d.port, model="chain", timeout=5)
    assert r.status == 503, r
    if r.headers.get("x-llmroute-fallback") not in (None, "fb"):
        wrong.append("chain -> fb (fb's 503 returned) answered with x-llmroute-fallback: %s"
                     % r.headers["x-llmroute-fallback"])
    assert first.stats()["requests"] == 0
    assert not wrong, "; ".join(wrong)


def test_stream_falls_back_before_first_byte():
    a, b = Mock("a", ["--status", "500"]), Mock("b")
    d = Daemon([deployment("a", a, dep_id="a1"), deployment("b", b, dep_id="b1")], workers=2,
               router="num_retries = 1; cooldown_time = 0; "
               + fallbacks("fallbacks", [("a", ["b"])]))
    r = chat(d.port, model="a", extra={"stream": True}, timeout=5)
    served(r, 200, dep="b1", fallback="b", n=3, group="a")
    assert r.headers.get("content-type", "").startswith("text/event-stream"), r.headers
    assert r.body.rstrip().endswith(b"data: [DONE]"), r.body[-200:]
    assert a.stats()["requests"] == 2 and b.stats()["requests"] == 1


# ---------------------------------------------------------------- timeouts

def test_slow_deployments_give_504_within_timeout():
    """timeout = 1 s bounds the whole request, retries and fallbacks included."""
    s1 = Mock("s1", ["--latency", "3000"])
    s2 = Mock("s2", ["--latency", "3000"])
    s3 = Mock("s3", ["--latency", "3000"])
    d = Daemon([deployment("slow", s1, dep_id="s1"), deployment("slow", s2, dep_id="s2"),
                deployment("slowfb", s3, dep_id="s3")], workers=2,
               router="timeout = 1.0; num_retries = 2; "
               + fallbacks("fallbacks", [("slow", ["slowfb"])]))
    for _ in range(2):
        t0 = time.monotonic()
        r = chat(d.port, model="slow", timeout=10)
        took = time.monotonic() - t0
        assert r.status == 504, r
        err = r.json()["error"]
        assert err["code"] == "timeout", err
        assert 0.9 <= took < 1.0 + slack(0.6, cap=0.9), "504 after %.2fs with timeout = 1.0" % took
        assert 1 <= attempts(r) <= 3, r.headers


def test_deployment_timeout_retried_then_fallback():
    """A deployment's own timeout (0.2 s) fails one attempt: the retries go to
    the other deployment, then the fallback serves, all inside timeout = 2."""
    s1 = Mock("s1", ["--latency", "3000"])
    s2 = Mock("s2", ["--latency", "3000"])
    fast = Mock("fast")
    d = Daemon([deployment("slow", s1, dep_id="s1", params="timeout = 0.2;"),
                deployment("slow", s2, dep_id="s2", params="timeout = 0.2;"),
                deployment("fast", fast, dep_id="f1")], workers=2,
               router="timeout = 2.0; num_retries = 2; "
               + fallbacks("fallbacks", [("slow", ["fast"])]))
    t0 = time.monotonic()
    r = chat(d.port, model="slow", timeout=10)
    took = time.monotonic() - t0
    served(r, 200, dep="f1", fallback="fast", n=4)
    assert 0.55 <= took < 0.6 + slack(0.6, cap=1.0), "3 attempts of 0.2 s then a fallback took %.2fs" % took
    assert count(s1, s2) == 3 and s1.stats()["requests"] >= 1 and s2.stats()["requests"] >= 1


# ---------------------------------------------------------------- all cooling

def test_all_cooling_gives_429_with_retry_after():
    """Every deployment of a group cooling: its fallbacks serve; with none, the
    client gets 429 no_deployment_available with Retry-After in [1, cooldown]
    without any upstream call, through every worker."""
    cooldown = 5
    g1, f1, h = Mock("g1", ["--status", "500"]), Mock("f1", ["--status", "500"]), Mock("h")
    d = Daemon([deployment("g", g1, dep_id="g1"), deployment("f", f1, dep_id="f1"),
                deployment("h", h, dep_id="h1")], workers=2,
               router="num_retries = 2; allowed_fails = 0; cooldown_time = %d; " % cooldown
               + fallbacks("fallbacks", [("f", ["h"])]))
    conns = worker_conns(d)
    minute_room(2)
    # the first failure cools g1 (allowed_fails = 0): the retry finds nothing,
    # and the upstream's own error is the answer
    r = chat(d.port, model="g", timeout=5)
    assert r.status == 500 and r.json()["error"]["message"] == "mock error 500", r
    assert g1.stats()["requests"] == 1, g1.stats()
    for conn in conns.values():
        r = chat(d.port, model="g", conn=conn, timeout=5)
        assert r.status == 429, r
        err = r.json()["error"]
        assert err["code"] == "no_deployment_available", err
        ra = r.headers.get("retry-after", "")
        assert ra.isdigit() and 1 <= int(ra) <= cooldown, "Retry-After %r" % ra
        assert attempts(r) == 0, r.headers
        assert r.headers.get("x-llmroute-model-group") == "g", r.headers
    assert g1.stats()["requests"] == 1, "a cooling deployment was called: %s" % g1.stats()
    # with a fallback: f1 fails once, then is skipped
    served(chat(d.port, model="f", timeout=5), 200, dep="h1", fallback="h", n=2)
    for conn in conns.values():
        served(chat(d.port, model="f", conn=conn, timeout=5), 200, dep="h1", fallback="h", n=1)
    assert f1.stats()["requests"] == 1, f1.stats()


def test_429_retry_after_sets_cooldown_length():
    """A 429's Retry-After makes the cooldown at least that long, past
    cooldown_time."""
    m = Mock("a", ["--status", "429", "--retry-after", "30"])
    d = Daemon([deployment("g", m, dep_id="a")], workers=2,
               router="num_retries = 0; allowed_fails = 0; cooldown_time = 2;")
    r = chat(d.port, model="g", timeout=5)
    served(r, 429, dep="a", n=1)
    r = chat(d.port, model="g", timeout=5)
    assert r.status == 429 and r.json()["error"]["code"] == "no_deployment_available", r
    assert 28 <= int(r.headers.get("retry-after", "0")) <= 30, r.headers
    assert m.stats()["requests"] == 1


def test_429_on_last_deployment_falls_back_without_waiting():
    """A 429 that cools down the group's only deployment leaves nothing to retry
    on: the fallback is tried at once instead of after the back-off (LiteLLM
    raises a RateLimitError with no healthy deployment left straight to its
    fallbacks)."""
    m, h = Mock("a", ["--status", "429", "--retry-after", "3"]), Mock("h")
    d = Daemon([deployment("g", m, dep_id="a"), deployment("h", h, dep_id="h1")], workers=2,
               router="num_retries = 2; allowed_fails = 0; cooldown_time = 10; "
               + fallbacks("fallbacks", [("g", ["h"])]))
    t0 = time.monotonic()
    r = chat(d.port, model="g", timeout=10)
    took = time.monotonic() - t0
    served(r, 200, dep="h1", fallback="h")
    assert m.stats()["requests"] == 1, m.stats()
    assert took < slack(1.0, cap=2.0), "the fallback came after %.2fs: the 429 back-off ran with every " \
        "deployment of the group cooling down" % took


# ---------------------------------------------------------------- reload

def test_reload_keeps_cooldown():
    """A reload keeps the slot, and so the cooldown, of a deployment whose id
    survives, even at another position in model_list; the new workers skip it
    until the cooldown ends."""
    cooldown = 3.0
    bad, good, extra = Mock("bad", ["--status", "500"]), Mock("good"), Mock("extra")
    router = "num_retries = 2; allowed_fails = 1; cooldown_time = %.1f;" % cooldown
    d = Daemon([deployment("g", bad, dep_id="bad"), deployment("g", good, dep_id="good")],
               workers=2, router=router)
    conns = worker_conns(d)
    t_cool = cool_down(d, next(iter(conns.values())), bad, 2)
    for c in conns.values():
        c.close()
    old = set(d.workers())
    # a new group first in model_list moves both deployments of g to other
    # positions: their slots are found by model_info.id
    d.write_conf([deployment("g2", extra, dep_id="extra"),
                  deployment("g", good, dep_id="good"),
                  deployment("g", bad, dep_id="bad")], workers=2, router=router)
    os.kill(d.p.pid, signal.SIGHUP)
    wait_for(lambda: old.isdisjoint(d.workers()) and len(d.workers()) == 2, 3,
             "the old workers to be replaced")
    wait_for(lambda: "reloaded: generation 2" in d.log_text(), 3, "the reload to be logged")
    served(chat(d.port, model="g2", timeout=5), 200, dep="extra")    # the new config runs
    conns = worker_conns(d)
    left = t_cool + cooldown - time.monotonic()
    assert left > 1.0, "the reload took too long to test anything (%.2fs left)" % left
    sent = quiet_period(d, conns, t_cool + cooldown - slack(0.25, cap=1.0), bad, 2, "good")
    assert all(n >= 5 for n in sent.values()), sent
    back_again(d, conns, bad, 2, t_cool, cooldown, "reloaded bad")


def test_long_fallback_chain_all_failing():
    """As many groups as a request may walk (LLMR_PLAN_MAX = 32), every one
    failing: one attempt each, the last upstream error, and the worker stays
    up (the answer's headers must not look past the plan)."""
    n = 32
    m = Mock("bad", ["--status", "500"])
    d = Daemon([deployment("g%d" % i, m, dep_id="d%d" % i) for i in range(n)], workers=2,
               router="num_retries = 0; cooldown_time = 0; "
               + fallbacks("fallbacks", [("g0", ["g%d" % i for i in range(1, n)])]))
    pids = sorted(d.workers())
    try:
        r = chat(d.port, model="g0", timeout=10)
    except (ConnectionError, http.client.HTTPException) as e:
        wait_for(lambda: BAD_LOG.search(d.log_text()), 3, "the worker's crash to be logged")
        raise TestFailure("no answer (%r); the daemon's log has:\n%s" % (e, "\n".join(
            l for l in d.log_text().splitlines() if BAD_LOG.search(l) or "#" in l)[:1500]))
    served(r, 500, dep="d%d" % (n - 1), n=n, group="g0")
    assert m.stats()["requests"] == n, m.stats()
    assert r.headers.get("x-llmroute-fallback") in (None, "g%d" % (n - 1)), r.headers
    served(chat(d.port, model="g0", extra={"x_mock": {"status": 200}}, timeout=5), 200,
           dep="d0", n=1)
    assert sorted(d.workers()) == pids, "a worker died"
