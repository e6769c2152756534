"""Review of the LiteLLM YAML loader (issue 15) with hostile files: each is
refused by -t with its line, and a reload to one of them changes nothing
in the running daemon (its old config keeps serving)."""
import os

from harness import Mock, chat, cli, tmpdir
from yamlkit import YamlDaemon, full_env

GOOD = """model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o
      api_base: os.environ/MOCK_BASE
      api_key: os.environ/REV_KEY
"""


def hostile_files():
    laughs = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for i in range(1, 10):
        laughs += "l%d: &l%d [%s]\n" % (i, i, ",".join(["*" + prev] * 9))
        prev = "l%d" % i
    return [
        ("laughs", (GOOD + laughs).encode(), "more than 1000000 values"),
        ("tabs", GOOD.replace("  - model_name", "\t- model_name").encode(), "syntax error"),
        ("dup", (GOOD + "model_list: []\n").encode(), "duplicate key"),
        ("binary", bytes(range(256)) * 4, "syntax error"),
        ("deep", (GOOD + "x: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested more than"),
        ("huge", GOOD.replace("model_name: gpt", "model_name: " + "g" * (8 << 20)).encode(),
         "model_name: must be 1 to 63"),
        ("noenv", GOOD.replace("REV_KEY", "REV_KEY_NOT_SET").encode(),
         "api_key: environment variable REV_KEY_NOT_SET is not set"),
    ]


def test_review_yaml_hostile_files_refused_and_reload_changes_nothing():
    m = Mock("m")
    env = {"MOCK_BASE": m.base + "/v1", "REV_KEY": "sk-rev-yaml-secret"}
    d = YamlDaemon(GOOD, env=env)
    try:
        assert chat(d.port, model="gpt").status == 200
        for name, data, why in hostile_files():
            path = os.path.join(tmpdir(), "hostile.yaml")
            with open(path, "wb") as f:
                f.write(data)
            r = cli(path, "-t", env=full_env(env), timeout=60)
            assert r.returncode == 1 and why in r.stderr, (name, r.stderr[-500:])
            assert "hostile.yaml:" in r.stderr, (name, r.stderr[-500:])
            assert "sk-rev-yaml-secret" not in r.stderr, name
            # the daemon's own file, replaced by it, then reloaded: refused
            with open(d.conf_path, "wb") as f:
                f.write(data + d.server_section(2).encode())
            r = cli(d.conf_path, "-s", "reload", env=full_env(env), timeout=60)
            assert r.returncode == 1, (name, r.stdout, r.stderr[-500:])
            assert chat(d.port, model="gpt").status == 200, name
        assert d.p.poll() is None
    finally:
        d.stop()
        m.stop()
