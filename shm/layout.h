/* The one definition of the shared segment.  Every process maps the same
 * bytes, so everything a worker writes is a single lock-free atomic word:
 * a worker killed at any instant leaves no lock held and no half-written
 * structure behind.  Bump LLMR_SHM_VERSION on any change to these structs. */
#ifndef LLMR_SHM_LAYOUT_H
#define LLMR_SHM_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ids.h"

#if ATOMIC_LLONG_LOCK_FREE != 2
#error "llmroute needs lock-free 64-bit atomics"
#endif

#define LLMR_SHM_MAGIC      0x31524d4c524d4c4cULL   /* "LLMRLMR1" */
#define LLMR_SHM_VERSION    11
#define LLMR_SHM_SLOTS      1024
#define LLMR_CACHE_LINE     64
#define LLMR_WORKER_SLOTS   512     /* live worker processes, reloads included */
#define LLMR_RESP_IDS       65536   /* Responses ids remembered (a power of two) */
#define LLMR_RESP_PROBE     16      /* entries one id may sit in */
#define LLMR_FAIL_CLASSES   16      /* failures by error class (the worker's enum llmr_err) */
#define LLMR_HIST_BOUNDS    15      /* finite histogram buckets (llmr_hist_bounds_us) */
#define LLMR_CACHE_FLIGHTS  4096    /* response-cache keys in flight at once (a power of two) */
#define LLMR_CACHE_PROBE    8       /* flight entries one key may sit in */

/* A latency histogram for GET /metrics: one atomic add into the bucket an
 * observation falls in (not cumulative; the renderer sums) and one to the
 * sum.  The count is the buckets' total, not a word of its own, so that a
 * scrape racing an observation never shows a count unequal to +Inf. */
typedef struct llmr_hist {
    _Atomic int64_t bucket[LLMR_HIST_BOUNDS + 1];   /* the last one is +Inf */
    _Atomic int64_t sum_us;
} __attribute__((aligned(LLMR_CACHE_LINE))) llmr_hist;

/* A deployment's health, as the prober last found it. */
enum llmr_slot_health { LLMR_SLOT_HEALTH_UNKNOWN = 0, LLMR_SLOT_HEALTHY = 1,
                        LLMR_SLOT_UNHEALTHY = 2 };
#define LLMR_HEALTH_ERR_WORDS 24    /* 192 bytes of error text, NUL included */

/* Slot states, written by the master only. */
enum llmr_slot_state { LLMR_SLOT_FREE = 0, LLMR_SLOT_USED = 1 };

