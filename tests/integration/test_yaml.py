"""LiteLLM config.yaml files run unchanged (issue 15): each fixture of
fixtures/litellm, written as LiteLLM's docs write them, is loaded by the
real daemon (2 workers), served against mock upstreams, reloaded, checked
with -t and converted with `llmroute convert`; refused providers and a
syntax error are reported with their line."""
import os
import re
import signal

from harness import BUILD, Mock, Proc, chat, cli, request, tmpdir, wait_for
from yamlkit import YamlDaemon, fixture, full_env

GROUP = "gpt-3.5-turbo"


def auth(key):
    return {"Authorization": "Bearer " + key}


def lb_env(a, b):
    return {"MOCK_A_BASE": a.base + "/v1", "MOCK_B_BASE": b.base + "/v1",
            "OPENAI_API_KEY": "sk-test-lb"}


def test_yaml_load_balancing_served():
    a, b = Mock("a"), Mock("b")
    d = YamlDaemon(fixture("load_balancing.yaml"), env=lb_env(a, b))
    # general_settings.master_key guards the API
    assert chat(d.port).status == 401
    # the key from os.environ/OPENAI_API_KEY reaches the upstream
    a.config(require_key="sk-test-lb")
    b.config(require_key="sk-test-lb")
    seen = set()

    def both():
        r = chat(d.port, headers=auth("sk-1234"))
        assert r.status == 200, r
        seen.add(r.headers["x-llmroute-deployment"])
        return seen == {"deployment-a", "deployment-b"}
    wait_for(both, 20, "usage-based-routing-v2 spreading over both deployments")
    # hosted_vllm/ is an OpenAI-compatible server: the model without the prefix
    a.config(require_key=None)      # it has no key
    r = chat(d.port, model="vllm-llama", headers=auth("sk-1234"))
    assert r.status == 200, r
    assert '"meta-llama/Meta-Llama-3-8B-Instruct"' in a.stats()["last"]["body"]
    # rpm/tpm inside and beside litellm_params are the deployments' limits
    rows = d.status()
    assert rows.returncode == 0, rows.stderr
    assert re.search(r"deployment-a\b.*\b600\b", rows.stdout), rows.stdout
    assert re.search(r"deployment-b\b.*\b1200\b", rows.stdout), rows.stdout
    # ignored keys are logged once each, with their line
    log = d.log_text()
    for key in (":31: model_list[2].litellm_params.drop_params: ignored",
                ":45: litellm_settings.success_callback: ignored",
                ":50: general_settings.database_url: ignored",
                ":36: router_settings.routing_strategy_args.ttl: ignored"):
        assert key in log, (key, log[-3000:])
    assert log.count("drop_params: ignored") == 2, log    # model_list[2] and litellm_settings
    assert "sk-1234" not in log and "sk-test-lb" not in log
    d.stop()


def test_yaml_azure_served():
    m = Mock("az")
    env = {"AZURE_API_BASE": m.base, "LITELLM_MASTER_KEY": "sk-az-master"}
    d = YamlDaemon(fixture("azure.yaml"), env=env)
    # the key comes from environment_variables, through os.environ/
    m.config(require_key="azure-eu-secret")
    paths = {}

    def both():
        r = chat(d.port, model="gpt-4o", headers=auth("sk-az-master"))
        assert r.status == 200, r
        last = m.stats()["last"]
        paths[last["path"]] = last["query"]
        return len(paths) == 2
    wait_for(both, 20, "both Azure deployments")
    assert paths["/openai/deployments/gpt-4o-eu/chat/completions"] == \
        "api-version=2024-06-01", paths
    assert paths["/openai/deployments/gpt-4o-us/chat/completions"] == \
        "api-version=2024-02-15-preview", paths
    r = request(d.port, "POST", "/v1/embeddings",
                {"model": "text-embedding-ada-002", "input": "hi"},
                headers=auth("sk-az-master"))
    assert r.status == 200, r
    assert m.stats()["last"]["path"] == "/openai/deployments/ada-embeddings/embeddings"
    # model_info.id may be a number in LiteLLM's files
    assert r.headers["x-llmroute-deployment"] not in ("1", "2")
    r = chat(d.port, model="gpt-4o", headers=auth("sk-az-master"))
    assert r.headers["x-llmroute-deployment"] in ("1", "2"), r.headers
    d.stop()


