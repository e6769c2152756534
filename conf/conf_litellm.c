/* conf LiteLLM: a LiteLLM proxy config.yaml (a tree from conf_yaml.c) mapped
 * onto the native libconfig tree, which conf.c then checks as if it had
 * been written by hand.  This file holds the helpers and the sections other
 * than model_list (conf_litellm_models.c):
 *   router_settings   -> router_settings (routing_strategy aliases,
 *                        fallbacks and model_group_alias reshaped)
 *   litellm_settings  -> router_settings, where router_settings does not
 *                        set the same thing (LiteLLM's Router takes its own
 *                        argument over litellm.*), and cache / cache_params
 *                        -> the cache section (conf_litellm_cache.c)
 *   general_settings  -> server.master_key, the health checks
 *   environment_variables -> the environment, before os.environ/ resolves
 *   server            -> server (llmroute's own: listen, workers, ...)
 * A key that only tunes LiteLLM itself is a warning; one that would change
 * routing in a way llmroute cannot follow is an error. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* setenv */
#endif
#include "conf_litellm.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LT_MAX_ENV_NAMES 1024

/* Native settings that hold numbers or booleans: a string
 * "os.environ/NAME" there is resolved while mapping. */
static const char *const typed_names[] = {
    "rpm", "tpm", "weight", "order", "max_parallel_requests", "timeout",
    "max_input_tokens", "num_retries", "retry_after", "stream_timeout", "allowed_fails",
    "cooldown_time", "max_cooldown_time", "lowest_latency_buffer", "health_check_interval",
    "redis_port", "redis_sync_interval_ms", "port", "ttl", "max_size_mb", "workers",
    "background_health_checks", "enable_health_check_routing", "cache_responses",
    "supports_responses", "metrics_public", NULL
};


/* ---- helpers ----------------------------------------------------------- */

const conf_ynode *lt_get(const conf_ynode *map, const char *key)
{
    if (map == NULL || map->kind != CONF_Y_MAP)
        return NULL;
    LT_EACH(map, i, k, v)
        if (strcmp(k->str, key) == 0)
            return v;
    return NULL;
}

int lt_is_null(const conf_ynode *n)
{
    conf_yvalue v;

    return n == NULL || (n->kind == CONF_Y_SCALAR && conf_yscalar(n, &v) == CONF_YT_NULL);
}

int lt_in(const char *name, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(name, *list) == 0)
            return 1;
    return 0;
}

void lt_join(char *buf, size_t len, const char *const *words)
{
    int n = 0;

    while (words[n] != NULL)
        n++;
    conf_join(buf, len, words, n);
}

config_setting_t *lt_add(lt *m, config_setting_t *parent, const char *name, int type,
                         unsigned line, const char *key)
{
    config_setting_t *s, *old;

    if (name != NULL && (old = config_setting_get_member(parent, name)) != NULL) {
        conf_yfail(m->cx, line, key, "sets what line %u sets already; keep one",
                   old->line);
        return NULL;
    }
    if ((s = config_setting_add(parent, name, type)) == NULL) {
        conf_yfail(m->cx, line, key, name != NULL ? "not a valid key name" : "out of memory");
        return NULL;
    }
    s->line = line;
    return s;
}

static config_setting_t *section(lt *m, config_setting_t **s, const char *name)
{
    if (*s == NULL && (*s = config_setting_get_member(m->root, name)) == NULL
        && (*s = config_setting_add(m->root, name, CONFIG_TYPE_GROUP)) != NULL)
        (*s)->line = 0;
    return *s;
}

config_setting_t *lt_router(lt *m)
{
    return section(m, &m->router, "router_settings");
}

config_setting_t *lt_server(lt *m)
{
    return section(m, &m->server, "server");
}

