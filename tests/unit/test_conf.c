/* Unit tests for conf/.  Run from the repository root (the example
 * config is read as conf/llmroute.conf).  Each test writes its configs to
 * mkstemp files in /tmp and removes them. */
#include "../../conf/conf.c"
#include "../../conf/conf_models.c"
#include "../../conf/conf_value.c"

#include <unistd.h>

#include "t.h"

/* One valid deployment, one line, for configs that test something else. */
#define ML "model_list = ( { model_name = \"g\"; litellm_params = { model = \"gpt-4o\"; }; } );\n"

static char last_path[64];

static int write_tmp(const char *text)
{
    size_t len = strlen(text);
    int fd;

    snprintf(last_path, sizeof(last_path), "/tmp/llmr-test-conf-XXXXXX");
    if ((fd = mkstemp(last_path)) < 0)
        return -1;
    if (write(fd, text, len) != (ssize_t) len) {
        close(fd);
        unlink(last_path);
        return -1;
    }
    close(fd);
    return 0;
}

/* Loads `text` through a temporary file; the file name stays in last_path. */
static int load_text(const char *text, llmr_conf **c, char *err, size_t errlen)
{
    int rc;

    *c = NULL;
    err[0] = '\0';
    if (write_tmp(text) != 0) {
        snprintf(err, errlen, "cannot write a temporary file");
        return -2;
    }
    rc = llmr_conf_load(last_path, c, err, errlen);
    unlink(last_path);
    return rc;
}

/* A config that must load; NULL (and a failed check) otherwise. */
static llmr_conf *load_ok_(int at, const char *text)
{
    char err[1024];
    llmr_conf *c;
    int rc = load_text(text, &c, err, sizeof(err));

    if (!T_EQ_INT(rc, 0) || !T_CHECK(c != NULL))
        fprintf(stderr, "    (load_ok at line %d) %s\n", at, err);
    return c;
}
#define LOAD_OK(text) load_ok_(__LINE__, text)

/* A config that must fail with "FILE:LINE: KEY: ..." containing `what`. */
static void expect_err_(int at, const char *text, int line, const char *key,
                        const char *what, char *err_out)
{
    char err[1024], prefix[512];
    llmr_conf *c;
    int rc = load_text(text, &c, err, sizeof(err)), ok = 1;

    snprintf(prefix, sizeof(prefix), "%s:%d: %s: ", last_path, line, key);
    ok &= T_EQ_INT(rc, -1);
    ok &= T_CHECK(c == NULL);
    ok &= T_CHECK(strncmp(err, prefix, strlen(prefix)) == 0);
    ok &= T_CONTAINS(err, what);
    if (!ok)
        fprintf(stderr, "    (expect_err at line %d)\n    got:    %s\n    prefix: %s\n",
                at, err, prefix);
    if (err_out != NULL)
        memcpy(err_out, err, sizeof(err));
    llmr_conf_free(c);
}
#define EXPECT_ERR(text, line, key, what) expect_err_(__LINE__, text, line, key, what, NULL)

