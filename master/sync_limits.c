/* The leases (README "Several hosts (Redis)"): for each deployment with an
 * rpm or tpm, this host's grant of the minute lives in its slot, and the
 * workers spend it exactly as they spend a local limit.  Each tick the
 * sync process decides with llmr_lease_plan() whether to refill or hand
 * back, and one EVAL of LEASE_LUA moves the host's claim in Redis, where
 * the hash <prefix>:<rpm|tpm>:<id>:<minute> holds every host's claim: no
 * host's claim grows past what the limit leaves the others, so all hosts
 * together never pass it. */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"
#include "sync_internal.h"

#define LEASE_TTL_MS 120000     /* a minute's hash outlives the minute */
#define TOPUP_TICKS 5           /* a host below its share asks this often */

/* KEYS[1] the minute's hash; ARGV host, limit, floor, want, ttl, and 1
 * for a hand-back (only a hand-back lowers a claim: an answer lost to a
 * timeout, or two sync processes overlapping at a reload, then never make
 * Redis count less than the host may spend).  The same sum as
 * llmr_lease_grant(). */
static const char LEASE_LUA[] =
    "local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')\n"
    "local total = 0\n"
    "for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end\n"
    "local limit, floor, want = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "if ARGV[6] ~= '1' and cur > floor then floor = cur end\n"
    "if want < floor then want = floor end\n"
    "local room = limit - (total - cur) - floor\n"
    "local add = want - floor\n"
    "if add > room then add = room end\n"
    "if add < 0 then add = 0 end\n"
    "local claim = floor + add\n"
    "redis.call('HSET', KEYS[1], ARGV[1], claim)\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "return {claim, total - cur + claim}\n";

static const char *const kind_name[SYNC_KINDS] = { "rpm", "tpm" };

static long limit_of(const llmr_deployment *d, int kind)
{
    return kind == SYNC_RPM ? d->rpm : d->tpm;
}

static _Atomic uint64_t *grant_word(llmr_slot *s, int kind, uint32_t minute)
{
    return kind == SYNC_RPM ? &s->rpm_grant[minute & 1] : &s->tpm_grant[minute & 1];
}

static _Atomic uint64_t *window_of(llmr_slot *s, int kind)
{
    return kind == SYNC_RPM ? &s->rpm_window : &s->tpm_window;
}

static _Atomic uint64_t *back_of(llmr_slot *s, int kind)
{
    return kind == SYNC_RPM ? &s->rpm_back : &s->tpm_back;
}

static int hosts_seen(const sync_cx *cx)
{
    int h = atomic_load(&cx->shm->seg->hdr.sync_hosts);

    return h > 1 ? h : 1;
}

static void view_of(sync_cx *cx, int dep, int kind, uint32_t minute, llmr_lease_view *v)
{
    llmr_slot *s = sync_slot(cx, dep);

    memset(v, 0, sizeof(*v));
    v->limit = limit_of(&cx->conf->deployments[dep], kind);
    v->granted = llmr_sync_word(grant_word(s, kind, minute), minute);
    v->used = llmr_window_count(window_of(s, kind), minute);
    v->back = llmr_sync_word(back_of(s, kind), minute);
    v->rate = cx->deps[dep].rate[kind];
    v->hosts = hosts_seen(cx);
    v->interval_ms = cx->conf->redis_sync_interval_ms;
}

static void lease_reply(llmr_redis *r, redisReply *y, void *arg)
{
    sync_op *op = arg;
    sync_cx *cx = op->cx;
    llmr_slot *s;
    _Atomic uint64_t *g;
    uint32_t grant, cur;

    (void)r;
    op->inflight = 0;
    if (y == NULL || y->type != REDIS_REPLY_ARRAY || y->elements < 1
        || y->element[0]->type != REDIS_REPLY_INTEGER) {
        if (y != NULL && y->type == REDIS_REPLY_ERROR)
            llmr_warn("sync: lease script failed: %.200s", y->str);
        sync_count(cx, 0);
        return;
    }
    s = sync_slot(cx, op->dep);
    g = grant_word(s, op->kind, op->minute);
    grant = llmr_lease_grant_of((long)y->element[0]->integer,
                                llmr_sync_word(back_of(s, op->kind), op->minute));
    cur = llmr_sync_word(g, op->minute);
    /* Only this process writes grants, and the floor it sent covers all
     * the workers could spend: the answer never takes back a grant. */
    if (grant > cur)
        llmr_sync_word_set(g, op->minute, grant);
    atomic_fetch_add_explicit(&s->leases, 1, memory_order_relaxed);
}

/* Takes `n` unused units out of the window, with the workers' CAS, so that
 * no worker can spend them once Redis counts them as another host's. */
static int reserve_back(llmr_slot *s, int kind, uint32_t minute, uint32_t granted, long n)
{
    _Atomic uint64_t *b = back_of(s, kind);

    if (llmr_window_try_add(window_of(s, kind), minute, (uint32_t)n, granted) < 0)
        return -1;
    llmr_sync_word_set(b, minute, llmr_sync_word(b, minute) + (uint32_t)n);
    return 0;
}

