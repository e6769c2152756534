/* master: the process cycle.  It owns the config, the shared segment and
 * the listening sockets, forks the workers and acts on signals.  It knows
 * nothing of what a worker does: main.c hands it the worker's entry point,
 * as nginx hands its spawn function the cycle to run. */
#ifndef LLMR_MASTER_H
#define LLMR_MASTER_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "clock.h"
#include "conf.h"
#include "shm.h"

#include "version.h"       /* LLMR_VERSION */
#define LLMR_MAX_LISTEN 16
#define LLMR_MAX_PROCS 512

/* A worker process: runs until it has drained or was told to stop and
 * returns its exit code; `fds` are the listening sockets it inherits. */
typedef int (*llmr_worker_fn)(const llmr_conf *conf, llmr_shm *shm, const int *fds,
                              int nfds, int index, int wslot, uint32_t generation);

typedef struct llmr_worker_entry {
    llmr_worker_fn run;
    int fatal_code;             /* exit code of a worker that cannot start: no respawn */
} llmr_worker_entry;

typedef struct llmr_listener {
    char addr[128];
    int fd;
} llmr_listener;

typedef struct llmr_proc {
    pid_t pid;                  /* 0 = empty entry */
    uint32_t gen;
    int index;
    int wslot;                  /* its share in the slots' counters */
    int draining;
    int fails;                  /* quick deaths in a row, for back-off */
    double started;             /* monotonic seconds */
    double respawn_at;          /* > 0: waiting to respawn */
} llmr_proc;

/* A reload in progress: the new generation runs beside the serving one
 * until every new worker reports ready through the segment. */
typedef struct llmr_pending {
    llmr_conf *conf;            /* NULL: none */
    llmr_listener listeners[LLMR_MAX_LISTEN];
    int nlisteners;
    uint32_t gen;
    double deadline;            /* monotonic: abandoned if not ready by then */
    char failed[256];           /* why it cannot start; "" = not failed */
} llmr_pending;

typedef struct llmr_cycle {
    const char *conf_path;
    llmr_worker_entry worker;
    llmr_conf *conf;
    llmr_shm shm;
    llmr_listener listeners[LLMR_MAX_LISTEN];
    int nlisteners;
    uint32_t generation;
    llmr_proc procs[LLMR_MAX_PROCS];
    llmr_pending pending;
    uint32_t last_gen;          /* highest generation handed out */
    int reload_queued;          /* SIGHUP while a reload was pending */
    int32_t orphans[LLMR_WORKER_SLOTS]; /* a dead master's workers, by wslot */
    int owns_shm;               /* created or took over the segment */
    int pid_fd;                 /* the locked pid file; -1 = none */
    int wrote_pid;
    int quitting;               /* 1 graceful, 2 fast */
    double stop_deadline;
    llmr_proc prober;           /* the health prober (prober.c); pid 0 = none */
    pid_t prober_retired;       /* an old generation's prober, told to stop */
    llmr_proc syncer;           /* the sync process (sync.c); pid 0 = none */
    pid_t syncer_retired;       /* an old generation's, told to stop */
} llmr_cycle;

/* Seconds a new generation has to report ready before a reload gives up. */
#define LLMR_READY_TIMEOUT 10.0

/* Monotonic seconds, for the master's timers. */
static inline double llmr_mono_s(void)
{
    return (double)llmr_clock_us() / 1e6;
}

/* Runs the master until it stops; returns the process exit code. */
int llmr_master_run(const char *conf_path, const llmr_worker_entry *worker);

/* slots.c: gives every deployment of `conf` a slot, keyed by id, as
 * generation `gen`.  A surviving id keeps its slot and counters; a new id
 * takes a slot that no generation >= `oldest_live_gen` uses, zeroed.  Sets
 * each deployment's `slot`.  Returns 0, or -1 when the table is full. */
int llmr_master_map_slots(llmr_shm *shm, llmr_conf *conf, uint32_t gen,
                          uint32_t oldest_live_gen);
/* Marks conf's slots used by generation `gen` again (after a reload that
 * claimed them for another generation failed). */
void llmr_master_restamp_slots(llmr_shm *shm, const llmr_conf *conf, uint32_t gen);

/* listen.c */
int llmr_listen_open(const char *addr);
/* Makes `to` hold a socket for each of conf's addresses, reusing from's
 * where the address is the same.  Returns 0, or -1 with `to` closed. */
int llmr_listeners_reconcile(const llmr_conf *conf, const llmr_listener *from, int nfrom,
                             llmr_listener *to, int *nto);
/* Closes those of `old` not present in `cur`. */
void llmr_listeners_close_unused(const llmr_listener *old, int nold,
                                 const llmr_listener *cur, int ncur);

/* A host process beside the workers, as children.c supervises it. */
typedef struct llmr_aux {
    const char *name;                   /* for messages */
    llmr_proc *proc;
    pid_t *retired;                     /* an old generation's, told to stop */
    size_t pid_off;                     /* its pid's word in the segment's header */
    int wanted;                         /* the config asks for it */
    int (*main)(const llmr_conf *conf, llmr_shm *shm, pid_t master);
} llmr_aux;

/* children.c: a forked child's first steps, and the prober's supervision. */
void llmr_child_signals(void);
void llmr_child_free_cycle(llmr_cycle *cy);
void llmr_child_close_others(llmr_cycle *cy, const int *keep, int nkeep);
void llmr_prober_spawn(llmr_cycle *cy);
void llmr_prober_replace(llmr_cycle *cy);
int llmr_prober_reaped(llmr_cycle *cy, pid_t pid, int status);
void llmr_prober_signal(llmr_cycle *cy, int signo);

/* children.c: the sync process's supervision, as the prober's. */
void llmr_syncer_spawn(llmr_cycle *cy);
void llmr_syncer_starting(llmr_cycle *cy);
void llmr_syncer_replace(llmr_cycle *cy);
int llmr_syncer_reaped(llmr_cycle *cy, pid_t pid, int status);
void llmr_syncer_signal(llmr_cycle *cy, int signo);

/* prober.c: the health prober's process; returns its exit code once the
 * master is gone (a signal from the master ends it sooner). */
int llmr_prober_main(const llmr_conf *conf, llmr_shm *shm, pid_t master);

/* status.c: flags are LLMR_STATUS_*. */
#define LLMR_STATUS_WIDE 1      /* -w: every column, ids in full */
#define LLMR_STATUS_JSON 2      /* --json: llmr_status_json() */
int llmr_status_print(const char *conf_path, int flags);

/* pidfile.c: locked for the master's life, so that a second instance
 * sharing it refuses to start instead of taking it over.  Returns the fd,
 * or -1 with the reason logged. */
int llmr_pid_file_lock(const char *path);
/* Whether pid is a live process running this program's binary (a pid in a
 * file or in the segment may have been reused since). */
int llmr_pid_is_ours(int pid);

#endif