static int is_hash_id(const char *id)
{
    if (strlen(id) != 18 || strncmp(id, "d-", 2) != 0)
        return 0;
    for (int i = 2; i < 18; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}


static void test_example_conf(void)
{
    char err[1024];
    llmr_conf *c = NULL;
    int rc = llmr_conf_load("conf/llmroute.conf", &c, err, sizeof(err));

    if (!T_EQ_INT(rc, 0) || !T_CHECK(c != NULL)) {
        fprintf(stderr, "    %s\n", err);
        return;
    }
    T_EQ_STR(c->file, "conf/llmroute.conf");
    T_EQ_INT(c->nlisten, 1);
    T_EQ_STR(c->listen[0], "127.0.0.1:4000");
    T_EQ_INT(c->workers, 2);
    T_CHECK(c->master_key == NULL);
    T_EQ_STR(c->pid_file, "llmroute.pid");
    T_EQ_STR(c->shm_name, "/llmroute-4000");
    T_EQ_INT(c->max_body_bytes, 10485760);
    T_CHECK(c->drain_timeout == 30.0);
    T_EQ_INT(c->routing_strategy, LLMR_STRATEGY_SIMPLE_SHUFFLE);
    T_EQ_INT(c->num_retries, 2);
    T_CHECK(c->timeout == 600.0);
    T_EQ_INT(c->allowed_fails, 3);
    T_CHECK(c->cooldown_time == 60.0);

    T_EQ_INT(c->ndeployments, 3);
    T_EQ_INT(c->ngroups, 2);
    T_EQ_STR(c->groups[0].name, "gpt-3.5-turbo");
    T_EQ_STR(c->groups[1].name, "gpt-4");
    T_EQ_INT(c->groups[0].ndeployments, 2);
    T_EQ_INT(c->groups[1].ndeployments, 1);

    llmr_deployment *a = &c->deployments[0], *b = &c->deployments[1], *z = &c->deployments[2];
    T_EQ_STR(a->id, "mock-a");
    T_EQ_STR(b->id, "mock-b");
    T_EQ_STR(a->model_name, "gpt-3.5-turbo");
    T_EQ_STR(a->model, "openai/gpt-3.5-turbo");
    T_EQ_INT(a->provider, LLMR_PROVIDER_OPENAI);
    T_EQ_STR(a->upstream_model, "gpt-3.5-turbo");
    T_EQ_STR(a->api_base, "http://127.0.0.1:4101/v1");
    T_EQ_STR(b->api_base, "http://127.0.0.1:4102/v1");
    T_CHECK(a->api_key == NULL);
    T_CHECK(a->weight == 1.0);
    T_CHECK(b->weight == 2.0);
    T_EQ_INT(a->max_input_tokens, 16385);
    T_EQ_INT(a->slot, -1);

    T_EQ_STR(z->model_name, "gpt-4");
    T_EQ_INT(z->provider, LLMR_PROVIDER_AZURE);
    T_EQ_STR(z->upstream_model, "gpt-4-eu");
    T_EQ_STR(z->api_base, "http://127.0.0.1:4101");
    T_EQ_STR(z->api_version, "2024-02-01");
    T_EQ_STR(z->api_key, "sk-example-not-a-real-key");
    T_EQ_STR(z->id, "d-b125afa017fc75d7");     /* pinned in test_hashed_ids */
    T_EQ_INT(z->group, 1);

    T_EQ_INT(c->fallbacks.n, 1);
    T_EQ_STR(c->fallbacks.items[0].model, "gpt-4");
    T_EQ_INT(c->fallbacks.items[0].nfallbacks, 1);
    T_EQ_STR(c->fallbacks.items[0].fallbacks[0], "gpt-3.5-turbo");
    T_EQ_INT(c->context_window_fallbacks.n, 0);
    T_EQ_INT(c->content_policy_fallbacks.n, 0);
    T_EQ_INT(c->ndefault_fallbacks, 0);
    llmr_conf_free(c);
}

static void test_defaults(void)
{
    llmr_conf *c = LOAD_OK(ML);

    if (c == NULL)
        return;
    T_EQ_INT(c->nlisten, 1);
    T_EQ_STR(c->listen[0], "127.0.0.1:4000");
    T_EQ_INT(c->workers, 0);
    T_CHECK(c->master_key == NULL);
    T_EQ_STR(c->pid_file, "llmroute.pid");
    T_EQ_STR(c->shm_name, "/llmroute-4000");
    T_EQ_INT(c->max_body_bytes, 10485760);
    T_CHECK(c->drain_timeout == 30.0);
    T_EQ_INT(c->routing_strategy, LLMR_STRATEGY_SIMPLE_SHUFFLE);
    T_EQ_INT(c->num_retries, 2);
    T_CHECK(c->retry_after == 0.0);
    T_CHECK(c->timeout == 600.0);
    T_CHECK(c->stream_timeout == 0.0);
    T_EQ_INT(c->allowed_fails, 3);
    T_CHECK(c->cooldown_time == 60.0);
    T_EQ_INT(c->fallbacks.n, 0);
    T_EQ_INT(c->ndefault_fallbacks, 0);
    T_CHECK(c->lowest_latency_buffer == 0.0);

    llmr_deployment *d = &c->deployments[0];
    T_EQ_STR(d->model_name, "g");
    T_EQ_STR(d->model, "gpt-4o");
    T_EQ_INT(d->provider, LLMR_PROVIDER_OPENAI);
    T_EQ_STR(d->upstream_model, "gpt-4o");
    T_EQ_STR(d->api_base, "https://api.openai.com/v1");
    T_CHECK(d->api_key == NULL);
    T_CHECK(d->api_version == NULL);
    T_EQ_INT(d->rpm, 0);
    T_EQ_INT(d->tpm, 0);
    T_CHECK(d->weight == 0.0);
    T_EQ_INT(d->order, 0);
    T_EQ_INT(d->max_parallel_requests, 0);
    T_CHECK(d->timeout == 0.0);
    T_EQ_INT(d->max_input_tokens, 0);
    T_EQ_INT(d->line, 1);
    T_EQ_INT(d->slot, -1);
    T_EQ_INT(d->group, 0);
    T_CHECK(is_hash_id(d->id));
    llmr_conf_free(c);
}

static void test_every_value_set(void)
{
    llmr_conf *c = LOAD_OK(
        "server: {\n"
        "  listen = \"[::1]:8080\";\n"
        "  workers = 4; master_key = \"sk-master\"; pid_file = \"/run/x.pid\";\n"
        "  shm_name = \"/other\"; max_body_bytes = 4294967296L; drain_timeout = 5;\n"
        "  worker_rlimit_nofile = 20000;\n"
        "};\n"
        "router_settings: {\n"
        "  routing_strategy = \"latency-based-routing\";\n"
        "  num_retries = 0; retry_after = 1.5; timeout = 30; stream_timeout = 10.0;\n"
        "  allowed_fails = 0; cooldown_time = 0;\n"
        "  routing_strategy_args = { lowest_latency_buffer = 0.5; };\n"
        "};\n"
        "model_list = ( { model_name = \"g\"; rpm = 7;\n"
        "  litellm_params = { model = \"gpt-4o\"; tpm = 5000000000L; weight = 1.5;\n"
        "    order = 2; max_parallel_requests = 10; timeout = 30; api_key = \"k\"; };\n"
        "  model_info = { max_input_tokens = 128000; }; } );\n");

    if (c == NULL)
        return;
    T_EQ_STR(c->listen[0], "[::1]:8080");
    T_EQ_INT(c->workers, 4);
    T_EQ_STR(c->master_key, "sk-master");
    T_EQ_STR(c->pid_file, "/run/x.pid");
    T_EQ_STR(c->shm_name, "/other");
    T_EQ_INT(c->max_body_bytes, 4294967296LL);
    T_CHECK(c->drain_timeout == 5.0);
    T_EQ_INT(c->worker_rlimit_nofile, 20000);
    T_EQ_INT(c->routing_strategy, LLMR_STRATEGY_LATENCY_BASED);
    T_EQ_INT(c->num_retries, 0);
    T_CHECK(c->retry_after == 1.5);
    T_CHECK(c->timeout == 30.0);
    T_CHECK(c->stream_timeout == 10.0);
    T_EQ_INT(c->allowed_fails, 0);
    T_CHECK(c->cooldown_time == 0.0);
    T_CHECK(c->lowest_latency_buffer == 0.5);
    llmr_deployment *d = &c->deployments[0];
    T_EQ_INT(d->rpm, 7);
    T_EQ_INT(d->tpm, 5000000000LL);
    T_CHECK(d->weight == 1.5);
    T_EQ_INT(d->order, 2);
    T_EQ_INT(d->max_parallel_requests, 10);
    T_CHECK(d->timeout == 30.0);
    T_EQ_STR(d->api_key, "k");
    T_EQ_INT(d->max_input_tokens, 128000);
    llmr_conf_free(c);
}

static void test_listen_forms(void)
{
    llmr_conf *c = LOAD_OK("server = { listen = \"0.0.0.0:9000\"; };\n" ML);

    if (c != NULL) {
        T_EQ_INT(c->nlisten, 1);
        T_EQ_STR(c->listen[0], "0.0.0.0:9000");
        T_EQ_STR(c->shm_name, "/llmroute-9000");
        llmr_conf_free(c);
    }
    c = LOAD_OK("server = { listen = [\"127.0.0.1:8081\", \"[::]:8082\", \"localhost:8083\"]; };\n" ML);
    if (c != NULL) {
        T_EQ_INT(c->nlisten, 3);
        T_EQ_STR(c->listen[0], "127.0.0.1:8081");
        T_EQ_STR(c->listen[1], "[::]:8082");
        T_EQ_STR(c->listen[2], "localhost:8083");
        T_EQ_STR(c->shm_name, "/llmroute-8081");
        llmr_conf_free(c);
    }
    c = LOAD_OK("server = { listen = (\"127.0.0.1:1\", \"127.0.0.1:65535\"); };\n" ML);
    if (c != NULL) {
        T_EQ_INT(c->nlisten, 2);
        T_EQ_STR(c->listen[1], "127.0.0.1:65535");
        llmr_conf_free(c);
    }
}

static void test_listen_errors(void)
{
    EXPECT_ERR("server = {\n listen = \"127.0.0.1\";\n};\n" ML, 2, "server.listen",
               "must be host:port");
    EXPECT_ERR("server = {\n listen = \"127.0.0.1:0\";\n};\n" ML, 2, "server.listen",
               "port must be a number from 1 to 65535");
    EXPECT_ERR("server = {\n listen = \"127.0.0.1:65536\";\n};\n" ML, 2, "server.listen",
               "port must be a number from 1 to 65535");
    EXPECT_ERR("server = {\n listen = \"127.0.0.1:80a\";\n};\n" ML, 2, "server.listen",
               "port must be");
    EXPECT_ERR("server = {\n listen = \":4000\";\n};\n" ML, 2, "server.listen",
               "must be host:port");
    EXPECT_ERR("server = {\n listen = \"::1:4000\";\n};\n" ML, 2, "server.listen",
               "IPv6 addresses go in brackets");
    EXPECT_ERR("server = {\n listen = \"[1.2.3.4]:4000\";\n};\n" ML, 2, "server.listen",
               "IPv6 address between the brackets");
    EXPECT_ERR("server = {\n listen = \"ho st:4000\";\n};\n" ML, 2, "server.listen",
               "host must be");
    EXPECT_ERR("server = {\n listen = [\"127.0.0.1:1\",\n \"x:99999\"];\n};\n" ML, 3,
               "server.listen[1]", "port must be");
    EXPECT_ERR("server = {\n listen = [\"127.0.0.1:1\", \"127.0.0.1:1\"];\n};\n" ML, 2,
               "server.listen[1]", "listed twice");
    EXPECT_ERR("server = {\n listen = [];\n};\n" ML, 2, "server.listen",
               "at least one address");
    EXPECT_ERR("server = {\n listen = 4000;\n};\n" ML, 2, "server.listen",
               "must be a string");
}

static void test_unknown_keys(void)
{
    char err[1024];

    EXPECT_ERR(ML "servr = { };\n", 2, "servr",
               "unknown key (allowed: server, router_settings, model_list)");
    EXPECT_ERR("server = {\n  workers = 1;\n  listn = \"x\";\n};\n" ML, 3, "server.listn",
               "unknown key (allowed: listen, workers, master_key, pid_file, shm_name, "
               "max_body_bytes, drain_timeout, worker_rlimit_nofile)");
    EXPECT_ERR(ML "router_settings = {\n num_retry = 1;\n};\n", 3, "router_settings.num_retry",
               "unknown key (allowed: routing_strategy, num_retries,");
    EXPECT_ERR("model_list = (\n {\n  model_name = \"g\";\n  modelinfo = {};\n"
               "  litellm_params = { model = \"m\"; };\n }\n);\n", 4,
               "model_list[0].modelinfo",
               "unknown key (allowed: model_name, litellm_params, model_info, rpm, tpm)");
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n litellm_params = {\n  model = \"m\";\n"
               "  api_bse = \"http://x\";\n }; } );\n", 4,
               "model_list[0].litellm_params.api_bse",
               "(allowed: model, api_key, api_base, api_version, rpm, tpm, weight, order, "
               "max_parallel_requests, timeout)");
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n litellm_params = { model = \"m\"; };\n"
               " model_info = { mode = \"chat\"; }; } );\n", 3,
               "model_list[0].model_info.mode", "(allowed: id, max_input_tokens)");
    EXPECT_ERR(ML "router_settings = {\n routing_strategy_args = {\n  ttl = 1; }; };\n", 4,
               "router_settings.routing_strategy_args.ttl",
               "unknown key (allowed: lowest_latency_buffer)");
    expect_err_(__LINE__, ML "router_settings = { fallbacks = (\n"
                "{ model = \"g\"; fallback = [\"g\"]; } ); };\n", 3,
                "router_settings.fallbacks[0].fallback",
                "unknown key (allowed: model, fallbacks)", err);
    T_CHECK(strstr(err, "\n") == NULL);
}

static void test_wrong_types(void)
{
    EXPECT_ERR("server = 5;\n" ML, 1, "server", "must be a group");
    EXPECT_ERR(ML "router_settings = ( );\n", 2, "router_settings", "must be a group");
    EXPECT_ERR("server = {\n workers = \"2\";\n};\n" ML, 2, "server.workers",
               "must be an integer >= 0 and <= 256");
    EXPECT_ERR("server = {\n workers = 2.0;\n};\n" ML, 2, "server.workers",
               "must be an integer");
    EXPECT_ERR("server = {\n workers = true;\n};\n" ML, 2, "server.workers",
               "must be an integer");
    EXPECT_ERR("server = {\n master_key = 5;\n};\n" ML, 2, "server.master_key",
               "must be a string");
    EXPECT_ERR("server = {\n pid_file = [\"a\"];\n};\n" ML, 2, "server.pid_file",
               "must be a string");
    EXPECT_ERR(ML "router_settings = {\n timeout = \"30\";\n};\n", 3, "router_settings.timeout",
               "must be a number > 0");
    EXPECT_ERR(ML "router_settings = {\n routing_strategy = 1;\n};\n", 3,
               "router_settings.routing_strategy", "must be a string");
    EXPECT_ERR("model_list = {\n a = 1;\n};\n", 1, "model_list", "must be a list of groups");
    EXPECT_ERR("model_list = (\n \"gpt-4\" );\n", 2, "model_list[0]", "must be a group");
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n litellm_params = \"gpt-4\"; } );\n", 2,
               "model_list[0].litellm_params", "must be a group");
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n litellm_params = { model = \"m\"; };\n"
               " model_info = 1; } );\n", 3, "model_list[0].model_info", "must be a group");
    EXPECT_ERR("model_list = ( { model_name = 4;\n litellm_params = { model = \"m\"; }; } );\n",
               1, "model_list[0].model_name", "must be a string");
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n litellm_params = {\n model = \"m\";\n"
               " rpm = 1.5; }; } );\n", 4, "model_list[0].litellm_params.rpm",
               "must be an integer >= 0");
    EXPECT_ERR(ML "router_settings = {\n routing_strategy_args = 0.5;\n};\n", 3,
               "router_settings.routing_strategy_args", "must be a group");
}