typedef struct llmr_slot {
    /* Identity: written by the master while no worker of a generation that
     * uses this slot is alive, read by workers and `llmroute status`. */
    _Atomic uint32_t state;
    _Atomic uint32_t last_gen;      /* newest config generation using it */
    char id[LLMR_ID_MAX];
    char group[LLMR_ID_MAX];

    /* Counters: workers add to them with relaxed atomics. */
    _Alignas(LLMR_CACHE_LINE) _Atomic int64_t requests;  /* attempts sent */
    _Atomic int64_t successes;
    _Atomic int64_t failures;
    _Atomic int64_t prompt_tokens;
    _Atomic int64_t completion_tokens;
    _Atomic int64_t inflight;
    _Atomic int64_t latency_us_total; /* sum over successes, for a mean */
    _Atomic int64_t latency_ewma_us;  /* whole response, non-streaming */
    _Atomic int64_t ttft_ewma_us;     /* streams: time to the first byte */

    /* Health: failures this minute packed as (minute << 32) | count so one
     * CAS rolls the window over; the cooldown deadline only ever grows. */
    _Alignas(LLMR_CACHE_LINE) _Atomic uint64_t fail_window;
    _Atomic int64_t cooldown_until_ms; /* CLOCK_REALTIME ms; 0 = never */
    _Atomic int64_t cooldowns;         /* times a cooldown started */

    /* Usage this minute, (minute << 32) | count like fail_window: requests
     * (each reserved before it is sent) and tokens (estimated at admission,
     * corrected with the reported usage). */
    _Alignas(LLMR_CACHE_LINE) _Atomic uint64_t rpm_window;
    _Atomic uint64_t tpm_window;

    /* Each worker's share of `inflight`, so that the master can take back a
     * dead worker's share: a SIGKILL leaves no request counted forever. */
    _Alignas(LLMR_CACHE_LINE) _Atomic int32_t inflight_by_worker[LLMR_WORKER_SLOTS];

    /* GET /metrics: failed attempts by error class, attempts after a
     * request's first (retries) and attempts of a fallback group; then the
     * histograms of successful attempts' latency, streams' time to first
     * byte and llmroute's own time before a request's first attempt. */
    _Alignas(LLMR_CACHE_LINE) _Atomic int64_t fail_by_class[LLMR_FAIL_CLASSES];
    _Atomic int64_t retries;
    _Atomic int64_t fallbacks;
    llmr_hist latency;
    llmr_hist ttft;
    llmr_hist overhead;
    /* The deployment's limits (0 = none), written by the master with the
     * slot's identity, so that `status` and /status.json show them without
     * the config's secrets. */
    _Alignas(LLMR_CACHE_LINE) _Atomic int64_t limit_rpm;
    _Atomic int64_t limit_tpm;
    _Atomic int64_t limit_parallel;
    /* Background health checks (shm/health.c), written by the one prober:
     * the state (llmr_slot_health), the probe's latency, when it ran, and its
     * error text in atomic words bracketed by a generation counter (odd
     * while the prober writes), so a reader never takes half of one error
     * for another and never needs a lock. */
    _Alignas(LLMR_CACHE_LINE) _Atomic uint32_t health;
    _Atomic uint32_t health_err_gen;
    _Atomic int64_t health_latency_us;
    _Atomic int64_t health_checked_ms;  /* CLOCK_REALTIME ms; 0 = never */
    _Atomic uint64_t health_err[LLMR_HEALTH_ERR_WORDS];
    /* Multi-host sync (master/sync.c), written by the sync process only.
     * This host's grants, (minute << 32) | amount, for that minute, in the
     * word of the minute's parity, so that the next minute's lease can be
     * taken before it starts: with sync on, admission spends them instead
     * of rpm and tpm.  *_back counts what the sync process took out of the
     * windows (with the same CAS as a worker's admission) to hand back to
     * the fleet.  par_grant is this host's share of max_parallel. */
    _Alignas(LLMR_CACHE_LINE) _Atomic uint64_t rpm_grant[2];
    _Atomic uint64_t tpm_grant[2];
    _Atomic uint64_t rpm_back;
    _Atomic uint64_t tpm_back;
    _Atomic int64_t par_grant;
    _Atomic int64_t leases;             /* lease script calls answered */
    /* The fleet's figures, merged by the sync process: tokens and requests
     * this minute ((minute << 32) | count, all hosts), and the latency means
     * over the hosts that measured one (0 = none yet). */
    _Atomic uint64_t fleet_tpm;
    _Atomic uint64_t fleet_rpm;
    _Atomic int64_t fleet_latency_ewma_us;
    _Atomic int64_t fleet_ttft_ewma_us;
    _Atomic int64_t fleet_inflight;
} __attribute__((aligned(LLMR_CACHE_LINE))) llmr_slot;

typedef struct llmr_shm_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint32_t slot_size;
    uint32_t nslots;
    int64_t  start_time;            /* unix seconds the segment was created */
    _Atomic uint32_t generation;    /* config generation the master runs */
    _Atomic uint32_t pending_gen;   /* generation a reload is starting; 0 = none */
    _Atomic int32_t master_pid;

    /* The outcome of the last reload, for `llmroute -s reload`: a seqlock
     * written by the master only (odd while it writes, even after), so a
     * reader never takes half of one message for the other. */
    _Atomic uint32_t reload_seq;
    _Atomic int32_t reload_ok;
    char reload_msg[1024];
    char conf_path[4096];           /* the master's config, absolute */

    /* Process counters for GET /metrics, written by the master. */
    _Atomic int64_t respawns;       /* workers started again after dying */
    _Atomic int64_t reloads_ok;
    _Atomic int64_t reloads_failed;
    _Atomic int32_t prober_pid;     /* the health prober; 0 = none */
    /* Multi-host sync (master/sync.c): the sync process's pid (0 = none),
     * its state (enum llmr_sync_state), the live hosts it last counted, when
     * the state last changed, and Redis commands sent and failed. */
    _Atomic int32_t sync_pid;
    _Atomic uint32_t sync_state;
    _Atomic int32_t sync_hosts;
    _Atomic int64_t sync_since_ms;
    _Atomic int64_t sync_commands;
    _Atomic int64_t sync_errors;
} __attribute__((aligned(LLMR_CACHE_LINE))) llmr_shm_header;

enum llmr_sync_state {
    LLMR_SYNC_OFF = 0,          /* no redis_host / redis_url */
    LLMR_SYNC_CONNECTING = 1,   /* first connect: grants not taken yet */
    LLMR_SYNC_SHARED = 2,       /* leases from Redis */
    LLMR_SYNC_LOCAL = 3         /* Redis down or slow: limit / hosts last seen */
};

/* One per worker share (the index workers call wslot).  The master writes
 * pid around fork and reap; the worker writes ready_gen once it listens, so
 * that a reload drains the old generation only after the new one serves,
 * and a master restarted after a crash can tell a live worker's in-flight
 * share from a dead one's. */
