/* conf: libconfig -> owned structs.  Every value is checked here, once, so
 * the rest of the program can trust an llmr_conf.  A typo must never be
 * ignored: unknown keys are errors that list the allowed ones.  Messages are
 * "FILE:LINE: key.path: what is wrong", and never contain a key's value.
 * This file reads the file, the server and router_settings sections and holds
 * the public API; conf_value.c reads single values and words the messages,
 * conf_models.c reads model_list and the fallbacks between its groups. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* explicit_bzero */
#endif
#include "conf_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONF_LISTEN          "127.0.0.1:4000"
#define CONF_PID_FILE        "llmroute.pid"
#define CONF_ACCESS_LOG      "llmroute-access.log"
#define CONF_MAX_WORKERS     256
#define CONF_MAX_RETRIES     100
#define CONF_SHM_NAME_MAX    250
/* A worker's own descriptors (stdio, epoll, signal pipes, libcurl's
 * wake-up pair, DNS) and room for a few dozen connections, besides one per
 * listening socket. */
#define CONF_MIN_NOFILE      64

static const char *const root_keys[] = {
    "server", "router_settings", "model_list", "cache", NULL
};
static const char *const server_keys[] = {
    "listen", "workers", "master_key", "pid_file", "shm_name",
    "max_body_bytes", "drain_timeout", "worker_rlimit_nofile",
    "upstream_max_connecting",
    "client_header_timeout", "client_body_timeout", "stream_idle_timeout",
    "max_buffered_bytes",
    "metrics_public", "access_log", NULL
};
static const char *const router_keys[] = {
    "routing_strategy", "num_retries", "retry_after", "timeout",
    "stream_timeout", "allowed_fails", "cooldown_time", "max_cooldown_time",
    "fallbacks",
    "context_window_fallbacks", "content_policy_fallbacks",
    "default_fallbacks", "routing_strategy_args", "model_group_alias", "ssl_verify",
    "http2", "background_health_checks", "health_check_interval",
    "enable_health_check_routing",
    "redis_host", "redis_port", "redis_password", "redis_url", "redis_prefix",
    "redis_sync_interval_ms", "cache_responses", NULL
};
static const char *const strategy_args_keys[] = { "lowest_latency_buffer", NULL };

static const char *const strategy_names[] = {
    [LLMR_STRATEGY_SIMPLE_SHUFFLE] = "simple-shuffle",
    [LLMR_STRATEGY_LEAST_BUSY]     = "least-busy",
    [LLMR_STRATEGY_USAGE_BASED]    = "usage-based-routing",
    [LLMR_STRATEGY_LATENCY_BASED]  = "latency-based-routing",
};
#define NSTRATEGIES ((int) (sizeof(strategy_names) / sizeof(strategy_names[0])))


/* ---- server ------------------------------------------------------------ */

static int bad_listen(const char *v, const char **why)
{
    const char *colon = strrchr(v, ':'), *port;
    char host[64];
    size_t hl;
    long p = 0;

    *why = "must be host:port, like 127.0.0.1:4000 or [::1]:4000";
    if (colon == NULL || colon == v)
        return 1;
    hl = (size_t) (colon - v);
    port = colon + 1;
    if (*port == '\0' || strlen(port) > 5)
        goto bad_port;
    for (const char *c = port; *c; c++) {
        if (*c < '0' || *c > '9')
            goto bad_port;
        p = p * 10 + (*c - '0');
    }
    if (p < 1 || p > 65535)
        goto bad_port;

    if (v[0] == '[') {
        struct in6_addr a;
        if (hl < 3 || v[hl - 1] != ']' || hl - 2 >= sizeof(host))
            return 1;
        memcpy(host, v + 1, hl - 2);
        host[hl - 2] = '\0';
        *why = "must hold an IPv6 address between the brackets, like [::1]:4000";
        return inet_pton(AF_INET6, host, &a) != 1;
    }
    for (size_t i = 0; i < hl; i++) {
        char c = v[i];
        if (c == ':') {
            *why = "IPv6 addresses go in brackets, like [::1]:4000";
            return 1;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '-')) {
            *why = "host must be an IPv4 address, a host name or [IPv6]";
            return 1;
        }
    }
    return 0;