static void test_ranges(void)
{
    EXPECT_ERR("server = {\n workers = 257;\n};\n" ML, 2, "server.workers",
               "must be an integer >= 0 and <= 256");
    EXPECT_ERR("server = {\n workers = -1;\n};\n" ML, 2, "server.workers",
               "must be an integer >= 0");
    EXPECT_ERR("server = {\n max_body_bytes = 0;\n};\n" ML, 2, "server.max_body_bytes",
               "must be an integer >= 1");
    EXPECT_ERR("server = {\n worker_rlimit_nofile = -1;\n};\n" ML, 2,
               "server.worker_rlimit_nofile", "must be an integer");
    EXPECT_ERR("server = {\n drain_timeout = -0.5;\n};\n" ML, 2, "server.drain_timeout",
               "must be a number >= 0");
    EXPECT_ERR(ML "router_settings = {\n\n num_retries = -1;\n};\n", 4,
               "router_settings.num_retries", "must be an integer >= 0");
    EXPECT_ERR(ML "router_settings = {\n num_retries = 101;\n};\n", 3,
               "router_settings.num_retries", "<= 100");
    EXPECT_ERR(ML "router_settings = {\n retry_after = -1;\n};\n", 3,
               "router_settings.retry_after", "must be a number >= 0");
    EXPECT_ERR(ML "router_settings = {\n timeout = 0;\n};\n", 3,
               "router_settings.timeout", "must be a number > 0");
    EXPECT_ERR(ML "router_settings = {\n timeout = 1e300;\n};\n", 3,
               "router_settings.timeout", "<= 1000000000");
    EXPECT_ERR(ML "router_settings = {\n stream_timeout = -1.0;\n};\n", 3,
               "router_settings.stream_timeout", "must be a number >= 0");
    EXPECT_ERR(ML "router_settings = {\n allowed_fails = -3;\n};\n", 3,
               "router_settings.allowed_fails", "must be an integer >= 0");
    EXPECT_ERR(ML "router_settings = {\n cooldown_time = -60;\n};\n", 3,
               "router_settings.cooldown_time", "must be a number >= 0");
    EXPECT_ERR(ML "router_settings = { routing_strategy_args = {\n lowest_latency_buffer = -0.1; }; };\n",
               3, "router_settings.routing_strategy_args.lowest_latency_buffer",
               "must be a number >= 0");

#define LP(body) "model_list = ( { model_name = \"g\";\n litellm_params = { model = \"m\";\n " body " }; } );\n"
    EXPECT_ERR(LP("rpm = -1;"), 3, "model_list[0].litellm_params.rpm", "must be an integer >= 0");
    EXPECT_ERR(LP("tpm = -5L;"), 3, "model_list[0].litellm_params.tpm", "must be an integer >= 0");
    EXPECT_ERR(LP("weight = 0;"), 3, "model_list[0].litellm_params.weight", "must be a number > 0");
    EXPECT_ERR(LP("weight = -1.0;"), 3, "model_list[0].litellm_params.weight", "must be a number > 0");
    EXPECT_ERR(LP("order = 0;"), 3, "model_list[0].litellm_params.order", "must be an integer >= 1");
    EXPECT_ERR(LP("max_parallel_requests = 0;"), 3,
               "model_list[0].litellm_params.max_parallel_requests", "must be an integer >= 1");
    EXPECT_ERR(LP("timeout = 0.0;"), 3, "model_list[0].litellm_params.timeout", "must be a number > 0");
    EXPECT_ERR("model_list = ( { model_name = \"g\"; litellm_params = { model = \"m\"; };\n"
               " model_info = { max_input_tokens = 0; }; } );\n", 2,
               "model_list[0].model_info.max_input_tokens", "must be an integer >= 1");
}

