/* Per-deployment counters.  Relaxed ordering is enough: each counter is an
 * independent statistic, and no reader infers one counter from another. */
#include "shm.h"

#include <stdint.h>

uint32_t llmr_window_count(const _Atomic uint64_t *w, uint32_t minute)
{
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed);

    return (uint32_t)(v >> 32) == minute ? (uint32_t)v : 0;
}

/* Adds x to the window of `minute` (rolling it over when it holds an older
 * minute) unless that passes limit (0 = no limit).  Returns the new count,
 * or -1 when refused. */
static int64_t window_add(_Atomic uint64_t *w, uint32_t minute, uint32_t x, long limit)
{
    uint64_t old = atomic_load_explicit(w, memory_order_relaxed), next;

    do {
        uint32_t count = (uint32_t)(old >> 32) == minute ? (uint32_t)old : 0;
        if (limit > 0 && (long)count + (long)x > limit)
            return -1;
        next = ((uint64_t)minute << 32) | (uint32_t)(count + x);
    } while (!atomic_compare_exchange_weak_explicit(w, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return (uint32_t)next;
}

/* Adds a signed delta to the window of `minute`, never below zero; a window
 * that has rolled over is left alone. */
static void window_adjust(_Atomic uint64_t *w, uint32_t minute, int64_t delta)
{
    uint64_t old = atomic_load_explicit(w, memory_order_relaxed), next;

    do {
        int64_t count;
        if ((uint32_t)(old >> 32) != minute)
            return;
        count = (int64_t)(uint32_t)old + delta;
        count = count < 0 ? 0 : count > UINT32_MAX ? UINT32_MAX : count;
        next = ((uint64_t)minute << 32) | (uint64_t)count;
    } while (!atomic_compare_exchange_weak_explicit(w, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

static int inflight_try_take(llmr_slot *s, int max)
{
    int64_t old = atomic_load_explicit(&s->inflight, memory_order_relaxed);

    do {
        if (max > 0 && old >= max)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(&s->inflight, &old, old + 1,
                                                    memory_order_relaxed,
                                                    memory_order_relaxed));
    return 1;
}

static uint32_t tokens32(int64_t tokens)
{
    return tokens < 0 ? 0 : tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)tokens;
}

long llmr_counters_grant(const _Atomic uint64_t grant[2], uint32_t minute, long limit,
                         int sync)
{
    uint64_t v;

    if (!sync || limit <= 0)
        return limit;
    v = atomic_load_explicit(&grant[minute & 1], memory_order_relaxed);
    if ((uint32_t)(v >> 32) != minute || (uint32_t)v == 0)
        return -1;
    return (long)(uint32_t)v;
}

/* The limits admission applies: with sync on, the grants of this host
 * (master/sync.c) replace the deployment's own; -1 refuses everything. */
static void effective(const llmr_slot *s, const llmr_limits *l, uint32_t minute,
                      long *rpm, long *tpm, int *par)
{
    *rpm = llmr_counters_grant(s->rpm_grant, minute, l->rpm, l->sync);
    *tpm = llmr_counters_grant(s->tpm_grant, minute, l->tpm, l->sync);
    *par = l->max_parallel;
    if (l->sync && *par > 0) {
        int64_t g = atomic_load_explicit(&s->par_grant, memory_order_relaxed);
        *par = g <= 0 ? -1 : g < *par ? (int)g : *par;
    }
}

enum llmr_limit llmr_counters_admit(llmr_slot *s, const llmr_limits *l, int wslot,
                                    int64_t tokens, int64_t now_ms)
{
    uint32_t minute = llmr_minute_of(now_ms);
    long rpm, tpm;
    int par;

    effective(s, l, minute, &rpm, &tpm, &par);
    if (par < 0 || !inflight_try_take(s, par))
        return LLMR_LIMIT_PARALLEL;
    if (rpm < 0 || window_add(&s->rpm_window, minute, 1, rpm) < 0) {
        atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
        return LLMR_LIMIT_RPM;
    }
    if (tpm < 0 || window_add(&s->tpm_window, minute, tokens32(tokens), tpm) < 0) {
        window_adjust(&s->rpm_window, minute, -1);
        atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
        return LLMR_LIMIT_TPM;
    }
    if (wslot >= 0 && wslot < LLMR_WORKER_SLOTS)
        atomic_fetch_add_explicit(&s->inflight_by_worker[wslot], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
    return LLMR_LIMIT_NONE;
}

void llmr_counters_unadmit(llmr_slot *s, int wslot, int64_t tokens, int64_t now_ms)
{
    uint32_t minute = llmr_minute_of(now_ms);

    window_adjust(&s->rpm_window, minute, -1);
    window_adjust(&s->tpm_window, minute, -(int64_t)tokens32(tokens));
    atomic_fetch_sub_explicit(&s->requests, 1, memory_order_relaxed);
    llmr_counters_attempt_end(s, wslot, LLMR_OUTCOME_CANCELLED, 0);
}

enum llmr_limit llmr_counters_check(const llmr_slot *s, const llmr_limits *l,
                                    int64_t tokens, int64_t now_ms)
{
    uint32_t minute = llmr_minute_of(now_ms);
    long rpm, tpm;
    int par;

    effective(s, l, minute, &rpm, &tpm, &par);
    if (par < 0 || (par > 0 && atomic_load_explicit(&s->inflight, memory_order_relaxed) >= par))
        return LLMR_LIMIT_PARALLEL;
    if (rpm < 0 || (rpm > 0 && (long)llmr_window_count(&s->rpm_window, minute) + 1 > rpm))
        return LLMR_LIMIT_RPM;
    if (tpm < 0 || (tpm > 0
        && (long)llmr_window_count(&s->tpm_window, minute) + (long)tokens32(tokens) > tpm))
        return LLMR_LIMIT_TPM;
    return LLMR_LIMIT_NONE;
}

void llmr_counters_tokens_used(llmr_slot *s, int64_t estimated, int64_t actual,
                               int64_t admitted_ms, int64_t now_ms)
{
    uint32_t then = llmr_minute_of(admitted_ms), now = llmr_minute_of(now_ms);

    if (then == now)
        window_adjust(&s->tpm_window, now, (int64_t)tokens32(actual) - tokens32(estimated));
    else    /* the admission's minute is over: the usage counts in this one */
        window_add(&s->tpm_window, now, tokens32(actual), 0);
}

/* A cancelled attempt (the client left) says nothing about the deployment's
 * health, so it only gives back its in-flight count. */
void llmr_counters_attempt_end(llmr_slot *s, int wslot, enum llmr_outcome outcome,
                               int64_t latency_us)
{
    atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
    if (wslot >= 0 && wslot < LLMR_WORKER_SLOTS)
        atomic_fetch_sub_explicit(&s->inflight_by_worker[wslot], 1, memory_order_relaxed);
    if (outcome == LLMR_OUTCOME_SUCCESS) {
        atomic_fetch_add_explicit(&s->successes, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->latency_us_total, latency_us, memory_order_relaxed);
    } else if (outcome == LLMR_OUTCOME_FAILURE) {
        atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed);
    }
}

void llmr_counters_reap_worker(llmr_shm *shm, int wslot)
{
    if (wslot < 0 || wslot >= LLMR_WORKER_SLOTS)
        return;
    for (int i = 0; i < LLMR_SHM_SLOTS; i++) {
        llmr_slot *s = &shm->seg->slots[i];
        int32_t n = atomic_exchange_explicit(&s->inflight_by_worker[wslot], 0,
                                             memory_order_relaxed);
        if (n != 0)
            atomic_fetch_sub_explicit(&s->inflight, n, memory_order_relaxed);
    }
}

/* A usage count past 2^31 is not real: keep the totals meaningful. */
static int64_t usage_clamp(int64_t n)
{
    return n < 0 ? 0 : n > ((int64_t)1 << 31) ? (int64_t)1 << 31 : n;
}

void llmr_counters_add_usage(llmr_slot *s, int64_t prompt, int64_t completion)
{
    atomic_fetch_add_explicit(&s->prompt_tokens, usage_clamp(prompt), memory_order_relaxed);
    atomic_fetch_add_explicit(&s->completion_tokens, usage_clamp(completion),
                              memory_order_relaxed);
}

void llmr_ewma_add(_Atomic int64_t *v, int64_t x)
{
    int64_t old = atomic_load_explicit(v, memory_order_relaxed), next;

    do
        next = old == 0 ? (x > 0 ? x : 1) : old + (x - old) / 8;
    while (!atomic_compare_exchange_weak_explicit(v, &old, next, memory_order_relaxed,
                                                  memory_order_relaxed));
}

uint32_t llmr_window_add(_Atomic uint64_t *w, uint32_t minute, uint32_t x)
{
    return (uint32_t)window_add(w, minute, x, 0);
}

int llmr_window_try_add(_Atomic uint64_t *w, uint32_t minute, uint32_t x, long limit)
{
    return window_add(w, minute, x, limit > 0 ? limit : 0) < 0 ? -1 : 0;
}

void llmr_cooldown_extend(llmr_slot *s, int64_t until_ms)
{
    int64_t old = atomic_load_explicit(&s->cooldown_until_ms, memory_order_relaxed);

    while (old < until_ms
           && !atomic_compare_exchange_weak_explicit(&s->cooldown_until_ms, &old, until_ms,
                                                     memory_order_relaxed,
                                                     memory_order_relaxed))
        ;
}

void llmr_cooldown_clamp(llmr_slot *s, int64_t until_ms)
{
    int64_t old = atomic_load_explicit(&s->cooldown_until_ms, memory_order_relaxed);

    while (old > until_ms
           && !atomic_compare_exchange_weak_explicit(&s->cooldown_until_ms, &old, until_ms,
                                                     memory_order_relaxed,
                                                     memory_order_relaxed))
        ;
}

int llmr_counters_fail(llmr_slot *s, int allowed_fails, int64_t cooldown_ms,
                       int64_t at_least_ms, int64_t now_ms)
{
    uint32_t n = llmr_window_add(&s->fail_window, llmr_minute_of(now_ms), 1);

    if (cooldown_ms <= 0 || n <= (uint32_t)allowed_fails)
        return 0;
    if (llmr_cooldown_left_ms(s, now_ms) == 0)
        atomic_fetch_add_explicit(&s->cooldowns, 1, memory_order_relaxed);
    llmr_cooldown_extend(s, now_ms + (at_least_ms > cooldown_ms ? at_least_ms : cooldown_ms));
    return 1;
}

/* 5 ms to 120 s: the span between a cached answer and a long generation. */
const int64_t llmr_hist_bounds_us[LLMR_HIST_BOUNDS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
    5000000, 10000000, 20000000, 30000000, 60000000, 120000000
};

void llmr_hist_add(llmr_hist *h, int64_t us)
{
    int b = 0;

    if (us < 0)
        us = 0;
    while (b < LLMR_HIST_BOUNDS && us > llmr_hist_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void llmr_counters_fail_class(llmr_slot *s, int cls)
{
    if (cls < 0 || cls >= LLMR_FAIL_CLASSES)
        cls = LLMR_FAIL_CLASSES - 1;
    atomic_fetch_add_explicit(&s->fail_by_class[cls], 1, memory_order_relaxed);
}

void llmr_shm_count_respawn(llmr_shm *shm)
{
    atomic_fetch_add_explicit(&shm->seg->hdr.respawns, 1, memory_order_relaxed);
}