int lt_warn(lt *m, const conf_ynode *at, const char *key, const char *fmt, ...)
{
    llmr_conf *c = m->cx->conf;
    char msg[512], line[1024], bare[256], *w, *b, **ws, **bs;
    size_t j = 0;
    va_list ap;

    /* Once per key: model_list[3].model_info.base_model is reported as
     * model_list[0]'s was. */
    for (const char *p = key; *p && j + 1 < sizeof(bare); p++) {
        if (*p == '[') {
            while (p[1] && *p != ']')
                p++;
            continue;
        }
        bare[j++] = *p;
    }
    bare[j] = '\0';
    for (int i = 0; i < m->nseen; i++)
        if (strcmp(m->seen[i], bare) == 0)
            return 0;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(line, sizeof(line), "%s:%u: %s: %s", m->cx->file, at ? at->line : 0, key, msg);
    w = strdup(line);
    b = strdup(bare);
    ws = w && b ? realloc(c->warnings, (size_t) (c->nwarnings + 1) * sizeof(*ws)) : NULL;
    if (ws != NULL)
        c->warnings = ws;
    bs = ws ? realloc(m->seen, (size_t) (m->nseen + 1) * sizeof(*bs)) : NULL;
    if (bs == NULL) {
        free(w);
        free(b);
        return conf_yfail(m->cx, at ? at->line : 0, key, "out of memory");
    }
    m->seen = bs;
    ws[c->nwarnings++] = w;
    bs[m->nseen++] = b;
    return 0;
}

const char *lt_scalar(lt *m, const conf_ynode *v, const char *key)
{
    if (v == NULL || v->kind != CONF_Y_SCALAR || lt_is_null(v)) {
        conf_yfail(m->cx, v ? v->line : 0, key, "must be a string");
        return NULL;
    }
    return v->str;
}

int lt_need_map(lt *m, const conf_ynode *v, const char *key, const char *example)
{
    if (v != NULL && v->kind == CONF_Y_MAP)
        return 0;
    return conf_yfail(m->cx, v ? v->line : 0, key, "must be a mapping, like %s", example);
}

int lt_set_str(lt *m, config_setting_t *parent, const char *name, const char *val,
               unsigned line, const char *key)
{
    config_setting_t *s = lt_add(m, parent, name, CONFIG_TYPE_STRING, line, key);

    if (s == NULL)
        return -1;
    if (config_setting_set_string(s, val) != CONFIG_TRUE)
        return conf_yfail(m->cx, line, key, "out of memory");
    return 0;
}

int lt_put_str(lt *m, config_setting_t *parent, const char *name, const conf_ynode *v,
               const char *key)
{
    const char *s = lt_scalar(m, v, key);

    return s == NULL ? -1 : lt_set_str(m, parent, name, s, v->line, key);
}

static int set_typed(lt *m, config_setting_t *parent, const char *name, enum conf_ytype t,
                     const conf_yvalue *val, const char *str, unsigned line,
                     const char *key)
{
    config_setting_t *s;
    int ok;

    switch (t) {
    case CONF_YT_NULL:
        return 0;
    case CONF_YT_BOOL:
        s = lt_add(m, parent, name, CONFIG_TYPE_BOOL, line, key);
        ok = s != NULL && config_setting_set_bool(s, val->b) == CONFIG_TRUE;
        break;
    case CONF_YT_INT:
        if (val->i >= INT_MIN && val->i <= INT_MAX) {
            s = lt_add(m, parent, name, CONFIG_TYPE_INT, line, key);
            ok = s != NULL && config_setting_set_int(s, (int) val->i) == CONFIG_TRUE;
        } else {
            s = lt_add(m, parent, name, CONFIG_TYPE_INT64, line, key);
            ok = s != NULL && config_setting_set_int64(s, val->i) == CONFIG_TRUE;
        }
        break;
    case CONF_YT_FLOAT:
        s = lt_add(m, parent, name, CONFIG_TYPE_FLOAT, line, key);
        ok = s != NULL && config_setting_set_float(s, val->d) == CONFIG_TRUE;
        break;
    default:
        return lt_set_str(m, parent, name, str, line, key);
    }
    if (s == NULL)
        return -1;
    return ok ? 0 : conf_yfail(m->cx, line, key, "out of memory");
}