/* libconfig 1.5 wraps 5000000000 (no L) to 705032704 without a word. */
static void test_int_overflow(void)
{
    EXPECT_ERR(LP("rpm = 5; tpm = 5000000000;"), 3, "model_list[0].litellm_params.tpm",
               "add an L suffix");
    EXPECT_ERR("server = {\n max_body_bytes = 4294967296;\n};\n" ML, 2,
               "server.max_body_bytes", "add an L suffix");
    EXPECT_ERR(ML "router_settings = {\n timeout = 0x100000000;\n};\n", 3,
               "router_settings.timeout", "too large");

    llmr_conf *c = LOAD_OK(LP("rpm = 2147483647; tpm = 5000000000L;"));
    if (c != NULL) {
        T_EQ_INT(c->deployments[0].rpm, 2147483647);
        T_EQ_INT(c->deployments[0].tpm, 5000000000LL);
        llmr_conf_free(c);
    }
    T_CHECK(!literal_overflows("rpm = 2147483647;", "rpm"));
    T_CHECK(literal_overflows("rpm = 2147483648;", "rpm"));
    T_CHECK(!literal_overflows("x = -2147483648;", "x"));
    T_CHECK(literal_overflows("x = -2147483649;", "x"));
    T_CHECK(!literal_overflows("tpm = 5000000000L; rpm = 1;", "rpm"));
    T_CHECK(!literal_overflows("stream_timeout = 5000000000.0; timeout = 1;", "timeout"));
    T_CHECK(literal_overflows("stream_timeout = 1; timeout: 99999999999999999999;", "timeout"));
}

static void test_strategies(void)
{
    static const struct { const char *name; enum llmr_strategy s; } all[] = {
        { "simple-shuffle", LLMR_STRATEGY_SIMPLE_SHUFFLE },
        { "least-busy", LLMR_STRATEGY_LEAST_BUSY },
        { "usage-based-routing", LLMR_STRATEGY_USAGE_BASED },
        { "latency-based-routing", LLMR_STRATEGY_LATENCY_BASED },
    };
    char text[512];

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        snprintf(text, sizeof(text), ML "router_settings = { routing_strategy = \"%s\"; };\n",
                 all[i].name);
        llmr_conf *c = LOAD_OK(text);
        if (c != NULL) {
            T_EQ_INT(c->routing_strategy, all[i].s);
            llmr_conf_free(c);
        }
        T_EQ_STR(llmr_strategy_name(all[i].s), all[i].name);
    }

    T_EQ_STR(llmr_strategy_name((enum llmr_strategy) 99), "unknown");
    EXPECT_ERR(ML "router_settings = {\n routing_strategy = \"round-robin\";\n};\n", 3,
               "router_settings.routing_strategy",
               "unknown strategy \"round-robin\" (allowed: simple-shuffle, least-busy, "
               "usage-based-routing, latency-based-routing)");
}

static void test_providers(void)
{
    llmr_conf *c = LOAD_OK(
        "model_list = (\n"
        " { model_name = \"a\"; litellm_params = { model = \"gpt-4o-mini\"; }; },\n"
        " { model_name = \"b\"; litellm_params = { model = \"openai/gpt-4o\"; api_version = \"v1\"; }; },\n"
        " { model_name = \"c\"; litellm_params = { model = \"openai/meta-llama/Llama-3-8b\";\n"
        "     api_base = \"http://127.0.0.1:8000/v1/\"; }; },\n"
        " { model_name = \"d\"; litellm_params = { model = \"azure/chatgpt-v-2\";\n"
        "     api_base = \"https://example.openai.azure.com//\"; }; },\n"
        " { model_name = \"e\"; litellm_params = { model = \"azure/dep.1_x\";\n"
        "     api_base = \"HTTPS://example.openai.azure.com\"; api_version = \"2024-06-01-preview\"; }; }\n"
        ");\n");

    if (c == NULL)
        return;
    llmr_deployment *d = c->deployments;
    T_EQ_INT(d[0].provider, LLMR_PROVIDER_OPENAI);
    T_EQ_STR(d[0].upstream_model, "gpt-4o-mini");
    T_EQ_INT(d[1].provider, LLMR_PROVIDER_OPENAI);
    T_EQ_STR(d[1].upstream_model, "gpt-4o");
    T_EQ_STR(d[1].api_version, "v1");
    T_EQ_STR(d[2].upstream_model, "meta-llama/Llama-3-8b");
    T_EQ_STR(d[2].api_base, "http://127.0.0.1:8000/v1");
    T_EQ_INT(d[3].provider, LLMR_PROVIDER_AZURE);
    T_EQ_STR(d[3].model, "azure/chatgpt-v-2");
    T_EQ_STR(d[3].upstream_model, "chatgpt-v-2");
    T_EQ_STR(d[3].api_base, "https://example.openai.azure.com");
    T_EQ_STR(d[3].api_version, "2024-02-01");
    T_EQ_STR(d[4].upstream_model, "dep.1_x");
    T_EQ_STR(d[4].api_version, "2024-06-01-preview");
    llmr_conf_free(c);
}

static void test_provider_errors(void)
{
#define MODEL(m) "model_list = ( { model_name = \"g\";\n litellm_params = {\n  model = " m "; }; } );\n"
    EXPECT_ERR(MODEL("\"bedrock/anthropic.claude\""), 3, "model_list[0].litellm_params.model",
               "unsupported provider \"bedrock\" (allowed: azure/<deployment>, openai/<model>, "
               "or a bare OpenAI model name)");
    EXPECT_ERR(MODEL("\"text-completion-openai/x\""), 3, "model_list[0].litellm_params.model",
               "unsupported provider \"text-completion-openai\"");
    EXPECT_ERR(MODEL("\"azure/\""), 3, "model_list[0].litellm_params.model",
               "needs a model after \"azure/\"");
    EXPECT_ERR(MODEL("\"openai/\""), 3, "model_list[0].litellm_params.model",
               "needs a model after \"openai/\"");
    EXPECT_ERR(MODEL("\"azure/a/b\""), 3, "model_list[0].litellm_params.model",
               "Azure deployment name");
    EXPECT_ERR(MODEL("\"gpt 4\""), 3, "model_list[0].litellm_params.model", "printable");
    EXPECT_ERR(MODEL("\"\""), 3, "model_list[0].litellm_params.model", "non-empty");
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n litellm_params = {\n"
               "  api_key = \"k\"; }; } );\n", 2, "model_list[0].litellm_params",
               "missing model");
}

