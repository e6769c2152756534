/* Unit tests for LiteLLM YAML configs (conf/conf_yaml.c, conf_litellm*.c):
 * PyYAML's scalar types, syntax errors with their line, the mapping of
 * every section, LiteLLM's precedence, warnings, refusals, the bounds on
 * aliases and nesting, environment_variables, and convert's output loading
 * as the same configuration.  Every file is read as YAML (--format yaml). */
#include "conf_test.h"
#include "../../conf/conf_yaml.c"
#include "../../conf/conf_litellm.c"
#include "../../conf/conf_litellm_models.c"
#include "../../conf/conf_litellm_cache.c"

static void test_scalar_types(void)
{
    static const struct { const char *s; enum conf_ytype t; } cases[] = {
        { "true", CONF_YT_BOOL }, { "yes", CONF_YT_BOOL }, { "Off", CONF_YT_BOOL },
        { "12", CONF_YT_INT }, { "-7", CONF_YT_INT }, { "0x1f", CONF_YT_INT },
        { "1_000", CONF_YT_INT }, { "010", CONF_YT_INT }, { "1.5", CONF_YT_FLOAT },
        { "-0.25", CONF_YT_FLOAT }, { ".inf", CONF_YT_FLOAT }, { "~", CONF_YT_NULL },
        { "", CONF_YT_NULL }, { "null", CONF_YT_NULL }, { "abc", CONF_YT_STR },
        { "2024-02-01", CONF_YT_STR }, { "1e3", CONF_YT_STR }, { "1.2.3", CONF_YT_STR },
        { "99999999999999999999999", CONF_YT_STR }, { "sk-1234", CONF_YT_STR },
        { "_1", CONF_YT_STR }, { "0x", CONF_YT_STR }, { ".", CONF_YT_STR },
    };
    conf_yvalue v;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (!T_EQ_INT(conf_ystring_type(cases[i].s, &v), cases[i].t))
            fprintf(stderr, "    for \"%s\"\n", cases[i].s);
    T_EQ_INT(conf_ystring_type("0x1f", &v), CONF_YT_INT);
    T_EQ_INT(v.i, 31);
    T_EQ_INT(conf_ystring_type("010", &v), CONF_YT_INT);
    T_EQ_INT(v.i, 8);
    T_EQ_INT(conf_ystring_type("1_000", &v), CONF_YT_INT);
    T_EQ_INT(v.i, 1000);
    T_EQ_INT(conf_ystring_type("off", &v), CONF_YT_BOOL);
    T_EQ_INT(v.b, 0);
}

/* An error with no key: "FILE:LINE: what...". */
static void expect_yerr_(int at, const char *text, int line, const char *what)
{
    char err[1024], prefix[512];
    llmr_conf *c;
    int rc = load_text(text, &c, err, sizeof(err));

    snprintf(prefix, sizeof(prefix), "%s:%d: %s", last_path, line, what);
    if (!T_EQ_INT(rc, -1) || !T_CHECK(strncmp(err, prefix, strlen(prefix)) == 0))
        fprintf(stderr, "    (expect_yerr at line %d)\n    got:    %s\n    want:   %s\n",
                at, err, prefix);
    llmr_conf_free(c);
}
#define EXPECT_YERR(text, line, what) expect_yerr_(__LINE__, text, line, what)

#define Y_ML "model_list:\n  - model_name: g\n    litellm_params:\n      model: gpt-4o\n"

static void test_syntax_errors(void)
{
    char err[1024];

    /* A value that is not closed: libyaml names the line it noticed. */
    expect_err_(__LINE__, Y_ML "router_settings:\n  num_retries: [1, 2\n", 7,
                "syntax error", "did not find expected", err);
    EXPECT_ERR(Y_ML "  - model_name: h\n    litellm_params:\n  model: x\n   bad: 1\n", 7,
               "syntax error", "did not find expected '-' indicator");
    EXPECT_ERR(Y_ML "router_settings:\n  num_retries: 1\n  num_retries: 2\n", 7,
               "num_retries", "duplicate key (also at line 6)");
    EXPECT_YERR(Y_ML "---\nmodel_list: []\n", 5, "a second YAML document");
    EXPECT_YERR("- a\n- b\n", 1, "must be a mapping of sections");
    EXPECT_YERR(Y_ML "router_settings:\n  fallbacks: *nope\n", 6, "unknown alias *nope");
    EXPECT_YERR(Y_ML "router_settings: &r\n  x: *r\n", 6, "alias *r refers to a node that "
               "contains it");
    EXPECT_YERR(Y_ML "router_settings:\n  ? [a, b]\n  : 1\n", 6, "a mapping key must be "
               "a plain string");
    EXPECT_ERR(Y_ML "model_list: 1\n", 5, "model_list", "duplicate key (also at line 1)");
    /* Bad UTF-8 has no mark in libyaml: its line comes from its offset. */
    EXPECT_ERR(Y_ML "router_settings:\n  routing_strategy: \"\xff\"\n", 6, "syntax error",
               "invalid leading UTF-8 octet");
    {
        llmr_conf *c;
        T_EQ_INT(load_text("# nothing\n", &c, err, sizeof(err)), -1);
        T_CONTAINS(err, ": model_list: missing: the file is empty");
        T_EQ_INT(load_text("router_settings: {num_retries: 1}\n", &c, err, sizeof(err)), -1);
        T_CONTAINS(err, ": model_list: missing: list at least one deployment, like "
                   "model_list: [{model_name");
    }
}

