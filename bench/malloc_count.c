/* malloc_count.so: counts the allocations of a process, for the benchmark's
 * "allocations per request" (a count, which a loaded box does not blur the
 * way it blurs clocks).  LD_PRELOAD it into llmroute; then
 *
 *   kill -USR2 <worker pid>
 *
 * appends one line to $MALLOC_COUNT_OUT.<pid> (or stderr):
 *   malloc=N calloc=N realloc=N free=N
 * and, with MALLOC_COUNT_SITES=1, the top call sites since the last dump
 * (each a chain of return addresses, symbolised by backtrace_symbols_fd),
 * then starts the site counts anew, so that two dumps around a run of
 * requests give that run's sites.  Counters are per process: a forked
 * worker starts from its parent's values, which the difference of two
 * dumps removes.  Counting malloc through glibc's __libc_* entry points
 * needs no dlsym (which itself allocates). */
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

#define DEPTH 7
#define NSITES 4096

typedef struct site {
    void *pc[DEPTH];
    int n;
    unsigned long count;
} site;

static unsigned long n_malloc, n_calloc, n_realloc, n_free;
static int want_sites;
static __thread int busy;       /* inside our own bookkeeping */
static site sites[NSITES];

static void note_site(void)
{
    void *pc[DEPTH + 2];
    int n;
    uint64_t h = 1469598103934665603ull;

    if (!want_sites || busy)
        return;
    busy = 1;
    n = backtrace(pc, DEPTH + 2);
    /* pc[0] is here, pc[1] the wrapper: the chain starts at the caller. */
    n = n > 2 ? n - 2 : 0;
    for (int i = 0; i < n; i++)
        h = (h ^ (uint64_t)(uintptr_t)pc[i + 2]) * 1099511628211ull;
    for (unsigned i = 0; i < 64; i++) {
        site *s = &sites[(h + i) & (NSITES - 1)];
        if (s->count == 0) {
            memcpy(s->pc, pc + 2, (size_t)n * sizeof(void *));
            s->n = n;
        } else if (s->n != n || memcmp(s->pc, pc + 2, (size_t)n * sizeof(void *)) != 0) {
            continue;
        }
        s->count++;
        break;
    }
    busy = 0;
}

void *malloc(size_t n)
{
    __atomic_add_fetch(&n_malloc, 1, __ATOMIC_RELAXED);
    note_site();
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    __atomic_add_fetch(&n_calloc, 1, __ATOMIC_RELAXED);
    note_site();
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    __atomic_add_fetch(&n_realloc, 1, __ATOMIC_RELAXED);
    note_site();
    return __libc_realloc(p, n);
}

void free(void *p)
{
    if (p != NULL)
        __atomic_add_fetch(&n_free, 1, __ATOMIC_RELAXED);
    __libc_free(p);
}

static int by_count(const void *a, const void *b)
{
    unsigned long x = ((const site *)a)->count, y = ((const site *)b)->count;

    return x < y ? 1 : x > y ? -1 : 0;
}

/* Not async-signal-safe (stdio, qsort): a benchmark's tool, signalled
 * while the process sits idle between runs. */
static void on_dump(int sig)
{
    const char *dir = getenv("MALLOC_COUNT_OUT");
    char path[4096];
    int fd = 2;
    FILE *f;

    (void)sig;
    busy++;
    if (dir != NULL) {
        snprintf(path, sizeof(path), "%s.%d", dir, (int)getpid());
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    }
    if (fd < 0 || (f = fdopen(dup(fd), "a")) == NULL)
        goto out;
    fprintf(f, "malloc=%lu calloc=%lu realloc=%lu free=%lu\n", n_malloc, n_calloc, n_realloc,
            n_free);
    if (want_sites) {
        qsort(sites, NSITES, sizeof(site), by_count);
        for (int i = 0; i < 80 && sites[i].count > 0; i++) {
            fprintf(f, "site %d: %lu\n", i, sites[i].count);
            fflush(f);
            backtrace_symbols_fd(sites[i].pc, sites[i].n, fileno(f));
        }
        memset(sites, 0, sizeof(sites));
        fprintf(f, "end\n");
    }
    fclose(f);
out:
    if (fd > 2)
        close(fd);
    busy--;
}

__attribute__((constructor)) static void init(void)
{
    struct sigaction sa;
    void *pc[2];

    want_sites = getenv("MALLOC_COUNT_SITES") != NULL;
    busy = 1;
    backtrace(pc, 2);           /* loads libgcc's unwinder now, not in malloc */
    busy = 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_dump;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
}
