/* children.c: what a forked child (worker or prober) does first, and the
 * health prober's supervision: one per host, of the serving generation,
 * replaced on reload; the master decides its respawns like a worker's. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "log.h"
#include "master.h"

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

/* The health prober: one per host, of the serving generation, when its
 * config asks for one.  The child never returns. */
void llmr_prober_spawn(llmr_cycle *cy)
{
    llmr_proc *p = &cy->prober;
    pid_t pid, master = getpid();

    p->respawn_at = 0;
    if (!cy->conf->background_health_checks || cy->quitting || p->pid > 0)
        return;
    if ((pid = fork()) == -1) {
        llmr_error("fork (health prober): %s", strerror(errno));
        p->started = llmr_mono_s();
        p->respawn_at = p->started + 1.0;
        return;
    }
    if (pid == 0) {
        int code;
        llmr_child_signals();
        llmr_child_close_others(cy, NULL, 0);
        code = llmr_prober_main(cy->conf, &cy->shm, master);
        /* Forked while a reload commits, pending.conf is already cy->conf. */
        if (cy->pending.conf != NULL && cy->pending.conf != cy->conf)
            llmr_conf_free(cy->pending.conf);
        llmr_child_free_cycle(cy);
        exit(code);
    }
    p->pid = pid;
    p->gen = cy->generation;
    p->started = llmr_mono_s();
    atomic_store(&cy->shm.seg->hdr.prober_pid, (int32_t)pid);
}

/* A reload's new config replaces the prober: the old one is stopped and
 * not respawned. */
void llmr_prober_replace(llmr_cycle *cy)
{
    if (cy->prober.pid > 0) {
        if (kill(cy->prober.pid, SIGTERM) == -1 && errno != ESRCH)
            llmr_warn("kill(%d): %s", (int)cy->prober.pid, strerror(errno));
        cy->prober_retired = cy->prober.pid;
    }
    memset(&cy->prober, 0, sizeof(cy->prober));
    atomic_store(&cy->shm.seg->hdr.prober_pid, 0);
    llmr_prober_spawn(cy);
}

/* Returns 1 when pid was a prober (now reaped), 2 when it is to be
 * respawned (the master schedules it), 0 otherwise. */
int llmr_prober_reaped(llmr_cycle *cy, pid_t pid, int status)
{
    llmr_proc *p = &cy->prober;

    if (pid == cy->prober_retired) {
        cy->prober_retired = 0;
        return 1;
    }
    if (pid != p->pid)
        return 0;
    p->pid = 0;
    atomic_store(&cy->shm.seg->hdr.prober_pid, 0);
    if (cy->quitting)
        return 1;
    if (WIFSIGNALED(status))
        llmr_warn("health prober exited on signal %d; respawning", WTERMSIG(status));
    else
        llmr_warn("health prober exited with code %d; respawning", WEXITSTATUS(status));
    return 2;
}

void llmr_prober_signal(llmr_cycle *cy, int signo)
{
    if (cy->prober.pid > 0)
        kill(cy->prober.pid, signo);
    if (cy->prober_retired > 0)
        kill(cy->prober_retired, signo);
}