/* Aliases are shared, not copied; their expanded size is still bounded. */
static void test_bounds(void)
{
    char text[8192], *p = text;

    p += sprintf(p, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 9; i++)
        p += sprintf(p, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, "
                     "*a%d]\n", i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1,
                     i - 1, i - 1);
    EXPECT_YERR(text, 5, "more than 1000000 values");

    p = text;
    for (int i = 0; i < 70; i++)
        *p++ = '[';
    *p = '\0';
    EXPECT_YERR(text, 1, "nested more than 64 levels deep");
}

static const char *const full_yaml =
    "environment_variables:\n"                                          /* 1 */
    "  LLMR_T_BASE: http://127.0.0.1:9/v1\n"
    "  LLMR_T_PORT: 6400\n"
    "model_list:\n"
    "  - model_name: gpt-3.5-turbo\n"                                   /* 5 */
    "    litellm_params:\n"
    "      model: openai/gpt-3.5-turbo\n"
    "      api_base: os.environ/LLMR_T_BASE\n"
    "      api_key: sk-abc\n"
    "      rpm: 600\n"                                                  /* 10 */
    "      timeout: 12.5\n"
    "    model_info: {id: 7, base_model: x, max_input_tokens: 4096}\n"
    "  - model_name: gpt-3.5-turbo\n"
    "    litellm_params: {model: groq/llama3-8b-8192, max_parallel_requests: 4}\n"
    "    tpm: 90000\n"                                                  /* 15 */
    "  - model_name: gpt-4\n"
    "    litellm_params:\n"
    "      model: azure/gpt-4-eu\n"
    "      api_base: https://eu.example.com\n"
    "      api_version: \"2024-06-01\"\n"                               /* 20 */
    "      input_cost_per_token: 0.00001\n"
    "  - model_name: local\n"
    "    litellm_params: {model: hosted_vllm/meta/llama, api_base: http://127.0.0.1:8/v1}\n"
    "router_settings:\n"
    "  routing_strategy: usage-based-routing-v2\n"                      /* 25 */
    "  num_retries: 1\n"
    "  fallbacks: [{\"gpt-4\": [\"gpt-3.5-turbo\"]}, {\"*\": [\"local\"]}]\n"
    "  model_group_alias: {\"gpt-4.1\": gpt-4, hide: {model: local, hidden: yes}}\n"
    "  routing_strategy_args: {lowest_latency_buffer: 0.5, ttl: 3}\n"
    "  enable_pre_call_checks: true\n"                                  /* 30 */
    "litellm_settings:\n"
    "  num_retries: 5\n"
    "  request_timeout: 40\n"
    "  context_window_fallbacks: [{gpt-3.5-turbo: [gpt-4]}]\n"
    "  success_callback: [langfuse]\n"                                  /* 35 */
    "  drop_params: true\n"
    "general_settings:\n"
    "  master_key: sk-master\n"
    "  database_url: postgres://x\n"
    "  background_health_checks: false\n"                              /* 40 */
    "guardrails: []\n";

static int has_warning(const llmr_conf *c, const char *what)
{
    for (int i = 0; i < c->nwarnings; i++)
        if (strstr(c->warnings[i], what) != NULL)
            return 1;
    return 0;
}

