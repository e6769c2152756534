/* The sync process (issue 14): one per host when router_settings.redis_host
 * or redis_url is set, supervised by the master like the prober.  It is the
 * only process that talks to Redis about routing state: it leases blocks
 * of each deployment's minute quota into the segment for the workers to
 * spend, shares cooldowns and merges the fleet's usage and latency.  The
 * request path never waits on it (README "Several hosts (Redis)"). */
#ifndef LLMR_SYNC_H
#define LLMR_SYNC_H

#include <stdint.h>
#include <sys/types.h>

#include "conf.h"
#include "shm.h"

/* ---- lease arithmetic (sync_lease.c), pure and unit-tested ------------ */

/* What one host knows of one limit of one deployment in one minute. */
typedef struct llmr_lease_view {
    long limit;         /* the deployment's limit (> 0) */
    uint32_t granted;   /* this host's grant for the minute; 0 = none yet */
    uint32_t used;      /* the window's count (handed-back units included) */
    uint32_t back;      /* units the sync process took out to hand back */
    double rate;        /* units this host spent per second, recently */
    int hosts;          /* live hosts, this one included (>= 1) */
    int interval_ms;    /* the sync interval */
} llmr_lease_view;

typedef struct llmr_lease_ask {
    long give_back;     /* > 0: take this out of the window first */
    long floor;         /* what Redis must count as this host's */
    long want;          /* what this host asks to hold in all (>= floor) */
} llmr_lease_ask;

/* The host's claim on the fleet's quota: what it may spend or has spent,
 * handed-back units excluded. */
long llmr_lease_claim(const llmr_lease_view *v);
/* The fair share of a limit among `hosts`: limit / hosts rounded down, at
 * least 1. */
long llmr_lease_share(long limit, int hosts);
/* Decides this interval's call: 1 with *ask filled when the lease script
 * is to run (a first lease, a refill below the low-water mark, or a hand
 * back), 2 for a top-up of a host holding less than its share while it
 * still has grant left (the caller may space those out), 0 when nothing
 * is to be done. */
int llmr_lease_plan(const llmr_lease_view *v, llmr_lease_ask *ask);
/* What the lease script computes in Redis, for the unit tests and the
 * README: the new claim of a host whose claim Redis counted as `cur` in a
 * minute where all hosts together claimed `total` (cur included).  Only a
 * hand-back lowers a claim below cur. */
long llmr_lease_grant(long limit, long total, long cur, long floor, long want, int hand_back);
/* The grant word to store after the script answered `claim`. */
uint32_t llmr_lease_grant_of(long claim, uint32_t back);
/* Redis down: the grant this host spends meanwhile, share of the hosts
 * last seen plus what it handed back, never less than granted. */
uint32_t llmr_lease_fallback(const llmr_lease_view *v);

/* ---- the process (sync.c) --------------------------------------------- */

/* Runs until the master is gone or a signal ends it; returns the exit
 * code.  SIGTERM/SIGQUIT: hands back unused grants first (bounded). */
int llmr_sync_main(const llmr_conf *conf, llmr_shm *shm, pid_t master);

#endif
