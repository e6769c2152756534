/* The response cache's single-flight table: which keys are being fetched
 * from an upstream right now, and by which process.  Every worker reads and
 * claims entries with one CAS on one word, so a worker killed at any
 * instant leaves at worst an entry naming a dead pid, which the next
 * request for that key (or any key landing there) takes over. */
#include <errno.h>
#include <signal.h>

#include "shm.h"

#define OWNER(tag, pid) (((uint64_t)(tag) << 32) | (uint32_t)(pid))

static int alive(int32_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* A held entry whose leader is gone or past its deadline. */
static int stale(const llmr_cache_flight *f, uint64_t owner, int64_t now_ms)
{
    int64_t dl = atomic_load_explicit(&f->deadline_ms, memory_order_acquire);

    return (dl != 0 && dl < now_ms) || !alive((int32_t)(uint32_t)owner);
}

static int claim(llmr_cache_flight *f, uint64_t seen, uint64_t mine, int64_t deadline_ms)
{
    if (!atomic_compare_exchange_strong_explicit(&f->owner, &seen, mine, memory_order_acq_rel,
                                                 memory_order_acquire))
        return 0;
    atomic_store_explicit(&f->deadline_ms, deadline_ms, memory_order_release);
    return 1;
}

int llmr_cache_flight_join(llmr_shm *shm, uint32_t tag, int32_t pid, int64_t deadline_ms,
                           int64_t now_ms, int *idx)
{
    llmr_cache_flight *t = shm->seg->cache_flights;
    uint64_t mine = OWNER(tag, pid);
    int first_free = -1;

    /* A live leader of the key anywhere in its run wins over a free entry
     * earlier in the run (one it left may sit before it). */
    for (int i = 0; i < LLMR_CACHE_PROBE; i++) {
        int k = (int)((tag + (uint32_t)i) & (LLMR_CACHE_FLIGHTS - 1));
        uint64_t o = atomic_load_explicit(&t[k].owner, memory_order_acquire);
        if (o == 0 || ((uint32_t)(o >> 32) != tag && stale(&t[k], o, now_ms))) {
            if (first_free < 0)
                first_free = k;
            continue;
        }
        if ((uint32_t)(o >> 32) != tag)
            continue;
        if (!stale(&t[k], o, now_ms)) {
            *idx = k;
            return 0;
        }
        if (claim(&t[k], o, mine, deadline_ms)) {       /* a dead leader's */
            *idx = k;
            return 1;
        }
        i--;        /* someone changed it: look again */
    }
    for (int k = first_free; k >= 0;) {
        uint64_t o = atomic_load_explicit(&t[k].owner, memory_order_acquire);
        if ((o == 0 || ((uint32_t)(o >> 32) != tag && stale(&t[k], o, now_ms)))
            && claim(&t[k], o, mine, deadline_ms)) {
            *idx = k;
            return 1;
        }
        if (o != 0 && (uint32_t)(o >> 32) == tag) {     /* another claimed it first */
            *idx = k;
            return 0;
        }
        break;
    }
    return -1;
}

int llmr_cache_flight_held(llmr_shm *shm, int idx, uint32_t tag, int64_t now_ms)
{
    llmr_cache_flight *f = &shm->seg->cache_flights[idx & (LLMR_CACHE_FLIGHTS - 1)];
    uint64_t o = atomic_load_explicit(&f->owner, memory_order_acquire);

    return o != 0 && (uint32_t)(o >> 32) == tag && !stale(f, o, now_ms);
}

void llmr_cache_flight_release(llmr_shm *shm, int idx, uint32_t tag, int32_t pid)
{
    llmr_cache_flight *f = &shm->seg->cache_flights[idx & (LLMR_CACHE_FLIGHTS - 1)];
    uint64_t mine = OWNER(tag, pid);

    atomic_store_explicit(&f->deadline_ms, 0, memory_order_relaxed);
    atomic_compare_exchange_strong_explicit(&f->owner, &mine, 0, memory_order_acq_rel,
                                            memory_order_relaxed);
}
