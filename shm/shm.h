/* shm: the POSIX shared-memory segment every process maps, and the atomic
 * counters inside its deployment slots.  Knows nothing of HTTP, of the
 * config or of processes beyond pids: slots are claimed by id, and the
 * master, which walks the config, is the only caller of the slot-table
 * functions. */
#ifndef LLMR_SHM_H
#define LLMR_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clock.h"
#include "layout.h"

typedef struct llmr_shm {
    char name[256];
    llmr_shm_segment *seg;
} llmr_shm;

/* Master: open or create the segment `name`.  An existing one with the same
 * magic and layout keeps its counters; a mismatched one is re-created with a
 * log line. */
int llmr_shm_create(llmr_shm *shm, const char *name);
/* Readers (`llmroute status`): map an existing segment read-only. */
int llmr_shm_attach(llmr_shm *shm, const char *name);
void llmr_shm_detach(llmr_shm *shm);
/* Master at exit: detach and remove the name. */
void llmr_shm_destroy(llmr_shm *shm);

/* Master, slot table.  The slot that deployment `id` used before, now
 * marked used by generation `gen` (its counters kept); or -1. */
int llmr_shm_slot_keep(llmr_shm *shm, const char *id, uint32_t gen);
/* A slot no generation >= `oldest_live_gen` uses (other than `gen`),
 * zeroed and named id/group for generation `gen`; or -1 when the table is
 * full.  Claim every survivor with llmr_shm_slot_keep() first, so that
 * none of theirs is handed out. */
int llmr_shm_slot_take(llmr_shm *shm, const char *id, const char *group, uint32_t gen,
                       uint32_t oldest_live_gen);
/* Marks slot `slot` used by generation `gen` (a reload abandoned: the
 * serving generation takes back the slots it shares with it). */
void llmr_shm_slot_stamp(llmr_shm *shm, int slot, uint32_t gen);
/* Whether `status` shows slot i: used by the serving generation, or by the
 * one a reload is starting. */
int llmr_shm_slot_live(const llmr_shm *shm, int slot);

/* Worker shares.  Master, before fork: the share is free and not ready. */
void llmr_shm_worker_claim(llmr_shm *shm, int wslot);
/* Master, after fork (pid) and after reap (0). */
void llmr_shm_worker_pid(llmr_shm *shm, int wslot, int32_t pid);
/* Worker: it listens and serves generation `gen`. */
void llmr_shm_worker_ready(llmr_shm *shm, int wslot, uint32_t gen);
/* The generation the worker of wslot reported ready for; 0 = not yet. */
uint32_t llmr_shm_worker_ready_gen(const llmr_shm *shm, int wslot);
int32_t llmr_shm_worker_pid_of(const llmr_shm *shm, int wslot);
/* Master at a fresh start, once dead shares are reaped: sets each slot's
 * in-flight count to the sum of the shares left, dropping whatever a crash
 * left counted between the two words. */
void llmr_shm_recount_inflight(llmr_shm *shm);

/* Master: publishes a reload's outcome (ok = 1 or 0, and a message). */
void llmr_shm_reload_outcome(llmr_shm *shm, int ok, const char *msg);
/* Readers: the seqlock word; even = stable.  Copies the outcome seen at
 * `seq` into msg; returns ok (1/0), or -1 when another outcome is being
 * written or has replaced it. */
uint32_t llmr_shm_reload_seq(const llmr_shm *shm);
int llmr_shm_reload_read(const llmr_shm *shm, uint32_t seq, char *msg, size_t cap);

/* Responses ids (workers): which slot's deployment created the id whose
 * 64-bit hash is h.  An id is kept until LLMR_RESP_PROBE newer ids land on
 * its entries (about LLMR_RESP_IDS of them in all); then it is forgotten. */
void llmr_shm_resp_put(llmr_shm *shm, uint64_t h, int slot);
/* The slot, or -1 for an id never seen or forgotten. */
int llmr_shm_resp_get(const llmr_shm *shm, uint64_t h);

/* Counters (workers). */
static inline llmr_slot *llmr_shm_slot(llmr_shm *shm, int slot)
{
    return &shm->seg->slots[slot];
}

