/* The response cache's configuration: router_settings.cache_responses
 * (conf.c) turns it on; the root `cache` section mirrors LiteLLM's
 * cache_params.  A relative `path` is beside the config file, like
 * pid_file, so that every worker and every reload open the same store. */
#include <stdlib.h>
#include <string.h>

#include "conf_internal.h"

#define CACHE_DEFAULT_PATH "llmroute-cache"
#define CACHE_MAX_MB (1L << 20)         /* 1 TiB of map: far past any real bound */

static const char *const cache_keys[] = {
    "type", "ttl", "max_size_mb", "path", "namespace", "supported_call_types",
    "host", "port", "password", "url", NULL
};

static const char *const call_type_names[] = {
    "chat", "completions", "embeddings", "responses", NULL
};

void conf_cache_defaults(llmr_conf *c)
{
    c->cache.type = LLMR_CACHE_LOCAL;
    c->cache.ttl = 3600.0;              /* LiteLLM's default */
    c->cache.max_size_mb = 256;
    c->cache.call_types = LLMR_CACHE_CALL_CHAT | LLMR_CACHE_CALL_COMPLETIONS
                          | LLMR_CACHE_CALL_EMBEDDINGS | LLMR_CACHE_CALL_RESPONSES;
}

static int parse_type(conf_cx *cx, const config_setting_t *grp)
{
    const config_setting_t *s = config_setting_get_member(grp, "type");
    const char *v;

    if (s == NULL)
        return 0;
    if ((v = conf_str_value(cx, s, "cache.type")) == NULL)
        return -1;
    if (strcmp(v, "local") == 0)
        cx->conf->cache.type = LLMR_CACHE_LOCAL;
    else if (strcmp(v, "redis") == 0)
        cx->conf->cache.type = LLMR_CACHE_REDIS;
    else
        return conf_fail(cx, s, "cache.type", "unknown type \"%.64s\" (allowed: local, redis)",
                         v);
    return 0;
}

static int parse_call_types(conf_cx *cx, const config_setting_t *grp)
{
    const config_setting_t *s = config_setting_get_member(grp, "supported_call_types");
    const char *k = "cache.supported_call_types";
    unsigned bits = 0;
    int n, i, t;

    if (s == NULL)
        return 0;
    if (!config_setting_is_array(s) && !config_setting_is_list(s))
        return conf_fail(cx, s, k, "must be a list of call types (allowed: chat, completions, "
                         "embeddings, responses)");
    n = config_setting_length(s);
    for (i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_type(e) == CONFIG_TYPE_STRING
                        ? config_setting_get_string(e) : NULL;
        for (t = 0; v != NULL && call_type_names[t] != NULL; t++)
            if (strcmp(v, call_type_names[t]) == 0)
                break;
        if (v == NULL || call_type_names[t] == NULL)
            return conf_fail(cx, e, k, "unknown call type \"%.64s\" (allowed: chat, "
                             "completions, embeddings, responses)", v != NULL ? v : "(not a string)");
        bits |= 1u << t;
    }
    cx->conf->cache.call_types = bits;
    return 0;
}

static int check_url(conf_cx *cx, const config_setting_t *where, const char *url)
{
    if (url == NULL || strncmp(url, "redis://", 8) == 0 || strncmp(url, "rediss://", 9) == 0)
        return 0;
    return conf_fail(cx, where, "cache.url", "must start with redis:// or rediss://");
}

static int parse_section(conf_cx *cx, const config_setting_t *s)
{
    llmr_cache_conf *c = &cx->conf->cache;
    const config_setting_t *url_at = NULL, *path_at = NULL;
    const char *p = "cache";

    if (conf_need_group(cx, s, p, "cache = { type = \"local\"; ttl = 3600.0; };") != 0
        || conf_check_keys(cx, s, p, cache_keys) != 0
        || parse_type(cx, s) != 0
        || conf_opt_num(cx, s, p, "ttl", &c->ttl, 0, 1, CONF_MAX_SECONDS) != 0
        || conf_opt_long(cx, s, p, "max_size_mb", &c->max_size_mb, 1, CACHE_MAX_MB) != 0
        || conf_opt_str(cx, s, p, "path", &c->path, &path_at) != 0
        || conf_opt_str(cx, s, p, "namespace", &c->ns, NULL) != 0
        || parse_call_types(cx, s) != 0
        || conf_opt_str(cx, s, p, "host", &c->host, NULL) != 0
        || conf_opt_int(cx, s, p, "port", &c->port, 1, 65535) != 0
        || conf_opt_str(cx, s, p, "password", &c->password, NULL) != 0
        || conf_opt_str(cx, s, p, "url", &c->url, &url_at) != 0
        || check_url(cx, url_at, c->url) != 0)
        return -1;
    if (c->path != NULL && c->path[0] == '\0')
        return conf_fail(cx, path_at, "cache.path", "must not be empty");
    if (c->ns != NULL && strlen(c->ns) > 128)
        return conf_fail(cx, s, "cache.namespace", "must be at most 128 bytes");
    return 0;
}

/* The local store's directory, beside the config file when relative. */
static int cache_path_default(conf_cx *cx)
{
    llmr_cache_conf *c = &cx->conf->cache;

    if (c->path == NULL && (c->path = strdup(CACHE_DEFAULT_PATH)) == NULL)
        return conf_fail_oom(cx, NULL, "cache.path");
    if (conf_beside_file(cx->file, &c->path) != 0)
        return conf_fail_oom(cx, NULL, "cache.path");
    return 0;
}

int conf_parse_cache(conf_cx *cx, const config_setting_t *s)
{
    if (s != NULL && parse_section(cx, s) != 0)
        return -1;
    return cache_path_default(cx);
}

void conf_free_cache(llmr_conf *c)
{
    free(c->cache.path);
    free(c->cache.ns);
    free(c->cache.host);
    if (c->cache.password != NULL)
        explicit_bzero(c->cache.password, strlen(c->cache.password));
    free(c->cache.password);
    if (c->cache.url != NULL)     /* may hold a password */
        explicit_bzero(c->cache.url, strlen(c->cache.url));
    free(c->cache.url);
}