int lt_put_env_typed(lt *m, config_setting_t *parent, const char *name,
                         const conf_ynode *v, const char *key)
{
    const char *var = v->str + strlen(LT_ENV), *val = getenv(var);
    conf_yvalue tv;
    enum conf_ytype t;

    if (val == NULL) {
        if (m->cx->mode == LLMR_CONF_LOCATE)
            return 0;       /* not needed to find a running instance */
        return conf_yfail(m->cx, v->line, key, "environment variable %.64s is not set",
                          var);
    }
    t = conf_ystring_type(val, &tv);
    if (t == CONF_YT_STR || t == CONF_YT_NULL)
        return conf_yfail(m->cx, v->line, key, "environment variable %.64s must hold a "
                          "number or true/false here", var);
    return set_typed(m, parent, name, t, &tv, NULL, v->line, key);
}

int lt_put(lt *m, config_setting_t *parent, const char *name, const conf_ynode *v,
           const char *key)
{
    config_setting_t *s;
    conf_yvalue tv;
    conf_kpath k;

    if (v->kind == CONF_Y_SCALAR) {
        enum conf_ytype t = conf_yscalar(v, &tv);
        if (t == CONF_YT_STR && name != NULL && lt_in(name, typed_names)
            && strncmp(v->str, LT_ENV, strlen(LT_ENV)) == 0)
            return lt_put_env_typed(m, parent, name, v, key);
        return set_typed(m, parent, name, t, &tv, v->str, v->line, key);
    }
    s = lt_add(m, parent, name, v->kind == CONF_Y_MAP ? CONFIG_TYPE_GROUP : CONFIG_TYPE_LIST,
               v->line, key);
    if (s == NULL)
        return -1;
    if (v->kind == CONF_Y_SEQ) {
        for (int i = 0; i < v->n; i++)
            if (lt_put(m, s, NULL, v->kids[i], conf_kpf(k, "%s[%d]", key, i)) != 0)
                return -1;
        return 0;
    }
    LT_EACH(v, i, kk, vv)
        if (lt_put(m, s, kk->str, vv, conf_kp(k, key, kk->str)) != 0)
            return -1;
    return 0;
}


/* ---- router_settings and what litellm_settings may also set ------------- */

/* A LiteLLM fallback list, [{"gpt-4": ["gpt-3.5-turbo"]}, ...], as native
 * ( { model = "gpt-4"; fallbacks = [...]; } ); "*" in `fallbacks` is
 * LiteLLM's spelling of default_fallbacks. */
static int map_fallbacks(lt *m, const char *native, const conf_ynode *v, const char *key)
{
    config_setting_t *r = lt_router(m), *list;
    conf_kpath k, kk;

    if (lt_is_null(v))
        return 0;
    if (v->kind != CONF_Y_SEQ)
        return conf_yfail(m->cx, v->line, key, "must be a list, like [{\"gpt-4\": "
                          "[\"gpt-3.5-turbo\"]}]");
    if ((list = lt_add(m, r, native, CONFIG_TYPE_LIST, v->line, key)) == NULL)
        return -1;
    for (int i = 0; i < v->n; i++) {
        const conf_ynode *e = v->kids[i];

        conf_kpf(k, "%s[%d]", key, i);
        if (e->kind != CONF_Y_MAP)
            return conf_yfail(m->cx, e->line, k, "must be a mapping of a model group to "
                              "its fallbacks, like {\"gpt-4\": [\"gpt-3.5-turbo\"]}");
        LT_EACH(e, j, g, to) {
            config_setting_t *ent;

            conf_kp(kk, k, g->str);
            if (strcmp(g->str, "*") == 0 && strcmp(native, "fallbacks") == 0) {
                if (lt_put(m, r, "default_fallbacks", to, kk) != 0)
                    return -1;
                continue;
            }
            if ((ent = lt_add(m, list, NULL, CONFIG_TYPE_GROUP, g->line, kk)) == NULL
                || lt_set_str(m, ent, "model", g->str, g->line, kk) != 0
                || lt_put(m, ent, "fallbacks", to, kk) != 0)
                return -1;
            if (config_setting_get_member(ent, "fallbacks") == NULL)
                return conf_yfail(m->cx, g->line, kk, "needs the groups to fall back to");
        }
    }
    return 0;
}

