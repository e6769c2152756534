/* Unit tests for conf/: model_list -- providers, api_base and api_version,
 * deployment ids, rpm/tpm placement, groups and fallbacks. */
#include "conf_test.h"

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

/* anthropic/<model>: Anthropic's Messages API, its own default api_base. */
static void test_anthropic_provider(void)
{
    llmr_conf *c = LOAD_OK(
        "model_list = (\n"
        " { model_name = \"c\"; litellm_params = { model = \"anthropic/claude-sonnet-4-5\"; }; },\n"
        " { model_name = \"c\"; litellm_params = { model = \"anthropic/claude-x\";\n"
        "     api_base = \"http://127.0.0.1:9000/\"; api_key = \"k\"; }; }\n"
        ");\n");

    if (c == NULL)
        return;
    T_EQ_INT(c->deployments[0].provider, LLMR_PROVIDER_ANTHROPIC);
    T_EQ_STR(c->deployments[0].upstream_model, "claude-sonnet-4-5");
    T_EQ_STR(c->deployments[0].api_base, "https://api.anthropic.com");
    T_EQ_STR(c->deployments[1].api_base, "http://127.0.0.1:9000");
    llmr_conf_free(c);
    EXPECT_ERR("model_list = ( { model_name = \"g\";\n litellm_params = {\n  model = "
               "\"anthropic/\"; }; } );\n", 3, "model_list[0].litellm_params.model",
               "needs a model after \"anthropic/\"");
}