bad_port:
    *why = "port must be a number from 1 to 65535";
    return 1;
}

static int parse_listen(conf_cx *cx, const config_setting_t *s)
{
    llmr_conf *c = cx->conf;
    int one = config_setting_type(s) == CONFIG_TYPE_STRING;
    int n = one ? 1 : config_setting_length(s);

    if (!conf_is_string_list(s))
        return conf_fail(cx, s, "server.listen", "must be a string "
                         "\"host:port\" or a list of them, like "
                         "[\"0.0.0.0:4000\", \"[::]:4000\"]");
    if (n == 0)
        return conf_fail(cx, s, "server.listen",
                         "must name at least one address");
    if ((c->listen = calloc((size_t) n, sizeof(*c->listen))) == NULL)
        return conf_fail_oom(cx, s, "server.listen");
    c->nlisten = n;

    for (int i = 0; i < n; i++) {
        const config_setting_t *e = one ? s : config_setting_get_elem(s, (unsigned) i);
        const char *v, *why;
        conf_kpath k;

        if (one)
            conf_kpf(k, "server.listen");
        else
            conf_kpf(k, "server.listen[%d]", i);
        if ((v = conf_str_value(cx, e, k)) == NULL)
            return -1;
        if (bad_listen(v, &why))
            return conf_fail(cx, e, k, "\"%.80s\" %s", v, why);
        for (int j = 0; j < i; j++)
            if (strcmp(c->listen[j], v) == 0)
                return conf_fail(cx, e, k, "\"%s\" is listed twice", v);
        if ((c->listen[i] = strdup(v)) == NULL)
            return conf_fail_oom(cx, e, k);
    }
    return 0;
}

/* Below this a worker cannot even start, or serves a handful of clients
 * and then refuses the rest: -t says so instead of the first busy hour. */
static int check_nofile(conf_cx *cx, const config_setting_t *s)
{
    const llmr_conf *c = cx->conf;
    long need = CONF_MIN_NOFILE + (c->nlisten > 0 ? c->nlisten : 1);

    if (c->worker_rlimit_nofile == 0 || c->worker_rlimit_nofile >= need)
        return 0;
    return conf_fail(cx, config_setting_get_member(s, "worker_rlimit_nofile"),
                     "server.worker_rlimit_nofile", "must be 0 (keep the inherited "
                     "limit) or at least %ld: a worker needs %d descriptors of its own "
                     "plus one per listen address, and two per request in flight",
                     need, CONF_MIN_NOFILE);
}

