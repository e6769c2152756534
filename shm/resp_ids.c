/* The Responses id table: a fixed open-addressing table in the shared
 * segment, so that GET /v1/responses/{id} on any worker, of any
 * generation, finds the deployment that created the response.  Each entry
 * is one atomic word (tag and slot together): no lock, no torn entry, and
 * a worker killed mid-write leaves a whole old or a whole new entry. */
#include "shm.h"

#define TAG_MASK (~(uint64_t)0xffff)

static uint64_t tag_of(uint64_t h)
{
    uint64_t t = h & TAG_MASK;

    return t != 0 ? t : (uint64_t)1 << 16;     /* 0 marks an empty entry */
}

void llmr_shm_resp_put(llmr_shm *shm, uint64_t h, int slot)
{
    _Atomic uint64_t *tab = shm->seg->resp_ids;
    uint64_t tag = tag_of(h), word = tag | (uint64_t)(slot + 1);
    size_t base = (size_t)h;

    if (slot < 0 || slot >= LLMR_SHM_SLOTS)
        return;
    for (size_t i = 0; i < LLMR_RESP_PROBE; i++) {
        _Atomic uint64_t *e = &tab[(base + i) & (LLMR_RESP_IDS - 1)];
        uint64_t old = atomic_load_explicit(e, memory_order_relaxed);
        while (old == 0 || (old & TAG_MASK) == tag) {
            if (atomic_compare_exchange_weak(e, &old, word))
                return;
        }
    }
    /* Every entry is taken: the id replaces one chosen by its hash, an
     * older id with the same start most likely. */
    atomic_store(&tab[(base + (h >> 60) % LLMR_RESP_PROBE) & (LLMR_RESP_IDS - 1)], word);
}

int llmr_shm_resp_get(const llmr_shm *shm, uint64_t h)
{
    const _Atomic uint64_t *tab = shm->seg->resp_ids;
    uint64_t tag = tag_of(h);
    size_t base = (size_t)h;

    for (size_t i = 0; i < LLMR_RESP_PROBE; i++) {
        uint64_t e = atomic_load(&tab[(base + i) & (LLMR_RESP_IDS - 1)]);
        if (e != 0 && (e & TAG_MASK) == tag)
            return (int)(e & 0xffff) - 1;
    }
    return -1;
}
