"""The status page GET /ui rendered by a real browser (headless Chromium,
installed by `scripts/install-deps.sh test`) against llmroute with 2 workers
and traffic: a card per deployment grouped by model group with the request
counts the mocks saw, screenshots at phone and desktop width that are not
blank, and, with a master key, the key form instead of any data."""
import html
import os
import re
import shutil
import struct
import subprocess
import zlib

from harness import (Daemon, Mock, TestFailure, chat, deployment, request, timeout, tmpdir,
                     wait_for)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(url, *args):
    """Starts headless Chromium on url; virtual time lets the page poll
    /status.json about three times (it asks every second)."""
    if CHROMIUM is None:
        raise TestFailure("chromium is not installed: scripts/install-deps.sh test")
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--user-data-dir=" + tmpdir(), "--virtual-time-budget=3000"] + list(args) + [url]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def finish(p, what):
    try:
        out, _ = p.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise TestFailure("chromium did not finish " + what)
    if p.returncode != 0:
        raise TestFailure("chromium failed %s: %s" % (what, p.returncode))
    return out


def png_pixels(path):
    """Width, height and the rows of an 8-bit RGB(A) PNG, un-filtered."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG: %s" % path
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    w, h, depth, ctype = ihdr[:4]
    assert depth == 8 and ctype in (2, 6), ihdr
    bpp = 3 if ctype == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, bpp, rows


def check_screenshot(path, width, height):
    w, h, bpp, rows = png_pixels(path)
    assert (w, h) == (width, height), (w, h)
    colours = set()
    for y in range(0, h, 3):
        r = rows[y]
        for x in range(0, w * bpp, bpp * 3):
            colours.add(bytes(r[x:x + 3]))
    # A blank or error page has a handful of colours; cards, bars, text and
    # sparklines anti-aliased have hundreds.
    assert len(colours) > 40, "screenshot %s looks blank: %d colours" % (path, len(colours))


def cards(dom):
    """{deployment id: requests} of the rendered cards, and the groups."""
    found = {html.unescape(i): int(n) for i, n in
             re.findall(r'class="card[^"]*" data-id="([^"]*)" data-requests="(\d+)"', dom)}
    groups = re.findall(r'<section class="group" data-group="([^"]*)"', dom)
    return found, groups


@timeout(150)
def test_status_page_renders_every_deployment_with_its_counts():
    a, b, c = Mock("a"), Mock("b"), Mock("c")
    d = Daemon([deployment("chat", a, dep_id="dep-a", params="rpm = 100;"),
                deployment("chat", b, dep_id="dep-b", params="tpm = 5000;"),
                deployment("embed", c, dep_id="dep-c")], workers=2)
    for i in range(8):
        assert chat(d.port, model="chat").status == 200
    for i in range(3):
        assert chat(d.port, model="embed").status == 200
    ui = request(d.port, "GET", "/ui")
    assert ui.status == 200 and ui.headers["content-type"].startswith("text/html"), ui
    out = tmpdir()
    url = "http://127.0.0.1:%d/ui" % d.port
    phone, desk = os.path.join(out, "phone.png"), os.path.join(out, "desk.png")
    procs = [browse(url, "--dump-dom"),
             browse(url, "--screenshot=" + phone, "--window-size=412,900"),
             browse(url, "--screenshot=" + desk, "--window-size=1280,800")]
    dom = finish(procs[0], "the DOM dump")
    finish(procs[1], "the phone screenshot")
    finish(procs[2], "the desktop screenshot")
    found, groups = cards(dom)
    want = {"dep-a": a.stats()["requests"], "dep-b": b.stats()["requests"],
            "dep-c": c.stats()["requests"]}
    assert want["dep-a"] + want["dep-b"] == 8 and want["dep-c"] == 3, want
    assert found == want, (found, want, dom[:3000])
    assert groups == ["chat", "embed"], groups
    # This minute's count: 0 once the minute rolled over since the traffic.
    assert re.search(r"rpm \d+ / 100<", dom) and "tpm" in dom, dom[-4000:]
    assert 'data-health="unknown"' in dom or 'data-health="healthy"' in dom, dom
    assert re.search(r'id="meta">master %d ' % d.p.pid, dom), dom[:2000]
    check_screenshot(phone, 412, 900)
    check_screenshot(desk, 1280, 800)


@timeout(120)
def test_status_page_asks_for_the_master_key():
    m = Mock("m")
    d = Daemon([deployment("g", m, dep_id="secret-dep")], workers=2,
               server='master_key = "sk-ui-master";')
    assert chat(d.port, model="g", headers={"Authorization": "Bearer sk-ui-master"}).status == 200
    dom = finish(browse("http://127.0.0.1:%d/ui" % d.port, "--dump-dom"), "the DOM dump")
    assert "needs its master key" in dom, dom[:2000]
    assert re.search(r'<form id="keyform">', dom), dom[:2000]
    assert cards(dom) == ({}, []) and "secret-dep" not in dom, dom[:3000]


CARD = re.compile(r'<div class="(card[^"]*)" data-id="([^"]*)" data-requests="(\d+)" '
                  r'data-health="([^"]*)">(.*?)(?=<div class="card|</section>)', re.S)


def card_map(dom):
    """{deployment id: (classes, health, inner HTML)} of the rendered cards."""
    return {html.unescape(i): (cls.split(), h, inner)
            for cls, i, _, h, inner in CARD.findall(dom)}


def sparkline_points(inner):
    """The number of points of each sparkline of a card."""
    return [len(p.split()) for p in re.findall(r'<polyline points="([^"]*)"', inner)]


@timeout(150)
def test_status_page_shows_cooldown_health_and_history():
    # "bad" answers 500 (allowed_fails = 0: one failure cools it for 30 s);
    # "sick" answers 500 to the health prober's probes too.
    bad, good, sick = Mock("bad"), Mock("good"), Mock("sick", ["--status", "500"])
    bad.config(status=500)
    d = Daemon([deployment("g", bad, dep_id="bad"), deployment("g", good, dep_id="good"),
                deployment("s", sick, dep_id="sick")], workers=2,
               router="allowed_fails = 0; cooldown_time = 30; num_retries = 0; "
                      "background_health_checks = true; health_check_interval = 1.0;")

    def state():
        return {x["id"]: x for x in request(d.port, "GET", "/status.json").json()["deployments"]}
    wait_for(lambda: chat(d.port, model="g").status and
             bad.stats()["paths"].get("/v1/chat/completions", 0) >= 1, 10,
             "a request on the failing deployment")
    wait_for(lambda: state()["sick"]["health"]["state"] == "unhealthy"
             and state()["good"]["health"]["state"] == "healthy", 15, "the probes' verdicts")
    assert state()["bad"]["cooldown_left_s"] > 20, state()["bad"]
    url = "http://127.0.0.1:%d/ui" % d.port
    got = {}

    def rendered_twice():
        # The page keeps each poll's rates and latencies for its sparklines:
        # after two polls or more every line has 2 points or more.
        got.update(card_map(finish(browse(url, "--dump-dom"), "the DOM dump")))
        return set(got) == {"bad", "good", "sick"} and all(
            len(sparkline_points(inner)) == 3 and min(sparkline_points(inner)) >= 2
            for _, _, inner in got.values())
    wait_for(rendered_twice, 60, "sparklines of 2 points or more", interval=0.5)
    cls, h, inner = got["bad"]
    assert "cool" in cls, got["bad"]
    m = re.search(r'<div class="cooling">cooling down: ([\d.]+) s left</div>', inner)
    assert m and 0 < float(m.group(1)) <= 30, inner
    for dep in ("good", "sick"):
        assert "cool" not in got[dep][0] and "cooling down" not in got[dep][2], got[dep]
    cls, h, inner = got["sick"]
    assert h == "unhealthy" and "unhealthy" in cls, got["sick"]
    assert '<span class="badge unhealthy">unhealthy</span>' in inner, inner
    assert got["good"][1] == "healthy" and "unhealthy" not in got["good"][0], got["good"]


def test_status_page_loads_nothing_from_elsewhere():
    # The page is self-contained: no script, style, font or image from
    # another host (it must work on a host with no way out).
    m = Mock("m")
    d = Daemon([deployment("g", m, dep_id="a")], workers=2)
    body = request(d.port, "GET", "/ui").body.decode()
    assert "<script>" in body and "<style>" in body, body[:500]
    ext = re.findall(r'''(?:\b(?:src|href|action)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//'''
                     r'''|url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//|@import'''
                     r'''|fetch\(\s*["'`](?:[a-z][a-z0-9+.-]*:)?//)''', body, re.I)
    assert not ext, ext
    # The one thing it fetches is this server's /status.json.
    assert re.findall(r'fetch\(\s*"([^"]*)"', body) == ["/status.json"], body