/* model_group_alias: {"gpt-4": "gpt-4o"} or {"gpt-4": {model: ..., hidden:
 * true}}, as the native list form (alias names may hold dots). */
static int map_aliases(lt *m, const conf_ynode *v, const char *key)
{
    config_setting_t *list;
    conf_kpath k;

    if (lt_is_null(v))
        return 0;
    if (lt_need_map(m, v, key, "{\"gpt-4\": \"gpt-4o\"}") != 0
        || (list = lt_add(m, lt_router(m), "model_group_alias", CONFIG_TYPE_LIST,
                          v->line, key)) == NULL)
        return -1;
    LT_EACH(v, i, a, to) {
        config_setting_t *ent;

        conf_kp(k, key, a->str);
        if ((ent = lt_add(m, list, NULL, CONFIG_TYPE_GROUP, a->line, k)) == NULL
            || lt_set_str(m, ent, "alias", a->str, a->line, k) != 0)
            return -1;
        if (to->kind == CONF_Y_MAP) {
            LT_EACH(to, j, kk, vv) {
                conf_kpath k2;
                if (lt_put(m, ent, kk->str, vv, conf_kp(k2, k, kk->str)) != 0)
                    return -1;
            }
        } else if (lt_put_str(m, ent, "model", to, k) != 0) {
            return -1;
        }
    }
    return 0;
}

static int map_strategy(lt *m, const conf_ynode *v, const char *key)
{
    static const char *const native[] = { "simple-shuffle", "least-busy",
                                          "usage-based-routing", "latency-based-routing",
                                          NULL };
    const char *s = lt_scalar(m, v, key);

    if (s == NULL)
        return -1;
    if (strcmp(s, "usage-based-routing-v2") == 0)
        s = "usage-based-routing";      /* the same thing here: exact across workers */
    else if (!lt_in(s, native))
        return conf_yfail(m->cx, v->line, key, "unsupported strategy \"%.64s\" (supported: "
                          "simple-shuffle, least-busy, usage-based-routing, "
                          "usage-based-routing-v2, latency-based-routing)", s);
    return lt_set_str(m, lt_router(m), "routing_strategy", s, v->line, key);
}

static int map_strategy_args(lt *m, const conf_ynode *v, const char *key)
{
    config_setting_t *g;
    conf_kpath k;

    if (lt_is_null(v))
        return 0;
    if (lt_need_map(m, v, key, "{lowest_latency_buffer: 0.5}") != 0
        || (g = lt_add(m, lt_router(m), "routing_strategy_args", CONFIG_TYPE_GROUP,
                       v->line, key)) == NULL)
        return -1;
    LT_EACH(v, i, kk, vv) {
        conf_kp(k, key, kk->str);
        if (strcmp(kk->str, "lowest_latency_buffer") == 0) {
            if (lt_put(m, g, kk->str, vv, k) != 0)
                return -1;
        } else if (lt_warn(m, kk, k, "ignored: llmroute's strategies keep their state in "
                           "shared memory and take only lowest_latency_buffer") != 0) {
            return -1;
        }
    }
    return 0;
}

/* Keys both sections may set, by their native name. */
static int map_shared(lt *m, const char *name, const conf_ynode *k, const conf_ynode *v,
                      const char *key)
{
    if (strcmp(name, "fallbacks") == 0 || strcmp(name, "context_window_fallbacks") == 0
        || strcmp(name, "content_policy_fallbacks") == 0)
        return map_fallbacks(m, name, v, key);
    (void) k;
    return lt_put(m, lt_router(m), name, v, key);
}