static void test_api_base_version(void)
{
#define AZ(rest) "model_list = ( { model_name = \"g\";\n litellm_params = {\n  model = \"azure/dep\";\n" rest " }; } );\n"
    EXPECT_ERR(AZ(""), 2, "model_list[0].litellm_params",
               "api_base is required for azure/ deployments");
    EXPECT_ERR(AZ("  api_base = \"example.openai.azure.com\";\n"), 4,
               "model_list[0].litellm_params.api_base", "must start with http:// or https://");
    EXPECT_ERR(AZ("  api_base = \"https://\";\n"), 4,
               "model_list[0].litellm_params.api_base", "must name a host");
    EXPECT_ERR(AZ("  api_base = \"https://x/?a=b\";\n"), 4,
               "model_list[0].litellm_params.api_base", "'?' or '#'");
    EXPECT_ERR(AZ("  api_base = \"https://x\";\n  api_version = \"2024 01\";\n"), 5,
               "model_list[0].litellm_params.api_version", "may hold only");
    EXPECT_ERR(LP("api_base = \"ftp://x\";"), 3, "model_list[0].litellm_params.api_base",
               "must start with http:// or https://");
}

static void test_environment(void)
{
    char err[1024];
    llmr_conf *c;

    setenv("LLMR_TEST_MASTER", "master-secret-1", 1);
    setenv("LLMR_TEST_KEY", "key-secret-2", 1);
    setenv("LLMR_TEST_BASE", "https://env.example.com/v1/", 1);
    setenv("LLMR_TEST_VERSION", "2024-10-21", 1);
    setenv("LLMR_TEST_EMPTY", "", 1);
    unsetenv("LLMR_TEST_MISSING");

    c = LOAD_OK("server = { master_key = \"os.environ/LLMR_TEST_MASTER\"; };\n"
                "model_list = ( { model_name = \"g\"; litellm_params = {\n"
                "  model = \"azure/dep\"; api_key = \"os.environ/LLMR_TEST_KEY\";\n"
                "  api_base = \"os.environ/LLMR_TEST_BASE\";\n"
                "  api_version = \"os.environ/LLMR_TEST_VERSION\"; }; } );\n");
    if (c != NULL) {
        T_EQ_STR(c->master_key, "master-secret-1");
        T_EQ_STR(c->deployments[0].api_key, "key-secret-2");
        T_EQ_STR(c->deployments[0].api_base, "https://env.example.com/v1");
        T_EQ_STR(c->deployments[0].api_version, "2024-10-21");
        T_CHECK(strstr(c->deployments[0].id, "secret") == NULL);
        llmr_conf_free(c);
    }

    /* The missing variable is named; no secret from the file is. */
    expect_err_(__LINE__,
                "server = { master_key = \"os.environ/LLMR_TEST_MASTER\"; };\n"
                "model_list = ( { model_name = \"g\"; litellm_params = {\n"
                "  model = \"m\"; api_base = \"https://x\";\n"
                "  api_key = \"os.environ/LLMR_TEST_MISSING\"; }; },\n"
                " { model_name = \"h\"; litellm_params = { model = \"m\"; api_key = \"sk-literal-secret\"; }; } );\n",
                4, "model_list[0].litellm_params.api_key",
                "environment variable LLMR_TEST_MISSING is not set", err);
    T_CHECK(strstr(err, "secret") == NULL);
    T_CHECK(strstr(err, "https://x") == NULL);

    EXPECT_ERR("server = {\n master_key = \"os.environ/LLMR_TEST_MISSING\";\n};\n" ML, 2,
               "server.master_key", "environment variable LLMR_TEST_MISSING is not set");
    EXPECT_ERR("server = {\n master_key = \"os.environ/LLMR_TEST_EMPTY\";\n};\n" ML, 2,
               "server.master_key", "must not be empty");
    EXPECT_ERR("server = {\n master_key = \"os.environ/\";\n};\n" ML, 2,
               "server.master_key", "must be followed by a variable name");
    EXPECT_ERR("server = {\n master_key = \"os.environ/1X\";\n};\n" ML, 2,
               "server.master_key", "must be followed by a variable name");
    expect_err_(__LINE__, LP("api_key = \"os.environ/LLMR_TEST_EMPTY\";"), 3,
                "model_list[0].litellm_params.api_key", "must not be empty", NULL);

    /* A control character in a key is refused without echoing the key. */
    setenv("LLMR_TEST_BADKEY", "bad-secret\r\nX-Injected: 1", 1);
    expect_err_(__LINE__, LP("api_key = \"os.environ/LLMR_TEST_BADKEY\";"), 3,
                "model_list[0].litellm_params.api_key", "control characters", err);
    T_CHECK(strstr(err, "secret") == NULL);

    setenv("LLMR_TEST_STRATEGY", "least-busy", 1);
    c = LOAD_OK(ML "router_settings = { routing_strategy = \"os.environ/LLMR_TEST_STRATEGY\"; };\n");
    if (c != NULL) {
        T_EQ_INT(c->routing_strategy, LLMR_STRATEGY_LEAST_BUSY);
        llmr_conf_free(c);
    }
    unsetenv("LLMR_TEST_MASTER");
    unsetenv("LLMR_TEST_KEY");
    unsetenv("LLMR_TEST_BASE");
    unsetenv("LLMR_TEST_VERSION");
    unsetenv("LLMR_TEST_EMPTY");
    unsetenv("LLMR_TEST_BADKEY");
    unsetenv("LLMR_TEST_STRATEGY");
}

/* The id of the only deployment in `text`, or "" after a failed check. */
static void id_of(const char *text, char id[LLMR_ID_MAX])
{
    llmr_conf *c = LOAD_OK(text);

    id[0] = '\0';
    if (c != NULL) {
        memcpy(id, c->deployments[0].id, LLMR_ID_MAX);
        llmr_conf_free(c);
    }
}

