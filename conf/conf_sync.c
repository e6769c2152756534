/* router_settings.redis_*: the Redis that several llmroute hosts share
 * their limits, cooldowns and usage through (README "Several hosts
 * (Redis)").  Sync is on when redis_host or redis_url is set. */
#include <string.h>

#include "conf_internal.h"
#include "redis.h"

#define SYNC_PREFIX_MAX 64

/* The prefix becomes part of every key: printable, no spaces, short. */
static int check_prefix(conf_cx *cx, const config_setting_t *rs)
{
    const config_setting_t *s = config_setting_get_member(rs, "redis_prefix");
    const char *v = cx->conf->redis_prefix;

    if (s == NULL)
        return 0;
    if (!conf_safe_name(v) || strlen(v) > SYNC_PREFIX_MAX)
        return conf_fail(cx, s, "router_settings.redis_prefix",
                         "must be 1 to %d printable characters without spaces or quotes",
                         SYNC_PREFIX_MAX);
    return 0;
}

static int check_url(conf_cx *cx, const config_setting_t *rs)
{
    const config_setting_t *s = config_setting_get_member(rs, "redis_url");
    llmr_redis_opts o;
    char err[256];

    if (s == NULL)
        return 0;
    llmr_redis_opts_init(&o);
    if (strncmp(cx->conf->redis_url, "redis://", 8) != 0
        && strncmp(cx->conf->redis_url, "rediss://", 9) != 0)
        return conf_fail(cx, s, "router_settings.redis_url",
                         "must start with redis:// or rediss:// (TLS)");
    if (llmr_redis_parse_url(cx->conf->redis_url, &o, err, sizeof(err)) < 0)
        return conf_fail(cx, s, "router_settings.redis_url", "%s", err);
    explicit_bzero(o.password, sizeof(o.password));
    return 0;
}

static int check_host(conf_cx *cx, const config_setting_t *rs)
{
    const config_setting_t *s = config_setting_get_member(rs, "redis_host");

    if (s == NULL)
        return 0;
    if (cx->conf->redis_host[0] == '\0' || strlen(cx->conf->redis_host) > 255
        || conf_has_ctl(cx->conf->redis_host))
        return conf_fail(cx, s, "router_settings.redis_host",
                         "must be a host name or address of 1 to 255 characters");
    return 0;
}

int conf_parse_sync(conf_cx *cx, const config_setting_t *rs)
{
    llmr_conf *c = cx->conf;
    const char *p = "router_settings";

    if (conf_opt_str(cx, rs, p, "redis_host", &c->redis_host, NULL) != 0
        || check_host(cx, rs) != 0
        || conf_opt_int(cx, rs, p, "redis_port", &c->redis_port, 1, 65535) != 0
        || conf_opt_str(cx, rs, p, "redis_password", &c->redis_password, NULL) != 0
        || conf_opt_str(cx, rs, p, "redis_url", &c->redis_url, NULL) != 0
        || check_url(cx, rs) != 0
        || conf_opt_str(cx, rs, p, "redis_prefix", &c->redis_prefix, NULL) != 0
        || check_prefix(cx, rs) != 0
        || conf_opt_int(cx, rs, p, "redis_sync_interval_ms", &c->redis_sync_interval_ms,
                        10, 10000) != 0)
        return -1;
    if (c->redis_password != NULL && strlen(c->redis_password) > 255) {
        return conf_fail(cx, config_setting_get_member(rs, "redis_password"),
                         "router_settings.redis_password", "is longer than 255 characters");
    }
    c->sync = c->redis_host != NULL || c->redis_url != NULL;
    return 0;
}

int conf_sync_defaults(llmr_conf *c)
{
    c->redis_port = 6379;
    c->redis_sync_interval_ms = 100;
    if ((c->redis_prefix = strdup("llmroute")) == NULL)
        return -1;
    return 0;
}
