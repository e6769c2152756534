/* The sync process's supervision, as the prober's (children.c): one per
 * host, of the serving generation, when the config sets redis_host or
 * redis_url; respawned when it dies (the segment keeps its grants, so a
 * SIGKILL loses nothing), replaced on reload, told to hand back on stop. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "master.h"
#include "sync.h"

/* A host that turns sync on is "connecting" until its sync process has
 * taken the first leases or fallen back to its local share; workers are not
 * ready meanwhile (their limits would refuse everything). */
void llmr_syncer_starting(llmr_cycle *cy)
{
    uint32_t off = LLMR_SYNC_OFF;

    if (cy->conf->sync)
        atomic_compare_exchange_strong(&cy->shm.seg->hdr.sync_state, &off,
                                       LLMR_SYNC_CONNECTING);
}

void llmr_syncer_spawn(llmr_cycle *cy)
{
    llmr_proc *p = &cy->syncer;
    pid_t pid, master = getpid();

    p->respawn_at = 0;
    if (!cy->conf->sync || cy->quitting || p->pid > 0)
        return;
    llmr_syncer_starting(cy);
    if ((pid = fork()) == -1) {
        llmr_error("fork (sync): %s", strerror(errno));
        p->started = llmr_mono_s();
        p->respawn_at = p->started + 1.0;
        return;
    }
    if (pid == 0) {
        int code;
        llmr_child_signals();
        llmr_child_close_others(cy, NULL, 0);
        code = llmr_sync_main(cy->conf, &cy->shm, master);
        /* Forked while a reload commits, pending.conf is already cy->conf. */
        if (cy->pending.conf != NULL && cy->pending.conf != cy->conf)
            llmr_conf_free(cy->pending.conf);
        llmr_child_free_cycle(cy);
        exit(code);
    }
    p->pid = pid;
    p->gen = cy->generation;
    p->started = llmr_mono_s();
    atomic_store(&cy->shm.seg->hdr.sync_pid, (int32_t)pid);
}

void llmr_syncer_replace(llmr_cycle *cy)
{
    if (cy->syncer.pid > 0) {
        if (kill(cy->syncer.pid, SIGTERM) == -1 && errno != ESRCH)
            llmr_warn("kill(%d): %s", (int)cy->syncer.pid, strerror(errno));
        cy->syncer_retired = cy->syncer.pid;
    }
    memset(&cy->syncer, 0, sizeof(cy->syncer));
    atomic_store(&cy->shm.seg->hdr.sync_pid, 0);
    if (!cy->conf->sync)
        atomic_store(&cy->shm.seg->hdr.sync_state, LLMR_SYNC_OFF);
    llmr_syncer_spawn(cy);
}

int llmr_syncer_reaped(llmr_cycle *cy, pid_t pid, int status)
{
    llmr_proc *p = &cy->syncer;

    if (pid == cy->syncer_retired) {
        cy->syncer_retired = 0;
        return 1;
    }
    if (pid != p->pid || pid <= 0)
        return 0;
    p->pid = 0;
    atomic_store(&cy->shm.seg->hdr.sync_pid, 0);
    if (cy->quitting)
        return 1;
    if (WIFSIGNALED(status))
        llmr_warn("sync process exited on signal %d; respawning", WTERMSIG(status));
    else
        llmr_warn("sync process exited with code %d; respawning", WEXITSTATUS(status));
    return 2;
}

void llmr_syncer_signal(llmr_cycle *cy, int signo)
{
    if (cy->syncer.pid > 0)
        kill(cy->syncer.pid, signo);
    if (cy->syncer_retired > 0)
        kill(cy->syncer_retired, signo);
}
