"""GET /metrics: Prometheus text from the shared segment, summed across
workers; checked against what the mocks counted, by promtool, and by a real
Prometheus server scraping it."""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request

from harness import (Daemon, Mock, Proc, TestFailure, chat, deployment, free_port, minute_room,
                     request, tmpdir, wait_for)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(d, headers=None):
    r = request(d.port, "GET", "/metrics", headers=headers)
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return r.body.decode()


def parse(text):
    """{(name, frozenset of (label, value)): float}"""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def val(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    assert key in samples, "no sample %s %s" % (name, labels)
    return samples[key]


def traffic_daemon(server=""):
    a, b, c = Mock("a"), Mock("b"), Mock("c")
    c.config(status=500)
    d = Daemon([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b"),
                deployment("bad", c, dep_id="c")], workers=3, server=server,
               router='num_retries = 1; retry_after = 0.0; cooldown_time = 0.0; '
                      'fallbacks = ( { model = "bad"; fallbacks = ["g"]; } );')
    return a, b, c, d


def test_metrics_counters_match_mocks_across_workers():
    a, b, c, d = traffic_daemon()
    plain, streams, failing = 30, 6, 4
    for i in range(plain):
        assert chat(d.port, model="g", content="x" * i).status == 200
    for _ in range(streams):
        r = chat(d.port, model="g", extra={"stream": True,
                                           "stream_options": {"include_usage": True}})
        assert r.status == 200 and b"[DONE]" in r.body, r
    for _ in range(failing):    # fails on c (with a retry), falls back to g
        assert chat(d.port, model="bad").status == 200
    assert len(set(d.workers())) >= 2
    s = parse(scrape(d))
    total = 0
    for m, dep in ((a, "a"), (b, "b")):
        st = m.stats()
        n = val(s, "llmroute_requests_total", deployment=dep, model_group="g")
        assert n == st["requests"] == val(s, "llmroute_successes_total", deployment=dep,
                                          model_group="g"), (n, st)
        assert val(s, "llmroute_prompt_tokens_total", deployment=dep,
                   model_group="g") == st["prompt_tokens"]
        assert val(s, "llmroute_completion_tokens_total", deployment=dep,
                   model_group="g") == st["completion_tokens"]
        assert val(s, "llmroute_latency_seconds_count", deployment=dep, model_group="g") == n
        assert val(s, "llmroute_in_flight", deployment=dep, model_group="g") == 0
        total += n
    assert total == plain + streams + failing
    ttft = sum(val(s, "llmroute_time_to_first_token_seconds_count", deployment=x,
                   model_group="g") for x in "ab")
    assert ttft == streams, ttft
    cst = c.stats()["requests"]
    assert cst == 2 * failing, cst      # the first try and one retry each
    assert val(s, "llmroute_requests_total", deployment="c", model_group="bad") == cst
    assert val(s, "llmroute_failures_total", deployment="c", model_group="bad",
               **{"class": "server_error"}) == cst
    assert val(s, "llmroute_successes_total", deployment="c", model_group="bad") == 0
    assert val(s, "llmroute_retries_total", deployment="c", model_group="bad") == failing
    assert val(s, "llmroute_fallbacks_total", model_group="g") == failing
    assert val(s, "llmroute_fallbacks_total", model_group="bad") == 0
    overhead = sum(val(s, "llmroute_overhead_seconds_count", deployment=x, model_group=g)
                   for x, g in (("a", "g"), ("b", "g"), ("c", "bad")))
    assert overhead == plain + streams + failing, overhead
    assert val(s, "llmroute_workers_alive") == 3
    assert val(s, "llmroute_config_generation") >= 1
    assert val(s, "llmroute_build_info", version=re.search(
        r'version="([^"]+)"', scrape(d)).group(1)) == 1


def test_metrics_histograms_are_cumulative():
    a, b, c, d = traffic_daemon()
    for i in range(12):
        assert chat(d.port, model="g", extra={"stream": i % 2 == 1}).status == 200
    s = parse(scrape(d))
    hists = 0
    for name in ("llmroute_latency_seconds", "llmroute_time_to_first_token_seconds",
                 "llmroute_overhead_seconds"):
        for dep, g in (("a", "g"), ("b", "g"), ("c", "bad")):
            buckets = sorted(((float("inf") if dict(k[1])["le"] == "+Inf"
                               else float(dict(k[1])["le"])), v)
                             for k, v in s.items() if k[0] == name + "_bucket"
                             and dict(k[1])["deployment"] == dep)
            assert len(buckets) == 16, buckets
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), (name, dep, buckets)
            assert counts[-1] == val(s, name + "_count", deployment=dep, model_group=g)
            assert val(s, name + "_sum", deployment=dep, model_group=g) >= 0
            hists += counts[-1]
    assert hists == 12 + 6 + 12, hists   # latency of all, ttft of streams, overhead of all