static void test_full_mapping(void)
{
    llmr_conf *c;
    const llmr_deployment *d;

    unsetenv("LLMR_T_BASE");
    if ((c = LOAD_OK(full_yaml)) == NULL)
        return;
    T_EQ_INT(c->ndeployments, 4);
    T_EQ_INT(c->ngroups, 3);
    d = &c->deployments[0];
    T_EQ_STR(d->api_base, "http://127.0.0.1:9/v1");     /* environment_variables */
    T_EQ_STR(d->upstream_model, "gpt-3.5-turbo");
    T_EQ_INT(d->rpm, 600);
    T_CHECK(d->timeout == 12.5);
    T_EQ_STR(d->id, "7");
    T_EQ_INT(d->max_input_tokens, 4096);
    T_EQ_INT(d->line, 5);
    d = &c->deployments[1];
    T_EQ_INT(d->provider, LLMR_PROVIDER_OPENAI);
    T_EQ_STR(d->api_base, "https://api.groq.com/openai/v1");
    T_EQ_STR(d->upstream_model, "llama3-8b-8192");
    T_EQ_INT(d->tpm, 90000);
    T_EQ_INT(d->max_parallel_requests, 4);
    d = &c->deployments[2];
    T_EQ_INT(d->provider, LLMR_PROVIDER_AZURE);
    T_EQ_STR(d->api_version, "2024-06-01");
    T_EQ_STR(d->upstream_model, "gpt-4-eu");
    T_EQ_STR(c->deployments[3].upstream_model, "meta/llama");

    T_EQ_INT(c->routing_strategy, LLMR_STRATEGY_USAGE_BASED);
    T_EQ_INT(c->num_retries, 1);                /* router_settings wins */
    T_CHECK(c->timeout == 40.0);                /* request_timeout, router sets none */
    T_CHECK(c->lowest_latency_buffer == 0.5);
    T_EQ_INT(c->fallbacks.n, 1);
    T_EQ_STR(c->fallbacks.items[0].model, "gpt-4");
    T_EQ_STR(c->fallbacks.items[0].fallbacks[0], "gpt-3.5-turbo");
    T_EQ_INT(c->ndefault_fallbacks, 1);
    T_EQ_STR(c->default_fallbacks[0], "local");
    T_EQ_INT(c->context_window_fallbacks.n, 1);
    T_EQ_INT(c->naliases, 2);
    T_EQ_STR(c->aliases[0].name, "gpt-4.1");
    T_EQ_INT(c->aliases[1].hidden, 1);
    T_EQ_STR(c->master_key, "sk-master");
    T_EQ_INT(c->background_health_checks, 0);

    T_CHECK(has_warning(c, ":12: model_list[0].model_info.base_model: ignored"));
    T_CHECK(has_warning(c, ":21: model_list[2].litellm_params.input_cost_per_token: "));
    T_CHECK(has_warning(c, ":29: router_settings.routing_strategy_args.ttl: ignored"));
    T_CHECK(has_warning(c, ":32: litellm_settings.num_retries: ignored: router_settings "
                        "sets num_retries at line 26"));
    T_CHECK(has_warning(c, ":35: litellm_settings.success_callback: ignored"));
    T_CHECK(has_warning(c, ":39: general_settings.database_url: ignored"));
    T_CHECK(has_warning(c, ":41: guardrails: ignored"));
    T_EQ_INT(c->nwarnings, 8);
    for (int i = 0; i < c->nwarnings; i++)      /* never a value */
        T_CHECK(strstr(c->warnings[i], "sk-") == NULL);
    llmr_conf_free(c);
}

