/* The sync process: its loop, its two Redis connections (commands, and the
 * cooldown channel), the hosts' heartbeat and the sync state.  Every tick
 * (redis_sync_interval_ms) it heartbeats, leases, publishes cooldowns and
 * every STATS_TICKS ticks merges the fleet's figures; while Redis is down
 * or slow it gives each deployment this host's local share instead. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"
#include "sync_internal.h"

#define STATS_TICKS 5
#define HOST_TTL_MIN_MS 2000    /* a host missing this long is gone */
#define DRAIN_MS 1000           /* the most a stop waits for hand-backs */

/* KEYS[1] the hosts' sorted set (member host, score its expiry);
 * ARGV host, now, expiry.  Returns the live hosts. */
static const char HOSTS_LUA[] =
    "redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[1], 600000)\n"
    "return redis.call('ZCARD', KEYS[1])\n";

static const char *const state_name[] = { "off", "connecting", "shared", "local" };

llmr_slot *sync_slot(sync_cx *cx, int dep)
{
    return llmr_shm_slot(cx->shm, cx->conf->deployments[dep].slot);
}

void sync_count(sync_cx *cx, int sent)
{
    atomic_fetch_add_explicit(sent ? &cx->shm->seg->hdr.sync_commands
                                   : &cx->shm->seg->hdr.sync_errors, 1, memory_order_relaxed);
}

void sync_set_state(sync_cx *cx, enum llmr_sync_state st, const char *why)
{
    llmr_shm_header *h = &cx->shm->seg->hdr;
    int hosts = atomic_load(&h->sync_hosts);

    if (atomic_load(&h->sync_state) == (uint32_t)st)
        return;
    atomic_store(&h->sync_state, (uint32_t)st);
    atomic_store(&h->sync_since_ms, llmr_wall_ms());
    if (st == LLMR_SYNC_LOCAL)
        llmr_warn("sync: Redis unavailable (%s); each limit falls back to this host's "
                  "share, limit / %d host(s) last seen", why, hosts > 1 ? hosts : 1);
    else
        llmr_info("sync: %s (%s), %d host(s)", state_name[st], why, hosts);
}

static void hosts_reply(llmr_redis *r, redisReply *y, void *arg)
{
    sync_cx *cx = arg;
    llmr_shm_header *h = &cx->shm->seg->hdr;
    int n;

    (void)r;
    cx->heartbeat_inflight = 0;
    if (y == NULL || y->type != REDIS_REPLY_INTEGER) {
        sync_count(cx, 0);
        return;
    }
    n = y->integer > 0 && y->integer < 1000000 ? (int)y->integer : 1;
    if (atomic_exchange(&h->sync_hosts, n) != n && cx->heartbeat_ok)
        llmr_info("sync: %d host(s) now share the limits", n);
    if (!cx->heartbeat_ok) {
        cx->heartbeat_ok = 1;
        for (int i = 0; i < cx->conf->ndeployments; i++) {
            cx->deps[i].published_cd = 0;   /* tell the fleet our running ones */
            /* and our claims: a restarted Redis has lost them */
            for (int k = 0; k < SYNC_KINDS; k++)
                cx->deps[i].resync[k] = 1;
        }
        sync_cooldowns_learn(cx);
        /* A first start has no grants yet: it is "shared" (and the host
         * ready) once the first leases have come back (on_tick). */
        if (atomic_load(&h->sync_state) == LLMR_SYNC_CONNECTING) {
            sync_limits_round(cx, llmr_wall_ms());
            cx->first_round = 1;
        } else {
            sync_set_state(cx, LLMR_SYNC_SHARED, "connected");
        }
    }
}