static const char *const router_same[] = {
    /* LiteLLM's, same name and meaning */
    "num_retries", "retry_after", "timeout", "stream_timeout", "allowed_fails",
    "cooldown_time", "default_fallbacks", "redis_host", "redis_port", "redis_password",
    "redis_url", "cache_responses",
    /* llmroute's own */
    "max_cooldown_time", "ssl_verify", "http2", "background_health_checks",
    "health_check_interval", "enable_health_check_routing", "redis_prefix",
    "redis_sync_interval_ms", NULL
};
static const char *const router_fallbacks[] = {
    "fallbacks", "context_window_fallbacks", "content_policy_fallbacks", NULL
};
/* Tune LiteLLM's own machinery only. */
static const char *const router_ignored[] = {
    "debug_level", "set_verbose", "polling_interval", "client_ttl", "cache_kwargs",
    "router_general_settings", "alerting_config", "assistants_config", "redis_db",
    NULL
};

static int map_router_key(lt *m, const conf_ynode *k, const conf_ynode *v, const char *key)
{
    const char *name = k->str;
    char allow[768];

    if (lt_in(name, router_same) || lt_in(name, router_fallbacks))
        return map_shared(m, name, k, v, key);
    if (strcmp(name, "routing_strategy") == 0)
        return map_strategy(m, v, key);
    if (strcmp(name, "routing_strategy_args") == 0)
        return map_strategy_args(m, v, key);
    if (strcmp(name, "model_group_alias") == 0)
        return map_aliases(m, v, key);
    if (strcmp(name, "enable_pre_call_checks") == 0) {
        conf_yvalue tv;
        if (conf_yscalar(v, &tv) == CONF_YT_BOOL && tv.b)
            return 0;
        return lt_warn(m, k, key, "ignored: llmroute always skips deployments whose "
                       "model_info.max_input_tokens the prompt exceeds");
    }
    if (strcmp(name, "disable_cooldowns") == 0) {
        conf_yvalue tv;
        if (conf_yscalar(v, &tv) != CONF_YT_BOOL)
            return conf_yfail(m->cx, v->line, key, "must be true or false");
        if (!tv.b)
            return 0;
        config_setting_t *s = lt_add(m, lt_router(m), "cooldown_time", CONFIG_TYPE_FLOAT,
                                     v->line, key);
        return s == NULL ? -1 : (config_setting_set_float(s, 0.0), 0);
    }
    if (lt_in(name, router_ignored))
        return lt_warn(m, k, key, "ignored: it tunes LiteLLM itself");
    lt_join(allow, sizeof(allow), router_same);
    return conf_yfail(m->cx, k->line, key, "not supported: llmroute cannot route as it "
                      "asks (supported: routing_strategy, routing_strategy_args, fallbacks, "
                      "context_window_fallbacks, content_policy_fallbacks, "
                      "model_group_alias, enable_pre_call_checks, disable_cooldowns, %s)",
                      allow);
}

static int map_router(lt *m, const conf_ynode *rs)
{
    conf_kpath k;

    if (lt_is_null(rs))
        return 0;
    if (lt_need_map(m, rs, "router_settings", "{routing_strategy: simple-shuffle}") != 0)
        return -1;
    if (lt_router(m) == NULL)
        return conf_yfail(m->cx, rs->line, "router_settings", "out of memory");
    m->router->line = rs->line;
    LT_EACH(rs, i, kk, vv)
        if (map_router_key(m, kk, vv, conf_kp(k, "router_settings", kk->str)) != 0)
            return -1;
    return 0;
}


/* ---- litellm_settings -------------------------------------------------- */

/* litellm_settings keys that router_settings may also set: LiteLLM's
 * Router takes its own argument over litellm.*, and so does this. */
static int map_litellm_routing(lt *m, const conf_ynode *k, const conf_ynode *v,
                               const char *key, const char *native)
{
    config_setting_t *r = lt_router(m), *old = config_setting_get_member(r, native);

    if (old != NULL)
        return lt_warn(m, k, key, "ignored: router_settings sets %s at line %u, which "
                       "takes precedence (as in LiteLLM's Router)", native, old->line);
    return map_shared(m, native, k, v, key);
}