static void test_refused(void)
{
    EXPECT_ERR("model_list:\n  - model_name: l\n    litellm_params:\n      model: ollama/llama3\n",
               4, "model_list[0].litellm_params.model", "unsupported provider \"ollama\": "
               "llmroute has no adapter for it (supported: openai/, ");
    EXPECT_ERR("model_list:\n  - model_name: b\n    litellm_params: {model: "
               "bedrock/anthropic.claude-v2}\n", 3, "model_list[0].litellm_params.model",
               "unsupported provider \"bedrock\"");
    EXPECT_ERR("model_list:\n  - model_name: l\n    litellm_params: {model: gemini-pro}\n",
               3, "model_list[0].litellm_params.model", "not an OpenAI model");
    EXPECT_ERR("model_list:\n  - model_name: l\n    litellm_params: {model: hosted_vllm/x}\n",
               3, "model_list[0].litellm_params.model", "hosted_vllm/ needs api_base");
    EXPECT_ERR(Y_ML "      temperature: 0.2\n", 5, "model_list[0].litellm_params.temperature",
               "not supported");
    EXPECT_ERR(Y_ML "      stream_timeout: -2\n", 5,
               "model_list[0].litellm_params.stream_timeout", "must be a number > 0");
    EXPECT_ERR(Y_ML "router_settings:\n  routing_strategy: cost-based-routing\n", 6,
               "router_settings.routing_strategy", "unsupported strategy");
    EXPECT_ERR(Y_ML "router_settings:\n  retry_policy: {}\n", 6,
               "router_settings.retry_policy", "not supported");
    EXPECT_ERR(Y_ML "litellm_settings:\n  cache: true\n  cache_params: {type: s3}\n", 7,
               "litellm_settings.cache_params.type", "unsupported cache type");
    EXPECT_ERR(Y_ML "include:\n  - other.yaml\n", 5, "include", "not supported");
    /* conf.c's own checks, at the YAML line, with the native key. */
    EXPECT_ERR(Y_ML "      rpm: -1\n", 5, "model_list[0].litellm_params.rpm",
               "must be an integer >= 0");
    EXPECT_ERR(Y_ML "      rpm: 5\n    rpm: 6\n", 5, "model_list[0].litellm_params.rpm",
               "also set beside litellm_params at line 6");
    EXPECT_ERR(Y_ML "router_settings:\n  fallbacks: [{g: [nope]}]\n", 6,
               "router_settings.fallbacks[0].fallbacks[0]", "unknown model group \"nope\"");
    EXPECT_ERR(Y_ML "router_settings:\n  num_retries: 1\nlitellm_settings:\n  cache: 3\n", 8,
               "litellm_settings.cache", "must be true or false");
    EXPECT_ERR(Y_ML "litellm_settings:\n  cache: {type: redis}\n", 6,
               "litellm_settings.cache", "must be true or false");
    unsetenv("LLMR_T_UNSET");
    EXPECT_ERR(Y_ML "router_settings:\n  num_retries: os.environ/LLMR_T_UNSET\n", 6,
               "router_settings.num_retries", "environment variable LLMR_T_UNSET is not set");
    EXPECT_ERR(Y_ML "general_settings:\n  master_key: os.environ/LLMR_T_UNSET\n", 6,
               "server.master_key", "environment variable LLMR_T_UNSET is not set");
    EXPECT_ERR(Y_ML "router_settings:\n  cooldown_time: 1\n  disable_cooldowns: true\n", 7,
               "router_settings.disable_cooldowns", "line 6 sets already");
}

/* YAML merge keys, as LiteLLM files use them for shared params. */
static void test_merge_keys(void)
{
    llmr_conf *c = LOAD_OK("x-defaults: &d {model: openai/x, api_base: http://127.0.0.1:9/v1, "
                           "rpm: 5}\n"
                           "x-more: &e {tpm: 9, rpm: 6}\n"
                           "model_list:\n"
                           "  - model_name: a\n"
                           "    litellm_params:\n"
                           "      rpm: 7\n"
                           "      <<: *d\n"
                           "  - model_name: b\n"
                           "    litellm_params:\n"
                           "      <<: [*d, *e]\n");

    if (c != NULL) {
        T_EQ_INT(c->deployments[0].rpm, 7);
        T_EQ_STR(c->deployments[0].api_base, "http://127.0.0.1:9/v1");
        T_EQ_INT(c->deployments[1].rpm, 5);
        T_EQ_INT(c->deployments[1].tpm, 9);
        T_CHECK(has_warning(c, ":1: x-defaults: ignored"));
        llmr_conf_free(c);
    }
    EXPECT_ERR(Y_ML "      <<: [1]\n", 5, "<<", "a merge key takes a mapping");
}

/* An operator's variable wins over environment_variables, as LiteLLM's
 * get_secret reads the environment first; one a load set is updated by
 * the next load (a reload). */
