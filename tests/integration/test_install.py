"""Installing as a service (issue 12, item 6): `make install` into a DESTDIR
copies the built binary (never a rebuild with other flags), an example
config that passes -t, the man page, the systemd unit and the logrotate
snippet; the INSTALLED binary serves; `make uninstall` removes it all.
And `llmroute -h` lists exactly the flags the command line accepts."""
import fnmatch
import os
import re
import shutil
import signal
import subprocess

from harness import (BUILD, ROOT, SANITIZED, Proc, Mock, TestFailure, chat, free_port,
                     request, tmpdir, wait_for)

LLMROUTE = os.path.join(BUILD, "llmroute")


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120, **kw)


def accepted_flags():
    """The option letters main.c hands getopt, read from the source so that a
    flag added later without a help line fails here."""
    with open(os.path.join(ROOT, "master", "main.c")) as f:
        m = re.search(r'getopt(?:_long)?\(argc, argv, "([^"]+)"', f.read())
    assert m, "no getopt call in master/main.c"
    spec = m.group(1)
    return {c: spec[i + 1:i + 2] == ":" for i, c in enumerate(spec) if c != ":"}


def test_help_lists_every_flag():
    flags = accepted_flags()
    for argv in (["-h"], ["--help"]):
        out = run([LLMROUTE] + argv)
        assert out.returncode == 0 and out.stderr == "", (argv, out)
        assert out.stdout.startswith("usage: llmroute"), out.stdout
    help_text = run([LLMROUTE, "--help"]).stdout
    # One line per flag: "  -x ..." (or "  -h, --help").
    listed = set(re.findall(r"^  -(\w)\b", help_text, re.M))
    assert listed == set(flags), ("help lists %s, getopt accepts %s" %
                                  (sorted(listed), sorted(flags)))
    assert re.search(r"^  status ", help_text, re.M), help_text
    # Each listed flag is accepted: followed by -h it prints the help and
    # exits 0 (-v answers first), never "invalid option".
    for c, takes_arg in flags.items():
        argv = [LLMROUTE, "-" + c] + (["x"] if takes_arg else []) + ["-h"]
        out = run(argv)
        assert out.returncode == 0 and "invalid option" not in out.stderr, (argv, out)
    # Other letters (a sample: each run is slow under ASan), a long option and
    # a stray word: help on stderr, exit 2.
    unknown = [["-" + c] for c in "xzqQZ" if c not in flags]
    for argv in unknown + [["--bogus"], ["bogus"], ["-t", "extra"]]:
        out = run([LLMROUTE] + argv)
        assert out.returncode == 2, (argv, out.returncode, out.stderr)
        assert "usage: llmroute" in out.stderr and out.stdout == "", (argv, out)


def make(*args):
    """make in the source tree against the build the tests use, with its
    flags: `install` must find it up to date."""
    argv = ["make", "--no-print-directory", "BUILD=" + os.path.relpath(BUILD, ROOT)]
    if SANITIZED:
        argv.append("SANITIZE=address,undefined")
    # Under `make test` the parent's jobserver fds are not passed on: drop them.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = run(argv + list(args), env=env)
    assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-2000:])
    return out


def serve_installed(binary, example, mocks):
    """The installed binary on the installed example config, its fixed ports,
    pid file and segment moved to test-owned ones."""
    d = tmpdir()
    port = free_port()
    text = open(example).read()
    text = text.replace("127.0.0.1:4000", "127.0.0.1:%d" % port)
    for fixed, m in zip((4101, 4102), mocks):
        text = text.replace("127.0.0.1:%d" % fixed, "127.0.0.1:%d" % m.port)
    text = re.sub(r'pid_file = "[^"]*";', 'pid_file = "%s/llmroute.pid";' % d, text)
    text = re.sub(r'access_log = "[^"]*";', 'access_log = "%s/access.log";' % d, text)
    text = re.sub(r'shm_name = "[^"]*";', 'shm_name = "/llmr-install-%d";' % os.getpid(), text)
    conf = os.path.join(d, "llmroute.conf")
    with open(conf, "w") as f:
        f.write(text)
    p = Proc([binary, "-c", conf], "llmroute-installed")
    wait_for(lambda: p.p.poll() is not None or
             request(port, "GET", "/health/readiness", timeout=2).status == 200,
             20, "installed llmroute readiness")
    if p.p.poll() is not None:
        raise TestFailure("installed llmroute exited:\n" + p.log_text()[-3000:])
    return p, port


def check_man(path):
    out = run(["groff", "-man", "-Tutf8", "-ww", "-z", path])
    assert out.returncode == 0 and out.stderr == "", out
    page = run(["man", "-l", path], env=dict(os.environ, MANWIDTH="80", PAGER="cat"))
    assert page.returncode == 0, page
    page.stdout = re.sub(".\x08", "", page.stdout)     # bold and underline overstrikes
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "FILES",
                    "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert re.search(r"^%s$" % section, page.stdout, re.M), (section, page.stdout[:500])
    for c in accepted_flags():
        assert re.search(r"^\s+-%s\b" % c, page.stdout, re.M), ("man lacks -" + c)
    for sig in ("SIGHUP", "SIGQUIT", "SIGTERM", "SIGINT", "SIGUSR1"):
        assert sig in page.stdout, sig


