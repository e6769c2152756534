"""`llmroute -s stop|quit|reopen|reload` signals only a running master: a pid
file left behind (its pid maybe another program's by now) is refused."""
import os
import subprocess

from harness import BUILD, ROOT, Daemon, Mock, deployment, wait_for


def cli(d, *args):
    return subprocess.run([os.path.join(BUILD, "llmroute"), "-c", d.conf_path] + list(args),
                          capture_output=True, text=True, cwd=ROOT, timeout=30)


def test_cli_signal_refuses_stale_pid_file():
    m = Mock("m")
    d = Daemon([deployment("g", m)], workers=2)
    # With a master running, -s goes to it.
    r = cli(d, "-s", "quit")
    assert r.returncode == 0, r
    wait_for(lambda: d.p.poll() is not None, 30, "master gone after -s quit")
    # Now the pid file names a live process that is not a master.
    other = subprocess.Popen(["sleep", "300"])
    try:
        with open(d.pid_file, "w") as f:
            f.write("%d\n" % other.pid)
        for sig in ("stop", "quit", "reopen", "reload"):
            r = cli(d, "-s", sig)
            assert r.returncode == 1, (sig, r)
            assert "not running" in r.stderr and d.pid_file in r.stderr, (sig, r.stderr)
            assert other.poll() is None, (sig, "the sleep was signalled", other.returncode)
    finally:
        other.kill()
        other.wait()
    d.stop()
