/* Cooldowns and fleet figures shared through Redis.
 *
 * A cooldown a worker of this host set (its deadline in the slot grew) is
 * published on <prefix>:cooldown as "<deadline ms> <id>" and kept in
 * <prefix>:cooldown:<id> with a PX to its end, so that a host that
 * (re)connects learns the running ones; a host that hears one raises its
 * slot's deadline, never lowers it.  Every STATS_TICKS ticks each host
 * writes its figures of each deployment into <prefix>:stats:<id> (a hash,
 * a field per host) and reads the others', for usage- and latency-based
 * routing to see the whole fleet. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"
#include "sync_internal.h"

#define STATS_STALE_MS 3000     /* another host's figures older than this are ignored */

/* KEYS[1] the deployment's cooldown key; ARGV deadline, ttl, channel, msg. */
static const char COOLDOWN_LUA[] =
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end\n"
    "return redis.call('PUBLISH', ARGV[3], ARGV[4])\n";

/* KEYS[1] the deployment's stats hash; ARGV host, figures, ttl. */
static const char STATS_LUA[] =
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "return redis.call('HGETALL', KEYS[1])\n";

static int find_dep(const sync_cx *cx, const char *id, size_t len)
{
    for (int i = 0; i < cx->conf->ndeployments; i++)
        if (strlen(cx->conf->deployments[i].id) == len
            && memcmp(cx->conf->deployments[i].id, id, len) == 0
            && cx->conf->deployments[i].slot >= 0)
            return i;
    return -1;
}

static void counted_reply(llmr_redis *r, redisReply *y, void *arg)
{
    (void)r;
    if (y == NULL || y->type == REDIS_REPLY_ERROR)
        sync_count(arg, 0);
}

void sync_cooldowns_publish(sync_cx *cx, int64_t now_ms)
{
    for (int i = 0; i < cx->conf->ndeployments; i++) {
        const llmr_deployment *d = &cx->conf->deployments[i];
        int64_t until;
        char key[LLMR_ID_MAX + 160], dl[24], ttl[24], msg[LLMR_ID_MAX + 32];

        if (d->slot < 0)
            continue;
        until = atomic_load_explicit(&sync_slot(cx, i)->cooldown_until_ms,
                                     memory_order_relaxed);
        if (until <= now_ms || until <= cx->deps[i].published_cd)
            continue;
        snprintf(key, sizeof(key), "%s:cooldown:%s", cx->conf->redis_prefix, d->id);
        snprintf(dl, sizeof(dl), "%" PRId64, until);
        snprintf(ttl, sizeof(ttl), "%" PRId64, until - now_ms);
        snprintf(msg, sizeof(msg), "%" PRId64 " %s", until, d->id);
        if (llmr_redis_cmd(cx->cmd, counted_reply, cx, "EVAL %s 1 %s %s %s %s %s",
                           COOLDOWN_LUA, key, dl, ttl, cx->channel, msg) < 0) {
            sync_count(cx, 0);
            return;             /* down: published again once up */
        }
        sync_count(cx, 1);
        cx->deps[i].published_cd = until;
    }
}

/* Raises dep's deadline to the fleet's; remembers it as published so that
 * it is not sent back. */
static void learn(sync_cx *cx, int dep, int64_t until)
{
    llmr_slot *s = sync_slot(cx, dep);
    int64_t now = llmr_wall_ms();
    int64_t cap = now + (int64_t)(cx->conf->max_cooldown_time * 1000);

    if (until <= now || cx->conf->cooldown_time <= 0)
        return;
    if (until > cap)            /* no host's word outlasts this config's cap */
        until = cap;
    if (llmr_cooldown_left_ms(s, now) == 0)
        atomic_fetch_add_explicit(&s->cooldowns, 1, memory_order_relaxed);
    llmr_cooldown_extend(s, until);
    if (until > cx->deps[dep].published_cd)
        cx->deps[dep].published_cd = until;
}

void sync_cooldown_message(sync_cx *cx, const char *msg, size_t len)
{
    char num[24];
    size_t n = 0;
    int dep;

    while (n < len && n < sizeof(num) - 1 && msg[n] >= '0' && msg[n] <= '9') {
        num[n] = msg[n];
        n++;
    }
    num[n] = '\0';
    if (n == 0 || n >= len || msg[n] != ' ')
        return;                 /* not ours: ignored */
    if ((dep = find_dep(cx, msg + n + 1, len - n - 1)) >= 0)
        learn(cx, dep, strtoll(num, NULL, 10));
}

static void mget_reply(llmr_redis *r, redisReply *y, void *arg)
{
    sync_cx *cx = arg;
    int k = 0;

    (void)r;
    if (y == NULL || y->type != REDIS_REPLY_ARRAY) {
        sync_count(cx, 0);
        return;
    }
    for (int i = 0; i < cx->conf->ndeployments && (size_t)k < y->elements; i++) {
        redisReply *e;
        if (cx->conf->deployments[i].slot < 0)
            continue;
        e = y->element[k++];
        if (e->type == REDIS_REPLY_STRING)
            learn(cx, i, strtoll(e->str, NULL, 10));
    }
}

