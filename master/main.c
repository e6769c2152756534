/* llmroute's command line (DESIGN.md §5). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "master.h"
#include "worker.h"     /* the entry point handed to the master: nothing else */

/* Where the default config is found, like nginx's compiled-in prefix; the
 * Makefile sets it to the source tree. */
#ifndef LLMR_PREFIX
#define LLMR_PREFIX "."
#endif
#define DEFAULT_CONF "conf/llmroute.conf"
/* -s reload waits this long for the master's verdict: the new workers
 * have LLMR_READY_TIMEOUT to start, the config a moment to load. */
#define RELOAD_WAIT (LLMR_READY_TIMEOUT + 20.0)

/* One line per flag: tests/integration/test_install.py checks that every
 * option getopt accepts below is listed here, and the man page
 * (doc/llmroute.8) repeats them. */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: llmroute [-p PREFIX] [-c FILE] [-t | -s reload|quit|stop|reopen|status | status [-w|--json]] [-d] [-v] [-h]\n"
            "       llmroute [--format yaml] convert FILE\n"
            "  -p PREFIX  where the default config and a relative -c FILE are found\n"
            "             (default " LLMR_PREFIX ")\n"
            "  -c FILE    configuration file (default PREFIX/" DEFAULT_CONF ")\n"
            "  -t         test the configuration and exit\n"
            "  -s SIGNAL  send reload, quit (graceful) or stop (fast) to the running master;\n"
            "             reload waits for its outcome and exits 1 when it failed;\n"
            "             reopen reopens the access log (after logrotate)\n"
            "  status     print each deployment's live state from the shared segment\n"
            "  -w         with status: every column, the limits too, ids in full\n"
            "  --json     with status: as JSON, the same as GET /status.json\n"
            "  --format yaml  read the config as a LiteLLM config.yaml whatever its name\n"
            "             (names ending in .yaml or .yml always are)\n"
            "  convert FILE  print the native config equivalent to the LiteLLM config.yaml\n"
            "             FILE, its warnings as comments\n"
            "  -d         debug logging\n"
            "  -v         print the version and exit\n"
            "  -h, --help print this help and exit\n"
            "Signals to the master: HUP reload, QUIT graceful stop, TERM/INT fast stop, USR1 reopen logs.\n"
            "A bad flag or argument prints this help on stderr and exits 2.\n");
}

static int test_config(const char *path)
{
    char err[1024];
    llmr_conf *conf = NULL;

    if (llmr_conf_load(path, &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "llmroute: %s\nllmroute: configuration file %s test failed\n",
                err, path);
        return 1;
    }
    for (int i = 0; i < conf->nwarnings; i++)
        fprintf(stderr, "llmroute: warning: %s\n", conf->warnings[i]);
    fprintf(stderr, "llmroute: configuration file %s syntax is ok\n"
                    "llmroute: configuration file %s test is successful\n", path, path);
    llmr_conf_free(conf);
    return 0;
}

/* `llmroute convert FILE`: the native file on stdout. */
static int convert(const char *path)
{
    char err[1024];

    if (llmr_conf_convert(path, stdout, err, sizeof(err)) < 0) {
        fprintf(stderr, "llmroute: %s\n", err);
        return 1;
    }
    return 0;
}

/* The running master's pid from the config's pid file, or -1.  Reads only
 * what locates the master: the master re-reads the file itself. */
static int read_master(const char *path, llmr_conf **conf)
{
    char err[1024];
    FILE *f;
    int pid = 0;

    if (llmr_conf_load_mode(path, LLMR_CONF_LOCATE, conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "llmroute: %s\n", err);
        return -1;
    }
    f = fopen((*conf)->pid_file, "r");
    if (f == NULL || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "llmroute: cannot read pid file %s: %s\n", (*conf)->pid_file,
                f == NULL ? strerror(errno) : "no pid in it");
        pid = -1;
    }
    /* The master holds the pid file's flock for its whole life: a lock we
     * can take means no master, and the pid is stale (maybe another
     * program's by now), so it is never signalled. */
    if (pid > 0 && flock(fileno(f), LOCK_SH | LOCK_NB) == 0) {
        fprintf(stderr, "llmroute: not running: no master holds the lock of %s (its pid %d "
                "is stale)\n", (*conf)->pid_file, pid);
        pid = -1;
    }
    if (f != NULL)
        fclose(f);
    if (pid > 0 && kill(pid, 0) == -1 && errno == ESRCH) {
        fprintf(stderr, "llmroute: not running: pid %d of %s is gone\n", pid,
                (*conf)->pid_file);
        pid = -1;
    }
    return pid;
}

