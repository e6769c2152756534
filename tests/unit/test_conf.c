/* Unit tests for conf/: loading, defaults, the server and router_settings
 * sections, environment references and every error path of them.  Run from
 * the repository root (the example config is read as conf/llmroute.conf). */
#include "conf_test.h"

/* server and router_settings at their documented defaults (workers and the
 * fallback lists aside). */
static void check_default_settings(const llmr_conf *c)
{
    T_EQ_INT(c->nlisten, 1);
    T_EQ_STR(c->listen[0], "127.0.0.1:4000");
    T_CHECK(c->master_key == NULL);
    /* Beside the config file, wherever the command runs from. */
    {
        const char *slash = strrchr(c->file, '/');
        size_t dlen = slash != NULL ? (size_t)(slash - c->file) + 1 : 0;
        T_CHECK(strncmp(c->pid_file, c->file, dlen) == 0);
        T_EQ_STR(c->pid_file + dlen, "llmroute.pid");
        T_CHECK(strncmp(c->access_log, c->file, dlen) == 0);
        T_EQ_STR(c->access_log + dlen, "llmroute-access.log");
    }
    T_EQ_STR(c->shm_name, "/llmroute-4000");
    T_EQ_INT(c->max_body_bytes, 10485760);
    T_CHECK(c->drain_timeout == 30.0);
    T_EQ_INT(c->worker_rlimit_nofile, 0);
    T_EQ_INT(c->upstream_max_connecting, 32);
    T_CHECK(c->client_header_timeout == 60.0);
    T_CHECK(c->client_body_timeout == 60.0);
    T_CHECK(c->stream_idle_timeout == 300.0);
    T_EQ_INT(c->max_buffered_bytes, 256L << 20);
    T_EQ_INT(c->routing_strategy, LLMR_STRATEGY_SIMPLE_SHUFFLE);
    T_EQ_INT(c->num_retries, 2);
    T_CHECK(c->retry_after == 0.0);
    T_CHECK(c->timeout == 600.0);
    T_CHECK(c->stream_timeout == 0.0);
    T_EQ_INT(c->allowed_fails, 3);
    T_CHECK(c->cooldown_time == 5.0);
    T_CHECK(c->max_cooldown_time == 300.0);
    T_CHECK(c->lowest_latency_buffer == 0.0);
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
    T_EQ_INT(c->workers, 2);
    check_default_settings(c);    /* the example spells out every default */

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
    T_EQ_STR(z->id, "d-862edb269b49ee5d");     /* pinned in test_hashed_ids */
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
    T_EQ_INT(c->workers, 0);
    check_default_settings(c);
    T_EQ_INT(c->fallbacks.n, 0);
    T_EQ_INT(c->ndefault_fallbacks, 0);

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
    T_EQ_INT(d->no_responses, 0);
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
        "  model_info = { max_input_tokens = 128000; supports_responses = false; }; } );\n");

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
    T_EQ_INT(d->no_responses, 1);
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
               "unknown key (allowed: server, router_settings, model_list, cache)");
    EXPECT_ERR("server = {\n  workers = 1;\n  listn = \"x\";\n};\n" ML, 3, "server.listn",
               "unknown key (allowed: listen, workers, master_key, pid_file, shm_name, "
               "max_body_bytes, drain_timeout, worker_rlimit_nofile, upstream_max_connecting, "
               "client_header_timeout, client_body_timeout, stream_idle_timeout, "
               "max_buffered_bytes, metrics_public, access_log)");
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
               "max_parallel_requests, timeout, ssl_verify, http2, stream_timeout)");
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n litellm_params = { model = \"m\"; };\n"
               " model_info = { base_model = \"chat\"; }; } );\n", 3,
               "model_list[0].model_info.base_model",
               "(allowed: id, max_input_tokens, supports_responses, mode, health_check)");
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
    /* Too few descriptors for a worker to start and serve: refused by -t. */
    EXPECT_ERR("server = {\n listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"];\n"
               " worker_rlimit_nofile = 65;\n};\n" ML, 3,
               "server.worker_rlimit_nofile", "must be 0 (keep the inherited limit) or at "
               "least 66");
    EXPECT_ERR("server = {\n drain_timeout = -0.5;\n};\n" ML, 2, "server.drain_timeout",
               "must be a number >= 0");
    EXPECT_ERR("server = {\n upstream_max_connecting = -1;\n};\n" ML, 2,
               "server.upstream_max_connecting", "must be an integer >= 0");
    EXPECT_ERR("server = {\n client_header_timeout = 0;\n};\n" ML, 2,
               "server.client_header_timeout", "must be a number > 0");
    EXPECT_ERR("server = {\n client_body_timeout = -1;\n};\n" ML, 2,
               "server.client_body_timeout", "must be a number > 0");
    EXPECT_ERR("server = {\n stream_idle_timeout = 0.0;\n};\n" ML, 2,
               "server.stream_idle_timeout", "must be a number > 0");
    EXPECT_ERR("server = {\n max_buffered_bytes = 0;\n};\n" ML, 2,
               "server.max_buffered_bytes", "must be an integer >= 1");
    EXPECT_ERR("server = {\n metrics_public = 1;\n};\n" ML, 2,
               "server.metrics_public", "must be true or false");
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
    EXPECT_ERR(ML "router_settings = {\n max_cooldown_time = -1;\n};\n", 3,
               "router_settings.max_cooldown_time", "must be a number >= 0");
    EXPECT_ERR(ML "router_settings = { cooldown_time = 30;\n max_cooldown_time = 10;\n};\n",
               3, "router_settings.max_cooldown_time", "must be >= cooldown_time (30)");
    {   /* left to its default, the cap follows a longer cooldown_time */
        llmr_conf *c = LOAD_OK(ML "router_settings = { cooldown_time = 600; };\n");
        if (c != NULL)
            T_CHECK(c->max_cooldown_time == 600.0);
        llmr_conf_free(c);
    }
    EXPECT_ERR(ML "router_settings = { routing_strategy_args = {\n lowest_latency_buffer = -0.1; }; };\n",
               3, "router_settings.routing_strategy_args.lowest_latency_buffer",
               "must be a number >= 0");

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
    EXPECT_ERR("model_list = ( { model_name = \"g\"; litellm_params = { model = \"m\"; };\n"
               " model_info = { supports_responses = \"no\"; }; } );\n", 2,
               "model_list[0].model_info.supports_responses", "must be true or false");
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