def test_yaml_fallbacks_and_aliases_served():
    a, b = Mock("a"), Mock("b")
    d = YamlDaemon(fixture("fallbacks.yaml"), env=lb_env(a, b))
    a.config(status=500)
    # router_settings.fallbacks: gpt-4 -> gpt-3.5-turbo, no retry (num_retries: 0
    # in router_settings wins over litellm_settings' 3)
    r = chat(d.port, model="gpt-4")
    assert r.status == 200, r
    assert r.headers.get("x-llmroute-fallback") == GROUP, r.headers
    assert a.stats()["requests"] == 1, a.stats()
    # an alias with a dot, LiteLLM's model_group_alias
    r = chat(d.port, model="gpt-4.1")
    assert r.status == 200 and r.headers["x-llmroute-model-group"] == "gpt-4", r.headers
    a.config(status=200)
    b.config(error="context_length")
    # litellm_settings.context_window_fallbacks: gpt-3.5-turbo -> -16k, also on b,
    # which fails the same way; the router went there all the same
    r = chat(d.port, model=GROUP)
    assert r.status == 400, r
    assert b.stats()["paths"].get("/v1/chat/completions", 0) >= 2, b.stats()
    b.config(error="none")
    models = request(d.port, "GET", "/v1/models").json()
    ids = [x["id"] for x in models["data"]]
    assert "gpt-4.1" in ids and "old-gpt" not in ids, ids
    log = d.log_text()
    assert ":27: litellm_settings.num_retries: ignored: router_settings sets num_retries " \
        "at line 22" in log, log[-3000:]
    d.stop()


def test_yaml_reload_and_format_flag():
    a, b = Mock("a"), Mock("b")
    env = lb_env(a, b)
    text = fixture("fallbacks.yaml")
    d = YamlDaemon(text, env=env, name="litellm.conf", args=["--format", "yaml"])
    assert chat(d.port, model="newest").status == 404
    d.write_yaml(text.replace('"gpt-4.1": "gpt-4"', '"gpt-4.1": "gpt-4", "newest": "gpt-4"'))
    r = cli(d.conf_path, "--format", "yaml", "-s", "reload", env=full_env(env))
    assert r.returncode == 0, r.stderr
    wait_for(lambda: chat(d.port, model="newest").status == 200, 20, "reloaded alias")
    # a bad edit is refused by reload with its line; the old config keeps serving
    d.write_yaml(text.replace("num_retries: 0", "num_retries: -1"))
    r = cli(d.conf_path, "--format", "yaml", "-s", "reload", env=full_env(env))
    assert r.returncode == 1, r
    assert re.search(r"litellm\.conf:22: router_settings\.num_retries: must be", r.stderr), \
        r.stderr
    assert chat(d.port, model="newest").status == 200
    # without --format the same file is libconfig, and not valid as such
    r = cli(d.conf_path, "-t", env=full_env(env))
    assert r.returncode == 1 and "syntax error" in r.stderr, r
    d.stop()


