/* children.c: what a forked child (worker, prober, sync process) does
 * first, and the supervision of the host processes beside the workers (the
 * health prober and the sync process): one per host, of the serving
 * generation, replaced on reload; the master decides their respawns like a
 * worker's. */
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "log.h"
#include "master.h"
#include "sync.h"

void llmr_child_signals(void)
{
    signal(SIGHUP, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
}

void llmr_child_free_cycle(llmr_cycle *cy)
{
    llmr_conf_free(cy->conf);
    llmr_shm_detach(&cy->shm);
    curl_global_cleanup();
    free(cy);
}

/* The child holds only its own generation's sockets: a listener it kept
 * open after the master closed it would queue connections nobody serves.
 * Nor does it hold the pid file's lock past its master. */
void llmr_child_close_others(llmr_cycle *cy, const int *keep, int nkeep)
{
    const llmr_pending *pd = &cy->pending;

    for (int set = 0; set < 2; set++) {
        const llmr_listener *l = set == 0 ? cy->listeners : pd->listeners;
        int n = set == 0 ? cy->nlisteners : (pd->conf != NULL ? pd->nlisteners : 0);
        for (int i = 0; i < n; i++) {
            int kept = 0;
            for (int j = 0; j < nkeep && !kept; j++)
                kept = keep[j] == l[i].fd;
            for (int j = 0; set == 1 && j < cy->nlisteners && !kept; j++)
                kept = cy->listeners[j].fd == l[i].fd;   /* closed in pass 0 */
            if (!kept)
                close(l[i].fd);
        }
    }
    if (cy->pid_fd >= 0)
        close(cy->pid_fd);
}

/* One host process beside the workers (the health prober, the sync
 * process): one per host, of the serving generation, when its config wants
 * it; respawned when it dies (the master schedules it, as a worker's),
 * replaced on reload.  The child never returns. */
/* Its pid in the segment's header, for `status` and the workers; the
 * segment is there whenever one is spawned, retired or reaped. */
static _Atomic int32_t *pid_word(llmr_cycle *cy, const llmr_aux *a)
{
    return (_Atomic int32_t *)((char *)&cy->shm.seg->hdr + a->pid_off);
}

static void aux_spawn(llmr_cycle *cy, const llmr_aux *a)
{
    llmr_proc *p = a->proc;
    pid_t pid, master = getpid();

    p->respawn_at = 0;
    if (!a->wanted || cy->quitting || p->pid > 0)
        return;
    if ((pid = fork()) == -1) {
        llmr_error("fork (%s): %s", a->name, strerror(errno));
        p->started = llmr_mono_s();
        p->respawn_at = p->started + 1.0;
        return;
    }
    if (pid == 0) {
        int code;
        llmr_child_signals();
        llmr_child_close_others(cy, NULL, 0);
        code = a->main(cy->conf, &cy->shm, master);
        /* Forked while a reload commits, pending.conf is already cy->conf. */
        if (cy->pending.conf != NULL && cy->pending.conf != cy->conf)
            llmr_conf_free(cy->pending.conf);
        llmr_child_free_cycle(cy);
        exit(code);
    }
    p->pid = pid;
    p->gen = cy->generation;
    p->started = llmr_mono_s();
    atomic_store(pid_word(cy, a), (int32_t)pid);
}

/* A reload's new config replaces it: the old one is stopped and not
 * respawned. */
static void aux_retire(llmr_cycle *cy, const llmr_aux *a)
{
    if (a->proc->pid > 0) {
        if (kill(a->proc->pid, SIGTERM) == -1 && errno != ESRCH)
            llmr_warn("kill(%d): %s", (int)a->proc->pid, strerror(errno));
        *a->retired = a->proc->pid;
    }
    memset(a->proc, 0, sizeof(*a->proc));
    atomic_store(pid_word(cy, a), 0);
}

/* Returns 1 when pid was this process (now reaped), 2 when it is to be
 * respawned, 0 otherwise. */
static int aux_reaped(llmr_cycle *cy, const llmr_aux *a, pid_t pid, int status)
{
    if (pid == *a->retired) {
        *a->retired = 0;
        return 1;
    }
    if (pid != a->proc->pid || pid <= 0)
        return 0;
    a->proc->pid = 0;
    atomic_store(pid_word(cy, a), 0);
    if (cy->quitting)
        return 1;
    if (WIFSIGNALED(status))
        llmr_warn("%s exited on signal %d; respawning", a->name, WTERMSIG(status));
    else
        llmr_warn("%s exited with code %d; respawning", a->name, WEXITSTATUS(status));
    return 2;
}

/* Also called on a start that failed before the segment or the config
 * were there: it touches neither. */
static void aux_signal(const llmr_proc *p, pid_t retired, int signo)
{
    if (p->pid > 0)
        kill(p->pid, signo);
    if (retired > 0)
        kill(retired, signo);
}

static llmr_aux prober_aux(llmr_cycle *cy)
{
    return (llmr_aux){ "health prober", &cy->prober, &cy->prober_retired,
                       offsetof(llmr_shm_header, prober_pid),
                       cy->conf->background_health_checks, llmr_prober_main };
}

static llmr_aux syncer_aux(llmr_cycle *cy)
{
    return (llmr_aux){ "sync process", &cy->syncer, &cy->syncer_retired,
                       offsetof(llmr_shm_header, sync_pid), cy->conf->sync, llmr_sync_main };
}

void llmr_prober_spawn(llmr_cycle *cy)
{
    llmr_aux a = prober_aux(cy);

    aux_spawn(cy, &a);
}

void llmr_prober_replace(llmr_cycle *cy)
{
    llmr_aux a = prober_aux(cy);

    aux_retire(cy, &a);
    aux_spawn(cy, &a);
}

int llmr_prober_reaped(llmr_cycle *cy, pid_t pid, int status)
{
    llmr_aux a = prober_aux(cy);

    return aux_reaped(cy, &a, pid, status);
}

void llmr_prober_signal(llmr_cycle *cy, int signo)
{
    aux_signal(&cy->prober, cy->prober_retired, signo);
}

/* The sync process (sync.c) when the config sets redis_host or redis_url:
 * the segment keeps its grants, so a SIGKILL loses nothing; told to hand
 * back on stop.  A host that turns sync on is "connecting" until it has
 * taken the first leases or fallen back to its local share; workers are
 * not ready meanwhile (their limits would refuse everything). */
void llmr_syncer_starting(llmr_cycle *cy)
{
    uint32_t off = LLMR_SYNC_OFF;

    if (cy->conf->sync)
        atomic_compare_exchange_strong(&cy->shm.seg->hdr.sync_state, &off,
                                       LLMR_SYNC_CONNECTING);
}

void llmr_syncer_spawn(llmr_cycle *cy)
{
    llmr_aux a = syncer_aux(cy);

    if (a.wanted && !cy->quitting && a.proc->pid <= 0)
        llmr_syncer_starting(cy);
    aux_spawn(cy, &a);
}

void llmr_syncer_replace(llmr_cycle *cy)
{
    llmr_aux a = syncer_aux(cy);

    aux_retire(cy, &a);
    if (!cy->conf->sync)
        atomic_store(&cy->shm.seg->hdr.sync_state, LLMR_SYNC_OFF);
    llmr_syncer_spawn(cy);
}

int llmr_syncer_reaped(llmr_cycle *cy, pid_t pid, int status)
{
    llmr_aux a = syncer_aux(cy);

    return aux_reaped(cy, &a, pid, status);
}

void llmr_syncer_signal(llmr_cycle *cy, int signo)
{
    aux_signal(&cy->syncer, cy->syncer_retired, signo);
}