static void test_hashed_ids(void)
{
#define DEP(name, model, base, extra) "model_list = ( { model_name = \"" name "\"; litellm_params = { " \
        "model = \"" model "\"; api_base = \"" base "\"; " extra " }; } );\n"
    char a[LLMR_ID_MAX], a2[LLMR_ID_MAX], b[LLMR_ID_MAX], k1[LLMR_ID_MAX], k2[LLMR_ID_MAX],
         n[LLMR_ID_MAX], m[LLMR_ID_MAX], v[LLMR_ID_MAX], lim[LLMR_ID_MAX], slash[LLMR_ID_MAX],
         e1[LLMR_ID_MAX], e2[LLMR_ID_MAX];

    id_of(DEP("g", "azure/x", "https://a.example.com", ""), a);
    id_of(DEP("g", "azure/x", "https://a.example.com", ""), a2);
    id_of(DEP("g", "azure/x", "https://b.example.com", ""), b);
    id_of(DEP("g", "azure/x", "https://a.example.com", "api_key = \"sk-aaaaaaaaaaaa\";"), k1);
    id_of(DEP("g", "azure/x", "https://a.example.com", "api_key = \"sk-bbbbbbbbbbbb\";"), k2);
    id_of(DEP("h", "azure/x", "https://a.example.com", ""), n);
    id_of(DEP("g", "azure/y", "https://a.example.com", ""), m);
    id_of(DEP("g", "azure/x", "https://a.example.com", "api_version = \"2024-06-01\";"), v);
    id_of(DEP("g", "azure/x", "https://a.example.com", "rpm = 5; weight = 3;"), lim);
    id_of(DEP("g", "azure/x", "https://a.example.com/", ""), slash);

    T_CHECK(is_hash_id(a));
    T_EQ_STR(a, a2);                            /* stable */
    T_EQ_STR(a, lim);                           /* limits are not identity */
    T_EQ_STR(a, slash);                         /* normalised api_base */
    T_CHECK(strcmp(a, b) != 0);
    T_CHECK(strcmp(a, k1) != 0);
    T_CHECK(strcmp(k1, k2) != 0);
    T_CHECK(strcmp(a, n) != 0);
    T_CHECK(strcmp(a, m) != 0);
    T_CHECK(strcmp(a, v) != 0);
    T_CHECK(strstr(k1, "aaaa") == NULL && strstr(k1, "sk-") == NULL);

    /* An os.environ key hashes as its reference: rotating the secret keeps the id. */
    setenv("LLMR_TEST_ROTATE", "first-value", 1);
    id_of(DEP("g", "azure/x", "https://a.example.com", "api_key = \"os.environ/LLMR_TEST_ROTATE\";"), e1);
    setenv("LLMR_TEST_ROTATE", "second-value", 1);
    id_of(DEP("g", "azure/x", "https://a.example.com", "api_key = \"os.environ/LLMR_TEST_ROTATE\";"), e2);
    unsetenv("LLMR_TEST_ROTATE");
    T_CHECK(is_hash_id(e1));
    T_EQ_STR(e1, e2);
    T_CHECK(strcmp(e1, a) != 0);

    /* A known value, so an accidental change of the scheme shows up here:
     * it would move every deployment to a new shm slot on upgrade. */
    llmr_deployment d;
    memset(&d, 0, sizeof(d));
    d.model_name = "gpt-4";
    d.model = "azure/gpt-4-eu";
    d.api_base = "http://127.0.0.1:4101";
    d.api_version = "2024-02-01";
    hash_id(&d, "sk-example-not-a-real-key");
    T_EQ_STR(d.id, "d-b125afa017fc75d7");
    T_EQ_INT(fnv1a(0xcbf29ce484222325ULL, "a", 1), 0xaf63dc4c8601ec8cULL);
}

static void test_model_info_ids(void)
{
    llmr_conf *c = LOAD_OK("model_list = ( { model_name = \"g\"; litellm_params = { model = \"m\"; };\n"
                           " model_info = { id = \"eu-1.a_b:c\"; }; } );\n");
    if (c != NULL) {
        T_EQ_STR(c->deployments[0].id, "eu-1.a_b:c");
        llmr_conf_free(c);
    }
#define INFO(id) "model_list = ( { model_name = \"g\"; litellm_params = { model = \"m\"; };\n" \
        " model_info = {\n  id = " id "; }; } );\n"
    EXPECT_ERR(INFO("\"\""), 3, "model_list[0].model_info.id", "must be 1 to 63 characters");
    EXPECT_ERR(INFO("\"a234567890123456789012345678901234567890123456789012345678901234\""), 3,
               "model_list[0].model_info.id", "must be 1 to 63 characters");
    EXPECT_ERR(INFO("\"a b\""), 3, "model_list[0].model_info.id",
               "may hold only letters, digits, '.', '_', ':' and '-'");
    EXPECT_ERR(INFO("\"a/b\""), 3, "model_list[0].model_info.id", "may hold only");
    EXPECT_ERR(INFO("7"), 3, "model_list[0].model_info.id", "must be a string");
    c = LOAD_OK(INFO("\"a23456789012345678901234567890123456789012345678901234567890123\""));
    if (c != NULL) {
        T_EQ_INT(strlen(c->deployments[0].id), 63);
        llmr_conf_free(c);
    }
}

static void test_duplicate_ids(void)
{
    EXPECT_ERR("model_list = (\n"
               " { model_name = \"a\"; litellm_params = { model = \"m\"; };\n"
               "   model_info = { id = \"same\"; }; },\n"
               " { model_name = \"b\"; litellm_params = { model = \"n\"; };\n"
               "   model_info = {\n"
               "     id = \"same\"; }; }\n"
               ");\n", 6, "model_list[1].model_info.id",
               "duplicate deployment id \"same\" (also model_list[0] at line 3)");
    EXPECT_ERR("model_list = (\n"
               " { model_name = \"a\"; litellm_params = { model = \"m\"; }; },\n"
               " { model_name = \"b\"; litellm_params = { model = \"m\"; }; },\n"
               " { model_name = \"a\";\n"
               "   litellm_params = { model = \"m\"; }; }\n"
               ");\n", 4, "model_list[2]",
               "same deployment as model_list[0] at line 2");
}

static void test_rpm_tpm_places(void)
{
    llmr_conf *c = LOAD_OK("model_list = ( { model_name = \"g\"; rpm = 10; tpm = 20000;\n"
                           " litellm_params = { model = \"m\"; }; },\n"
                           " { model_name = \"g\"; litellm_params = { model = \"n\"; rpm = 11; tpm = 21000; }; } );\n");
    if (c != NULL) {
        T_EQ_INT(c->deployments[0].rpm, 10);
        T_EQ_INT(c->deployments[0].tpm, 20000);
        T_EQ_INT(c->deployments[1].rpm, 11);
        T_EQ_INT(c->deployments[1].tpm, 21000);
        llmr_conf_free(c);
    }
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n rpm = 10;\n"
               " litellm_params = { model = \"m\";\n  rpm = 10; }; } );\n", 4,
               "model_list[0].litellm_params.rpm", "also set beside litellm_params at line 2");
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n tpm = 10;\n"
               " litellm_params = { model = \"m\";\n  tpm = 10; }; } );\n", 4,
               "model_list[0].litellm_params.tpm", "also set beside litellm_params at line 2");
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n tpm = -1;\n"
               " litellm_params = { model = \"m\"; }; } );\n", 2,
               "model_list[0].tpm", "must be an integer >= 0");
}

static void test_model_list_shape(void)
{
    char err[1024];
    llmr_conf *c;
    int rc = load_text("server = { workers = 1; };\n", &c, err, sizeof(err));
    T_EQ_INT(rc, -1);
    T_CHECK(c == NULL);
    T_CHECK(strncmp(err, last_path, strlen(last_path)) == 0);
    T_CONTAINS(err, ": model_list: missing: list at least one deployment");

    EXPECT_ERR("\nmodel_list = ();\n", 2, "model_list", "must list at least one deployment");
    EXPECT_ERR("model_list = [];\n", 1, "model_list", "must list at least one deployment");
    EXPECT_ERR("model_list = (\n { litellm_params = { model = \"m\"; }; }\n);\n", 2,
               "model_list[0]", "missing model_name");
    EXPECT_ERR("model_list = (\n { model_name = \"g\"; }\n);\n", 2,
               "model_list[0].litellm_params", "missing");
    EXPECT_ERR("model_list = ( { model_name =\n \"\"; litellm_params = { model = \"m\"; }; } );\n",
               1, "model_list[0].model_name", "must be 1 to 63 printable characters");
    EXPECT_ERR("model_list = ( { model_name = \"a\\\"b\"; litellm_params = { model = \"m\"; }; } );\n",
               1, "model_list[0].model_name", "without spaces");
    EXPECT_ERR("model_list = ( { model_name = "
               "\"a234567890123456789012345678901234567890123456789012345678901234\";"
               " litellm_params = { model = \"m\"; }; } );\n",
               1, "model_list[0].model_name", "must be 1 to 63");
}

