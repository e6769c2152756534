"""A LiteLLM config.yaml with Redis and response-cache settings (issue 15
mapping onto issues 13 and 14): router_settings.redis_* and
litellm_settings.cache + cache_params, all from os.environ/, served by the
real daemon against a real redis-server.  It needs the native cache section
and router_settings.redis_* that issues 13 and 14 add."""
import os
import shutil
import subprocess

from harness import Mock, TestFailure, chat, cli, free_port, tmpdir, wait_for
from yamlkit import YamlDaemon, fixture, full_env


class Redis:
    def __init__(self, password):
        exe = shutil.which("redis-server")
        if exe is None:
            raise TestFailure("redis-server is not installed (scripts/install-deps.sh test)")
        self.port = free_port()
        self.dir = tmpdir()
        self.p = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", self.dir,
                                   "--requirepass", password],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cli_exe = shutil.which("redis-cli")

        def up():
            if self.p.poll() is not None:
                raise TestFailure("redis-server exited with %s" % self.p.returncode)
            r = subprocess.run([cli_exe, "-p", str(self.port), "-a", password,
                                "--no-auth-warning", "ping"], capture_output=True, text=True,
                               timeout=10)
            return r.stdout.strip() == "PONG"
        wait_for(up, 20, "redis-server")
        self.cli = lambda *args: subprocess.run(
            [cli_exe, "-p", str(self.port), "-a", password, "--no-auth-warning"] + list(args),
            capture_output=True, text=True, timeout=10).stdout.strip()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def test_yaml_cache_and_redis_served():
    password = "redis-secret-y"
    r = Redis(password)
    try:
        m = Mock("a")
        env = {"MOCK_A_BASE": m.base + "/v1", "REDIS_HOST": "127.0.0.1",
               "REDIS_PORT": str(r.port), "REDIS_PASSWORD": password}
        path = os.path.join(tmpdir(), "config.yaml")
        with open(path, "w") as f:
            f.write(fixture("cache_redis.yaml"))
        t = cli(path, "-t", env=full_env(env))
        assert t.returncode == 0, t.stderr
        assert ":25: litellm_settings.cache_params.supported_call_types[3]: ignored" \
            in t.stderr, t.stderr
        conv = cli(path, "convert", path, env=full_env(env))
        assert conv.returncode == 0, conv.stderr
        assert 'supported_call_types = ( "chat", "embeddings" );' in conv.stdout, conv.stdout
        assert password not in conv.stdout
        native = path[:-len(".yaml")] + ".conf"
        with open(native, "w") as f:
            f.write(conv.stdout)
        t = cli(native, "-t", env=full_env(env))
        assert t.returncode == 0, t.stderr
        d = YamlDaemon(fixture("cache_redis.yaml"), env=env)
        # The workers connect to Redis after they listen, and store an answer
        # after it is sent: a call before either would (rightly) miss.
        wait_for(lambda: d.log_text().count("cache: redis connected") >= 2, 20,
                 "both workers connected to redis")
        body = {"temperature": 0}
        first = chat(d.port, content="cache me", extra=body)
        assert first.status == 200, first
        key = "*:cache:" + first.headers["x-llmroute-cache-key"]
        wait_for(lambda: r.cli("KEYS", key) != "", 20, "the answer stored in redis")
        # the second identical call is answered from the cache, not the mock
        second = chat(d.port, content="cache me", extra=body)
        assert second.status == 200 and second.headers.get("x-llmroute-cache") == "hit", second
        assert m.stats()["requests"] == 1, m.stats()
        assert password not in d.log_text()
        d.stop()
    finally:
        r.stop()
