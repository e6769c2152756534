/* Per-deployment counters.  Relaxed ordering is enough: each counter is an
 * independent statistic, and no reader infers one counter from another. */
#include "shm.h"

#include <time.h>

void llmr_counters_attempt_start(llmr_slot *s)
{
    atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->inflight, 1, memory_order_relaxed);
}

/* A cancelled attempt (the client left) says nothing about the deployment's
 * health, so it only gives back its in-flight count. */
void llmr_counters_attempt_end(llmr_slot *s, enum llmr_outcome outcome, int64_t latency_us)
{
    atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
    if (outcome == LLMR_OUTCOME_SUCCESS) {
        atomic_fetch_add_explicit(&s->successes, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->latency_us_total, latency_us, memory_order_relaxed);
    } else if (outcome == LLMR_OUTCOME_FAILURE) {
        atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed);
    }
}

void llmr_counters_add_usage(llmr_slot *s, int64_t prompt, int64_t completion)
{
    atomic_fetch_add_explicit(&s->prompt_tokens, prompt, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->completion_tokens, completion, memory_order_relaxed);
}

void llmr_ewma_add(_Atomic int64_t *v, int64_t x)
{
    int64_t old = atomic_load_explicit(v, memory_order_relaxed), next;

    do
        next = old == 0 ? (x > 0 ? x : 1) : old + (x - old) / 8;
    while (!atomic_compare_exchange_weak_explicit(v, &old, next, memory_order_relaxed,
                                                  memory_order_relaxed));
}

int64_t llmr_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint32_t llmr_window_add(_Atomic uint64_t *w, uint32_t minute, uint32_t x)
{
    uint64_t old = atomic_load_explicit(w, memory_order_relaxed), next;

    do {
        uint32_t count = (uint32_t)(old >> 32) == minute ? (uint32_t)old : 0;
        next = ((uint64_t)minute << 32) | (uint32_t)(count + x);
    } while (!atomic_compare_exchange_weak_explicit(w, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return (uint32_t)next;
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

int llmr_counters_fail(llmr_slot *s, int allowed_fails, int64_t cooldown_ms,
                       int64_t at_least_ms, int64_t now_ms)
{
    uint32_t n = llmr_window_add(&s->fail_window, (uint32_t)(now_ms / 60000), 1);

    if (cooldown_ms <= 0 || n <= (uint32_t)allowed_fails)
        return 0;
    if (llmr_cooldown_left_ms(s, now_ms) == 0)
        atomic_fetch_add_explicit(&s->cooldowns, 1, memory_order_relaxed);
    llmr_cooldown_extend(s, now_ms + (at_least_ms > cooldown_ms ? at_least_ms : cooldown_ms));
    return 1;
}