static void test_server_strings(void)
{
    EXPECT_ERR("server = {\n shm_name = \"llmroute\";\n};\n" ML, 2, "server.shm_name",
               "must be '/' then 1 to 249 characters without '/'");
    EXPECT_ERR("server = {\n shm_name = \"/a/b\";\n};\n" ML, 2, "server.shm_name", "without '/'");
    EXPECT_ERR("server = {\n shm_name = \"/\";\n};\n" ML, 2, "server.shm_name", "without '/'");
    EXPECT_ERR("server = {\n pid_file = \"\";\n};\n" ML, 2, "server.pid_file", "must not be empty");
    EXPECT_ERR("server = {\n access_log = \"\";\n};\n" ML, 2, "server.access_log",
               "must not be empty (\"off\" turns it off)");
    EXPECT_ERR("server = {\n access_log = 1;\n};\n" ML, 2, "server.access_log", "");
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

/* Relative paths in the file are relative to the file, not to the
 * directory the command runs in; absolute ones stay as written. */
static void test_relative_paths(void)
{
    llmr_conf *c = LOAD_OK("server = { pid_file = \"run/x.pid\"; };\n" ML);
    char want[128];

    if (c != NULL) {
        snprintf(want, sizeof(want), "/tmp/run/x.pid");
        T_EQ_STR(c->pid_file, want);
        llmr_conf_free(c);
    }
    c = LOAD_OK("server = { access_log = \"off\"; };\n" ML);
    if (c != NULL) {
        T_CHECK(c->access_log == NULL);
        llmr_conf_free(c);
    }
    c = LOAD_OK("server = { access_log = \"log/a.log\"; };\n" ML);
    if (c != NULL) {
        T_EQ_STR(c->access_log, "/tmp/log/a.log");
        llmr_conf_free(c);
    }
    c = LOAD_OK("server = { pid_file = \"/var/run/x.pid\"; };\n" ML);
    if (c != NULL) {
        T_EQ_STR(c->pid_file, "/var/run/x.pid");
        llmr_conf_free(c);
    }
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
    T_RUN(test_environment);
    T_RUN(test_server_strings);
    T_RUN(test_syntax_and_io_errors);
    T_RUN(test_relative_paths);
    return T_DONE();
}
