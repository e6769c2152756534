/* conf LiteLLM cache: litellm_settings.cache and cache_params onto
 * router_settings.cache_responses and the native cache section (the
 * response cache of issue 13): local and disk are llmroute's local cache,
 * redis its Redis cache; LiteLLM's call types become the routes cached. */
#include "conf_litellm.h"

#include <stdlib.h>
#include <string.h>


/* LiteLLM's cache_params.supported_call_types, as the routes they cache. */
static int map_call_types(lt *m, config_setting_t *cache, const conf_ynode *v,
                          const char *key)
{
    static const char *const from[] = { "acompletion", "completion", "atext_completion",
                                        "text_completion", "aembedding", "embedding",
                                        "aresponses", "responses", NULL };
    static const char *const to[] = { "chat", "chat", "completions", "completions",
                                      "embeddings", "embeddings", "responses", "responses" };
    config_setting_t *list;
    conf_kpath k;

    if (v->kind != CONF_Y_SEQ)
        return conf_yfail(m->cx, v->line, key, "must be a list, like [\"acompletion\", "
                          "\"completion\"]");
    if ((list = lt_add(m, cache, "supported_call_types", CONFIG_TYPE_LIST, v->line,
                       key)) == NULL)
        return -1;
    for (int i = 0; i < v->n; i++) {
        const char *t = lt_scalar(m, v->kids[i], conf_kpf(k, "%s[%d]", key, i));
        int f = -1, dup = 0;

        if (t == NULL)
            return -1;
        for (int j = 0; from[j] != NULL; j++)
            if (strcmp(t, from[j]) == 0)
                f = j;
        if (f < 0) {
            if (lt_warn(m, v->kids[i], k, "ignored: llmroute caches only completion, "
                        "text_completion, embedding and responses calls") != 0)
                return -1;
            continue;
        }
        for (int j = 0; j < config_setting_length(list); j++)
            dup |= strcmp(config_setting_get_string_elem(list, j), to[f]) == 0;
        if (!dup && config_setting_set_string_elem(list, -1, to[f]) == NULL)
            return conf_yfail(m->cx, v->line, key, "out of memory");
    }
    return 0;
}

/* A redis cache without host or url reads REDIS_* from the environment in
 * LiteLLM; so here, where those are set. */
static int cache_env(lt *m, config_setting_t *cache, unsigned line)
{
    const char *k = "litellm_settings.cache_params";

    if (config_setting_get_member(cache, "host") != NULL
        || config_setting_get_member(cache, "url") != NULL)
        return 0;
    if (getenv("REDIS_URL") != NULL)
        return lt_set_str(m, cache, "url", LT_ENV "REDIS_URL", line, k);
    if (getenv("REDIS_HOST") == NULL)
        return 0;       /* router_settings.redis_* then */
    if (lt_set_str(m, cache, "host", LT_ENV "REDIS_HOST", line, k) != 0)
        return -1;
    if (getenv("REDIS_PASSWORD") != NULL && config_setting_get_member(cache, "password") == NULL
        && lt_set_str(m, cache, "password", LT_ENV "REDIS_PASSWORD", line, k) != 0)
        return -1;
    if (getenv("REDIS_PORT") != NULL && config_setting_get_member(cache, "port") == NULL) {
        conf_ynode n = { .kind = CONF_Y_SCALAR, .line = line, .str = LT_ENV "REDIS_PORT" };
        return lt_put_env_typed(m, cache, "port", &n, k);
    }
    return 0;
}

static int map_cache_type(lt *m, config_setting_t *cache, const conf_ynode *v,
                          const char *key)
{
    const char *t = lt_scalar(m, v, key);

    if (t == NULL)
        return -1;
    if (strcmp(t, "disk") == 0)
        t = "local";        /* both keep the cache in a file on this host */
    if (strcmp(t, "local") != 0 && strcmp(t, "redis") != 0)
        return conf_yfail(m->cx, v->line, key, "unsupported cache type \"%.64s\" "
                          "(supported: local, disk, redis)", t);
    return lt_set_str(m, cache, "type", t, v->line, key);
}

static int map_cache_param(lt *m, config_setting_t *cache, const conf_ynode *k,
                           const conf_ynode *v, const char *key)
{
    static const char *const same[] = { "host", "port", "password", "namespace", "ttl",
                                        "url", "path", "max_size_mb", NULL };
    const char *name = k->str;

    if (strcmp(name, "type") == 0)
        return map_cache_type(m, cache, v, key);
    if (strcmp(name, "supported_call_types") == 0)
        return map_call_types(m, cache, v, key);
    if (strcmp(name, "redis_url") == 0)
        return lt_put(m, cache, "url", v, key);
    if (strcmp(name, "disk_cache_dir") == 0)
        return lt_put(m, cache, "path", v, key);
    if (lt_in(name, same))
        return lt_put(m, cache, name, v, key);
    if (strcmp(name, "mode") == 0) {
        const char *s = lt_scalar(m, v, key);
        if (s == NULL)
            return -1;
        if (strcmp(s, "default_on") == 0)
            return 0;
        return conf_yfail(m->cx, v->line, key, "\"%.32s\" is not supported: llmroute "
                          "caches every call of the supported types (default_on)", s);
    }
    return lt_warn(m, k, key, "ignored: not a setting of llmroute's cache");
}

int lt_cache(lt *m, const conf_ynode *on, const conf_ynode *params)
{
    const char *pk = "litellm_settings.cache_params";
    config_setting_t *cache, *cr;
    conf_yvalue tv;
    conf_kpath k;

    if (lt_is_null(on) || conf_yscalar(on, &tv) != CONF_YT_BOOL || !tv.b) {
        if (!lt_is_null(on) && conf_yscalar(on, &tv) != CONF_YT_BOOL)
            return conf_yfail(m->cx, on->line, "litellm_settings.cache", "must be true "
                              "or false");
        if (params != NULL)
            return lt_warn(m, params, pk, "ignored: litellm_settings.cache is not true");
        return 0;
    }
    if ((cr = lt_add(m, lt_router(m), "cache_responses", CONFIG_TYPE_BOOL, on->line,
                     "litellm_settings.cache")) == NULL
        || (cache = lt_add(m, m->root, "cache", CONFIG_TYPE_GROUP, on->line,
                           "litellm_settings.cache")) == NULL)
        return -1;
    config_setting_set_bool(cr, 1);
    if (params != NULL && !lt_is_null(params)) {
        if (lt_need_map(m, params, pk, "{type: redis, ttl: 600}") != 0)
            return -1;
        LT_EACH(params, i, kk, vv)
            if (map_cache_param(m, cache, kk, vv, conf_kp(k, pk, kk->str)) != 0)
                return -1;
    }
    if (config_setting_get_member(cache, "type") == NULL
        && lt_set_str(m, cache, "type", "local", on->line, "litellm_settings.cache") != 0)
        return -1;
    if (strcmp(config_setting_get_string(config_setting_get_member(cache, "type")),
               "redis") == 0)
        return cache_env(m, cache, on->line);
    return 0;
}