static void heartbeat(sync_cx *cx, int64_t now_ms)
{
    int ttl = 3 * cx->conf->redis_sync_interval_ms;
    char key[128], now[24], until[24];

    if (cx->heartbeat_inflight)
        return;
    ttl = ttl > HOST_TTL_MIN_MS ? ttl : HOST_TTL_MIN_MS;
    snprintf(key, sizeof(key), "%s:hosts", cx->conf->redis_prefix);
    snprintf(now, sizeof(now), "%lld", (long long)now_ms);
    snprintf(until, sizeof(until), "%lld", (long long)(now_ms + ttl));
    if (llmr_redis_cmd(cx->cmd, hosts_reply, cx, "EVAL %s 1 %s %s %s %s", HOSTS_LUA, key,
                       cx->host, now, until) < 0) {
        sync_count(cx, 0);
        return;
    }
    sync_count(cx, 1);
    cx->heartbeat_inflight = 1;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    sync_cx *cx = arg;
    int64_t now = llmr_wall_ms();

    (void)fd;
    (void)what;
    if (getppid() != cx->master) {
        event_base_loopbreak(cx->base);
        return;
    }
    if (cx->draining) {
        if (!cx->up || sync_limits_pending(cx) == 0 || now > cx->drain_deadline_ms)
            event_base_loopbreak(cx->base);
        return;
    }
    if (cx->up)
        heartbeat(cx, now);
    if (cx->first_round && cx->up && sync_limits_pending(cx) == 0) {
        cx->first_round = 0;
        sync_set_state(cx, LLMR_SYNC_SHARED, "connected, first leases taken");
    }
    if (cx->up && cx->heartbeat_ok) {
        sync_limits_round(cx, now);
        sync_cooldowns_publish(cx, now);
        if (++cx->ticks % STATS_TICKS == 0)
            sync_stats_round(cx, now);
    } else if (atomic_load(&cx->shm->seg->hdr.sync_state) == LLMR_SYNC_LOCAL) {
        sync_limits_fallback(cx, now);
    }
}

static void on_cmd_state(llmr_redis *r, int up, const char *why, void *arg)
{
    sync_cx *cx = arg;

    (void)r;
    cx->up = up;
    cx->heartbeat_ok = 0;
    cx->first_round = 0;
    cx->heartbeat_inflight = 0;
    if (up) {
        heartbeat(cx, llmr_wall_ms());
        return;
    }
    sync_set_state(cx, LLMR_SYNC_LOCAL, why);
    sync_limits_fallback(cx, llmr_wall_ms());
}

static void sub_reply(llmr_redis *r, redisReply *y, void *arg)
{
    (void)r;
    if (y == NULL || y->type == REDIS_REPLY_ERROR)
        sync_count(arg, 0);
}

static void on_sub_state(llmr_redis *r, int up, const char *why, void *arg)
{
    sync_cx *cx = arg;

    (void)why;
    if (up)
        sync_count(cx, llmr_redis_cmd(r, sub_reply, cx, "SUBSCRIBE %s", cx->channel) == 0);
}

static void on_push(llmr_redis *r, const char *ch, size_t clen, const char *msg, size_t mlen,
                    void *arg)
{
    sync_cx *cx = arg;

    (void)r;
    if (clen == strlen(cx->channel) && memcmp(ch, cx->channel, clen) == 0)
        sync_cooldown_message(cx, msg, mlen);
}

/* SIGQUIT (the master stops): hand back what is unused, then exit;
 * SIGTERM (a reload replaces this process) and SIGINT: exit at once, the
 * grants stay in the segment for the next sync process. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    sync_cx *cx = arg;

    (void)what;
    if (sig != SIGQUIT || !cx->up || !cx->heartbeat_ok) {
        event_base_loopbreak(cx->base);
        return;
    }
    cx->draining = 1;
    cx->drain_deadline_ms = llmr_wall_ms() + DRAIN_MS;
    sync_limits_round(cx, llmr_wall_ms());
    if (sync_limits_pending(cx) == 0)
        event_base_loopbreak(cx->base);
}

static int redis_opts(const llmr_conf *c, llmr_redis_opts *o)
{
    char err[256];

    llmr_redis_opts_init(o);
    if (c->redis_url != NULL) {
        if (llmr_redis_parse_url(c->redis_url, o, err, sizeof(err)) < 0) {
            llmr_error("sync: router_settings.redis_url: %s", err);
            return -1;
        }
    } else {
        snprintf(o->host, sizeof(o->host), "%s", c->redis_host);
        o->port = c->redis_port;
        if (c->redis_password != NULL)
            snprintf(o->password, sizeof(o->password), "%s", c->redis_password);
    }
    /* A command slower than a few ticks counts as Redis down. */
    o->command_timeout_ms = 5 * c->redis_sync_interval_ms > 500
                          ? 5 * c->redis_sync_interval_ms : 500;
    return 0;
}