/* Checks that the segment is the master's and that it runs this file: a
 * reload re-reads the master's own file, so naming another is refused
 * rather than silently reloading something else. */
static int check_reload_target(const llmr_shm *shm, int pid, const char *path)
{
    char real[PATH_MAX];
    int owner = atomic_load(&shm->seg->hdr.master_pid);

    if (owner != pid) {
        fprintf(stderr, "llmroute: shared segment %s belongs to pid %d, not to pid %d "
                "of the pid file\n", shm->name, owner, pid);
        return -1;
    }
    if (realpath(path, real) != NULL && strcmp(real, shm->seg->hdr.conf_path) != 0) {
        fprintf(stderr, "llmroute: the master (pid %d) runs %s, not %s: a reload re-reads "
                "the master's own file; edit that one, or restart the master with -c %s\n",
                pid, shm->seg->hdr.conf_path, real, real);
        return -1;
    }
    return 0;
}

/* SIGHUP, then the master's verdict from the segment. */
static int reload_and_wait(const llmr_conf *conf, int pid, const char *path)
{
    char msg[1024];
    llmr_shm shm;
    uint32_t seq0, seq;
    double deadline = llmr_mono_s() + RELOAD_WAIT;
    int ok = -1;
    struct timespec tick = { 0, 20 * 1000 * 1000 };

    if (llmr_shm_attach(&shm, conf->shm_name) < 0) {
        fprintf(stderr, "llmroute: cannot follow the reload: shared segment %s: %s\n",
                conf->shm_name, strerror(errno));
        return 1;
    }
    if (check_reload_target(&shm, pid, path) < 0) {
        llmr_shm_detach(&shm);
        return 1;
    }
    /* An outcome being written now is not ours: start from a stable one. */
    while (((seq0 = llmr_shm_reload_seq(&shm)) & 1u) && llmr_mono_s() < deadline)
        nanosleep(&tick, NULL);
    if (kill(pid, SIGHUP) == -1) {
        fprintf(stderr, "llmroute: kill(%d, reload): %s\n", pid, strerror(errno));
        llmr_shm_detach(&shm);
        return 1;
    }
    while (ok < 0 && llmr_mono_s() < deadline && kill(pid, 0) == 0) {
        nanosleep(&tick, NULL);
        seq = llmr_shm_reload_seq(&shm);
        if (seq > seq0 + 1)
            ok = llmr_shm_reload_read(&shm, seq, msg, sizeof(msg));
    }
    llmr_shm_detach(&shm);
    if (ok < 0) {
        fprintf(stderr, "llmroute: no outcome from the master (pid %d) %s\n", pid,
                kill(pid, 0) == 0 ? "within the wait; see its log" : ": it has exited");
        return 1;
    }
    fprintf(stderr, "llmroute: %s\n", msg);
    return ok ? 0 : 1;
}

static int send_signal(const char *path, const char *name)
{
    static const struct { const char *name; int signo; } sigs[] = {
        { "reload", SIGHUP }, { "quit", SIGQUIT }, { "stop", SIGTERM },
        { "reopen", SIGUSR1 },
    };
    llmr_conf *conf = NULL;
    int pid, signo = 0, rc = 0;

    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (strcmp(name, sigs[i].name) == 0)
            signo = sigs[i].signo;
    if (signo == 0) {
        fprintf(stderr, "llmroute: unknown signal \"%s\" (reload, quit, stop, reopen, status)\n", name);
        return 1;
    }
    pid = read_master(path, &conf);
    if (pid < 0)
        rc = 1;
    else if (signo == SIGHUP)
        rc = reload_and_wait(conf, pid, path);
    else if (kill(pid, signo) == -1) {
        fprintf(stderr, "llmroute: kill(%d, %s): %s\n", pid, name, strerror(errno));
        rc = 1;
    }
    llmr_conf_free(conf);
    return rc;
}

