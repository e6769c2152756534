"""Starting llmroute on a LiteLLM config.yaml of fixtures/litellm (issue 15).

The fixtures are written the way LiteLLM's docs write them; a LiteLLM file
has no listen address, so the test appends llmroute's own `server:` section
(port, pid file, shared memory name), which LiteLLM itself would ignore."""
import os

import harness
from harness import BUILD, Daemon, Proc, free_port, tmpdir

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "litellm")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


class YamlDaemon(Daemon):
    """llmroute -c <dir>/config.yaml (or another name, with args) on a free port."""

    def __init__(self, text, env=None, workers=2, name="config.yaml", args=()):
        harness._counter[0] += 1
        self.drain_timeout = 10.0
        self.port = free_port()
        d = tmpdir()
        self.conf_path = os.path.join(d, name)
        self.pid_file = os.path.join(d, "llmroute.pid")
        self.shm_name = "/llmr-test-%d-%d" % (os.getpid(), harness._counter[0])
        self.write_yaml(text, workers)
        self.env = env or {}
        Proc.__init__(self, [os.path.join(BUILD, "llmroute")] + list(args)
                      + ["-c", self.conf_path], "llmroute", env=self.env)
        self.wait_ready()

    def server_section(self, workers):
        return ("\nserver:\n  listen: \"127.0.0.1:%d\"\n  workers: %d\n  pid_file: \"%s\"\n"
                "  shm_name: \"%s\"\n  drain_timeout: %s\n"
                % (self.port, workers, self.pid_file, self.shm_name, self.drain_timeout))

    def write_yaml(self, text, workers=2):
        with open(self.conf_path, "w") as f:
            f.write(text + self.server_section(workers))


def full_env(extra):
    env = dict(os.environ)
    env.update(extra)
    return env