static int setup(sync_cx *cx)
{
    llmr_redis_opts o;
    char err[256], name[256] = "";
    struct timeval tv;
    static const int sigs[3] = { SIGTERM, SIGQUIT, SIGINT };

    gethostname(name, sizeof(name) - 1);
    snprintf(cx->host, sizeof(cx->host), "%s:%s", name, cx->conf->shm_name);
    snprintf(cx->channel, sizeof(cx->channel), "%s:cooldown", cx->conf->redis_prefix);
    if ((cx->base = event_base_new()) == NULL
        || (cx->deps = calloc((size_t)cx->conf->ndeployments + 1, sizeof(*cx->deps))) == NULL)
        return -1;
    for (int i = 0; i < cx->conf->ndeployments; i++) {
        cx->deps[i].cx = cx;
        cx->deps[i].index = i;
    }
    for (int i = 0; i < 3; i++)
        if ((cx->sigs[i] = evsignal_new(cx->base, sigs[i], on_signal, cx)) == NULL
            || evsignal_add(cx->sigs[i], NULL) < 0)
            return -1;
    tv.tv_sec = cx->conf->redis_sync_interval_ms / 1000;
    tv.tv_usec = (cx->conf->redis_sync_interval_ms % 1000) * 1000;
    if ((cx->tick = event_new(cx->base, -1, EV_PERSIST, on_tick, cx)) == NULL
        || event_add(cx->tick, &tv) < 0 || redis_opts(cx->conf, &o) < 0)
        return -1;
    cx->cmd = llmr_redis_new(cx->base, &o, on_cmd_state, NULL, cx, err, sizeof(err));
    if (cx->cmd != NULL)
        cx->sub = llmr_redis_new(cx->base, &o, on_sub_state, on_push, cx, err, sizeof(err));
    explicit_bzero(&o, sizeof(o));
    if (cx->cmd == NULL || cx->sub == NULL) {
        llmr_error("sync: %s", err);
        return -1;
    }
    return 0;
}

static void teardown(sync_cx *cx)
{
    /* The connections first: their pending callbacks still use deps. */
    llmr_redis_free(cx->sub);
    llmr_redis_free(cx->cmd);
    for (int i = 0; i < 3; i++)
        if (cx->sigs[i] != NULL)
            event_free(cx->sigs[i]);
    if (cx->tick != NULL)
        event_free(cx->tick);
    free(cx->deps);
    if (cx->base != NULL)
        event_base_free(cx->base);
    free(cx);
}

int llmr_sync_main(const llmr_conf *conf, llmr_shm *shm, pid_t master)
{
    sync_cx *cx = calloc(1, sizeof(*cx));
    sigset_t none;
    int rc = 0;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (cx == NULL)
        return 1;
    cx->conf = conf;
    cx->shm = shm;
    cx->master = master;
    /* A respawned process keeps the state its predecessor left until its
     * own connection decides; a first one starts connecting. */
    if (atomic_load(&shm->seg->hdr.sync_state) == LLMR_SYNC_OFF)
        sync_set_state(cx, LLMR_SYNC_CONNECTING, "starting");
    if (setup(cx) < 0) {
        llmr_error("sync: cannot start (out of memory or events)");
        rc = 1;
    } else {
        llmr_debug("sync %d: host %s, %d deployment(s) every %d ms", (int)getpid(), cx->host,
                   conf->ndeployments, conf->redis_sync_interval_ms);
        event_base_dispatch(cx->base);
    }
    teardown(cx);
    return rc;
}
