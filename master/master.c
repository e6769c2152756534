/* The master's process cycle, after nginx's: signal handlers only set
 * flags, the loop sleeps in sigsuspend() and acts on them.  A reload builds
 * the new config, slots and listeners first and swaps only on success. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "alloc.h"
#include "log.h"
#include "master.h"

#define STOP_GRACE 5.0          /* seconds past a deadline before SIGKILL */
#define RESPAWN_MAX_DELAY 30.0
#define READY_POLL 0.02         /* seconds between looks at a pending reload */

static volatile sig_atomic_t sig_reload, sig_quit, sig_terminate, sig_child, sig_alarm;
static volatile sig_atomic_t sig_reopen;

static void on_signal(int signo)
{
    switch (signo) {
    case SIGHUP: sig_reload = 1; break;
    case SIGQUIT: sig_quit = 1; break;
    case SIGTERM: case SIGINT: sig_terminate = 1; break;
    case SIGCHLD: sig_child = 1; break;
    case SIGALRM: sig_alarm = 1; break;
    case SIGUSR1: sig_reopen = 1; break;
    }
}

static const int master_signals[] = { SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGCHLD, SIGALRM,
                                      SIGUSR1 };
#define NSIGNALS (int)(sizeof(master_signals) / sizeof(master_signals[0]))

static int install_signals(sigset_t *blocked)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigemptyset(blocked);
    for (int i = 0; i < NSIGNALS; i++) {
        if (sigaction(master_signals[i], &sa, NULL) == -1)
            return -1;
        sigaddset(blocked, master_signals[i]);
    }
    signal(SIGPIPE, SIG_IGN);
    /* Blocked except inside sigsuspend(), so no flag is ever missed. */
    return sigprocmask(SIG_BLOCK, blocked, NULL);
}

static int live_procs(const llmr_cycle *cy)
{
    int n = 0;

    for (int i = 0; i < LLMR_MAX_PROCS; i++)
        n += cy->procs[i].pid > 0;
    return n;
}

static uint32_t oldest_live_gen(const llmr_cycle *cy)
{
    uint32_t g = cy->generation;

    for (int i = 0; i < LLMR_MAX_PROCS; i++)
        if (cy->procs[i].pid > 0 && cy->procs[i].gen < g)
            g = cy->procs[i].gen;
    return g;
}

/* A worker-share index no live worker uses, ours or a dead master's. */
static int free_wslot(const llmr_cycle *cy)
{
    for (int k = 0; k < LLMR_WORKER_SLOTS; k++) {
        int used = cy->orphans[k] != 0;
        for (int i = 0; i < LLMR_MAX_PROCS && !used; i++)
            used = cy->procs[i].pid > 0 && cy->procs[i].wslot == k;
        if (!used)
            return k;
    }
    return -1;
}

/* Test hook: LLMR_TEST_WORKER_START="fail:GEN" or "hang:GEN[:INDEX]" makes
 * the workers of generation GEN (only worker INDEX, if given) exit with the
 * fatal start-up code, or never report ready, so that the tests can drive a
 * reload whose workers cannot start. */
static void child_test_hook(uint32_t gen, int index, pid_t master, int fatal)
{
    const char *h = getenv("LLMR_TEST_WORKER_START");
    char mode[8];
    unsigned g;
    int idx = -1;

    if (h == NULL || sscanf(h, "%4[a-z]:%u:%d", mode, &g, &idx) < 2 || g != gen
        || (idx >= 0 && idx != index))
        return;
    if (strcmp(mode, "fail") == 0)
        exit(fatal);
    while (strcmp(mode, "hang") == 0 && getppid() == master)
        usleep(20000);
    exit(fatal);
}

/* Forks the worker for entry p, of the pending generation when `pending`.
 * The child never returns. */