static int map_litellm(lt *m, const conf_ynode *ls)
{
    static const char *const routing[] = { "num_retries", "fallbacks",
                                           "context_window_fallbacks",
                                           "content_policy_fallbacks", "default_fallbacks",
                                           "allowed_fails", "cooldown_time", NULL };
    const char *p = "litellm_settings";
    conf_kpath k;

    if (lt_is_null(ls))
        return 0;
    if (lt_need_map(m, ls, p, "{num_retries: 3}") != 0 || lt_router(m) == NULL)
        return -1;
    LT_EACH(ls, i, kk, vv) {
        int rc;

        conf_kp(k, p, kk->str);
        if (lt_in(kk->str, routing))
            rc = map_litellm_routing(m, kk, vv, k, kk->str);
        else if (strcmp(kk->str, "request_timeout") == 0)
            rc = map_litellm_routing(m, kk, vv, k, "timeout");
        else if (strcmp(kk->str, "cache") == 0 || strcmp(kk->str, "cache_params") == 0)
            rc = 0;     /* below, together */
        else if (strcmp(kk->str, "model_alias_map") == 0)
            rc = conf_yfail(m->cx, kk->line, k, "not supported: write the aliases as "
                            "router_settings.model_group_alias");
        else
            rc = lt_warn(m, kk, k, "ignored: it configures LiteLLM itself (callbacks, "
                         "logging, budgets, ...), not routing");
        if (rc != 0)
            return -1;
    }
    return lt_cache(m, lt_get(ls, "cache"), lt_get(ls, "cache_params"));
}


/* ---- general_settings, environment_variables, the top level ------------ */

