"""Operations that must not depend on the config's secrets (issue 10, item 4):
`llmroute status` and `-s` read only where the master is (pid_file,
shm_name), so they work from an operator's shell where the config's
os.environ/ variables are not set, and status lists what the running master
serves from the segment's slot table, not what the file says now."""
import os
import subprocess

from harness import (ROOT, Daemon, Mock, chat, cli, deployment, parse_status,
                     status_rows, tmpdir, wait_for)

SECRETS = {"LLMR_T_MASTER_KEY": "sk-layers-master", "LLMR_T_UP_KEY": "sk-layers-upstream",
           "LLMR_T_UP_BASE": None}


def bare_env():
    """The operator's shell: none of the config's variables set."""
    env = dict(os.environ)
    for k in SECRETS:
        env.pop(k, None)
    return env


def secret_daemon(m):
    """A daemon whose master key, upstream key and upstream base all come
    from the environment, as LiteLLM configs usually write them."""
    env = {"LLMR_T_MASTER_KEY": SECRETS["LLMR_T_MASTER_KEY"],
           "LLMR_T_UP_KEY": SECRETS["LLMR_T_UP_KEY"], "LLMR_T_UP_BASE": m.base + "/v1"}
    dep = ('{ model_name = "g"; litellm_params = { model = "openai/gpt-3.5-turbo"; '
           'api_base = "os.environ/LLMR_T_UP_BASE"; api_key = "os.environ/LLMR_T_UP_KEY"; }; '
           'model_info = { id = "env-dep"; }; }')
    return Daemon([dep], workers=2, server='master_key = "os.environ/LLMR_T_MASTER_KEY";',
                  env=env)


def test_status_and_signals_work_without_the_configs_env_vars():
    m = Mock("a")
    d = secret_daemon(m)
    auth = {"Authorization": "Bearer " + SECRETS["LLMR_T_MASTER_KEY"]}
    for _ in range(5):
        r = chat(d.port, model="g", headers=auth)
        assert r.status == 200, r
    assert m.stats()["last"]["headers"].get("authorization") == "Bearer sk-layers-upstream"
    env = bare_env()
    # The full check still needs every variable: only locating is lenient.
    t = cli(d.conf_path, "-t", env=env)
    assert t.returncode == 1, t
    assert "environment variable LLMR_T_MASTER_KEY is not set" in t.stderr, t
    st = cli(d.conf_path, "status", env=env)
    assert st.returncode == 0, st
    row = parse_status(st.stdout).get("env-dep")
    assert row is not None, st.stdout
    assert row["GROUP"] == "g" and int(row["REQUESTS"]) == m.stats()["requests"] == 5, row
    for secret in ("sk-layers-master", "sk-layers-upstream"):
        assert secret not in st.stdout + st.stderr, st
    # -s reload from the same shell: the master re-reads the file with its
    # own environment, so the reload succeeds.
    rl = cli(d.conf_path, "-s", "reload", env=env)
    assert rl.returncode == 0 and "reloaded: generation 2" in rl.stderr, rl
    assert chat(d.port, model="g", headers=auth).status == 200
    st = cli(d.conf_path, "status", env=env)
    assert st.returncode == 0 and "config generation 2" in st.stdout, st
    assert int(parse_status(st.stdout)["env-dep"]["REQUESTS"]) == 6, st.stdout
    q = cli(d.conf_path, "-s", "quit", env=env)
    assert q.returncode == 0, q
    wait_for(lambda: d.p.poll() is not None, 30, "the master to exit on -s quit")
    assert d.p.returncode == 0, d.log_text()[-2000:]


def test_status_lists_the_running_generations_slots():
    a, b, c = Mock("a"), Mock("b"), Mock("c")
    deps = [deployment("g", a, dep_id="a"), deployment("g", b, dep_id="b")]
    d = Daemon(deps, workers=2, env={"LLMR_TEST_WORKER_START": "fail:2"})
    assert sorted(status_rows(d)) == ["a", "b"]
    # A reload whose workers cannot start claims a slot for "c" beside the
    # serving generation; once abandoned, status shows what still serves.
    d.write_conf([deployment("g", a, dep_id="a"), deployment("g", c, dep_id="c")])
    r = cli(d.conf_path, "-s", "reload")
    assert r.returncode == 1 and "reload abandoned: generation 2" in r.stderr, r
    assert sorted(status_rows(d)) == ["a", "b"], d.status().stdout
    # The next one starts (the hook fails generation 2 only): "b" goes, "c"
    # comes, and status follows the master rather than the file.
    r = cli(d.conf_path, "-s", "reload")
    assert r.returncode == 0 and "reloaded: generation 3" in r.stderr, r
    for _ in range(4):
        assert chat(d.port, model="g").status == 200
    got = status_rows(d)
    assert sorted(got) == ["a", "c"], d.status().stdout
    assert int(got["a"]["REQUESTS"]) + int(got["c"]["REQUESTS"]) == 4, got
    d.write_conf([deployment("g", a, dep_id="a"), deployment("g", b, dep_id="new")])
    assert sorted(status_rows(d)) == ["a", "c"], "status read the file, not the segment"


def make_dry(*args):
    """`make -n` in the source tree with a build tree that does not exist,
    so that every rule that would run is listed; nothing runs."""
    build = os.path.join(tmpdir(), "fresh-build")
    return subprocess.run(["make", "-n", "--no-print-directory", "BUILD=" + build] + list(args),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_make_never_installs_and_make_run_installs_only_what_it_needs():
    """Issue 10, item 6: plain `make` on a fresh tree ran scripts/install-deps.sh
    (every object had it as an order-only prerequisite), and the one package set
    included nginx, valgrind and clang for everybody's `make run`."""
    out = make_dry("all")
    assert out.returncode == 0, out.stderr
    assert "llmroute" in out.stdout, out.stdout[-2000:]
    assert "install-deps" not in out.stdout and "apt-get" not in out.stdout, \
        [l for l in out.stdout.splitlines() if "install" in l]
    # `make run` (and `make test`) call the script explicitly, with their set.
    calls = [l.split() for l in make_dry("run").stdout.splitlines() if "install-deps" in l]
    assert calls == [["scripts/install-deps.sh", "run"]], calls
    calls = [l.split() for l in make_dry("test").stdout.splitlines() if "install-deps" in l]
    assert calls == [["scripts/install-deps.sh", "test"]], calls

    def pkgs(*sets):
        r = subprocess.run([os.path.join(ROOT, "scripts", "install-deps.sh"), "--list"]
                           + list(sets), capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r
        return set(r.stdout.split())
    run = pkgs("run")
    assert {"libevent-dev", "libcurl4-openssl-dev", "libconfig-dev", "python3"} <= run, run
    assert not run & {"nginx", "valgrind", "clang", "wrk", "nghttp2-client"}, run
    assert {"nginx", "openssl"} <= pkgs("test") and "clang" in pkgs("fuzz"), pkgs("all")
    assert pkgs("all") >= pkgs("test") | pkgs("bench") | pkgs("fuzz") | {"valgrind"}