/* A relative -c is found under -p when one is given (as nginx does), else
 * from the current directory like any file argument; the default config is
 * always under the prefix.  The master keeps an absolute path, so that its
 * reloads and the paths the config names do not depend on the directory it
 * was started from. */
static const char *conf_path(const char *given, const char *prefix, char *buf, size_t cap)
{
    char joined[PATH_MAX * 2];

    if (given == NULL)
        snprintf(joined, sizeof(joined), "%s/%s", prefix ? prefix : LLMR_PREFIX, DEFAULT_CONF);
    else if (given[0] != '/' && prefix != NULL)
        snprintf(joined, sizeof(joined), "%s/%s", prefix, given);
    else
        snprintf(joined, sizeof(joined), "%s", given);
    if (realpath(joined, buf) != NULL)
        return buf;
    /* The loader says why it cannot open it. */
    if (strlen(joined) >= cap)
        joined[cap - 1] = '\0';
    memcpy(buf, joined, strlen(joined) + 1);
    return buf;
}

/* glibc keeps up to 7 freed chunks of each small size in a per-thread cache
 * (tcache) that malloc() and free() serve without locking or searching its
 * bins.  A proxied request frees about 80 objects (libevent's, libcurl's),
 * in bursts of one size past 7, and the rest take the arena's slow paths:
 * ~6,500 instructions a request, 4%, which a cache of 32 saves (it holds at
 * most ~1 MB per worker).  The depth is a tunable glibc reads only when a
 * program starts, so the daemon executes itself once more with it, before
 * it has opened anything; it leaves a GLIBC_TUNABLES someone set alone.
 * The binary's own path, not /proc/self/exe: under valgrind that link is
 * valgrind's launcher. */
static void deeper_malloc_cache(char **argv)
{
    char self[PATH_MAX];
    ssize_t n;

    if (getenv("GLIBC_TUNABLES") != NULL)
        return;
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0 || (size_t)n >= sizeof(self) - 1)
        return;
    self[n] = '\0';
    if (setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=32", 0) != 0)
        return;
    execv(self, argv);
    unsetenv("GLIBC_TUNABLES");     /* not executable (gone?): the default cache */
}

int main(int argc, char **argv)
{
    static const llmr_worker_entry worker = { llmr_worker_main, LLMR_EXIT_FATAL };
    const char *conf = NULL, *prefix = NULL, *sig = NULL;
    char path[PATH_MAX];
    int opt, test = 0, status_flags = 0;
    static const struct option longopts[] = {     /* status --json */
        { "json", no_argument, NULL, 'J' },
        { "format", required_argument, NULL, 'F' },    /* --format yaml */
        { NULL, 0, NULL, 0 }
    };

    /* --help alone among long options, as an operator types it by habit. */
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    while ((opt = getopt_long(argc, argv, "c:p:ts:dvhw", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 'p': prefix = optarg; break;
        case 't': test = 1; break;
        case 's': sig = optarg; break;
        case 'd': llmr_log_level = LLMR_LOG_DEBUG; break;
        case 'v': printf("llmroute %s\n", LLMR_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        case 'w': status_flags |= LLMR_STATUS_WIDE; break;
        case 'J': status_flags |= LLMR_STATUS_JSON; break;
        case 'F':
            if (strcmp(optarg, "yaml") != 0 && strcmp(optarg, "libconfig") != 0) {
                fprintf(stderr, "llmroute: --format is yaml or libconfig\n");
                usage(stderr);
                return 2;
            }
            llmr_conf_yaml_forced = strcmp(optarg, "yaml") == 0;
            break;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 2 == argc && strcmp(argv[optind], "convert") == 0 && sig == NULL && !test)
        return convert(argv[optind + 1]);
    if (optind < argc && strcmp(argv[optind], "status") == 0 && sig == NULL)
        sig = "status";
    else if (optind < argc) {
        usage(stderr);
        return 2;
    }
    conf = conf_path(conf, prefix, path, sizeof(path));
    if (test)
        return test_config(conf);
    if (sig != NULL && strcmp(sig, "status") == 0)
        return llmr_status_print(conf, status_flags);
    if (sig != NULL)
        return send_signal(conf, sig);
    deeper_malloc_cache(argv);
    return llmr_master_run(conf, &worker);
}