/* On (re)connect: one MGET of every deployment's running cooldown. */
void sync_cooldowns_learn(sync_cx *cx)
{
    int n = 0, argc = 0;
    const char **argv;
    size_t *lens;
    char (*keys)[LLMR_ID_MAX + 160];

    for (int i = 0; i < cx->conf->ndeployments; i++)
        n += cx->conf->deployments[i].slot >= 0;
    if (n == 0)
        return;
    argv = calloc((size_t)n + 1, sizeof(*argv));
    lens = calloc((size_t)n + 1, sizeof(*lens));
    keys = calloc((size_t)n, sizeof(*keys));
    if (argv != NULL && lens != NULL && keys != NULL) {
        argv[argc] = "MGET";
        lens[argc++] = 4;
        for (int i = 0; i < cx->conf->ndeployments; i++) {
            if (cx->conf->deployments[i].slot < 0)
                continue;
            snprintf(keys[argc - 1], sizeof(keys[0]), "%s:cooldown:%s",
                     cx->conf->redis_prefix, cx->conf->deployments[i].id);
            argv[argc] = keys[argc - 1];
            lens[argc] = strlen(argv[argc]);
            argc++;
        }
        sync_count(cx, llmr_redis_cmd_argv(cx->cmd, mget_reply, cx, argc, argv, lens) == 0);
    }
    free(argv);
    free(lens);
    free(keys);
}

/* ---- fleet figures ------------------------------------------------------ */

typedef struct figures {
    int64_t stamp_ms, tpm, rpm, latency_us, ttft_us, inflight;
    uint32_t minute;
} figures;

static int bounded(int64_t v)
{
    return v >= 0 && v <= UINT32_MAX;
}

static int parse_figures(const char *s, figures *f)
{
    unsigned minute;

    if (sscanf(s, "%" SCNd64 " %u %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64,
               &f->stamp_ms, &minute, &f->tpm, &f->rpm, &f->latency_us, &f->ttft_us,
               &f->inflight) != 7)
        return -1;
    f->minute = minute;
    /* Another host's words: bounded, so that no sum of them can overflow. */
    return f->stamp_ms >= 0 && bounded(f->tpm) && bounded(f->rpm) && bounded(f->latency_us)
           && bounded(f->ttft_us) && bounded(f->inflight) ? 0 : -1;
}

static void merge(sync_cx *cx, int dep, const redisReply *y)
{
    llmr_slot *s = sync_slot(cx, dep);
    int64_t now = llmr_wall_ms(), tpm = 0, rpm = 0, lat = 0, ttft = 0, infl = 0;
    int nlat = 0, nttft = 0;
    uint32_t minute = llmr_minute_of(now);

    for (size_t k = 0; k + 1 < y->elements; k += 2) {
        const redisReply *h = y->element[k], *v = y->element[k + 1];
        figures f;
        if (h->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING
            || parse_figures(v->str, &f) < 0 || now - f.stamp_ms > STATS_STALE_MS)
            continue;
        if (f.latency_us > 0)
            lat += f.latency_us, nlat++;
        if (f.ttft_us > 0)
            ttft += f.ttft_us, nttft++;
        if (strcmp(h->str, cx->host) == 0)
            continue;           /* the others' counts; this host's are live */
        if (f.minute == minute)
            tpm += f.tpm, rpm += f.rpm;
        infl += f.inflight;
    }
    llmr_sync_word_set(&s->fleet_tpm, minute, (uint32_t)(tpm < UINT32_MAX ? tpm : UINT32_MAX));
    llmr_sync_word_set(&s->fleet_rpm, minute, (uint32_t)(rpm < UINT32_MAX ? rpm : UINT32_MAX));
    atomic_store_explicit(&s->fleet_latency_ewma_us, nlat ? lat / nlat : 0, memory_order_relaxed);
    atomic_store_explicit(&s->fleet_ttft_ewma_us, nttft ? ttft / nttft : 0, memory_order_relaxed);
    atomic_store_explicit(&s->fleet_inflight, infl, memory_order_relaxed);
}

static void stats_reply(llmr_redis *r, redisReply *y, void *arg)
{
    sync_dep *sd = arg;

    (void)r;
    sd->stats_inflight = 0;
    if (y == NULL || y->type != REDIS_REPLY_ARRAY) {
        sync_count(sd->cx, 0);
        return;
    }
    merge(sd->cx, sd->index, y);
}

/* A window's count without the units taken out to hand back. */
static uint32_t spent(const _Atomic uint64_t *w, const _Atomic uint64_t *back, uint32_t minute)
{
    uint32_t n = llmr_window_count(w, minute), b = llmr_sync_word(back, minute);

    return n > b ? n - b : 0;
}

void sync_stats_round(sync_cx *cx, int64_t now_ms)
{
    uint32_t minute = llmr_minute_of(now_ms);

    for (int i = 0; i < cx->conf->ndeployments; i++) {
        const llmr_deployment *d = &cx->conf->deployments[i];
        sync_dep *sd = &cx->deps[i];
        llmr_slot *s;
        char key[LLMR_ID_MAX + 160], fig[200], ttl[24];

        if (d->slot < 0 || sd->stats_inflight)
            continue;
        s = sync_slot(cx, i);
        snprintf(key, sizeof(key), "%s:stats:%s", cx->conf->redis_prefix, d->id);
        snprintf(fig, sizeof(fig), "%" PRId64 " %u %u %u %" PRId64 " %" PRId64 " %" PRId64,
                 now_ms, minute, spent(&s->tpm_window, &s->tpm_back, minute),
                 spent(&s->rpm_window, &s->rpm_back, minute),
                 (int64_t)atomic_load_explicit(&s->latency_ewma_us, memory_order_relaxed),
                 (int64_t)atomic_load_explicit(&s->ttft_ewma_us, memory_order_relaxed),
                 (int64_t)atomic_load_explicit(&s->inflight, memory_order_relaxed));
        snprintf(ttl, sizeof(ttl), "%d", STATS_STALE_MS * 2);
        if (llmr_redis_cmd(cx->cmd, stats_reply, sd, "EVAL %s 1 %s %s %s %s", STATS_LUA, key,
                           cx->host, fig, ttl) < 0) {
            sync_count(cx, 0);
            return;
        }
        sync_count(cx, 1);
        sd->stats_inflight = 1;
    }
}
