/* The segment's side of multi-host sync (master/sync.c writes, workers
 * read): minute-stamped words and the fleet figures the strategies use. */
#include <stdio.h>

#include "shm.h"

uint32_t llmr_sync_word(const _Atomic uint64_t *w, uint32_t minute)
{
    return llmr_window_count(w, minute);
}

void llmr_sync_word_set(_Atomic uint64_t *w, uint32_t minute, uint32_t v)
{
    atomic_store_explicit(w, ((uint64_t)minute << 32) | v, memory_order_relaxed);
}

int64_t llmr_sync_fleet_count(const _Atomic uint64_t *others, uint32_t minute, int64_t local)
{
    return local + (int64_t)llmr_window_count(others, minute);
}

int64_t llmr_sync_fleet_latency(const _Atomic int64_t *fleet, int64_t local)
{
    int64_t f = atomic_load_explicit(fleet, memory_order_relaxed);

    return f > 0 ? f : local;
}

static const char *const sync_state_names[] = { "off", "connecting", "shared", "local" };

const char *llmr_sync_state_name(uint32_t st)
{
    return sync_state_names[st <= LLMR_SYNC_LOCAL ? st : 0];
}

void llmr_sync_json_header(FILE *f, const llmr_shm_header *h)
{
    fprintf(f, "\"sync\":{\"state\":\"%s\",\"pid\":%d,\"hosts\":%d,\"since_ms\":%lld,"
            "\"commands\":%lld,\"errors\":%lld},",
            llmr_sync_state_name(atomic_load(&h->sync_state)), (int)atomic_load(&h->sync_pid),
            (int)atomic_load(&h->sync_hosts), (long long)atomic_load(&h->sync_since_ms),
            (long long)atomic_load(&h->sync_commands), (long long)atomic_load(&h->sync_errors));
}

void llmr_sync_json_slot(FILE *f, const llmr_slot *s, int64_t now_ms)
{
    uint32_t m = llmr_minute_of(now_ms);

    fprintf(f, ",\"sync\":{\"rpm_granted\":%u,\"tpm_granted\":%u,\"rpm_handed_back\":%u,"
            "\"tpm_handed_back\":%u,\"parallel_granted\":%lld,\"leases\":%lld,"
            "\"fleet_rpm_others\":%u,\"fleet_tpm_others\":%u,\"fleet_latency_ms\":%.1f}",
            llmr_sync_word(&s->rpm_grant[m & 1], m), llmr_sync_word(&s->tpm_grant[m & 1], m),
            llmr_sync_word(&s->rpm_back, m), llmr_sync_word(&s->tpm_back, m),
            (long long)atomic_load_explicit(&s->par_grant, memory_order_relaxed),
            (long long)atomic_load_explicit(&s->leases, memory_order_relaxed),
            llmr_sync_word(&s->fleet_rpm, m), llmr_sync_word(&s->fleet_tpm, m),
            (double)atomic_load_explicit(&s->fleet_latency_ewma_us, memory_order_relaxed)
                / 1000.0);
}
