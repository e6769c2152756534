/* What the pieces of the sync process share (master/sync*.c only).
 * sync.c: the process, its loop, the Redis connections, hosts and state;
 * sync_limits.c: the leases; sync_share.c: cooldowns and fleet figures. */
#ifndef LLMR_SYNC_INTERNAL_H
#define LLMR_SYNC_INTERNAL_H

#include <stdint.h>
#include <sys/types.h>

#include "redis.h"
#include "sync.h"

struct event_base;
struct event;

enum { SYNC_RPM, SYNC_TPM, SYNC_KINDS };

/* One lease script call in flight for a deployment, limit and minute. */
typedef struct sync_op {
    struct sync_cx *cx;
    int dep, kind;
    uint32_t minute;
    int inflight;
} sync_op;

/* What the sync process keeps per deployment (not in the segment: a
 * respawned process starts these afresh, which costs nothing). */
typedef struct sync_dep {
    struct sync_cx *cx;
    int index;
    sync_op ops[SYNC_KINDS][2];     /* by minute parity */
    uint32_t last_used[SYNC_KINDS]; /* window count at the last tick */
    uint32_t last_minute;
    double rate[SYNC_KINDS];        /* units per second, smoothed */
    int64_t published_cd;           /* cooldown deadline last published */
    int stats_inflight;
    int resync[SYNC_KINDS];         /* (re)connected: tell Redis our claim */
} sync_dep;

typedef struct sync_cx {
    const llmr_conf *conf;
    llmr_shm *shm;
    pid_t master;
    struct event_base *base;
    struct event *tick, *sigs[3];
    llmr_redis *cmd;                /* commands */
    llmr_redis *sub;                /* the cooldown channel */
    char host[320];                 /* this host's id in Redis */
    char channel[128];              /* <prefix>:cooldown */
    sync_dep *deps;
    int ticks;
    int up;                         /* cmd connection authenticated */
    int heartbeat_ok;               /* a heartbeat answered since up */
    int first_round;                /* first leases asked, state still connecting */
    int heartbeat_inflight;
    int draining;                   /* SIGQUIT: handing back, then exit */
    int64_t drain_deadline_ms;
} sync_cx;

/* sync.c */
void sync_set_state(sync_cx *cx, enum llmr_sync_state st, const char *why);
/* Counts a command sent (ok) or refused. */
void sync_count(sync_cx *cx, int sent);
llmr_slot *sync_slot(sync_cx *cx, int dep);

/* sync_limits.c: one round of leases (or the fallback when Redis is not
 * usable); on drain, everything unused is handed back. */
void sync_limits_round(sync_cx *cx, int64_t now_ms);
void sync_limits_fallback(sync_cx *cx, int64_t now_ms);
/* Lease calls still in flight. */
int sync_limits_pending(const sync_cx *cx);

/* sync_share.c */
void sync_cooldowns_publish(sync_cx *cx, int64_t now_ms);
void sync_cooldowns_learn(sync_cx *cx);
void sync_cooldown_message(sync_cx *cx, const char *msg, size_t len);
void sync_stats_round(sync_cx *cx, int64_t now_ms);

#endif