typedef struct llmr_worker_rec {
    _Atomic int32_t pid;            /* 0 = no worker holds this share */
    _Atomic uint32_t ready_gen;     /* generation it serves; 0 = starting */
} llmr_worker_rec;

/* The response cache's counters (worker/cache*.c), added to by every
 * worker; `entries` and `bytes` are the store's size as its last writer
 * measured it. */
typedef struct llmr_cache_stats {
    _Atomic int64_t hits;
    _Atomic int64_t misses;
    _Atomic int64_t coalesced;      /* answered with another request's answer */
    _Atomic int64_t bypass;         /* no-cache: the store not read */
    _Atomic int64_t stores;         /* entries written */
    _Atomic int64_t evictions;      /* entries removed for room (expired ones included) */
    _Atomic int64_t expired;        /* entries removed by the purge because they expired */
    _Atomic int64_t errors;         /* store operations that failed (Redis down, ...) */
    _Atomic int64_t entries;
    _Atomic int64_t bytes;
} __attribute__((aligned(LLMR_CACHE_LINE))) llmr_cache_stats;

/* A response-cache key in flight (single-flight): one word, claimed by CAS
 * from 0 to (32-bit tag of the key << 32) | leader pid, so a claim is never
 * half made; the deadline after it is only a hint (0 while the leader has
 * not written it yet).  A dead leader's pid, or a deadline past, makes the
 * entry free for the taking. */
typedef struct llmr_cache_flight {
    _Atomic uint64_t owner;
    _Atomic int64_t deadline_ms;    /* CLOCK_REALTIME ms */
} llmr_cache_flight;

typedef struct llmr_shm_segment {
    llmr_shm_header hdr;
    llmr_worker_rec workers[LLMR_WORKER_SLOTS];
    llmr_slot slots[LLMR_SHM_SLOTS];
    /* Which deployment created each Responses id (resp_ids.c): one word an
     * entry, (48-bit tag of the id's hash << 16) | (slot + 1), 0 = empty,
     * so that a reader never sees one id's tag with another's slot. */
    _Alignas(LLMR_CACHE_LINE) _Atomic uint64_t resp_ids[LLMR_RESP_IDS];
    /* The response cache (shm/cache_flight.c). */
    llmr_cache_stats cache;
    _Alignas(LLMR_CACHE_LINE) llmr_cache_flight cache_flights[LLMR_CACHE_FLIGHTS];
} llmr_shm_segment;

/* Layout facts the design rests on, checked by the compiler: a build where
 * one does not hold fails instead of sharing torn or falsely shared words. */
_Static_assert(__atomic_always_lock_free(sizeof(uint32_t), 0)
               && __atomic_always_lock_free(sizeof(uint64_t), 0),
               "shared counters must be lock-free atomic words");
_Static_assert(sizeof(_Atomic int64_t) == 8 && sizeof(_Atomic uint32_t) == 4,
               "an atomic word has the size of its plain type");
_Static_assert(sizeof(llmr_slot) % LLMR_CACHE_LINE == 0,
               "slots fill whole cache lines: no line is shared by two slots");
_Static_assert(offsetof(llmr_slot, requests) % LLMR_CACHE_LINE == 0
               && offsetof(llmr_slot, fail_window) % LLMR_CACHE_LINE == 0
               && offsetof(llmr_slot, rpm_window) % LLMR_CACHE_LINE == 0
               && offsetof(llmr_slot, inflight_by_worker) % LLMR_CACHE_LINE == 0
               && offsetof(llmr_slot, fail_by_class) % LLMR_CACHE_LINE == 0
               && offsetof(llmr_slot, latency) % LLMR_CACHE_LINE == 0
               && sizeof(llmr_hist) % LLMR_CACHE_LINE == 0
               && offsetof(llmr_slot, health) % LLMR_CACHE_LINE == 0
               && offsetof(llmr_slot, rpm_grant) % LLMR_CACHE_LINE == 0,
               "each group of counters starts a cache line of its own");
_Static_assert(sizeof(llmr_shm_header) % LLMR_CACHE_LINE == 0
               && offsetof(llmr_shm_segment, slots) % LLMR_CACHE_LINE == 0,
               "the slot table starts on a cache line");
_Static_assert((LLMR_RESP_IDS & (LLMR_RESP_IDS - 1)) == 0 && LLMR_SHM_SLOTS < 0xffff,
               "the id table is a power of two; slot + 1 fits 16 bits");
_Static_assert(sizeof(llmr_slot) <= UINT32_MAX && sizeof(llmr_shm_header) <= UINT32_MAX,
               "header_size and slot_size fit their uint32_t fields");

#endif
