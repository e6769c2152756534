/* The response cache's configuration (conf/conf_cache.c): defaults, every
 * key, the path beside the config file, and each error path's message. */
#include "conf_test.h"
#include "../../conf/conf_cache.c"

static void test_cache_defaults(void)
{
    llmr_conf *c = LOAD_OK(ML);
    const char *slash;

    if (c == NULL)
        return;
    T_EQ_INT(c->cache_responses, 0);
    T_EQ_INT(c->cache.type, LLMR_CACHE_LOCAL);
    T_CHECK(c->cache.ttl == 3600.0);
    T_EQ_INT(c->cache.max_size_mb, 256);
    T_EQ_INT(c->cache.call_types, 15);
    T_CHECK(c->cache.ns == NULL && c->cache.url == NULL && c->cache.host == NULL);
    slash = strrchr(c->file, '/');
    T_CHECK(slash != NULL && strncmp(c->cache.path, c->file, (size_t)(slash - c->file) + 1) == 0);
    T_EQ_STR(c->cache.path + (slash - c->file) + 1, "llmroute-cache");
    llmr_conf_free(c);
}

static void test_cache_every_key(void)
{
    llmr_conf *c = LOAD_OK(ML "router_settings = { cache_responses = true; };\n"
                           "cache = { type = \"redis\"; ttl = 60.5; max_size_mb = 8;\n"
                           " path = \"/var/cache/x\"; namespace = \"team\";\n"
                           " supported_call_types = [\"chat\", \"embeddings\"];\n"
                           " host = \"10.0.0.1\"; port = 6380; password = \"pw\";\n"
                           " url = \"rediss://:pw@r:6390/2\"; };\n");

    if (c == NULL)
        return;
    T_EQ_INT(c->cache_responses, 1);
    T_EQ_INT(c->cache.type, LLMR_CACHE_REDIS);
    T_CHECK(c->cache.ttl == 60.5);
    T_EQ_INT(c->cache.max_size_mb, 8);
    T_EQ_STR(c->cache.path, "/var/cache/x");
    T_EQ_STR(c->cache.ns, "team");
    T_EQ_INT(c->cache.call_types, LLMR_CACHE_CALL_CHAT | LLMR_CACHE_CALL_EMBEDDINGS);
    T_EQ_STR(c->cache.host, "10.0.0.1");
    T_EQ_INT(c->cache.port, 6380);
    T_EQ_STR(c->cache.password, "pw");
    T_EQ_STR(c->cache.url, "rediss://:pw@r:6390/2");
    llmr_conf_free(c);
}

static void test_cache_errors(void)
{
    EXPECT_ERR(ML "cache = {\n tipe = \"local\"; };\n", 3, "cache.tipe",
               "unknown key (allowed: type, ttl, max_size_mb, path, namespace, "
               "supported_call_types, host, port, password, url)");
    EXPECT_ERR(ML "cache = {\n type = \"memcached\"; };\n", 3, "cache.type",
               "unknown type \"memcached\" (allowed: local, redis)");
    EXPECT_ERR(ML "cache = {\n ttl = 0.0; };\n", 3, "cache.ttl", "");
    EXPECT_ERR(ML "cache = {\n max_size_mb = 0; };\n", 3, "cache.max_size_mb", "");
    EXPECT_ERR(ML "cache = {\n supported_call_types = [\"chat\", \"images\"]; };\n", 3,
               "cache.supported_call_types", "unknown call type \"images\" (allowed: chat, "
               "completions, embeddings, responses)");
    EXPECT_ERR(ML "cache = {\n supported_call_types = \"chat\"; };\n", 3,
               "cache.supported_call_types", "must be a list of call types");
    EXPECT_ERR(ML "cache = {\n url = \"http://r:6379\"; };\n", 3, "cache.url",
               "must start with redis:// or rediss://");
    EXPECT_ERR(ML "cache = {\n path = \"\"; };\n", 3, "cache.path", "must not be empty");
    EXPECT_ERR(ML "cache = {\n port = 70000; };\n", 3, "cache.port", "");
    EXPECT_ERR(ML "cache = 3;\n", 2, "cache", "");
    EXPECT_ERR(ML "router_settings = {\n cache_responses = 1; };\n", 3,
               "router_settings.cache_responses", "");
}

int main(void)
{
    T_RUN(test_cache_defaults);
    T_RUN(test_cache_every_key);
    T_RUN(test_cache_errors);
    return T_DONE();
}