static void test_fallbacks(void)
{
#define GROUPS "model_list = (\n" \
    " { model_name = \"gpt-4\"; litellm_params = { model = \"gpt-4\"; }; },\n" \
    " { model_name = \"gpt-3.5-turbo\"; litellm_params = { model = \"gpt-3.5-turbo\"; }; },\n" \
    " { model_name = \"gpt-3.5-turbo-16k\"; litellm_params = { model = \"gpt-3.5-turbo-16k\"; }; }\n" \
    ");\n"
    /* GROUPS is lines 1-5; router_settings starts on line 6. */
    llmr_conf *c = LOAD_OK(GROUPS
        "router_settings = {\n"
        " fallbacks = ( { model = \"gpt-4\"; fallbacks = [\"gpt-3.5-turbo\", \"gpt-3.5-turbo-16k\"]; },\n"
        "               { model = \"gpt-3.5-turbo\"; fallbacks = \"gpt-3.5-turbo-16k\"; } );\n"
        " context_window_fallbacks = ( { model = \"gpt-3.5-turbo\"; fallbacks = (\"gpt-3.5-turbo-16k\"); } );\n"
        " content_policy_fallbacks = [];\n"
        " default_fallbacks = [\"gpt-3.5-turbo\"];\n"
        "};\n");

    if (c != NULL) {
        T_EQ_INT(c->fallbacks.n, 2);
        T_EQ_STR(c->fallbacks.items[0].model, "gpt-4");
        T_EQ_INT(c->fallbacks.items[0].nfallbacks, 2);
        T_EQ_STR(c->fallbacks.items[0].fallbacks[0], "gpt-3.5-turbo");
        T_EQ_STR(c->fallbacks.items[0].fallbacks[1], "gpt-3.5-turbo-16k");
        T_EQ_STR(c->fallbacks.items[1].model, "gpt-3.5-turbo");
        T_EQ_INT(c->fallbacks.items[1].nfallbacks, 1);
        T_EQ_STR(c->fallbacks.items[1].fallbacks[0], "gpt-3.5-turbo-16k");
        T_EQ_INT(c->context_window_fallbacks.n, 1);
        T_EQ_STR(c->context_window_fallbacks.items[0].fallbacks[0], "gpt-3.5-turbo-16k");
        T_EQ_INT(c->content_policy_fallbacks.n, 0);
        T_EQ_INT(c->ndefault_fallbacks, 1);
        T_EQ_STR(c->default_fallbacks[0], "gpt-3.5-turbo");
        llmr_conf_free(c);
    }
    c = LOAD_OK(GROUPS "router_settings = { default_fallbacks = \"gpt-4\"; };\n");
    if (c != NULL) {
        T_EQ_INT(c->ndefault_fallbacks, 1);
        T_EQ_STR(c->default_fallbacks[0], "gpt-4");
        llmr_conf_free(c);
    }

    EXPECT_ERR(GROUPS "router_settings = {\n fallbacks = ( { model = \"gpt-5\";\n"
               " fallbacks = [\"gpt-4\"]; } ); };\n", 7, "router_settings.fallbacks[0].model",
               "unknown model group \"gpt-5\": no model_list entry has this model_name "
               "(allowed: gpt-4, gpt-3.5-turbo, gpt-3.5-turbo-16k)");
    EXPECT_ERR(GROUPS "router_settings = {\n context_window_fallbacks = ( { model = \"gpt-4\";\n"
               " fallbacks = [\"gpt-4-32k\"]; } ); };\n", 8,
               "router_settings.context_window_fallbacks[0].fallbacks[0]",
               "unknown model group \"gpt-4-32k\"");
    EXPECT_ERR(GROUPS "router_settings = {\n content_policy_fallbacks = ( { model = \"gpt-4\";\n"
               " fallbacks = \"claude\"; } ); };\n", 8,
               "router_settings.content_policy_fallbacks[0].fallbacks",
               "unknown model group \"claude\"");
    EXPECT_ERR(GROUPS "router_settings = {\n\n default_fallbacks = [\"gpt-4\", \"nope\"]; };\n", 8,
               "router_settings.default_fallbacks[1]", "unknown model group \"nope\"");
    EXPECT_ERR(GROUPS "router_settings = {\n fallbacks = ( { model = \"gpt-4\";\n"
               " fallbacks = [\"gpt-3.5-turbo\", \"gpt-4\"]; } ); };\n", 8,
               "router_settings.fallbacks[0].fallbacks[1]", "\"gpt-4\" cannot fall back to itself");
    EXPECT_ERR(GROUPS "router_settings = {\n fallbacks = ( { model = \"gpt-4\";\n"
               " fallbacks = [\"gpt-3.5-turbo\", \"gpt-3.5-turbo\"]; } ); };\n", 8,
               "router_settings.fallbacks[0].fallbacks[1]", "listed twice");
    EXPECT_ERR(GROUPS "router_settings = {\n fallbacks = (\n { model = \"gpt-4\"; fallbacks = \"gpt-3.5-turbo\"; },\n"
               " { model = \"gpt-4\"; fallbacks = \"gpt-3.5-turbo-16k\"; } ); };\n", 9,
               "router_settings.fallbacks[1].model", "\"gpt-4\" already has fallbacks at line 8");
    EXPECT_ERR(GROUPS "router_settings = {\n fallbacks = (\n { model = \"gpt-4\"; } ); };\n", 8,
               "router_settings.fallbacks[0]", "missing fallbacks");
    EXPECT_ERR(GROUPS "router_settings = {\n fallbacks = (\n { fallbacks = \"gpt-4\"; } ); };\n", 8,
               "router_settings.fallbacks[0]", "missing model");
    EXPECT_ERR(GROUPS "router_settings = {\n fallbacks = { model = \"gpt-4\"; }; };\n", 7,
               "router_settings.fallbacks", "must be a list of groups");
    EXPECT_ERR(GROUPS "router_settings = {\n fallbacks = [\"gpt-4\"]; };\n", 7,
               "router_settings.fallbacks", "must be a list of groups");
    EXPECT_ERR(GROUPS "router_settings = {\n fallbacks = (\n \"gpt-4\" ); };\n", 8,
               "router_settings.fallbacks[0]", "must be a group");
    EXPECT_ERR(GROUPS "router_settings = {\n fallbacks = ( { model = \"gpt-4\";\n"
               " fallbacks = [1]; } ); };\n", 8,
               "router_settings.fallbacks[0].fallbacks", "must be a model group name or a list");
    EXPECT_ERR(GROUPS "router_settings = {\n default_fallbacks = 3; };\n", 7,
               "router_settings.default_fallbacks", "must be a model group name or a list");
}