static void test_environment_variables(void)
{
    llmr_conf *c;

    setenv("LLMR_T_OPERATOR", "http://127.0.0.1:7/v1", 1);
    c = LOAD_OK("environment_variables: {LLMR_T_OPERATOR: \"http://127.0.0.1:6/v1\", "
                "LLMR_T_MINE: \"http://127.0.0.1:5/v1\"}\n"
                "model_list:\n  - {model_name: a, litellm_params: {model: openai/a, "
                "api_base: os.environ/LLMR_T_OPERATOR}}\n"
                "  - {model_name: b, litellm_params: {model: openai/b, "
                "api_base: os.environ/LLMR_T_MINE}}\n");
    if (c != NULL) {
        T_EQ_STR(c->deployments[0].api_base, "http://127.0.0.1:7/v1");
        T_EQ_STR(c->deployments[1].api_base, "http://127.0.0.1:5/v1");
        llmr_conf_free(c);
    }
    c = LOAD_OK("environment_variables: {LLMR_T_MINE: \"http://127.0.0.1:4/v1\", "
                "LLMR_T_NUM: 3}\n"
                "model_list:\n  - {model_name: b, litellm_params: {model: openai/b, "
                "api_base: os.environ/LLMR_T_MINE, rpm: os.environ/LLMR_T_NUM}}\n");
    if (c != NULL) {
        T_EQ_STR(c->deployments[0].api_base, "http://127.0.0.1:4/v1");
        T_EQ_INT(c->deployments[0].rpm, 3);
        llmr_conf_free(c);
    }
    EXPECT_ERR("environment_variables: {1BAD: x}\n" Y_ML, 1, "environment_variables.1BAD",
               "not a variable name");
    /* LiteLLM's proxy reads LITELLM_MASTER_KEY when the file sets none. */
    setenv("LITELLM_MASTER_KEY", "sk-from-env", 1);
    if ((c = LOAD_OK(Y_ML)) != NULL) {
        T_EQ_STR(c->master_key, "sk-from-env");
        llmr_conf_free(c);
    }
    if ((c = LOAD_OK(Y_ML "general_settings: {master_key: sk-file}\n")) != NULL) {
        T_EQ_STR(c->master_key, "sk-file");
        llmr_conf_free(c);
    }
    unsetenv("LITELLM_MASTER_KEY");
    if ((c = LOAD_OK(Y_ML)) != NULL) {
        T_CHECK(c->master_key == NULL);
        llmr_conf_free(c);
    }
    unsetenv("LLMR_T_OPERATOR");
}

/* convert's output is a native file that loads as the same configuration. */
static void test_convert(void)
{
    char err[1024], out_path[64] = "/tmp/llmr-test-conv-XXXXXX";
    llmr_conf *a, *b = NULL;
    FILE *f;
    int fd;

    if (!T_EQ_INT(write_tmp(full_yaml), 0) || (fd = mkstemp(out_path)) < 0)
        return;
    f = fdopen(fd, "w");
    T_EQ_INT(llmr_conf_convert(last_path, f, err, sizeof(err)), 0);
    fclose(f);
    T_EQ_INT(llmr_conf_load(last_path, &a, err, sizeof(err)), 0);
    llmr_conf_yaml_forced = 0;
    if (!T_EQ_INT(llmr_conf_load(out_path, &b, err, sizeof(err)), 0))
        fprintf(stderr, "    %s\n", err);
    llmr_conf_yaml_forced = 1;
    if (a != NULL && b != NULL) {
        T_EQ_INT(b->ndeployments, a->ndeployments);
        for (int i = 0; i < a->ndeployments && i < b->ndeployments; i++) {
            T_EQ_STR(b->deployments[i].id, a->deployments[i].id);
            T_EQ_STR(b->deployments[i].api_base, a->deployments[i].api_base);
            T_EQ_INT(b->deployments[i].rpm, a->deployments[i].rpm);
        }
        T_EQ_INT(b->routing_strategy, a->routing_strategy);
        T_EQ_INT(b->num_retries, a->num_retries);
        T_EQ_INT(b->naliases, a->naliases);
        T_EQ_INT(b->ndefault_fallbacks, a->ndefault_fallbacks);
        T_EQ_STR(b->master_key, a->master_key);
        T_EQ_INT(b->nwarnings, 0);
    }
    f = fopen(out_path, "r");
    if (T_CHECK(f != NULL)) {
        char line[1024];
        int comments = 0;
        while (fgets(line, sizeof(line), f))
            comments += strstr(line, "# ") == line && strstr(line, ": ignored") != NULL;
        T_EQ_INT(comments, 8);
        fclose(f);
    }
    llmr_conf_free(a);
    llmr_conf_free(b);
    unlink(last_path);
    unlink(out_path);
}

int main(void)
{
    llmr_conf_yaml_forced = 1;
    T_RUN(test_scalar_types);
    T_RUN(test_syntax_errors);
    T_RUN(test_bounds);
    T_RUN(test_full_mapping);
    T_RUN(test_refused);
    T_RUN(test_merge_keys);
    T_RUN(test_environment_variables);
    T_RUN(test_convert);
    return T_DONE();
}
