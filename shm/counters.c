/* Per-deployment counters.  Relaxed ordering is enough: each counter is an
 * independent statistic, and no reader infers one counter from another. */
#include "shm.h"

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