static int parse_server(conf_cx *cx, const config_setting_t *s)
{
    llmr_conf *c = cx->conf;
    const config_setting_t *where;
    const char *p = "server";

    if (conf_need_group(cx, s, p,
                        "server = { listen = \"127.0.0.1:4000\"; };") != 0
        || conf_check_keys(cx, s, p, server_keys) != 0)
        return -1;

    if ((where = config_setting_get_member(s, "listen")) != NULL
        && parse_listen(cx, where) != 0)
        return -1;
    if (conf_opt_int(cx, s, p, "workers", &c->workers, 0, CONF_MAX_WORKERS) != 0)
        return -1;

    if (cx->mode == LLMR_CONF_FULL
        && conf_opt_str(cx, s, p, "master_key", &c->master_key, &where) != 0)
        return -1;
    if (c->master_key != NULL && c->master_key[0] == '\0')
        return conf_fail(cx, where, "server.master_key", "must not be empty "
                         "(leave it out to serve without authentication)");
    if (c->master_key != NULL && conf_has_ctl(c->master_key))
        return conf_fail(cx, where, "server.master_key",
                         "must not contain control characters");

    if (conf_opt_str(cx, s, p, "pid_file", &c->pid_file, &where) != 0)
        return -1;
    if (where != NULL && c->pid_file[0] == '\0')
        return conf_fail(cx, where, "server.pid_file", "must not be empty");

    if (conf_opt_str(cx, s, p, "access_log", &c->access_log, &where) != 0)
        return -1;
    if (where != NULL && c->access_log[0] == '\0')
        return conf_fail(cx, where, "server.access_log", "must not be empty (\"off\" turns "
                         "it off)");
    c->access_log_off = c->access_log != NULL && strcmp(c->access_log, "off") == 0;

    if (conf_opt_str(cx, s, p, "shm_name", &c->shm_name, &where) != 0)
        return -1;
    if (where != NULL
        && (c->shm_name[0] != '/' || c->shm_name[1] == '\0'
            || strchr(c->shm_name + 1, '/') != NULL
            || strlen(c->shm_name) > CONF_SHM_NAME_MAX
            || conf_has_ctl(c->shm_name)))
        return conf_fail(cx, where, "server.shm_name", "must be '/' then 1 to "
                         "%d characters without '/', like \"/llmroute-4000\"",
                         CONF_SHM_NAME_MAX - 1);

    if (conf_opt_long(cx, s, p, "max_body_bytes", &c->max_body_bytes, 1,
                      LONG_MAX) != 0
        || conf_opt_num(cx, s, p, "drain_timeout", &c->drain_timeout, 0, 0,
                        CONF_MAX_SECONDS) != 0
        || conf_opt_long(cx, s, p, "worker_rlimit_nofile", &c->worker_rlimit_nofile, 0,
                         1L << 24) != 0
        || conf_opt_int(cx, s, p, "upstream_max_connecting", &c->upstream_max_connecting,
                        0, 1 << 20) != 0
        || conf_opt_num(cx, s, p, "client_header_timeout", &c->client_header_timeout, 0, 1,
                        CONF_MAX_SECONDS) != 0
        || conf_opt_num(cx, s, p, "client_body_timeout", &c->client_body_timeout, 0, 1,
                        CONF_MAX_SECONDS) != 0
        || conf_opt_num(cx, s, p, "stream_idle_timeout", &c->stream_idle_timeout, 0, 1,
                        CONF_MAX_SECONDS) != 0
        || conf_opt_long(cx, s, p, "max_buffered_bytes", &c->max_buffered_bytes, 1,
                         LONG_MAX) != 0
        || conf_opt_bool(cx, s, p, "metrics_public", &c->metrics_public, NULL) != 0)
        return -1;
    return check_nofile(cx, s);
}

/* A relative path in the file is relative to the file's directory, not to
 * wherever the command happens to run: `-s reload` from another directory
 * must find the same pid file as the master. */
static int beside_conf(const char *file, char **path)
{
    const char *slash = strrchr(file, '/');
    size_t dlen, plen;
    char *p;

    if ((*path)[0] == '/' || slash == NULL)
        return 0;
    dlen = (size_t) (slash - file) + 1;
    plen = strlen(*path);
    if ((p = malloc(dlen + plen + 1)) == NULL)
        return -1;
    memcpy(p, file, dlen);
    memcpy(p + dlen, *path, plen + 1);
    free(*path);
    *path = p;
    return 0;
}

/* server.access_log: "off" is NULL, a relative path is beside the config
 * file like pid_file, and the default is CONF_ACCESS_LOG there. */
static int access_log_default(conf_cx *cx)
{
    llmr_conf *c = cx->conf;

    if (c->access_log_off) {
        free(c->access_log);
        c->access_log = NULL;
        return 0;
    }
    if (c->access_log == NULL && (c->access_log = strdup(CONF_ACCESS_LOG)) == NULL)
        return -1;
    return beside_conf(cx->file, &c->access_log);
}

/* Defaults that depend on other values: the first listen address names the
 * shared memory object so two instances on one host do not collide. */
static int server_defaults(conf_cx *cx)
{
    llmr_conf *c = cx->conf;
    char name[32];

    if (c->nlisten == 0) {
        if ((c->listen = calloc(1, sizeof(*c->listen))) == NULL
            || (c->listen[0] = strdup(CONF_LISTEN)) == NULL)
            return conf_fail_oom(cx, NULL, "server.listen");
        c->nlisten = 1;
    }
    if (c->pid_file == NULL && (c->pid_file = strdup(CONF_PID_FILE)) == NULL)
        return conf_fail_oom(cx, NULL, "server.pid_file");
    if (beside_conf(cx->file, &c->pid_file) != 0)
        return conf_fail_oom(cx, NULL, "server.pid_file");
    if (access_log_default(cx) != 0)
        return conf_fail_oom(cx, NULL, "server.access_log");
    if (c->shm_name == NULL) {
        snprintf(name, sizeof(name), "/llmroute-%s", strrchr(c->listen[0], ':') + 1);
        if ((c->shm_name = strdup(name)) == NULL)
            return conf_fail_oom(cx, NULL, "server.shm_name");
    }
    return 0;
}