def check_unit(dest, unit, conf_text):
    text = open(unit).read()
    for line in ("Type=simple", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGQUIT",
                 "Restart=on-failure", "LimitNOFILE=65536", "DynamicUser=yes",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "RuntimeDirectory=llmroute",
                 "ExecStartPre=/usr/local/bin/llmroute -t -c /usr/local/etc/llmroute/llmroute.conf",
                 "ExecStart=/usr/local/bin/llmroute -c /usr/local/etc/llmroute/llmroute.conf"):
        assert re.search("^%s$" % re.escape(line), text, re.M), line
    # systemd's stop waits past the drain, else SIGKILL cuts requests.
    stop = float(re.search(r"^TimeoutStopSec=(\d+)", text, re.M).group(1))
    drain = float(re.search(r"^\s*drain_timeout = ([\d.]+);", conf_text, re.M).group(1))
    assert stop > drain, (stop, drain)
    # The pid file the unit's directory holds is the config's.
    assert re.search(r'^\s*pid_file = "/run/llmroute/llmroute.pid";', conf_text, re.M)
    # The access log goes where the unit may write (ProtectSystem=strict makes
    # the config's directory read-only) and logrotate rotates.
    assert re.search(r'^\s*access_log = "/var/log/llmroute/access.log";', conf_text, re.M)
    assert re.search(r"^LogsDirectory=llmroute$", text, re.M), text
    if shutil.which("systemd-analyze"):
        # verify needs the binary where the unit names it: point it at DESTDIR.
        copy = os.path.join(tmpdir(), "llmroute.service")
        with open(copy, "w") as f:
            f.write(text.replace("/usr/local/", dest + "/usr/local/"))
        out = run(["systemd-analyze", "verify", "--man=no", copy])
        assert out.returncode == 0 and "llmroute" not in out.stderr, out


def test_make_install_runs_and_uninstalls():
    dest = tmpdir()
    try:
        before = os.stat(LLMROUTE).st_mtime_ns
        make("install", "DESTDIR=" + dest, "PREFIX=/usr/local")
        assert os.stat(LLMROUTE).st_mtime_ns == before, "make install rebuilt the binary"
        binary = dest + "/usr/local/bin/llmroute"
        conf = dest + "/usr/local/etc/llmroute/llmroute.conf"
        man = dest + "/usr/local/share/man/man8/llmroute.8"
        unit = dest + "/usr/local/lib/systemd/system/llmroute.service"
        rotate = dest + "/etc/logrotate.d/llmroute"
        with open(binary, "rb") as a, open(LLMROUTE, "rb") as b:
            assert a.read() == b.read(), "installed binary differs from the build"
        assert os.access(binary, os.X_OK)
        out = run([binary, "-t", "-c", conf])
        assert out.returncode == 0 and "test is successful" in out.stderr, out

        a, b = Mock("a"), Mock("b")
        d, port = serve_installed(binary, conf, (a, b))
        r = chat(port, model="gpt-3.5-turbo")
        assert r.status == 200 and r.json()["choices"][0]["message"]["content"], r
        assert a.stats()["requests"] + b.stats()["requests"] == 1
        assert d.stop(signal.SIGQUIT, 30) == 0, d.log_text()[-2000:]

        check_man(man)
        conf_text = open(conf).read()
        check_unit(dest, unit, conf_text)
        text = open(rotate).read()
        assert "/var/log/llmroute/*.log" in text, text
        log = re.search(r'^\s*access_log = "([^"]*)";', conf_text, re.M).group(1)
        assert fnmatch.fnmatch(log, "/var/log/llmroute/*.log"), log
        assert 'kill -USR1 "$(cat /run/llmroute/llmroute.pid)"' in text, text

        make("uninstall", "DESTDIR=" + dest, "PREFIX=/usr/local")
        left = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs]
        assert left == [], left
        # An operator's edited config survives uninstall, as a conffile does.
        make("install", "DESTDIR=" + dest)
        with open(conf, "a") as f:
            f.write("# edited\n")
        make("uninstall", "DESTDIR=" + dest)
        left = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs]
        assert left == [conf], left
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_install_prefix_usr_puts_config_in_etc():
    """PREFIX=/usr is a distribution's layout: config in /etc/llmroute, and
    the unit and man page name the paths of that layout."""
    dest = tmpdir()
    try:
        make("install", "DESTDIR=" + dest, "PREFIX=/usr")
        conf = dest + "/etc/llmroute/llmroute.conf"
        assert os.path.exists(conf) and os.access(dest + "/usr/bin/llmroute", os.X_OK)
        unit = open(dest + "/usr/lib/systemd/system/llmroute.service").read()
        assert "ExecStart=/usr/bin/llmroute -c /etc/llmroute/llmroute.conf\n" in unit, unit
        assert "/usr/local" not in unit, unit
        man = open(dest + "/usr/share/man/man8/llmroute.8").read()
        assert "/etc/llmroute/llmroute.conf" in man and "/usr/local" not in man
        out = run([dest + "/usr/bin/llmroute", "-t", "-c", conf])
        assert out.returncode == 0, out
        make("uninstall", "DESTDIR=" + dest, "PREFIX=/usr")
        left = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs]
        assert left == [], left
    finally:
        shutil.rmtree(dest, ignore_errors=True)