def test_yaml_convert_serves_the_same():
    a, b = Mock("a"), Mock("b")
    env = lb_env(a, b)
    d = YamlDaemon(fixture("load_balancing.yaml"), env=env)
    out = cli(d.conf_path, "convert", d.conf_path, env=full_env(env))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(r"^# .*:31: model_list\[2\]\.litellm_params\.drop_params: ignored",
                     text, re.M), text
    assert 'routing_strategy = "usage-based-routing";' in text
    assert 'api_base = "os.environ/MOCK_A_BASE";' in text    # references stay references
    assert "sk-test-lb" not in text
    native = d.conf_path[:-len(".yaml")] + ".conf"
    with open(native, "w") as f:
        f.write(text)
    r = cli(native, "-t", env=full_env(env))
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr, r.stderr
    d.stop()
    # the converted file, served on the same address: same deployments, ids, key
    n = Proc([os.path.join(BUILD, "llmroute"), "-c", native], "llmroute", env=env)
    wait_for(lambda: n.p.poll() is not None
             or request(d.port, "GET", "/health/readiness", timeout=2).status == 200,
             20, "the converted config serving")
    assert n.p.poll() is None, n.log_text()
    a.config(require_key="sk-test-lb")
    r = chat(d.port, headers=auth("sk-1234"))
    assert r.status == 200, r
    assert r.headers["x-llmroute-deployment"] in ("deployment-a", "deployment-b")
    assert n.stop(signal.SIGQUIT, 30) == 0


def test_yaml_unsupported_providers_refused():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "litellm",
                        "unsupported.yaml")
    want = re.compile(r"unsupported\.yaml:8: model_list\[1\]\.litellm_params\.model: "
                      r"unsupported provider \"ollama\": llmroute has no adapter for it "
                      r"\(supported: openai/, .*azure/.*hosted_vllm/")
    for args in (["-t"], ["convert", path]):
        r = cli(path, *args)
        assert r.returncode == 1, r
        assert want.search(r.stderr), r.stderr
    text = fixture("unsupported.yaml").replace("      model: ollama/llama3\n",
                                               "      model: openai/llama3\n")
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "llmr-unsup-%d.yaml" % os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    try:
        r = cli(tmp, "-t")
        assert r.returncode == 1, r
        assert re.search(r":12: model_list\[2\]\.litellm_params\.model: unsupported "
                         r"provider \"bedrock\"", r.stderr), r.stderr
    finally:
        os.unlink(tmp)


def test_yaml_syntax_error_line():
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "llmr-syntax-%d.yml" % os.getpid())
    with open(tmp, "w") as f:
        f.write("model_list:\n  - model_name: a\n    litellm_params:\n"
                "      model: openai/a\n     api_base: http://x\n")
    try:
        for args in (["-t"], []):
            r = cli(tmp, *args, timeout=30)
            assert r.returncode != 0, r
            assert re.search(r"llmr-syntax-\d+\.yml:5: syntax error: ", r.stderr), r.stderr
    finally:
        os.unlink(tmp)


def test_yaml_every_fixture_converts():
    """Each servable fixture converts to a native file that -t accepts with
    the same deployments and no warning of its own (cache_redis.yaml is
    converted in test_yaml_cache_redis.py: its native keys come with 13/14)."""
    env = full_env({"MOCK_A_BASE": "http://127.0.0.1:9/v1", "MOCK_B_BASE":
                    "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-conv",
                    "AZURE_API_BASE": "http://127.0.0.1:9", "LITELLM_MASTER_KEY": "sk-m",
                    "AZURE_API_VERSION_EU": "2024-06-01", "AZURE_EU_KEY": "k"})
    d = tmpdir()
    for name, deployments in (("load_balancing.yaml", 3), ("azure.yaml", 3),
                              ("fallbacks.yaml", 4)):
        src = os.path.join(d, name)
        with open(src, "w") as f:
            f.write(fixture(name))
        out = cli(src, "convert", src, env=env)
        assert out.returncode == 0, (name, out.stderr)
        assert out.stdout.count("model_name = ") == deployments, (name, out.stdout)
        native = src[:-len(".yaml")] + ".conf"
        with open(native, "w") as f:
            f.write(out.stdout)
        for path in (src, native):
            r = cli(path, "-t", env=env)
            assert r.returncode == 0, (path, r.stderr)
        assert "warning" not in cli(native, "-t", env=env).stderr
        if name == "azure.yaml":
            # environment_variables: names as notes, values never
            assert "environment_variables.AZURE_EU_KEY: note:" in out.stdout, out.stdout
            assert "azure-eu-secret" not in out.stdout