/* ---- router_settings --------------------------------------------------- */

static int parse_strategy(conf_cx *cx, const config_setting_t *rs)
{
    const config_setting_t *s = config_setting_get_member(rs, "routing_strategy");
    const char *v, *k = "router_settings.routing_strategy";
    char allow[256];

    if (s == NULL)
        return 0;
    if ((v = conf_str_value(cx, s, k)) == NULL)
        return -1;
    for (int i = 0; i < NSTRATEGIES; i++)
        if (strcmp(v, strategy_names[i]) == 0) {
            cx->conf->routing_strategy = (enum llmr_strategy) i;
            return 0;
        }
    conf_join(allow, sizeof(allow), strategy_names, NSTRATEGIES);
    return conf_fail(cx, s, k, "unknown strategy \"%.64s\" (allowed: %s)", v,
                     allow);
}

/* A cap below cooldown_time would silently shorten every cooldown: refused
 * when set, raised to cooldown_time when left to its default. */
static int check_cooldown_cap(conf_cx *cx, const config_setting_t *rs)
{
    llmr_conf *c = cx->conf;
    const config_setting_t *s = config_setting_get_member(rs, "max_cooldown_time");

    if (c->max_cooldown_time >= c->cooldown_time)
        return 0;
    if (s == NULL) {
        c->max_cooldown_time = c->cooldown_time;
        return 0;
    }
    return conf_fail(cx, s, "router_settings.max_cooldown_time",
                     "must be >= cooldown_time (%g)", c->cooldown_time);
}

static int parse_router(conf_cx *cx, const config_setting_t *rs)
{
    llmr_conf *c = cx->conf;
    const config_setting_t *s;
    const char *p = "router_settings";
    int given = 0;

    if (conf_need_group(cx, rs, p,
                        "router_settings = { num_retries = 2; };") != 0
        || conf_check_keys(cx, rs, p, router_keys) != 0
        || parse_strategy(cx, rs) != 0
        || conf_opt_int(cx, rs, p, "num_retries", &c->num_retries, 0,
                        CONF_MAX_RETRIES) != 0
        || conf_opt_num(cx, rs, p, "retry_after", &c->retry_after, 0, 0,
                        CONF_MAX_SECONDS) != 0
        || conf_opt_num(cx, rs, p, "timeout", &c->timeout, 0, 1,
                        CONF_MAX_SECONDS) != 0
        || conf_opt_num(cx, rs, p, "stream_timeout", &c->stream_timeout, 0, 0,
                        CONF_MAX_SECONDS) != 0
        || conf_opt_int(cx, rs, p, "allowed_fails", &c->allowed_fails, 0,
                        INT_MAX) != 0
        || conf_opt_num(cx, rs, p, "cooldown_time", &c->cooldown_time, 0, 0,
                        CONF_MAX_SECONDS) != 0
        || conf_opt_num(cx, rs, p, "max_cooldown_time", &c->max_cooldown_time, 0, 0,
                        CONF_MAX_SECONDS) != 0
        || check_cooldown_cap(cx, rs) != 0
        || conf_parse_ssl_verify(cx, rs, p, &c->ssl_verify, &c->ca_file, &given) != 0
        || conf_opt_bool(cx, rs, p, "http2", &c->http2, NULL) != 0
        || conf_opt_bool(cx, rs, p, "background_health_checks",
                         &c->background_health_checks, NULL) != 0
        || conf_opt_num(cx, rs, p, "health_check_interval", &c->health_check_interval,
                        0.1, 0, CONF_MAX_SECONDS) != 0
        || conf_opt_bool(cx, rs, p, "enable_health_check_routing",
                         &c->enable_health_check_routing, NULL) != 0
        || conf_opt_bool(cx, rs, p, "cache_responses", &c->cache_responses, NULL) != 0
        || conf_parse_fallbacks(cx, rs, "fallbacks", &c->fallbacks) != 0
        || conf_parse_fallbacks(cx, rs, "context_window_fallbacks",
                                &c->context_window_fallbacks) != 0
        || conf_parse_fallbacks(cx, rs, "content_policy_fallbacks",
                                &c->content_policy_fallbacks) != 0
        || conf_parse_aliases(cx, rs) != 0
        || conf_parse_sync(cx, rs) != 0)
        return -1;

    if ((s = config_setting_get_member(rs, "default_fallbacks")) != NULL
        && conf_parse_group_names(cx, s, "router_settings.default_fallbacks",
                                  NULL, &c->default_fallbacks,
                                  &c->ndefault_fallbacks) != 0)
        return -1;

    if ((s = config_setting_get_member(rs, "routing_strategy_args")) != NULL) {
        const char *ap = "router_settings.routing_strategy_args";
        if (conf_need_group(cx, s, ap, "routing_strategy_args = { "
                            "lowest_latency_buffer = 0.0; };") != 0
            || conf_check_keys(cx, s, ap, strategy_args_keys) != 0
            || conf_opt_num(cx, s, ap, "lowest_latency_buffer",
                            &c->lowest_latency_buffer, 0, 0,
                            CONF_MAX_WEIGHT) != 0)
            return -1;
    }
    return 0;
}