def test_metrics_auth():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], server='master_key = "sk-metrics";')
    assert request(d.port, "GET", "/metrics").status == 401
    assert request(d.port, "GET", "/metrics",
                   headers={"Authorization": "Bearer wrong"}).status == 401
    body = scrape(d, headers={"Authorization": "Bearer sk-metrics"})
    assert "llmroute_requests_total" in body and "sk-metrics" not in body
    r = request(d.port, "POST", "/metrics", body="",
                headers={"Authorization": "Bearer sk-metrics"})
    assert r.status == 405 and r.headers.get("allow") == "GET, HEAD", r
    d.stop()
    d2 = Daemon([deployment("g", m, dep_id="a")],
                server='master_key = "sk-metrics"; metrics_public = true;')
    assert "llmroute_requests_total" in scrape(d2)
    assert chat(d2.port, model="g").status == 401    # the API itself stays protected


def test_metrics_promtool_passes():
    a, b, c, d = traffic_daemon()
    for i in range(6):
        assert chat(d.port, model="bad" if i % 3 == 0 else "g",
                    extra={"stream": i % 2 == 1}).status == 200
    body = scrape(d)
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/install-deps.sh test"
    p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def prom_query(port, q):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": q}))
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]["result"]


def test_metrics_scraped_by_real_prometheus():
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b")], workers=2)
    sent = 25
    for _ in range(sent):
        assert chat(d.port, model="g").status == 200
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: scripts/install-deps.sh test"
    work, port = tmpdir(), free_port()
    conf = os.path.join(work, "prometheus.yml")
    with open(conf, "w") as f:
        f.write("global: { scrape_interval: 1s, evaluation_interval: 1s }\n"
                "scrape_configs:\n  - job_name: llmroute\n    scrape_interval: 1s\n"
                "    static_configs: [ { targets: ['127.0.0.1:%d'] } ]\n" % d.port)
    prom = Proc([binary, "--config.file=" + conf, "--web.listen-address=127.0.0.1:%d" % port,
                 "--storage.tsdb.path=" + os.path.join(work, "data")], "prometheus")
    got = {}

    def scraped():
        if prom.p.poll() is not None:
            raise TestFailure("prometheus exited:\n" + prom.log_text()[-2000:])
        try:
            res = prom_query(port, "sum(llmroute_requests_total)")
        except OSError:
            return False
        if res:
            got["v"] = float(res[0]["value"][1])
        return bool(res)
    try:
        wait_for(scraped, 40, "prometheus to scrape llmroute", interval=0.2)
        assert got["v"] == sent, got
        up = prom_query(port, 'up{job="llmroute"}')
        assert up and up[0]["value"][1] == "1", up
    finally:
        prom.stop()


def test_metrics_process_counters():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2)
    s = parse(scrape(d))
    gen = val(s, "llmroute_config_generation")
    assert val(s, "llmroute_worker_respawns_total") == 0
    assert val(s, "llmroute_reloads_total", result="ok") == 0
    assert val(s, "llmroute_workers_alive") == 2
    d.allowed.append("exited on signal 9")
    os.kill(d.workers()[0], signal.SIGKILL)
    wait_for(lambda: val(parse(scrape(d)), "llmroute_worker_respawns_total") == 1, 20,
             "the respawn counted")
    os.kill(d.p.pid, signal.SIGHUP)

    def reloaded():
        s = parse(scrape(d))
        return (val(s, "llmroute_reloads_total", result="ok") == 1
                and val(s, "llmroute_config_generation") == gen + 1)
    wait_for(reloaded, 20, "the reload counted")
    wait_for(lambda: val(parse(scrape(d)), "llmroute_workers_alive") == 2, 30,
             "the old generation drained")