static void lease_one(sync_cx *cx, int dep, int kind, uint32_t minute)
{
    const llmr_deployment *d = &cx->conf->deployments[dep];
    sync_op *op = &cx->deps[dep].ops[kind][minute & 1];
    llmr_lease_view v;
    llmr_lease_ask ask;
    int plan;
    char key[LLMR_ID_MAX + 192], limit[24], floor[24], want[24], ttl[24];

    if (op->inflight)
        return;
    view_of(cx, dep, kind, minute, &v);
    if (cx->draining) {
        long rem = v.granted > v.used ? (long)v.granted - (long)v.used : 0;
        if (rem == 0)
            return;
        ask.give_back = rem;
        ask.floor = ask.want = llmr_lease_claim(&v) - rem;
    } else if ((plan = llmr_lease_plan(&v, &ask)) == 2) {
        if (cx->ticks % TOPUP_TICKS != 0 && !cx->deps[dep].resync[kind])
            return;             /* not urgent: every TOPUP_TICKS ticks */
    } else if (plan == 0) {
        if (!cx->deps[dep].resync[kind] || v.granted == 0)
            return;
        ask.give_back = 0;      /* a restarted Redis learns what we hold */
        ask.floor = ask.want = llmr_lease_claim(&v);
    }
    cx->deps[dep].resync[kind] = 0;
    if (ask.give_back > 0
        && reserve_back(sync_slot(cx, dep), kind, minute, v.granted, ask.give_back) < 0)
        return;                 /* the workers spent it meanwhile: next tick */
    snprintf(key, sizeof(key), "%s:%s:%s:%u", cx->conf->redis_prefix, kind_name[kind], d->id,
             minute);
    snprintf(limit, sizeof(limit), "%ld", v.limit);
    snprintf(floor, sizeof(floor), "%ld", ask.floor);
    snprintf(want, sizeof(want), "%ld", ask.want);
    snprintf(ttl, sizeof(ttl), "%d", LEASE_TTL_MS);
    op->cx = cx;
    op->dep = dep;
    op->kind = kind;
    op->minute = minute;
    if (llmr_redis_cmd(cx->cmd, lease_reply, op, "EVAL %s 1 %s %s %s %s %s %s %s", LEASE_LUA,
                       key, cx->host, limit, floor, want, ttl,
                       ask.give_back > 0 ? "1" : "0") < 0) {
        sync_count(cx, 0);      /* what was reserved stays out: never over */
        return;
    }
    op->inflight = 1;
    sync_count(cx, 1);
}

/* Units per second this host spent, smoothed; a host that ran out counts
 * as wanting more than it spent. */
static void update_rates(sync_cx *cx, int dep, uint32_t minute)
{
    sync_dep *sd = &cx->deps[dep];
    llmr_slot *s = sync_slot(cx, dep);
    double secs = cx->conf->redis_sync_interval_ms / 1000.0;

    for (int k = 0; k < SYNC_KINDS; k++) {
        uint32_t used = llmr_window_count(window_of(s, k), minute);
        uint32_t granted = llmr_sync_word(grant_word(s, k, minute), minute);
        uint32_t prev = sd->last_minute == minute ? sd->last_used[k] : 0;
        double now_rate = used > prev ? (double)(used - prev) / secs : 0;

        sd->rate[k] = 0.7 * sd->rate[k] + 0.3 * now_rate;
        if (granted > 0 && used >= granted)
            sd->rate[k] = sd->rate[k] * 2 > 1 / secs ? sd->rate[k] * 2 : 1 / secs;
        sd->last_used[k] = used;
    }
    sd->last_minute = minute;
}

static void parallel_share(sync_cx *cx, int dep)
{
    const llmr_deployment *d = &cx->conf->deployments[dep];

    if (d->max_parallel_requests > 0)
        atomic_store_explicit(&sync_slot(cx, dep)->par_grant,
                              llmr_lease_share(d->max_parallel_requests, hosts_seen(cx)),
                              memory_order_relaxed);
}

void sync_limits_round(sync_cx *cx, int64_t now_ms)
{
    uint32_t minute = llmr_minute_of(now_ms);
    /* Leases the next minute in the last ticks of this one, so that
     * admission never finds the new minute without a grant. */
    int prefetch = now_ms % 60000 >= 60000 - 3 * cx->conf->redis_sync_interval_ms;

    for (int i = 0; i < cx->conf->ndeployments; i++) {
        if (cx->conf->deployments[i].slot < 0)
            continue;
        update_rates(cx, i, minute);
        parallel_share(cx, i);
        for (int k = 0; k < SYNC_KINDS; k++) {
            if (limit_of(&cx->conf->deployments[i], k) <= 0)
                continue;
            lease_one(cx, i, k, minute);
            if (prefetch && !cx->draining)
                lease_one(cx, i, k, minute + 1);
        }
    }
}

void sync_limits_fallback(sync_cx *cx, int64_t now_ms)
{
    uint32_t minute = llmr_minute_of(now_ms);

    for (int i = 0; i < cx->conf->ndeployments; i++) {
        if (cx->conf->deployments[i].slot < 0)
            continue;
        update_rates(cx, i, minute);
        parallel_share(cx, i);
        for (int k = 0; k < SYNC_KINDS; k++) {
            for (uint32_t m = minute; m <= minute + 1; m++) {
                llmr_lease_view v;
                if (limit_of(&cx->conf->deployments[i], k) <= 0)
                    continue;
                view_of(cx, i, k, m, &v);
                llmr_sync_word_set(grant_word(sync_slot(cx, i), k, m), m,
                                   llmr_lease_fallback(&v));
            }
        }
    }
}

int sync_limits_pending(const sync_cx *cx)
{
    int n = 0;

    for (int i = 0; i < cx->conf->ndeployments; i++)
        for (int k = 0; k < SYNC_KINDS; k++)
            n += cx->deps[i].ops[k][0].inflight + cx->deps[i].ops[k][1].inflight;
    return n;
}