/* ---- the whole file ---------------------------------------------------- */

static void set_defaults(llmr_conf *c)
{
    c->workers = 0;
    c->max_body_bytes = 10485760;
    c->drain_timeout = 30.0;
    c->upstream_max_connecting = 32;
    c->client_header_timeout = 60.0;
    c->client_body_timeout = 60.0;
    c->stream_idle_timeout = 300.0;
    c->max_buffered_bytes = 256L << 20;
    c->routing_strategy = LLMR_STRATEGY_SIMPLE_SHUFFLE;
    c->num_retries = 2;
    c->retry_after = 0.0;
    c->timeout = 600.0;
    c->stream_timeout = 0.0;
    c->allowed_fails = 3;
    c->cooldown_time = 5.0;         /* LiteLLM's defaults */
    c->max_cooldown_time = 300.0;
    c->lowest_latency_buffer = 0.0;
    c->ssl_verify = 1;
    c->http2 = 1;
    c->health_check_interval = 300.0;   /* LiteLLM's default */
    conf_cache_defaults(c);
}

static int read_file(conf_cx *cx, config_t *cf)
{
    FILE *f = fopen(cx->file, "r");
    const char *efile;

    if (f == NULL)
        return conf_fail(cx, NULL, "", "cannot open: %s", strerror(errno));
    if (fgetc(f) == EOF && ferror(f)) {
        int e = errno;
        fclose(f);
        return conf_fail(cx, NULL, "", "cannot read: %s", strerror(e));
    }
    fclose(f);

    if (config_read_file(cf, cx->file) == CONFIG_TRUE)
        return 0;
    if (config_error_type(cf) != CONFIG_ERR_PARSE)
        return conf_fail(cx, NULL, "", "cannot read: %s", config_error_text(cf));
    efile = config_error_file(cf) ? config_error_file(cf) : cx->file;
    snprintf(cx->err, cx->errlen, "%s:%d: syntax error: %s", efile,
             config_error_line(cf), config_error_text(cf));
    return -1;
}

static int parse_root(conf_cx *cx, const config_setting_t *root)
{
    const config_setting_t *s;

    if (conf_check_keys(cx, root, "", root_keys) != 0)
        return -1;
    if ((s = config_setting_get_member(root, "server")) != NULL
        && parse_server(cx, s) != 0)
        return -1;
    if (server_defaults(cx) != 0)
        return -1;
    if (cx->mode == LLMR_CONF_LOCATE)
        return 0;
    if (conf_parse_model_list(cx, root) != 0)
        return -1;
    /* Fallbacks name model groups, so model_list comes first. */
    if ((s = config_setting_get_member(root, "router_settings")) != NULL
        && parse_router(cx, s) != 0)
        return -1;
    if (conf_parse_cache(cx, config_setting_get_member(root, "cache")) != 0)
        return -1;
    return conf_tls_defaults(cx);
}