static void test_groups(void)
{
    llmr_conf *c = LOAD_OK("model_list = (\n"
        " { model_name = \"b\"; litellm_params = { model = \"m1\"; }; },\n"
        " { model_name = \"a\"; litellm_params = { model = \"m2\"; }; },\n"
        " { model_name = \"b\"; litellm_params = { model = \"m3\"; }; },\n"
        " { model_name = \"c\"; litellm_params = { model = \"m4\"; }; },\n"
        " { model_name = \"a\"; litellm_params = { model = \"m5\"; }; },\n"
        " { model_name = \"b\"; litellm_params = { model = \"m6\"; }; }\n"
        ");\n");

    if (c == NULL)
        return;
    T_EQ_INT(c->ndeployments, 6);
    T_EQ_INT(c->ngroups, 3);
    T_EQ_STR(c->groups[0].name, "b");
    T_EQ_STR(c->groups[1].name, "a");
    T_EQ_STR(c->groups[2].name, "c");
    T_EQ_INT(c->groups[0].ndeployments, 3);
    T_EQ_INT(c->groups[0].deployments[0], 0);
    T_EQ_INT(c->groups[0].deployments[1], 2);
    T_EQ_INT(c->groups[0].deployments[2], 5);
    T_EQ_INT(c->groups[1].ndeployments, 2);
    T_EQ_INT(c->groups[1].deployments[0], 1);
    T_EQ_INT(c->groups[1].deployments[1], 4);
    T_EQ_INT(c->groups[2].ndeployments, 1);
    T_EQ_INT(c->groups[2].deployments[0], 3);
    int want_group[6] = { 0, 1, 0, 2, 1, 0 };
    for (int i = 0; i < 6; i++) {
        T_EQ_INT(c->deployments[i].group, want_group[i]);
        T_EQ_INT(c->deployments[i].slot, -1);
        T_EQ_INT(c->deployments[i].line, i + 2);
    }
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < i; j++)
            T_CHECK(strcmp(c->deployments[i].id, c->deployments[j].id) != 0);
    llmr_conf_free(c);
}

static void test_find_group(void)
{
    llmr_conf *c = LOAD_OK("model_list = (\n"
        " { model_name = \"gpt-4\"; litellm_params = { model = \"m1\"; }; },\n"
        " { model_name = \"gpt-4o\"; litellm_params = { model = \"m2\"; }; }\n"
        ");\n");
    const char *body = "{\"model\":\"gpt-4o\",\"x\":1}";

    if (c == NULL)
        return;
    T_EQ_INT(llmr_conf_find_group(c, "gpt-4", 5), 0);
    T_EQ_INT(llmr_conf_find_group(c, "gpt-4o", 6), 1);
    T_EQ_INT(llmr_conf_find_group(c, body + 10, 6), 1);  /* not NUL-terminated */
    T_EQ_INT(llmr_conf_find_group(c, body + 10, 5), 0);  /* "gpt-4" prefix */
    T_EQ_INT(llmr_conf_find_group(c, "gpt-", 4), -1);
    T_EQ_INT(llmr_conf_find_group(c, "gpt-4o-mini", 11), -1);
    T_EQ_INT(llmr_conf_find_group(c, "", 0), -1);
    T_EQ_INT(llmr_conf_find_group(NULL, "gpt-4", 5), -1);
    T_EQ_INT(llmr_conf_find_group(c, NULL, 0), -1);
    llmr_conf_free(c);
    llmr_conf_free(NULL);
}

static void test_server_strings(void)
{
    EXPECT_ERR("server = {\n shm_name = \"llmroute\";\n};\n" ML, 2, "server.shm_name",
               "must be '/' then 1 to 249 characters without '/'");
    EXPECT_ERR("server = {\n shm_name = \"/a/b\";\n};\n" ML, 2, "server.shm_name", "without '/'");
    EXPECT_ERR("server = {\n shm_name = \"/\";\n};\n" ML, 2, "server.shm_name", "without '/'");
    EXPECT_ERR("server = {\n pid_file = \"\";\n};\n" ML, 2, "server.pid_file", "must not be empty");
    EXPECT_ERR("server = {\n master_key = \"\";\n};\n" ML, 2, "server.master_key",
               "must not be empty");

    char text[512], name[300];
    memset(name, 'x', sizeof(name));
    name[0] = '/';
    name[250] = '\0';                   /* 250 characters: the longest allowed */
    snprintf(text, sizeof(text), "server = { shm_name = \"%s\"; };\n" ML, name);
    llmr_conf *c = LOAD_OK(text);
    if (c != NULL) {
        T_EQ_INT(strlen(c->shm_name), 250);
        llmr_conf_free(c);
    }
    name[250] = 'x';
    name[251] = '\0';
    snprintf(text, sizeof(text), "server = { shm_name = \"%s\"; };\n" ML, name);
    EXPECT_ERR(text, 1, "server.shm_name", "must be '/' then");
}

static void test_syntax_and_io_errors(void)
{
    char err[1024], want[256];
    llmr_conf *c;
    int rc;

    rc = load_text(ML "router_settings = {\n  num_retries = ;\n};\n", &c, err, sizeof(err));
    snprintf(want, sizeof(want), "%s:3: syntax error: ", last_path);
    T_EQ_INT(rc, -1);
    T_CHECK(c == NULL);
    T_CHECK(strncmp(err, want, strlen(want)) == 0);

    rc = load_text(ML "server = {\n workers = 1;\n workers = 2;\n};\n", &c, err, sizeof(err));
    snprintf(want, sizeof(want), "%s:4: syntax error: duplicate setting name", last_path);
    T_EQ_INT(rc, -1);
    T_EQ_STR(err, want);

    rc = llmr_conf_load("/nonexistent/llmroute.conf", &c, err, sizeof(err));
    T_EQ_INT(rc, -1);
    T_CHECK(c == NULL);
    T_EQ_STR(err, "/nonexistent/llmroute.conf: cannot open: No such file or directory");

    rc = llmr_conf_load("/tmp", &c, err, sizeof(err));
    T_EQ_INT(rc, -1);
    T_CONTAINS(err, "/tmp: cannot read: ");

    /* A short buffer truncates, a NULL one is allowed. */
    char tiny[8];
    rc = load_text("servr = 1;\n", &c, tiny, sizeof(tiny));
    T_EQ_INT(rc, -1);
    T_EQ_INT(strlen(tiny), 7);
    T_EQ_INT(llmr_conf_load("/nonexistent/x.conf", &c, NULL, 0), -1);
    T_CHECK(c == NULL);
}

int main(void)
{
    T_RUN(test_example_conf);
    T_RUN(test_defaults);
    T_RUN(test_every_value_set);
    T_RUN(test_listen_forms);
    T_RUN(test_listen_errors);
    T_RUN(test_unknown_keys);
    T_RUN(test_wrong_types);
    T_RUN(test_ranges);
    T_RUN(test_int_overflow);
    T_RUN(test_strategies);
    T_RUN(test_providers);
    T_RUN(test_provider_errors);
    T_RUN(test_api_base_version);
    T_RUN(test_environment);
    T_RUN(test_hashed_ids);
    T_RUN(test_model_info_ids);
    T_RUN(test_duplicate_ids);
    T_RUN(test_rpm_tpm_places);
    T_RUN(test_model_list_shape);
    T_RUN(test_fallbacks);
    T_RUN(test_groups);
    T_RUN(test_find_group);
    T_RUN(test_server_strings);
    T_RUN(test_syntax_and_io_errors);
    return T_DONE();
}
