"""The master under hostile operations (issue 9): reloads whose workers cannot
start, crashes of the master and its workers, stops, a second instance, the
command line's verdicts, relative paths, and `make run`'s own processes."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import (BUILD, ROOT, Daemon, Load, Mock, Proc, TestFailure, alive, chat, cli,
                     deployment, free_port, request, tmpdir, wait_for)

LLMROUTE = os.path.join(BUILD, "llmroute")


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def in_flight(port, results, key, extra=None):
    """A request in a thread; its Response (or exception) lands in results[key]."""
    def go():
        try:
            results[key] = chat(port, model="g", extra=extra, timeout=30)
        except Exception as e:
            results[key] = e
    t = threading.Thread(target=go)
    t.start()
    return t


# ------------------------------------------------------------ item 1: reload safety

def test_reload_whose_workers_cannot_start_keeps_the_old_generation():
    """Before: the new workers exited with the fatal code, the old ones were
    drained anyway, and the master exited with no worker left."""
    a = Mock("a")
    deps = [deployment("g", a, dep_id="a")]
    d = Daemon(deps, workers=2, env={"LLMR_TEST_WORKER_START": "fail:2"})
    old = set(d.workers())
    load = Load(d.port, threads=3)
    try:
        wait_for(lambda: load.ok > 10, 10, "traffic before the reload")
        r = cli(d.conf_path, "-s", "reload")
        assert r.returncode == 1, r
        assert "reload abandoned: generation 2 did not start" in r.stderr, r.stderr
        assert "exited with code 2 before it was ready" in r.stderr, r.stderr
        before = load.ok
        wait_for(lambda: load.ok > before + 20, 10, "traffic after the abandoned reload")
    finally:
        load.stop()
    assert not load.errors, load.errors[:5]
    assert d.p.poll() is None, "the master exited:\n" + d.log_text()[-2000:]
    assert set(d.workers()) == old, (old, d.workers())
    assert "generation 1 keeps serving" in d.log_text()
    # The next reload (generation 3) starts and replaces the old workers.
    r = cli(d.conf_path, "-s", "reload")
    assert r.returncode == 0 and "reloaded: generation 3" in r.stderr, r
    wait_for(lambda: old.isdisjoint(d.workers()) and len(d.workers()) == 2, 15,
             "old workers replaced")
    assert chat(d.port, model="g").status == 200


def test_reload_not_ready_in_time_is_abandoned_and_its_ready_worker_drained():
    """One new worker serves, the other never reports ready: after the
    bounded wait the new generation is abandoned without a failed request."""
    a = Mock("a")
    d = Daemon([deployment("g", a, dep_id="a")], workers=2,
               env={"LLMR_TEST_WORKER_START": "hang:2:1"})
    old = set(d.workers())
    load = Load(d.port, threads=3)
    try:
        wait_for(lambda: load.ok > 10, 10, "traffic before the reload")
        t0 = time.monotonic()
        r = cli(d.conf_path, "-s", "reload")
        took = time.monotonic() - t0
        assert r.returncode == 1, r
        assert "1 of 2 worker(s) ready after 10 s" in r.stderr, r.stderr
        assert 9 < took < 10 + harness.slack(15), took
        wait_for(lambda: set(d.workers()) == old, 15, "the new generation gone")
        before = load.ok
        wait_for(lambda: load.ok > before + 20, 10, "traffic after")
    finally:
        load.stop()
    assert not load.errors, load.errors[:5]
    assert d.p.poll() is None


def test_t_refuses_what_a_worker_cannot_send():
    """Before: a 9,000-character api_key (or a 5,000-character api_base)
    passed -t, then every worker of the reload exited at start."""
    a = Mock("a")
    d = tmpdir()
    path = os.path.join(d, "big.conf")
    for params, key, what in (
            ('api_key = "%s";' % ("k" * 9000), "api_key", "must be at most 4096 characters"),
            ('api_base = "http://%s";' % ("b" * 5000), "api_base", "must be at most 2048")):
        with open(path, "w") as f:
            f.write('model_list = ( { model_name = "g";\n litellm_params = { model = "m";\n'
                    ' %s }; } );\n' % params)
        r = cli(path, "-t")
        assert r.returncode == 1, r
        assert "big.conf:3: model_list[0].litellm_params.%s: %s" % (key, what) in r.stderr, r
        assert "k" * 100 not in r.stderr          # never the value
    with open(path, "w") as f:
        f.write('server: { worker_rlimit_nofile = 20; };\n'
                'model_list = ( { model_name = "g"; litellm_params = { model = "m"; }; } );\n')
    r = cli(path, "-t")
    assert r.returncode == 1 and "server.worker_rlimit_nofile: must be 0" in r.stderr, r
    # The longest key accepted reaches the upstream whole.
    key = "s" * 4096
    dm = Daemon([deployment("g", a, dep_id="a", key=key)], workers=2)
    assert chat(dm.port, model="g").status == 200
    assert a.stats()["last"]["headers"]["authorization"] == "Bearer " + key
    # So does the longest api_base accepted (2048 characters; the mock routes on
    # the path's suffix), and one character more is refused by -t.
    prefix = a.base + "/"
    room = 2048 - len(prefix) - len("/v1")
    long_path = "".join("p%04d/" % i for i in range(400))[:room].rstrip("/")
    base = prefix + long_path + "q" * (room - len(long_path)) + "/v1"
    assert len(base) == 2048 and base.startswith(prefix), len(base)
    for extra, ok in (("", True), ("z", False)):
        with open(path, "w") as f:
            f.write('model_list = ( { model_name = "g";\n litellm_params = { model = "m";\n'
                    ' api_base = "%s%s"; }; } );\n' % (base, extra))
        r = cli(path, "-t")
        assert (r.returncode == 0) == ok, (len(base + extra), r)
    dm.write_conf([deployment("g", a, dep_id="a", key=key).replace(
        'api_base = "%s/v1"' % a.base, 'api_base = "%s"' % base)], workers=2)
    assert base in open(dm.conf_path).read()
    r = cli(dm.conf_path, "-s", "reload")
    assert r.returncode == 0, r
    assert chat(dm.port, model="g").status == 200
    last = a.stats()["last"]
    assert last["path"] == base[len(a.base):] + "/chat/completions", last["path"][:200]
    assert last["headers"]["authorization"] == "Bearer " + key


# ------------------------------------------------------------ item 5: crash and restart

def test_restart_after_sigkill_forgets_dead_in_flight_requests():
    """Before: after SIGKILL of master and workers with requests in flight,
    a restart kept their in-flight counts and max_parallel_requests refused
    every request forever; status called the dead master running."""
    a = Mock("a")
    d = Daemon([deployment("g", a, dep_id="a", params="max_parallel_requests = 2;")],
               workers=2, router="num_retries = 0;")
    results, threads = {}, []
    for i in range(2):
        threads.append(in_flight(d.port, results, i, {"x_mock": {"latency_ms": 4000}}))
    wait_for(lambda: a.stats()["inflight"] == 2, 10, "two requests at the mock")
    victims = [d.p.pid] + d.workers()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    d.p.wait(10)
    wait_for(lambda: not any(alive(p) for p in victims[1:]), 10, "workers gone")
    for t in threads:
        t.join(10)
    st = d.status()
    assert st.returncode == 1 and "not running: master pid %d is gone" % d.p.pid in st.stderr, st
    assert "INFLIGHT" not in st.stdout, st.stdout
    d2 = Proc([LLMROUTE, "-c", d.conf_path], "llmroute-restarted")
    wait_for(lambda: d2.p.poll() is not None
             or request(d.port, "GET", "/health/readiness", timeout=2).status == 200,
             20, "the restarted master")
    assert d2.p.poll() is None, d2.log_text()
    for _ in range(6):
        r = chat(d.port, model="g")
        assert r.status == 200, r
    row = harness.status_row(d, "a")
    assert row["INFLIGHT"] == "0", row


def test_restart_while_a_dead_masters_worker_drains_keeps_its_share_until_it_exits():
    """A worker of a killed master still finishing a request: the new master
    keeps its in-flight share (it is real) and takes it back once it exits."""
    a = Mock("a")
    # the request outlasts the restart below, and drain_timeout outlasts it
    d = Daemon([deployment("g", a, dep_id="a", params="max_parallel_requests = 1;")],
               workers=2, router="num_retries = 0;", drain_timeout=30 * harness.SLOW)
    results = {}
    t = in_flight(d.port, results, "r",
                  {"x_mock": {"latency_ms": int(8000 * harness.SLOW)}})
    wait_for(lambda: a.stats()["inflight"] == 1, 10, "the request at the mock")
    os.kill(d.p.pid, signal.SIGKILL)
    d.p.wait(10)
    # The orphans close their listening sockets as they start draining.
    wait_for(lambda: refused(d.port), 10, "the orphans to stop listening")
    d2 = Proc([LLMROUTE, "-c", d.conf_path], "llmroute-restarted")
    wait_for(lambda: d2.p.poll() is not None or " started: " in d2.log_text(), 20,
             "the restarted master")
    assert d2.p.poll() is None, d2.log_text()
    # the idle one may still be finishing its 100 ms drain tick too
    assert re.search(r"[12] worker\(s\) of a previous master still running", d2.log_text()), \
        d2.log_text()
    assert chat(d.port, model="g").status == 429          # the one place is taken
    t.join(30 * harness.SLOW)
    assert getattr(results.get("r"), "status", None) == 200, results
    wait_for(lambda: "of a previous master has exited" in d2.log_text(), 10, "orphan reaped")
    assert chat(d.port, model="g").status == 200


# ------------------------------------------------------------ stops and the master's death

def test_master_death_lets_workers_finish_in_flight_requests():
    """Before: PDEATHSIG was SIGTERM, a fast stop that dropped the request."""
    a = Mock("a")
    d = Daemon([deployment("g", a, dep_id="a")], workers=2)
    workers = d.workers()
    results = {}
    t = in_flight(d.port, results, "r", {"x_mock": {"latency_ms": 1500}})
    wait_for(lambda: a.stats()["inflight"] == 1, 10, "the request at the mock")
    os.kill(d.p.pid, signal.SIGKILL)
    t.join(20)
    assert getattr(results.get("r"), "status", None) == 200, results
    wait_for(lambda: not any(alive(p) for p in workers), 20, "orphaned workers to drain and exit")


def test_graceful_stop_refuses_new_connections_at_once():
    """Before: the master kept its listening socket open while the workers
    drained, so new connections were accepted by the kernel, never served,
    and reset when the master exited."""
    a = Mock("a")
    d = Daemon([deployment("g", a, dep_id="a")], workers=2)
    results = {}
    t = in_flight(d.port, results, "r", {"x_mock": {"latency_ms": 4000}})
    wait_for(lambda: a.stats()["inflight"] == 1, 10, "the request at the mock")
    os.kill(d.p.pid, signal.SIGQUIT)
    wait_for(lambda: refused(d.port), 3, "new connections refused while the old request drains")
    assert d.p.poll() is None and a.stats()["inflight"] == 1   # still draining
    t.join(20)
    assert getattr(results.get("r"), "status", None) == 200, results
    d.p.wait(20)
    assert d.p.returncode == 0


# ------------------------------------------------------------ pid file, CLI, paths

def test_second_instance_refuses_a_locked_pid_file():
    """Before: a second instance sharing the pid file overwrote it (taking
    over -s) and deleted it when it exited."""
    a = Mock("a")
    d = Daemon([deployment("g", a, dep_id="a")], workers=2)
    other = os.path.join(tmpdir(), "other.conf")
    with open(other, "w") as f:
        f.write('server: { listen = "127.0.0.1:%d"; workers = 1; pid_file = "%s"; '
                'shm_name = "/llmr-test-other-%d"; };\n'
                'model_list = ( %s );\n' % (free_port(), d.pid_file, os.getpid(),
                                            deployment("g", a, dep_id="a")))
    second = Proc([LLMROUTE, "-c", other], "llmroute-second")
    second.p.wait(15)
    assert second.p.returncode == 1, second.log_text()
    assert "pid file %s is locked by another llmroute (pid %d)" % (d.pid_file, d.p.pid) \
        in second.log_text(), second.log_text()
    with open(d.pid_file) as f:
        assert int(f.read()) == d.p.pid
    r = cli(d.conf_path, "-s", "reload")
    assert r.returncode == 0, r


def test_reload_cli_reports_the_outcome_and_refuses_another_file():
    """Before: -s reload exited 0 whatever happened to the reload."""
    a = Mock("a")
    deps = [deployment("g", a, dep_id="a")]
    d = Daemon(deps, workers=2)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        d.write_conf(deps, workers=2,
                     server='listen = ["127.0.0.1:%d", "127.0.0.1:%d"];'
                     % (d.port, taken.getsockname()[1]))
        # the template already sets listen: rewrite it as a list
        text = open(d.conf_path).read().replace('listen = "127.0.0.1:%d";' % d.port, "", 1)
        open(d.conf_path, "w").write(text)
        r = cli(d.conf_path, "-s", "reload")
        assert r.returncode == 1, r
        assert "reload failed, configuration unchanged: cannot listen" in r.stderr, r
    finally:
        taken.close()
    d.write_conf(deps, workers=2)
    r = cli(d.conf_path, "-s", "reload")
    assert r.returncode == 0 and "reloaded: generation 2" in r.stderr, r
    # Another file naming the same pid file and segment: refused, not reloaded.
    copy = os.path.join(tmpdir(), "copy.conf")
    with open(copy, "w") as f:
        f.write(open(d.conf_path).read())
    r = cli(copy, "-s", "reload")
    assert r.returncode == 1 and "a reload re-reads the master's own file" in r.stderr, r
    assert "reloading" not in d.log_text().split("reloaded: generation 2")[-1]


def test_relative_pid_file_is_beside_the_config():
    """Before: a relative pid_file was relative to the directory the command
    ran in, so -s from elsewhere could not find the master."""
    a = Mock("a")
    conf_dir = tmpdir()
    port = free_port()
    conf = os.path.join(conf_dir, "llmroute.conf")
    with open(conf, "w") as f:
        f.write('server: { listen = "127.0.0.1:%d"; workers = 2; pid_file = "run.pid"; '
                'access_log = "rel-access.log"; shm_name = "/llmr-test-rel-%d"; };\n'
                'model_list = ( %s );\n' % (port, os.getpid(), deployment("g", a, dep_id="a")))
    p = Proc([LLMROUTE, "-c", conf], "llmroute-rel")       # cwd is the repository
    wait_for(lambda: p.p.poll() is not None
             or request(port, "GET", "/health/readiness", timeout=2).status == 200, 20, "ready")
    assert p.p.poll() is None, p.log_text()
    assert os.path.exists(os.path.join(conf_dir, "run.pid"))
    assert not os.path.exists(os.path.join(ROOT, "run.pid"))
    # A relative access_log lands beside the config too, not in the cwd.
    assert chat(port, model="g").status == 200
    access = os.path.join(conf_dir, "rel-access.log")
    wait_for(lambda: os.path.exists(access) and '"model_group":"g"' in open(access).read(), 10,
             "the request's line in " + access)
    assert not os.path.exists(os.path.join(ROOT, "rel-access.log"))
    r = cli(conf, "-s", "quit", cwd="/")
    assert r.returncode == 0, r
    p.p.wait(20)
    assert p.p.returncode == 0 and not os.path.exists(os.path.join(conf_dir, "run.pid"))


def test_prefix_without_c_finds_prefix_conf():
    """-p PREFIX and no -c: the config is PREFIX/conf/llmroute.conf (not the
    compiled-in prefix's, the source tree's conf/llmroute.conf), and the
    relative paths inside it are beside it, for -s from any directory."""
    a = Mock("a")
    prefix = tmpdir()
    os.makedirs(os.path.join(prefix, "conf"))
    port = free_port()
    with open(os.path.join(prefix, "conf", "llmroute.conf"), "w") as f:
        f.write('server: { listen = "127.0.0.1:%d"; workers = 2; pid_file = "p.pid"; '
                'access_log = "off"; shm_name = "/llmr-test-prefix-%d"; };\n'
                'model_list = ( %s );\n' % (port, os.getpid(), deployment("pg", a, dep_id="pa")))
    p = Proc([LLMROUTE, "-p", prefix], "llmroute-prefix")   # cwd is the repository
    wait_for(lambda: p.p.poll() is not None
             or request(port, "GET", "/health/readiness", timeout=2).status == 200, 20, "ready")
    assert p.p.poll() is None, p.log_text()
    r = chat(port, model="pg")
    assert r.status == 200 and r.headers["x-llmroute-deployment"] == "pa", r
    assert a.stats()["requests"] == 1
    assert os.path.exists(os.path.join(prefix, "conf", "p.pid"))
    q = subprocess.run([LLMROUTE, "-p", prefix, "-s", "quit"], capture_output=True, text=True,
                       cwd="/", timeout=60)
    assert q.returncode == 0, q
    p.p.wait(20)
    assert p.p.returncode == 0, p.log_text()[-2000:]
    assert not os.path.exists(os.path.join(prefix, "conf", "p.pid"))


def test_deployment_id_does_not_come_from_the_key():
    """Before: the default id hashed the api key and was sent to clients in
    x-llmroute-deployment; rotating the key also moved the counters."""
    a = Mock("a")
    d = Daemon([deployment("g", a, key="sk-first-key-aaaaaaaa")], workers=2)
    first = chat(d.port, model="g").headers["x-llmroute-deployment"]
    d.write_conf([deployment("g", a, key="sk-second-key-bbbbbbb")], workers=2)
    r = cli(d.conf_path, "-s", "reload")
    assert r.returncode == 0, r
    assert chat(d.port, model="g").headers["x-llmroute-deployment"] == first
    # Two keys for one endpoint: two deployments, told apart by position.
    d.write_conf([deployment("g", a, key="k1"), deployment("g", a, key="k2")], workers=2)
    assert cli(d.conf_path, "-s", "reload").returncode == 0
    seen = {chat(d.port, model="g").headers["x-llmroute-deployment"] for _ in range(30)}
    assert seen == {first, first + "-2"}, (first, seen)


# ------------------------------------------------------------ make run

def test_make_run_refuses_a_taken_mock_port_and_stops_what_it_started():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    env = dict(os.environ, BUILD=BUILD,
               MOCK_PORTS="%d %d" % (free_port(), taken.getsockname()[1]))
    try:
        r = subprocess.run([os.path.join(ROOT, "scripts", "run.sh")], capture_output=True,
                           text=True, env=env, timeout=30)
    finally:
        taken.close()
    assert r.returncode == 1, r
    assert "mock upstream mock-b did not start on 127.0.0.1:%s (port taken?)" \
        % env["MOCK_PORTS"].split()[1] in r.stderr, r
    assert "llmroute on http" not in r.stdout, r.stdout      # never started

    # A whole run on free ports, then SIGTERM: nothing it started survives.
    ports = [free_port(), free_port()]
    port = free_port()
    conf = os.path.join(tmpdir(), "run.conf")
    with open(conf, "w") as f:
        f.write('server: { listen = "127.0.0.1:%d"; workers = 2; '
                'shm_name = "/llmr-test-run-%d"; };\n'
                'model_list = ( { model_name = "g"; litellm_params = { model = "m"; '
                'api_base = "http://127.0.0.1:%d/v1"; }; } );\n' % (port, os.getpid(), ports[0]))
    env = dict(os.environ, BUILD=BUILD, CONF=conf, MOCK_PORTS="%d %d" % tuple(ports))
    run = subprocess.Popen([os.path.join(ROOT, "scripts", "run.sh")], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: chat(port, model="g", timeout=2).status == 200, 20, "make run serving")
        out = subprocess.run(["pgrep", "-P", str(run.pid)], capture_output=True, text=True)
        kids = [int(x) for x in out.stdout.split()]
        master = [k for k in kids if os.readlink("/proc/%d/exe" % k).endswith("/llmroute")]
        grandkids = subprocess.run(["pgrep", "-P", str(master[0])], capture_output=True,
                                   text=True).stdout.split()
        started = kids + [int(x) for x in grandkids]
        assert len(started) == 5, started     # two mocks, the master, two workers
        run.send_signal(signal.SIGTERM)
        run.wait(20)
        wait_for(lambda: not any(alive(p) for p in started), 20, "everything stopped")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