int llmr_conf_load(const char *path, llmr_conf **out, char *err, size_t errlen)
{
    return llmr_conf_load_mode(path, LLMR_CONF_FULL, out, err, errlen);
}

int llmr_conf_load_mode(const char *path, enum llmr_conf_mode mode, llmr_conf **out,
                        char *err, size_t errlen)
{
    static char dummy[1];
    conf_cx cx = { path, err ? err : dummy, err ? errlen : sizeof(dummy), NULL, mode, 0 };
    config_t cf;
    int rc;

    *out = NULL;
    if (cx.errlen > 0)
        cx.err[0] = '\0';
    if ((cx.conf = calloc(1, sizeof(*cx.conf))) == NULL
        || (cx.conf->file = strdup(path)) == NULL) {
        free(cx.conf);
        return conf_fail_oom(&cx, NULL, "");
    }
    set_defaults(cx.conf);
    if (conf_sync_defaults(cx.conf) < 0) {
        llmr_conf_free(cx.conf);
        return conf_fail_oom(&cx, NULL, "");
    }

    config_init(&cf);
    rc = conf_is_yaml(path) ? conf_yaml_read(&cx, &cf) : read_file(&cx, &cf);
    if (rc == 0)
        rc = parse_root(&cx, config_root_setting(&cf));
    config_destroy(&cf);

    if (rc != 0) {
        llmr_conf_free(cx.conf);
        return -1;
    }
    *out = cx.conf;
    return 0;
}


/* ---- lookups and cleanup ----------------------------------------------- */

int llmr_conf_find_group(const llmr_conf *conf, const char *name, size_t len)
{
    if (conf == NULL || name == NULL)
        return -1;
    for (int i = 0; i < conf->ngroups; i++) {
        const char *g = conf->groups[i].name;
        if (g != NULL && strlen(g) == len && memcmp(g, name, len) == 0)
            return i;
    }
    return -1;
}

const char *llmr_strategy_name(enum llmr_strategy s)
{
    if ((int) s < 0 || (int) s >= NSTRATEGIES)
        return "unknown";
    return strategy_names[s];
}

static void free_secret(char *s)
{
    if (s != NULL)
        explicit_bzero(s, strlen(s));
    free(s);
}

static void free_strings(char **v, int n)
{
    for (int i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

static void free_fallbacks(llmr_fallback_list *l)
{
    for (int i = 0; l->items != NULL && i < l->n; i++) {
        free(l->items[i].model);
        free_strings(l->items[i].fallbacks, l->items[i].nfallbacks);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void llmr_conf_free(llmr_conf *c)
{
    if (c == NULL)
        return;
    free(c->file);
    free_strings(c->listen, c->nlisten);
    free_secret(c->master_key);
    free(c->pid_file);
    free(c->access_log);
    free(c->shm_name);
    free(c->redis_host);
    free_secret(c->redis_password);
    free_secret(c->redis_url);
    free(c->redis_prefix);
    free_fallbacks(&c->fallbacks);
    free_fallbacks(&c->context_window_fallbacks);
    free_fallbacks(&c->content_policy_fallbacks);
    free_strings(c->default_fallbacks, c->ndefault_fallbacks);
    conf_free_aliases(c);
    for (int i = 0; c->deployments != NULL && i < c->ndeployments; i++) {
        llmr_deployment *d = &c->deployments[i];
        free(d->model_name);
        free(d->model);
        free(d->upstream_model);
        free_secret(d->api_key);
        free(d->api_base);
        free(d->api_version);
        free(d->ca_file);
    }
    free(c->ca_file);
    free(c->deployments);
    for (int i = 0; c->groups != NULL && i < c->ngroups; i++) {
        free(c->groups[i].name);
        free(c->groups[i].deployments);
    }
    free(c->groups);
    free_strings(c->warnings, c->nwarnings);
    conf_free_cache(c);
    free(c);
}

int conf_beside_file(const char *file, char **path)
{
    return beside_conf(file, path);
}