static int spawn(llmr_cycle *cy, llmr_proc *p, int pending)
{
    const llmr_listener *l = pending ? cy->pending.listeners : cy->listeners;
    int n = pending ? cy->pending.nlisteners : cy->nlisteners;
    llmr_conf *conf = pending ? cy->pending.conf : cy->conf;
    uint32_t gen = pending ? cy->pending.gen : cy->generation;
    int fds[LLMR_MAX_LISTEN];
    pid_t pid, master = getpid();

    p->wslot = free_wslot(cy);
    if (p->wslot < 0) {
        llmr_error("no free worker share in the segment (%d)", LLMR_WORKER_SLOTS);
        return -1;
    }
    llmr_shm_worker_claim(&cy->shm, p->wslot);
    for (int i = 0; i < n; i++)
        fds[i] = l[i].fd;
    pid = fork();
    if (pid == -1) {
        llmr_error("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int code;
        llmr_child_signals();
        llmr_child_close_others(cy, fds, n);
        child_test_hook(gen, p->index, master, cy->worker.fatal_code);
        code = cy->worker.run(conf, &cy->shm, fds, n, p->index, p->wslot, gen);
        if (cy->pending.conf != NULL)
            llmr_conf_free(cy->pending.conf);
        llmr_child_free_cycle(cy);
        exit(code);
    }
    llmr_shm_worker_pid(&cy->shm, p->wslot, (int32_t)pid);
    p->pid = pid;
    p->gen = gen;
    p->draining = 0;
    p->started = llmr_mono_s();
    p->respawn_at = 0;
    return 0;
}

static void schedule_respawn(llmr_proc *p);

static llmr_proc *free_proc(llmr_cycle *cy)
{
    for (int i = 0; i < LLMR_MAX_PROCS; i++)
        if (cy->procs[i].pid == 0 && cy->procs[i].respawn_at == 0)
            return &cy->procs[i];
    return NULL;
}

/* Like nginx's worker_rlimit_nofile: each stream holds two sockets, so
 * thousands of streams need more than the usual 1024 descriptors.  Set in
 * the master, inherited by every worker forked after. */
static void apply_rlimit(const llmr_conf *conf)
{
    struct rlimit rl;

    if (conf->worker_rlimit_nofile <= 0 || getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return;
    rl.rlim_cur = (rlim_t)conf->worker_rlimit_nofile;
    if (rl.rlim_max < rl.rlim_cur) {
        rlim_t hard = rl.rlim_max;
        rl.rlim_max = rl.rlim_cur;      /* only a privileged master may raise it */
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            return;
        llmr_warn("server.worker_rlimit_nofile = %ld: %s; using the hard limit %llu",
                  conf->worker_rlimit_nofile, strerror(errno), (unsigned long long)hard);
        rl.rlim_cur = rl.rlim_max = hard;
    }
    if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
        llmr_warn("server.worker_rlimit_nofile = %ld: setrlimit: %s",
                  conf->worker_rlimit_nofile, strerror(errno));
}

static int worker_count(const llmr_conf *conf)
{
    long n = conf->workers > 0 ? conf->workers : sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int spawn_generation(llmr_cycle *cy, int pending)
{
    const llmr_conf *conf = pending ? cy->pending.conf : cy->conf;
    int n = worker_count(conf);

    apply_rlimit(conf);
    for (int i = 0; i < n; i++) {
        llmr_proc *p = free_proc(cy);
        if (p == NULL) {
            llmr_error("too many worker processes (at most %d)", LLMR_MAX_PROCS);
            return -1;
        }
        memset(p, 0, sizeof(*p));
        p->index = i;
        if (spawn(cy, p, pending) < 0)
            return -1;
    }
    return 0;
}

static void signal_procs(llmr_cycle *cy, int signo, int only_gen_before)
{
    for (int i = 0; i < LLMR_MAX_PROCS; i++) {
        llmr_proc *p = &cy->procs[i];
        if (p->pid <= 0 || (only_gen_before && p->gen >= cy->generation))
            continue;
        if (signo == SIGQUIT)
            p->draining = 1;
        if (kill(p->pid, signo) == -1 && errno != ESRCH)
            llmr_warn("kill(%d, %d): %s", (int)p->pid, signo, strerror(errno));
    }
}

static void schedule_respawn(llmr_proc *p)
{
    double lived = llmr_mono_s() - p->started, delay = 0;

    /* A worker that keeps dying right after start would otherwise spin the
     * master in a fork loop: back off exponentially. */
    if (lived < 2.0) {
        p->fails++;
        delay = 0.1 * (double)(1 << (p->fails < 9 ? p->fails : 9));
        if (delay > RESPAWN_MAX_DELAY)
            delay = RESPAWN_MAX_DELAY;
    } else {
        p->fails = 0;
    }
    p->respawn_at = llmr_mono_s() + delay;
}

static void reaped(llmr_cycle *cy, llmr_proc *p, int status)
{
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

    /* Requests a killed worker had in flight are not in flight any more. */
    llmr_counters_reap_worker(&cy->shm, p->wslot);
    llmr_shm_worker_pid(&cy->shm, p->wslot, 0);
    p->wslot = -1;
    p->pid = 0;
    if (cy->pending.conf != NULL && p->gen == cy->pending.gen && !p->draining
        && cy->pending.failed[0] == '\0') {
        if (WIFSIGNALED(status))
            snprintf(cy->pending.failed, sizeof(cy->pending.failed),
                     "worker %d was killed by signal %d before it was ready", p->index,
                     WTERMSIG(status));
        else
            snprintf(cy->pending.failed, sizeof(cy->pending.failed),
                     "worker %d exited with code %d before it was ready", p->index, code);
    }
    if (p->draining || cy->quitting || p->gen != cy->generation) {
        llmr_debug("worker %d (generation %u) exited", p->index, p->gen);
        memset(p, 0, sizeof(*p));
        return;
    }
    if (code == cy->worker.fatal_code) {
        llmr_error("worker %d exited with fatal code %d and cannot be respawned",
                   p->index, code);
        memset(p, 0, sizeof(*p));
        return;
    }
    if (WIFSIGNALED(status))
        llmr_warn("worker %d exited on signal %d; respawning", p->index, WTERMSIG(status));
    else
        llmr_warn("worker %d exited with code %d; respawning", p->index, code);
    llmr_shm_count_respawn(&cy->shm);
    schedule_respawn(p);
}

static void reap(llmr_cycle *cy)
{
    pid_t pid;
    int status;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int prober = llmr_prober_reaped(cy, pid, status);
        int syncer = llmr_syncer_reaped(cy, pid, status);
        if (prober == 2)
            schedule_respawn(&cy->prober);
        if (syncer == 2)
            schedule_respawn(&cy->syncer);
        if (prober || syncer)
            continue;
        for (int i = 0; i < LLMR_MAX_PROCS; i++) {
            if (cy->procs[i].pid == pid) {
                reaped(cy, &cy->procs[i], status);
                break;
            }
        }
    }
}

static void respawn_due(llmr_cycle *cy)
{
    double now = llmr_mono_s();

    for (int i = 0; i < LLMR_MAX_PROCS; i++) {
        llmr_proc *p = &cy->procs[i];
        if (p->pid == 0 && p->respawn_at > 0 && p->respawn_at <= now)
            if (spawn(cy, p, 0) < 0)
                schedule_respawn(p);
    }
    if (cy->prober.pid == 0 && cy->prober.respawn_at > 0 && cy->prober.respawn_at <= now)
        llmr_prober_spawn(cy);
    if (cy->syncer.pid == 0 && cy->syncer.respawn_at > 0 && cy->syncer.respawn_at <= now)
        llmr_syncer_spawn(cy);
}

static int pending_respawns(const llmr_cycle *cy)
{
    for (int i = 0; i < LLMR_MAX_PROCS; i++)
        if (cy->procs[i].pid == 0 && cy->procs[i].respawn_at > 0)
            return 1;
    return 0;
}

static int has_orphans(const llmr_cycle *cy)
{
    for (int k = 0; k < LLMR_WORKER_SLOTS; k++)
        if (cy->orphans[k] != 0)
            return 1;
    return 0;
}

/* Wakes the loop with SIGALRM at the next respawn or stop deadline. */
static void arm_timer(const llmr_cycle *cy)
{
    double next = 0, now = llmr_mono_s(), wait;
    struct itimerval it;

    for (int i = 0; i < LLMR_MAX_PROCS; i++)
        if (cy->procs[i].pid == 0 && cy->procs[i].respawn_at > 0
            && (next == 0 || cy->procs[i].respawn_at < next))
            next = cy->procs[i].respawn_at;
    if (cy->prober.pid == 0 && cy->prober.respawn_at > 0
        && (next == 0 || cy->prober.respawn_at < next))
        next = cy->prober.respawn_at;
    if (cy->syncer.pid == 0 && cy->syncer.respawn_at > 0
        && (next == 0 || cy->syncer.respawn_at < next))
        next = cy->syncer.respawn_at;
    if (cy->quitting && (next == 0 || cy->stop_deadline < next))
        next = cy->stop_deadline;
    /* Workers report ready through the segment, not by signal: look again
     * every READY_POLL while a reload waits, and every second for the
     * workers a dead master left. */
    if (cy->pending.conf != NULL && (next == 0 || now + READY_POLL < next))
        next = now + READY_POLL;
    if (has_orphans(cy) && (next == 0 || now + 1.0 < next))
        next = now + 1.0;
    memset(&it, 0, sizeof(it));
    if (next > 0) {
        wait = next - now < 0.001 ? 0.001 : next - now;
        it.it_value.tv_sec = (time_t)wait;
        it.it_value.tv_usec = (suseconds_t)((wait - (double)(time_t)wait) * 1e6);
    }
    setitimer(ITIMER_REAL, &it, NULL);
}

static void abandon(llmr_cycle *cy, const char *why);

static void close_listeners(llmr_cycle *cy)
{
    for (int i = 0; i < cy->nlisteners; i++)
        close(cy->listeners[i].fd);
    cy->nlisteners = 0;
}

static void stop(llmr_cycle *cy, int how)
{
    if (cy->quitting == 2 || cy->quitting == how)
        return;
    cy->reload_queued = 0;
    if (cy->pending.conf != NULL)
        abandon(cy, "the master is stopping");
    /* The workers close their copies as they start draining; once the
     * master's are closed too, a new connection is refused at once rather
     * than queued in the backlog and reset when the last worker leaves. */
    close_listeners(cy);
    cy->quitting = how;
    cy->stop_deadline = llmr_mono_s() + STOP_GRACE
                      + (how == 1 ? cy->conf->drain_timeout : 0);
    llmr_info("%s stop: signalling %d worker(s)", how == 1 ? "graceful" : "fast",
              live_procs(cy));
    signal_procs(cy, how == 1 ? SIGQUIT : SIGTERM, 0);
    llmr_prober_signal(cy, SIGTERM);
    llmr_syncer_signal(cy, SIGQUIT);    /* hands back unused grants, then exits */
}

/* Settings that live in the master's own resources cannot change without a
 * restart; a reload keeps the running values and says so. */
static void keep_fixed_settings(const llmr_conf *old, llmr_conf *conf)
{
    if (strcmp(old->shm_name, conf->shm_name) != 0)
        llmr_warn("reload: server.shm_name changes only on restart; keeping %s",
                  old->shm_name);
    if (strcmp(old->pid_file, conf->pid_file) != 0)
        llmr_warn("reload: server.pid_file changes only on restart; keeping %s",
                  old->pid_file);
}

__attribute__((format(printf, 2, 3)))
static void reload_failed(llmr_cycle *cy, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    llmr_error("%s", msg);
    llmr_shm_reload_outcome(&cy->shm, 0, msg);
}

/* Builds the new config, its listeners and slots, and starts its workers
 * beside the serving generation; check_pending() swaps once they are all
 * ready, or abandons them. */
static void reload(llmr_cycle *cy)
{
    llmr_pending *pd = &cy->pending;
    char err[1024];
    llmr_conf *conf = NULL;

    if (pd->conf != NULL) {
        cy->reload_queued = 1;  /* after the one in progress */
        return;
    }
    llmr_info("reloading %s", cy->conf_path);
    if (llmr_conf_load(cy->conf_path, &conf, err, sizeof(err)) < 0) {
        reload_failed(cy, "reload failed, configuration unchanged: %s", err);
        return;
    }
    for (int i = 0; i < conf->nwarnings; i++)    /* LiteLLM YAML keys it ignores */
        llmr_warn("%s", conf->warnings[i]);
    keep_fixed_settings(cy->conf, conf);
    free(conf->shm_name);
    conf->shm_name = strdup(cy->conf->shm_name);
    free(conf->pid_file);
    conf->pid_file = strdup(cy->conf->pid_file);
    if (conf->shm_name == NULL || conf->pid_file == NULL) {
        llmr_conf_free(conf);
        reload_failed(cy, "reload failed, configuration unchanged: out of memory");
        return;
    }
    if (llmr_listeners_reconcile(conf, cy->listeners, cy->nlisteners, pd->listeners,
                                 &pd->nlisteners) < 0) {
        llmr_conf_free(conf);
        reload_failed(cy, "reload failed, configuration unchanged: cannot listen "
                          "(see the line above)");
        return;
    }
    if (llmr_master_map_slots(&cy->shm, conf, cy->last_gen + 1, oldest_live_gen(cy)) < 0) {
        llmr_listeners_close_unused(pd->listeners, pd->nlisteners, cy->listeners,
                                    cy->nlisteners);
        llmr_conf_free(conf);
        llmr_master_restamp_slots(&cy->shm, cy->conf, cy->generation);
        reload_failed(cy, "reload failed, configuration unchanged: shared segment full");
        return;
    }
    pd->conf = conf;
    pd->gen = ++cy->last_gen;
    pd->deadline = llmr_mono_s() + LLMR_READY_TIMEOUT;
    pd->failed[0] = '\0';
    /* Until the swap the segment names the generation that serves; status
     * shows the slots of this one beside it. */
    atomic_store(&cy->shm.seg->hdr.pending_gen, pd->gen);
    if (spawn_generation(cy, 1) < 0)
        snprintf(pd->failed, sizeof(pd->failed), "could not start its workers");
}

static void after_pending(llmr_cycle *cy)
{
    memset(&cy->pending, 0, sizeof(cy->pending));
    if (cy->reload_queued) {
        cy->reload_queued = 0;
        reload(cy);
    }
}

/* Every new worker serves: the new generation becomes the running one and
 * only now are the old workers told to drain. */
static void commit(llmr_cycle *cy)
{
    llmr_pending *pd = &cy->pending;
    char msg[256];

    llmr_listeners_close_unused(cy->listeners, cy->nlisteners, pd->listeners,
                                pd->nlisteners);
    memcpy(cy->listeners, pd->listeners, sizeof(pd->listeners[0]) * (size_t)pd->nlisteners);
    cy->nlisteners = pd->nlisteners;
    llmr_conf_free(cy->conf);
    cy->conf = pd->conf;
    cy->generation = pd->gen;
    atomic_store(&cy->shm.seg->hdr.generation, cy->generation);
    atomic_store(&cy->shm.seg->hdr.pending_gen, 0);
    /* Cancel respawns of the old generation: the new one replaces them. */
    for (int i = 0; i < LLMR_MAX_PROCS; i++)
        if (cy->procs[i].pid == 0)
            memset(&cy->procs[i], 0, sizeof(cy->procs[i]));
    signal_procs(cy, SIGQUIT, 1);
    llmr_prober_replace(cy);
    llmr_syncer_replace(cy);
    snprintf(msg, sizeof(msg), "reloaded: generation %u, %d deployment(s), %d worker(s)",
             cy->generation, cy->conf->ndeployments, worker_count(cy->conf));
    llmr_info("%s", msg);
    llmr_shm_reload_outcome(&cy->shm, 1, msg);
    after_pending(cy);
}

/* The new generation cannot start: stop its workers (drain those that
 * already serve, kill those that never did) and keep the old one. */
static void abandon(llmr_cycle *cy, const char *why)
{
    llmr_pending *pd = &cy->pending;

    for (int i = 0; i < LLMR_MAX_PROCS; i++) {
        llmr_proc *p = &cy->procs[i];
        int ready;
        if (p->pid <= 0 || p->gen != pd->gen)
            continue;
        ready = llmr_shm_worker_ready_gen(&cy->shm, p->wslot) == pd->gen;
        p->draining = 1;
        if (kill(p->pid, ready ? SIGQUIT : SIGKILL) == -1 && errno != ESRCH)
            llmr_warn("kill(%d): %s", (int)p->pid, strerror(errno));
    }
    llmr_listeners_close_unused(pd->listeners, pd->nlisteners, cy->listeners, cy->nlisteners);
    llmr_conf_free(pd->conf);
    pd->conf = NULL;
    llmr_master_restamp_slots(&cy->shm, cy->conf, cy->generation);
    atomic_store(&cy->shm.seg->hdr.pending_gen, 0);
    reload_failed(cy, "reload abandoned: generation %u did not start (%s); generation %u "
                  "keeps serving, configuration unchanged", pd->gen, why, cy->generation);
    after_pending(cy);
}

static void check_pending(llmr_cycle *cy)
{
    llmr_pending *pd = &cy->pending;
    int n = 0, ready = 0;
    char why[300];

    if (pd->conf == NULL)
        return;
    if (pd->failed[0] != '\0') {
        snprintf(why, sizeof(why), "%s", pd->failed);
        abandon(cy, why);
        return;
    }
    for (int i = 0; i < LLMR_MAX_PROCS; i++) {
        const llmr_proc *p = &cy->procs[i];
        if (p->pid > 0 && p->gen == pd->gen) {
            n++;
            ready += llmr_shm_worker_ready_gen(&cy->shm, p->wslot) == pd->gen;
        }
    }
    if (n == worker_count(pd->conf) && ready == n)
        commit(cy);
    else if (llmr_mono_s() >= pd->deadline) {
        snprintf(why, sizeof(why), "%d of %d worker(s) ready after %.0f s", ready,
                 worker_count(pd->conf), LLMR_READY_TIMEOUT);
        abandon(cy, why);
    }
}

/* After a crash of the previous master the segment still counts the
 * requests its workers had in flight, and max_parallel_requests would
 * refuse forever.  A share whose worker is gone is taken back; one whose
 * worker still runs (draining after its master died) is kept, and taken
 * back when check_orphans() sees it gone. */
static void adopt_segment(llmr_cycle *cy)
{
    int kept = 0;

    for (int k = 0; k < LLMR_WORKER_SLOTS; k++) {
        int32_t pid = llmr_shm_worker_pid_of(&cy->shm, k);
        if (pid > 0 && pid != getpid() && llmr_pid_is_ours(pid)) {
            cy->orphans[k] = pid;
            kept++;
            continue;
        }
        llmr_counters_reap_worker(&cy->shm, k);
        llmr_shm_worker_pid(&cy->shm, k, 0);
    }
    llmr_shm_recount_inflight(&cy->shm);
    if (kept > 0)
        llmr_warn("%d worker(s) of a previous master still running; their requests in "
                  "flight stay counted until they exit", kept);
}

static void check_orphans(llmr_cycle *cy)
{
    for (int k = 0; k < LLMR_WORKER_SLOTS; k++) {
        if (cy->orphans[k] == 0 || llmr_pid_is_ours(cy->orphans[k]))
            continue;
        llmr_info("worker %d of a previous master has exited", (int)cy->orphans[k]);
        llmr_counters_reap_worker(&cy->shm, k);
        llmr_shm_worker_pid(&cy->shm, k, 0);
        cy->orphans[k] = 0;
    }
}

static int take_segment(llmr_cycle *cy)
{
    pid_t other;

    if (llmr_shm_create(&cy->shm, cy->conf->shm_name) < 0)
        return -1;
    other = atomic_load(&cy->shm.seg->hdr.master_pid);
    if (other > 0 && other != getpid() && llmr_pid_is_ours(other)) {
        llmr_error("another llmroute (pid %d) uses shared segment %s", (int)other,
                   cy->conf->shm_name);
        return -1;
    }
    cy->owns_shm = 1;
    atomic_store(&cy->shm.seg->hdr.master_pid, (int32_t)getpid());
    snprintf(cy->shm.seg->hdr.conf_path, sizeof(cy->shm.seg->hdr.conf_path), "%s",
             cy->conf_path);
    /* A crashed master's segment taken over: uptime counts from this master. */
    cy->shm.seg->hdr.start_time = (int64_t)time(NULL);
    atomic_store(&cy->shm.seg->hdr.prober_pid, 0);  /* a dead master's prober exits itself */
    atomic_store(&cy->shm.seg->hdr.sync_pid, 0);    /* and so does its sync process */
    if (!cy->conf->sync)
        atomic_store(&cy->shm.seg->hdr.sync_state, LLMR_SYNC_OFF);
    llmr_syncer_starting(cy);   /* before the workers: they are not ready until it has leases */
    adopt_segment(cy);
    return 0;
}

static int cycle_init(llmr_cycle *cy, const char *conf_path,
                      const llmr_worker_entry *worker)
{
    char err[1024];

    cy->conf_path = conf_path;
    cy->worker = *worker;
    cy->pid_fd = -1;
    if (llmr_conf_load(conf_path, &cy->conf, err, sizeof(err)) < 0) {
        llmr_error("%s", err);
        return -1;
    }
    for (int i = 0; i < cy->conf->nwarnings; i++)   /* LiteLLM YAML keys it ignores */
        llmr_warn("%s", cy->conf->warnings[i]);
    if (llmr_libs_init() < 0) {
        llmr_error("curl_global_init failed");
        return -1;
    }
    /* The lock first: a second instance must touch nothing of the first. */
    if ((cy->pid_fd = llmr_pid_file_lock(cy->conf->pid_file)) < 0)
        return -1;
    cy->wrote_pid = 1;
    if (take_segment(cy) < 0)
        return -1;
    if (llmr_listeners_reconcile(cy->conf, NULL, 0, cy->listeners, &cy->nlisteners) < 0)
        return -1;
    cy->generation = cy->last_gen = 1;
    if (llmr_master_map_slots(&cy->shm, cy->conf, cy->generation, cy->generation) < 0)
        return -1;
    atomic_store(&cy->shm.seg->hdr.generation, cy->generation);
    atomic_store(&cy->shm.seg->hdr.pending_gen, 0);
    return 0;
}

static void cycle_free(llmr_cycle *cy)
{
    if (cy->pending.conf != NULL) {
        llmr_listeners_close_unused(cy->pending.listeners, cy->pending.nlisteners,
                                    cy->listeners, cy->nlisteners);
        llmr_conf_free(cy->pending.conf);
    }
    /* Unlinked while still locked, so that no other instance locks the
     * file this one is about to remove. */
    if (cy->conf != NULL && cy->wrote_pid)
        unlink(cy->conf->pid_file);
    if (cy->pid_fd >= 0)
        close(cy->pid_fd);
    llmr_conf_free(cy->conf);
    close_listeners(cy);
    if (cy->owns_shm)
        llmr_shm_destroy(&cy->shm);
    else
        llmr_shm_detach(&cy->shm);
    curl_global_cleanup();
    free(cy);
}

static void kill_stragglers(llmr_cycle *cy)
{
    if (cy->quitting && llmr_mono_s() >= cy->stop_deadline) {
        llmr_warn("%d worker(s) still running past the stop deadline; killing them",
                  live_procs(cy));
        signal_procs(cy, SIGKILL, 0);
        llmr_prober_signal(cy, SIGKILL);
        llmr_syncer_signal(cy, SIGKILL);
        cy->stop_deadline = llmr_mono_s() + 1.0;
    }
}

/* Acts on the flags the handlers set.  Returns 0 to go on, 1 when done. */
static int handle_events(llmr_cycle *cy)
{
    if (sig_child) {
        sig_child = 0;
        reap(cy);
    }
    if (sig_terminate) {
        sig_terminate = 0;
        stop(cy, 2);
    }
    if (sig_quit) {
        sig_quit = 0;
        stop(cy, 1);
    }
    if (sig_reopen) {              /* logrotate: the workers reopen their logs */
        sig_reopen = 0;
        signal_procs(cy, SIGUSR1, 0);
    }
    if (sig_reload) {
        sig_reload = 0;
        if (!cy->quitting)
            reload(cy);
    }
    sig_alarm = 0;
    check_orphans(cy);
    if (cy->quitting)
        return live_procs(cy) == 0 && cy->prober.pid == 0 && cy->prober_retired == 0
               && cy->syncer.pid == 0 && cy->syncer_retired == 0
               ? 1 : (kill_stragglers(cy), 0);
    check_pending(cy);
    respawn_due(cy);
    if (live_procs(cy) == 0 && !pending_respawns(cy)) {
        llmr_error("no worker process left; exiting");
        return -1;
    }
    return 0;
}

int llmr_master_run(const char *conf_path, const llmr_worker_entry *worker)
{
    llmr_cycle *cy = calloc(1, sizeof(*cy));
    sigset_t blocked, none;
    int rc = 0;

    if (cy == NULL)
        return 1;
    cy->pid_fd = -1;
    if (install_signals(&blocked) < 0 || cycle_init(cy, conf_path, worker) < 0)
        goto failed;
    if (spawn_generation(cy, 0) < 0)
        goto failed;
    llmr_prober_spawn(cy);
    llmr_syncer_spawn(cy);
    llmr_info("llmroute %s started: %d worker(s), %d deployment(s), listening on %s%s",
              LLMR_VERSION, worker_count(cy->conf), cy->conf->ndeployments,
              cy->listeners[0].addr, cy->nlisteners > 1 ? " and more" : "");
    sigemptyset(&none);
    while (rc == 0) {
        arm_timer(cy);
        while (!sig_reload && !sig_quit && !sig_terminate && !sig_child && !sig_alarm
               && !sig_reopen)
            sigsuspend(&none);
        rc = handle_events(cy);
    }
    llmr_info("llmroute stopped");
    cycle_free(cy);
    return rc < 0 ? 1 : 0;

failed:
    llmr_prober_signal(cy, SIGKILL);
    llmr_syncer_signal(cy, SIGKILL);
    if (live_procs(cy) > 0 || cy->prober.pid > 0 || cy->syncer.pid > 0) {
        signal_procs(cy, SIGKILL, 0);
        while (wait(NULL) > 0)
            ;
    }
    cycle_free(cy);
    return 1;
}