/* Per-deployment limits, 0 = none. */
typedef struct llmr_limits {
    long rpm, tpm;
    int max_parallel;
    int sync;       /* several hosts (master/sync.c): spend the slot's grants */
} llmr_limits;

/* Master: publishes slot's limits for the status readers. */
void llmr_shm_slot_limits(llmr_shm *shm, int slot, const llmr_limits *l);

/* status_json.c: the live state of every slot `status` shows, as the JSON
 * of `llmroute status --json` and GET /status.json (no key is in the
 * segment, so none can be in it).  A malloc'd NUL-terminated string the
 * caller frees, *len its length; NULL when out of memory. */
char *llmr_status_json(const llmr_shm *shm, int64_t now_ms, size_t *len);

enum llmr_limit { LLMR_LIMIT_NONE, LLMR_LIMIT_PARALLEL, LLMR_LIMIT_RPM, LLMR_LIMIT_TPM };

/* Admits one attempt of `tokens` estimated tokens: takes an in-flight place
 * under max_parallel, a request under rpm and the tokens under tpm this
 * minute, each with one CAS, so that all workers together never pass a
 * limit.  On refusal nothing stays taken and the limit is returned.
 * wslot is the calling worker's share (-1: none). */
enum llmr_limit llmr_counters_admit(llmr_slot *s, const llmr_limits *l, int wslot,
                                    int64_t tokens, int64_t now_ms);
/* With sync on, the part of limit `limit` this host may spend in `minute`:
 * the grant the sync process leased (-1: none, refuse); without, limit. */
long llmr_counters_grant(const _Atomic uint64_t grant[2], uint32_t minute, long limit,
                         int sync);
/* Gives back an admission whose request never went out. */
void llmr_counters_unadmit(llmr_slot *s, int wslot, int64_t tokens, int64_t now_ms);
/* Whether an attempt of `tokens` would be admitted now (no reservation). */
enum llmr_limit llmr_counters_check(const llmr_slot *s, const llmr_limits *l,
                                    int64_t tokens, int64_t now_ms);
enum llmr_outcome { LLMR_OUTCOME_SUCCESS, LLMR_OUTCOME_FAILURE, LLMR_OUTCOME_CANCELLED };
void llmr_counters_attempt_end(llmr_slot *s, int wslot, enum llmr_outcome outcome,
                               int64_t latency_us);
/* Replaces the admission's token estimate by what the upstream reported. */
void llmr_counters_tokens_used(llmr_slot *s, int64_t estimated, int64_t actual,
                               int64_t admitted_ms, int64_t now_ms);
/* The count of a window word in minute `minute` (0 once it rolled over). */
uint32_t llmr_window_count(const _Atomic uint64_t *w, uint32_t minute);
/* Master, after reaping a worker: takes its in-flight share back. */
void llmr_counters_reap_worker(llmr_shm *shm, int wslot);
void llmr_counters_add_usage(llmr_slot *s, int64_t prompt, int64_t completion);
/* Moves an exponentially weighted mean 1/8 of the way towards x. */
void llmr_ewma_add(_Atomic int64_t *v, int64_t x);

/* Counts x in a (minute << 32) | count word for minute `minute`; returns
 * the count this minute including x. */
uint32_t llmr_window_add(_Atomic uint64_t *w, uint32_t minute, uint32_t x);
/* Adds x to the window of `minute` unless the count would pass limit
 * (> 0), with the same CAS as an admission; 0, or -1 when refused. */
int llmr_window_try_add(_Atomic uint64_t *w, uint32_t minute, uint32_t x, long limit);
/* Sync (shm/sync_shm.c): a (minute << 32) | count word's count for
 * `minute`, 0 when it holds another minute; the fleet's figures the
 * strategies read with sync on. */
