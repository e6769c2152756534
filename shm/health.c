/* The health prober's findings in a slot.  The error text lives in atomic
 * words bracketed by a generation counter (odd while written): the prober,
 * the only writer, bumps it before and after, and a reader retries while
 * it changed under it.  A prober killed mid-write leaves the counter odd:
 * readers then give up after a few tries and show no error, and the next
 * prober's write makes it even again. */
#include <string.h>

#include "shm.h"

#define READ_TRIES 8

void llmr_health_write(llmr_slot *s, int healthy, int64_t latency_us, int64_t now_ms,
                       const char *error)
{
    char buf[LLMR_HEALTH_ERR_WORDS * 8];
    uint32_t g = atomic_load_explicit(&s->health_err_gen, memory_order_relaxed);

    memset(buf, 0, sizeof(buf));
    if (error != NULL)
        strncpy(buf, error, sizeof(buf) - 1);
    atomic_store_explicit(&s->health_err_gen, g | 1u, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (int i = 0; i < LLMR_HEALTH_ERR_WORDS; i++) {
        uint64_t w;
        memcpy(&w, buf + 8 * i, 8);
        atomic_store_explicit(&s->health_err[i], w, memory_order_relaxed);
    }
    atomic_store_explicit(&s->health_err_gen, (g | 1u) + 1u, memory_order_release);
    atomic_store_explicit(&s->health_latency_us, latency_us, memory_order_relaxed);
    atomic_store_explicit(&s->health_checked_ms, now_ms, memory_order_relaxed);
    atomic_store_explicit(&s->health, healthy ? LLMR_SLOT_HEALTHY : LLMR_SLOT_UNHEALTHY,
                          memory_order_relaxed);
}

void llmr_health_read(const llmr_slot *s, llmr_health_view *v)
{
    v->state = atomic_load_explicit(&s->health, memory_order_relaxed);
    v->latency_us = atomic_load_explicit(&s->health_latency_us, memory_order_relaxed);
    v->checked_ms = atomic_load_explicit(&s->health_checked_ms, memory_order_relaxed);
    for (int t = 0; t < READ_TRIES; t++) {
        uint32_t g0 = atomic_load_explicit(&s->health_err_gen, memory_order_acquire), g1;
        if (g0 & 1u)
            continue;
        for (int i = 0; i < LLMR_HEALTH_ERR_WORDS; i++) {
            uint64_t w = atomic_load_explicit(&s->health_err[i], memory_order_relaxed);
            memcpy(v->error + 8 * i, &w, 8);
        }
        atomic_thread_fence(memory_order_acquire);
        g1 = atomic_load_explicit(&s->health_err_gen, memory_order_relaxed);
        if (g0 == g1) {
            v->error[sizeof(v->error) - 1] = '\0';
            return;
        }
    }
    v->error[0] = '\0';
}