def total(s, name):
    """The sum of a family's samples."""
    return sum(v for (n, _), v in s.items() if n == name)


def test_metrics_in_flight_while_held():
    # 5 requests held by a slow upstream, spread over 2 deployments and 2
    # workers: the gauge sums to 5 while they wait, and to 0 once their
    # clients left.
    a, b = Mock("a"), Mock("b")
    for m in (a, b):
        m.config(latency_ms=30000)
    d = Daemon([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b")], workers=2)
    n, conns = 5, []
    body = json.dumps({"model": "g", "messages": [{"role": "user", "content": "hi"}]})
    try:
        for _ in range(n):
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
            c.request("POST", "/v1/chat/completions", body=body,
                      headers={"Content-Type": "application/json"})
            conns.append(c)
        wait_for(lambda: a.stats()["inflight"] + b.stats()["inflight"] == n, 10,
                 "the mocks holding %d requests" % n)
        s = parse(scrape(d))
        assert total(s, "llmroute_in_flight") == n, [
            (k, v) for k, v in s.items() if k[0] == "llmroute_in_flight"]
        for m, dep in ((a, "a"), (b, "b")):
            assert val(s, "llmroute_in_flight", deployment=dep,
                       model_group="g") == m.stats()["inflight"], (dep, m.stats())
    finally:
        for c in conns:
            c.close()
    wait_for(lambda: total(parse(scrape(d)), "llmroute_in_flight") == 0, 10,
             "in_flight back to 0 after the clients left")


def test_metrics_cooldown_gauges():
    # allowed_fails = 0: one 500 cools the deployment for 30 s.
    bad, good = Mock("bad"), Mock("good")
    bad.config(status=500)
    d = Daemon([deployment("g", bad, dep_id="bad"), deployment("g", good, dep_id="good")],
               workers=2, router="allowed_fails = 0; cooldown_time = 30; num_retries = 0;")
    s = parse(scrape(d))
    assert val(s, "llmroute_cooling_down", deployment="bad", model_group="g") == 0
    wait_for(lambda: chat(d.port, model="g").status and bad.stats()["requests"] >= 1, 10,
             "a request on the failing deployment")
    s = parse(scrape(d))
    assert bad.stats()["requests"] == 1, bad.stats()
    assert val(s, "llmroute_cooldowns_total", deployment="bad", model_group="g") == 1
    assert val(s, "llmroute_cooling_down", deployment="bad", model_group="g") == 1
    assert val(s, "llmroute_cooldowns_total", deployment="good", model_group="g") == 0
    assert val(s, "llmroute_cooling_down", deployment="good", model_group="g") == 0
    # Cooling, it gets nothing more.
    for _ in range(5):
        assert chat(d.port, model="g").status == 200
    assert bad.stats()["requests"] == 1, bad.stats()


def test_metrics_rpm_tpm_gauges():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a", params="rpm = 600; tpm = 9000;")], workers=2)
    minute_room(10)
    for i in range(5):
        assert chat(d.port, model="g", content="x" * i).status == 200
    s = parse(scrape(d))
    st = m.stats()
    assert val(s, "llmroute_rpm_used", deployment="a", model_group="g") == 5
    assert val(s, "llmroute_rpm_limit", deployment="a", model_group="g") == 600
    assert val(s, "llmroute_tpm_limit", deployment="a", model_group="g") == 9000
    assert val(s, "llmroute_tpm_used", deployment="a", model_group="g") == \
        st["prompt_tokens"] + st["completion_tokens"], st


def test_metrics_labels_come_from_the_config_only():
    m = Mock("a")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2)
    r = chat(d.port, model='evil"x')
    assert r.status == 404, r
    r = chat(d.port, model="evil-2", path="/openai/deployments/evil-3/chat/completions")
    assert r.status == 404, r
    text = scrape(d)
    s = parse(text)
    assert "evil" not in text, [x for x in text.splitlines() if "evil" in x]
    groups = {dict(k[1]).get("model_group") for k in s} - {None}
    deps = {dict(k[1]).get("deployment") for k in s} - {None}
    assert groups == {"g"} and deps == {"a"}, (groups, deps)