uint32_t llmr_sync_word(const _Atomic uint64_t *w, uint32_t minute);
void llmr_sync_word_set(_Atomic uint64_t *w, uint32_t minute, uint32_t v);
/* local + the other hosts' count this minute. */
int64_t llmr_sync_fleet_count(const _Atomic uint64_t *others, uint32_t minute, int64_t local);
/* The fleet's mean when one was merged, else the local figure. */
int64_t llmr_sync_fleet_latency(const _Atomic int64_t *fleet, int64_t local);
/* "off", "connecting", "shared" or "local" (enum llmr_sync_state). */
const char *llmr_sync_state_name(uint32_t st);
/* status JSON: `"sync":{...},` of the header, `,"sync":{...}` of a slot. */
void llmr_sync_json_header(FILE *f, const llmr_shm_header *h);
void llmr_sync_json_slot(FILE *f, const llmr_slot *s, int64_t now_ms);
/* Counts a failure that may cool the deployment down: past allowed_fails
 * this minute, the deployment is skipped until now + max(cooldown_ms,
 * at_least_ms).  Returns 1 when this failure started or extended a
 * cooldown.  cooldown_ms = 0 disables cooldowns. */
int llmr_counters_fail(llmr_slot *s, int allowed_fails, int64_t cooldown_ms,
                       int64_t at_least_ms, int64_t now_ms);
/* Raises the cooldown deadline to until_ms unless it is already later. */
void llmr_cooldown_extend(llmr_slot *s, int64_t until_ms);
/* Lowers the cooldown deadline to until_ms when it is later: a new
 * max_cooldown_time applies to cooldowns already running. */
void llmr_cooldown_clamp(llmr_slot *s, int64_t until_ms);
/* health.c: the prober's findings.  One writer (the prober); any number of
 * lock-free readers. */
typedef struct llmr_health_view {
    uint32_t state;             /* enum llmr_slot_health */
    int64_t latency_us;
    int64_t checked_ms;         /* 0 = never checked */
    char error[LLMR_HEALTH_ERR_WORDS * 8];  /* "" when healthy */
} llmr_health_view;
void llmr_health_write(llmr_slot *s, int healthy, int64_t latency_us, int64_t now_ms,
                       const char *error);
void llmr_health_read(const llmr_slot *s, llmr_health_view *v);
static inline int llmr_health_bad(const llmr_slot *s)
{
    return atomic_load_explicit(&s->health, memory_order_relaxed) == LLMR_SLOT_UNHEALTHY;
}

static inline int64_t llmr_cooldown_left_ms(const llmr_slot *s, int64_t now_ms)
{
    int64_t until = atomic_load_explicit(&s->cooldown_until_ms, memory_order_relaxed);
    return until > now_ms ? until - now_ms : 0;
}

/* GET /metrics.  The upper bounds of the finite histogram buckets, in
 * microseconds (LLMR_HIST_BOUNDS of them, ascending). */
extern const int64_t llmr_hist_bounds_us[LLMR_HIST_BOUNDS];
/* Counts one observation of us microseconds (two relaxed adds). */
void llmr_hist_add(llmr_hist *h, int64_t us);
/* Counts a failed attempt of error class `cls` (0..LLMR_FAIL_CLASSES-1). */
void llmr_counters_fail_class(llmr_slot *s, int cls);
/* Master: a dead worker is started again. */
void llmr_shm_count_respawn(llmr_shm *shm);

/* cache_flight.c: the response cache's single-flight table.  `tag` is a
 * non-zero 32-bit digest of the key.  Join: 1 when this process now leads
 * the key (it claimed a free or stale entry: *idx set), 0 when a live
 * leader holds it (*idx set to that entry), -1 when the key's entries are
 * all held by others (no coalescing). */
int llmr_cache_flight_join(llmr_shm *shm, uint32_t tag, int32_t pid, int64_t deadline_ms,
                           int64_t now_ms, int *idx);
/* Whether entry idx is still led for tag by a live process. */
int llmr_cache_flight_held(llmr_shm *shm, int idx, uint32_t tag, int64_t now_ms);
/* The leader lets go (only its own claim). */
void llmr_cache_flight_release(llmr_shm *shm, int idx, uint32_t tag, int32_t pid);
static inline llmr_cache_stats *llmr_shm_cache_stats(llmr_shm *shm)
{
    return &shm->seg->cache;
}

#endif