static void test_provider_errors(void)
{
#define MODEL(m) "model_list = ( { model_name = \"g\";\n litellm_params = {\n  model = " m "; }; } );\n"
    EXPECT_ERR(MODEL("\"bedrock/anthropic.claude\""), 3, "model_list[0].litellm_params.model",
               "unsupported provider \"bedrock\" (allowed: azure/<deployment>, openai/<model>, "
               "anthropic/<model>, "
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

/* ssl_verify: true, false or an absolute path to a readable CA bundle. */
static void test_ssl_verify(void)
{
    llmr_conf *c = LOAD_OK(LP("api_base = \"https://x\";"));

    if (c != NULL) {
        T_EQ_INT(c->deployments[0].ssl_verify, 1);
        T_CHECK(c->deployments[0].ca_file == NULL);
        llmr_conf_free(c);
    }
    if ((c = LOAD_OK(LP("ssl_verify = false;"))) != NULL) {
        T_EQ_INT(c->deployments[0].ssl_verify, 0);
        llmr_conf_free(c);
    }
    if ((c = LOAD_OK(LP("ssl_verify = \"/etc/ssl/certs/ca-certificates.crt\";"))) != NULL) {
        T_EQ_INT(c->deployments[0].ssl_verify, 1);
        T_EQ_STR(c->deployments[0].ca_file, "/etc/ssl/certs/ca-certificates.crt");
        llmr_conf_free(c);
    }
    EXPECT_ERR(LP("ssl_verify = 1;"), 3, "model_list[0].litellm_params.ssl_verify",
               "must be true, false or the path of a CA bundle");
    EXPECT_ERR(LP("ssl_verify = \"ca.pem\";"), 3, "model_list[0].litellm_params.ssl_verify",
               "must be absolute");
    EXPECT_ERR(LP("ssl_verify = \"/nonexistent/ca.pem\";"), 3,
               "model_list[0].litellm_params.ssl_verify",
               "cannot open the CA bundle: No such file or directory");
    EXPECT_ERR(LP("ssl_verify = \"/etc/ssl/certs\";"), 3,
               "model_list[0].litellm_params.ssl_verify", "must be a file");
}

/* router_settings.ssl_verify and http2: the default of every deployment
 * that sets none of its own (issue 11, item 7). */
static void test_router_tls_defaults(void)
{
    const char *two = "model_list = ( { model_name = \"g\"; litellm_params = { model = \"m\"; "
                      "ssl_verify = true; http2 = true; }; },\n"
                      " { model_name = \"g\"; litellm_params = { model = \"n\"; }; } );\n";
    char text[1024];
    llmr_conf *c;

    if ((c = LOAD_OK(ML)) != NULL) {
        T_EQ_INT(c->deployments[0].ssl_verify, 1);
        T_EQ_INT(c->deployments[0].http2, 1);
        llmr_conf_free(c);
    }
    snprintf(text, sizeof(text), "%srouter_settings = { ssl_verify = "
             "\"/etc/ssl/certs/ca-certificates.crt\"; http2 = false; };\n", two);
    if ((c = LOAD_OK(text)) != NULL) {
        T_EQ_INT(c->deployments[0].ssl_verify, 1);
        T_CHECK(c->deployments[0].ca_file == NULL);
        T_EQ_INT(c->deployments[0].http2, 1);
        T_EQ_STR(c->deployments[1].ca_file, "/etc/ssl/certs/ca-certificates.crt");
        T_EQ_INT(c->deployments[1].http2, 0);
        llmr_conf_free(c);
    }
    snprintf(text, sizeof(text), "%srouter_settings = { ssl_verify = false; };\n", two);
    if ((c = LOAD_OK(text)) != NULL) {
        T_EQ_INT(c->deployments[0].ssl_verify, 1);
        T_EQ_INT(c->deployments[1].ssl_verify, 0);
        llmr_conf_free(c);
    }
    EXPECT_ERR(ML "router_settings = {\n ssl_verify = 0;\n};\n", 3,
               "router_settings.ssl_verify", "must be true, false or the path of a CA bundle");
    EXPECT_ERR(ML "router_settings = {\n ssl_verify = \"ca.pem\";\n};\n", 3,
               "router_settings.ssl_verify", "must be absolute");
    EXPECT_ERR(ML "router_settings = {\n http2 = \"no\";\n};\n", 3,
               "router_settings.http2", "must be true or false");
    EXPECT_ERR(LP("http2 = 0;"), 3, "model_list[0].litellm_params.http2",
               "must be true or false");
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
    /* The id is sent to clients: no key enters it, not even hashed. */
    T_EQ_STR(a, k1);
    T_EQ_STR(k1, k2);
    T_CHECK(strcmp(a, n) != 0);
    T_CHECK(strcmp(a, m) != 0);
    T_CHECK(strcmp(a, v) != 0);
    T_CHECK(strstr(k1, "aaaa") == NULL && strstr(k1, "sk-") == NULL);

    /* Rotating a secret keeps the id (and so the shm slot and its counters). */
    setenv("LLMR_TEST_ROTATE", "first-value", 1);
    id_of(DEP("g", "azure/x", "https://a.example.com", "api_key = \"os.environ/LLMR_TEST_ROTATE\";"), e1);
    setenv("LLMR_TEST_ROTATE", "second-value", 1);
    id_of(DEP("g", "azure/x", "https://a.example.com", "api_key = \"os.environ/LLMR_TEST_ROTATE\";"), e2);
    unsetenv("LLMR_TEST_ROTATE");
    T_CHECK(is_hash_id(e1));
    T_EQ_STR(e1, e2);
    T_EQ_STR(e1, a);

    /* A known value, so an accidental change of the scheme shows up here:
     * it would move every deployment to a new shm slot on upgrade. */
    llmr_deployment d;
    memset(&d, 0, sizeof(d));
    d.model_name = "gpt-4";
    d.model = "azure/gpt-4-eu";
    d.api_base = "http://127.0.0.1:4101";
    d.api_version = "2024-02-01";
    d.api_key = "sk-example-not-a-real-key";
    hash_id(&d);
    T_EQ_STR(d.id, "d-862edb269b49ee5d");
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

/* What a worker cannot send (a 9,000-character key in one header line, a
 * 5,000-character api_base in every request line) is refused by the loader,
 * so by -t, instead of by workers that cannot start after a reload. */
static void test_lengths(void)
{
    size_t cap = 12000;
    char *text = malloc(cap), *big = malloc(9001);

    if (!T_CHECK(text != NULL && big != NULL))
        goto out;
    memset(big, 'k', 9000);
    big[9000] = '\0';
    snprintf(text, cap, LP("api_key = \"%s\";"), big);
    EXPECT_ERR(text, 3, "model_list[0].litellm_params.api_key", "must be at most 4096 "
               "characters (it is sent in one HTTP header line); this one has 9000");
    big[4096] = '\0';
    snprintf(text, cap, LP("api_key = \"%s\";"), big);
    llmr_conf *c = LOAD_OK(text);
    llmr_conf_free(c);

    memset(big, 'b', 5000);
    memcpy(big, "http://", 7);
    big[5000] = '\0';
    snprintf(text, cap, LP("api_base = \"%s\";"), big);
    EXPECT_ERR(text, 3, "model_list[0].litellm_params.api_base", "must be at most 2048");
    memset(big, 'm', 1100);
    big[1100] = '\0';
    snprintf(text, cap, "model_list = ( { model_name = \"g\";\n"
             " litellm_params = { model = \"%s\"; }; } );\n", big);
    EXPECT_ERR(text, 2, "model_list[0].litellm_params.model", "must be at most 1024");
    EXPECT_ERR(AZ("  api_base = \"https://x\";\n  api_version = \"2024-02-01-"
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\";\n"), 5,
               "model_list[0].litellm_params.api_version", "at most 64");
out:
    free(text);
    free(big);
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
    /* Same non-secret params (two keys for one endpoint): told apart by
     * their order, the first keeping the plain hash. */
    llmr_conf *c = LOAD_OK("model_list = (\n"
               " { model_name = \"a\"; litellm_params = { model = \"m\"; api_key = \"k1\"; }; },\n"
               " { model_name = \"b\"; litellm_params = { model = \"m\"; }; },\n"
               " { model_name = \"a\";\n"
               "   litellm_params = { model = \"m\"; api_key = \"k2\"; }; },\n"
               " { model_name = \"a\"; litellm_params = { model = \"m\"; }; }\n"
               ");\n");
    if (c != NULL) {
        const char *id0 = c->deployments[0].id;
        char want[LLMR_ID_MAX];
        T_CHECK(is_hash_id(id0));
        T_CHECK(strcmp(id0, c->deployments[1].id) != 0);
        snprintf(want, sizeof(want), "%.20s-2", id0);
        T_EQ_STR(c->deployments[2].id, want);
        snprintf(want, sizeof(want), "%.20s-3", id0);
        T_EQ_STR(c->deployments[3].id, want);
        llmr_conf_free(c);
    }
    /* An explicit id that a derived one would take moves the derived one. */
    c = LOAD_OK("model_list = (\n"
                " { model_name = \"a\"; litellm_params = { model = \"m\"; }; },\n"
                " { model_name = \"a\"; litellm_params = { model = \"m\"; }; } );\n");
    if (c != NULL) {
        char text[512], want[LLMR_ID_MAX];
        snprintf(want, sizeof(want), "%s", c->deployments[0].id);
        snprintf(text, sizeof(text), "model_list = (\n"
                 " { model_name = \"x\"; litellm_params = { model = \"y\"; };"
                 " model_info = { id = \"%s\"; }; },\n"
                 " { model_name = \"a\"; litellm_params = { model = \"m\"; }; } );\n", want);
        llmr_conf_free(c);
        c = LOAD_OK(text);
        if (c != NULL) {
            T_EQ_STR(c->deployments[0].id, want);
            T_CHECK(strcmp(c->deployments[1].id, want) != 0);
            llmr_conf_free(c);
        }
    }
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

/* The health prober's settings (issue 12, item 3). */
#define MI(body) "model_list = ( { model_name = \"g\"; litellm_params = { model = \"m\"; };\n" \
                 " model_info = { " body " }; } );\n"
static void test_health_checks(void)
{
    llmr_conf *c = LOAD_OK(ML "router_settings = { background_health_checks = true;\n"
                           " health_check_interval = 1.5; enable_health_check_routing = true; };\n");

    if (c != NULL) {
        T_EQ_INT(c->background_health_checks, 1);
        T_CHECK(c->health_check_interval == 1.5);
        T_EQ_INT(c->enable_health_check_routing, 1);
        T_EQ_INT(c->deployments[0].health_check, LLMR_HEALTH_MODELS);
        llmr_conf_free(c);
    }
    if ((c = LOAD_OK(ML)) != NULL) {
        T_EQ_INT(c->background_health_checks, 0);
        T_CHECK(c->health_check_interval == 300.0);
        llmr_conf_free(c);
    }
    if ((c = LOAD_OK(MI("health_check = \"completion\";"))) != NULL) {
        T_EQ_INT(c->deployments[0].health_check, LLMR_HEALTH_COMPLETION);
        llmr_conf_free(c);
    }
    if ((c = LOAD_OK(MI("mode = \"embedding\";"))) != NULL) {
        T_EQ_INT(c->deployments[0].health_check, LLMR_HEALTH_EMBEDDING);
        llmr_conf_free(c);
    }
    EXPECT_ERR(MI("health_check = \"ping\";"), 2, "model_list[0].model_info.health_check",
               "unknown check \"ping\" (allowed: models, completion)");
    EXPECT_ERR(MI("mode = \"image\";"), 2, "model_list[0].model_info.mode",
               "unknown mode \"image\" (allowed: chat, completion, embedding)");
    EXPECT_ERR(ML "router_settings = { health_check_interval = 0; };\n", 2,
               "router_settings.health_check_interval", "");
    EXPECT_ERR(ML "router_settings = { background_health_checks = 1; };\n", 2,
               "router_settings.background_health_checks", "");
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

int main(void)
{
    T_RUN(test_providers);
    T_RUN(test_health_checks);
    T_RUN(test_provider_errors);
    T_RUN(test_anthropic_provider);
    T_RUN(test_api_base_version);
    T_RUN(test_ssl_verify);
    T_RUN(test_router_tls_defaults);
    T_RUN(test_hashed_ids);
    T_RUN(test_model_info_ids);
    T_RUN(test_duplicate_ids);
    T_RUN(test_lengths);
    T_RUN(test_rpm_tpm_places);
    T_RUN(test_model_list_shape);
    T_RUN(test_fallbacks);
    T_RUN(test_groups);
    T_RUN(test_find_group);
    return T_DONE();
}