static int map_general(lt *m, const conf_ynode *gs)
{
    const char *p = "general_settings";
    conf_kpath k;

    if (lt_is_null(gs))
        return 0;
    if (lt_need_map(m, gs, p, "{master_key: sk-1234}") != 0)
        return -1;
    LT_EACH(gs, i, kk, vv) {
        int rc;

        conf_kp(k, p, kk->str);
        if (strcmp(kk->str, "master_key") == 0)
            rc = lt_server(m) ? lt_put_str(m, m->server, "master_key", vv, k) : -1;
        else if (strcmp(kk->str, "background_health_checks") == 0
                 || strcmp(kk->str, "health_check_interval") == 0)
            rc = lt_put(m, lt_router(m), kk->str, vv, k);
        else
            rc = lt_warn(m, kk, k, "ignored: a LiteLLM proxy feature (database, UI, "
                         "alerting, ...) llmroute does not have");
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* LiteLLM reads the environment first (get_secret), so a variable the
 * operator set wins over the file; one an earlier load of a file set is
 * ours and takes the file's new value on reload. */
static int set_env(lt *m, const conf_ynode *k, const char *val, const char *key)
{
    static char *ours[LT_MAX_ENV_NAMES];
    static int nours;
    int mine = 0;

    for (int i = 0; i < nours; i++)
        mine |= strcmp(ours[i], k->str) == 0;
    if (getenv(k->str) != NULL && !mine)
        return 0;
    if (!mine) {
        if (nours == LT_MAX_ENV_NAMES)
            return conf_yfail(m->cx, k->line, key, "more than %d environment variables",
                              LT_MAX_ENV_NAMES);
        if ((ours[nours] = strdup(k->str)) == NULL)
            return conf_yfail(m->cx, k->line, key, "out of memory");
        nours++;
    }
    if (setenv(k->str, val, 1) != 0)
        return conf_yfail(m->cx, k->line, key, "cannot set it");
    return 0;
}

static int map_env(lt *m, const conf_ynode *ev)
{
    const char *p = "environment_variables";
    conf_kpath k;

    if (lt_is_null(ev))
        return 0;
    if (lt_need_map(m, ev, p, "{AZURE_API_BASE: \"https://...\"}") != 0)
        return -1;
    LT_EACH(ev, i, kk, vv) {
        const char *val;

        conf_kp(k, p, kk->str);
        if (!conf_valid_env_name(kk->str))
            return conf_yfail(m->cx, kk->line, k, "not a variable name (letters, digits "
                              "and '_', not starting with a digit)");
        if (vv->kind != CONF_Y_SCALAR)
            return conf_yfail(m->cx, vv->line, k, "must be a string or a number");
        val = lt_is_null(vv) ? "" : vv->str;
        if (m->apply_env && set_env(m, kk, val, k) != 0)
            return -1;
        if (m->cx->converting
            && lt_warn(m, kk, k, "note: the YAML sets this variable; export it before "
                       "running llmroute on this file (its value is not copied here)") != 0)
            return -1;
    }
    return 0;
}

static const char *const top_sections[] = {
    "model_list", "router_settings", "litellm_settings", "general_settings",
    "environment_variables", "server", NULL
};

/* llmroute's own server section (listen, workers, ...), copied as it is. */
static int map_server(lt *m, const conf_ynode *s)
{
    conf_kpath kp;

    if (s == NULL)
        return 0;
    if (lt_need_map(m, s, "server", "{listen: \"127.0.0.1:4000\"}") != 0
        || lt_server(m) == NULL)
        return -1;
    m->server->line = s->line;
    LT_EACH(s, i, k, v)
        if (lt_put(m, m->server, k->str, v, conf_kp(kp, "server", k->str)) != 0)
            return -1;
    return 0;
}

static int map_all(lt *m, const conf_ynode *r)
{
    const conf_ynode *s;

    if (r == NULL || lt_is_null(r))
        return conf_fail(m->cx, NULL, "model_list", "missing: the file is empty");
    if (r->kind != CONF_Y_MAP)
        return conf_yfail(m->cx, r->line, "", "must be a mapping of sections, like "
                          "model_list: [...]");
    LT_EACH(r, i, k, v) {
        (void) v;
        if (strcmp(k->str, "include") == 0)
            return conf_yfail(m->cx, k->line, "include", "not supported: put the included "
                              "files' sections in this one");
        if (!lt_in(k->str, top_sections) && lt_warn(m, k, k->str, "ignored: not a "
                                                    "section llmroute reads") != 0)
            return -1;
    }
    if (map_env(m, lt_get(r, "environment_variables")) != 0)
        return -1;
    if ((s = lt_get(r, "model_list")) == NULL)
        return conf_fail(m->cx, NULL, "model_list", "missing: list at least one deployment, "
                         "like model_list: [{model_name: gpt-4, litellm_params: {model: "
                         "gpt-4}}]");
    if (lt_model_list(m, s) != 0)
        return -1;
    if (map_router(m, lt_get(r, "router_settings")) != 0
        || map_litellm(m, lt_get(r, "litellm_settings")) != 0
        || map_general(m, lt_get(r, "general_settings")) != 0)
        return -1;
    if (map_server(m, lt_get(r, "server")) != 0)
        return -1;
    /* LiteLLM's proxy takes LITELLM_MASTER_KEY when the file sets no
     * master key: an operator who relies on it must not get an open proxy. */
    if (lt_server(m) == NULL)
        return conf_fail_oom(m->cx, NULL, "server");
    if (config_setting_get_member(m->server, "master_key") == NULL
        && getenv("LITELLM_MASTER_KEY") != NULL)
        return lt_set_str(m, m->server, "master_key", LT_ENV "LITELLM_MASTER_KEY", 0,
                          "LITELLM_MASTER_KEY");
    return 0;
}

int conf_litellm_map(conf_cx *cx, const conf_ydoc *doc, config_t *cf, int apply_env)
{
    lt m = { cx, config_root_setting(cf), NULL, NULL, apply_env, NULL, 0 };
    int rc = map_all(&m, doc->root);

    for (int i = 0; i < m.nseen; i++)
        free(m.seen[i]);
    free(m.seen);
    return rc;
}
