"""`llmroute status --json` and GET /status.json: one renderer, the same
data (counters the mock confirms, limits, cooldowns), the master key's rule,
no secret in either; the text table in 80 columns unless -w."""
import json
import os
import subprocess

from harness import (BUILD, ROOT, Daemon, Mock, chat, deployment, minute_room, request,
                     wait_for)

LONG_ID = "a-deployment-id-much-longer-than-sixteen-columns"


def cli(d, *args):
    env = dict(os.environ)
    env.update(d.env)
    return subprocess.run([os.path.join(BUILD, "llmroute"), "-c", d.conf_path, "status"]
                          + list(args), capture_output=True, text=True, cwd=ROOT, env=env)


def by_id(st):
    return {x["id"]: x for x in st["deployments"]}


def test_status_json_cli_and_http_agree():
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("g", a, dep_id="a", params="rpm = 600; tpm = 90000;"),
                deployment("h", b, dep_id=LONG_ID, params="max_parallel_requests = 7;")],
               workers=2)
    minute_room(10)             # this minute's windows hold all 5 requests
    for i in range(5):
        assert chat(d.port, model="g").status == 200
    for i in range(3):
        assert chat(d.port, model="h").status == 200
    out = cli(d, "--json")
    assert out.returncode == 0, out.stderr
    st_cli = json.loads(out.stdout)
    r = request(d.port, "GET", "/status.json")
    assert r.status == 200 and r.headers.get("content-type") == "application/json", r
    st_http = r.json()
    for st in (st_cli, st_http):
        assert st["master_pid"] == d.p.pid and st["generation"] == 1, st
        assert 0 <= st["uptime_s"] < 600, st
        deps = by_id(st)
        assert set(deps) == {"a", LONG_ID}, st
        assert deps["a"]["group"] == "g" and deps[LONG_ID]["group"] == "h", st
        assert deps["a"]["requests"] == deps["a"]["successes"] == a.stats()["requests"] == 5
        assert deps[LONG_ID]["requests"] == b.stats()["requests"] == 3, st
        assert deps["a"]["limits"] == {"rpm": 600, "tpm": 90000, "max_parallel": 0}, st
        assert deps[LONG_ID]["limits"] == {"rpm": 0, "tpm": 0, "max_parallel": 7}, st
        # This minute's windows: every request and its tokens.
        assert deps["a"]["rpm_used"] == 5, st
        assert deps["a"]["tpm_used"] == a.stats()["prompt_tokens"] + \
            a.stats()["completion_tokens"], (st, a.stats())
        assert deps[LONG_ID]["rpm_used"] == 3, st
        assert deps["a"]["inflight"] == 0 and deps["a"]["cooldown_left_s"] == 0, st
    # The same renderer: apart from the clock, byte for byte the same fields.
    for st in (st_cli, st_http):
        st.pop("uptime_s"), st.pop("now_ms")
        for x in st["deployments"]:
            x.pop("cooldown_left_s")
    assert st_cli == st_http, (st_cli, st_http)


def test_status_json_shows_cooldown_left():
    a, b = Mock("a"), Mock("b")
    d = Daemon([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b")], workers=2,
               router="allowed_fails = 0; cooldown_time = 30; num_retries = 0;")
    a.config(status=500)
    b.config(status=500)
    wait_for(lambda: chat(d.port, model="g").status >= 500 and
             any(x["cooldown_left_s"] > 0 for x in request(d.port, "GET", "/status.json")
                 .json()["deployments"]), 20, "a cooldown")
    cool = [x for x in request(d.port, "GET", "/status.json").json()["deployments"]
            if x["cooldown_left_s"] > 0]
    assert cool and 0 < cool[0]["cooldown_left_s"] <= 30 and cool[0]["cooldowns"] >= 1, cool
    st = json.loads(cli(d, "--json").stdout)
    assert by_id(st)[cool[0]["id"]]["cooldown_left_s"] > 0, st


def test_status_json_needs_the_master_key_and_holds_no_secret():
    m = Mock("m")
    d = Daemon([deployment("g", m, dep_id="a", key="sk-upstream-secret")], workers=2,
               server='master_key = "sk-master-secret";')
    auth = {"Authorization": "Bearer sk-master-secret"}
    assert chat(d.port, model="g", headers=auth).status == 200
    r = request(d.port, "GET", "/status.json")
    assert r.status == 401, r
    r = request(d.port, "GET", "/status.json", headers={"Authorization": "Bearer wrong"})
    assert r.status == 401, r
    r = request(d.port, "GET", "/status.json", headers=auth)
    assert r.status == 200 and by_id(r.json())["a"]["requests"] == 1, r
    r2 = request(d.port, "GET", "/status.json", headers={"api-key": "sk-master-secret"})
    assert r2.status == 200, r2
    # The page itself holds no data: it is served without the key.
    ui = request(d.port, "GET", "/ui")
    assert ui.status == 200 and b"/status.json" in ui.body, ui
    out = cli(d, "--json")
    assert out.returncode == 0, out.stderr
    for text in (r.body.decode(), out.stdout, ui.body.decode()):
        assert "sk-master-secret" not in text and "sk-upstream-secret" not in text, text
    assert request(d.port, "POST", "/status.json", {}, headers=auth).status == 405


def test_status_table_fits_80_columns_unless_wide():
    a = Mock("a")
    d = Daemon([deployment("a-rather-long-group-name", a, dep_id=LONG_ID,
                           params="rpm = 1000;")],
               workers=2)
    assert chat(d.port, model="a-rather-long-group-name").status == 200
    out = cli(d)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    table = lines[1:]
    assert table[0].split()[:3] == ["DEPLOYMENT", "GROUP", "REQUESTS"], out.stdout
    for line in table:
        assert len(line) <= 80, (len(line), line)
    row = [x for x in table if x.startswith(LONG_ID[:15])][0]
    assert row.startswith(LONG_ID[:15] + "\u2026 "), row
    assert row[17:28] == "a-rather-\u2026 ", row        # GROUP, cut to 10 columns
    assert row.split()[2] == "1", row           # REQUESTS
    wide = cli(d, "-w")
    assert wide.returncode == 0, wide.stderr
    head, row = [x for x in wide.stdout.splitlines()[1:] if "DEPLOYMENT" in x or LONG_ID in x]
    cols = dict(zip(head.split(), row.split()))
    assert cols["DEPLOYMENT"] == LONG_ID and cols["GROUP"] == "a-rather-long-group-name", cols
    assert cols["REQUESTS"] == "1" and cols["RPM_LIM"] == "1000" and cols["PAR_LIM"] == "0", cols
    assert max(len(x) for x in wide.stdout.splitlines()[1:]) > 80
