/* Running out of file descriptors must not take a worker down.  libevent's
 * listener, when accept() fails with EMFILE, logs and returns with the
 * listening socket still readable, so the loop spins at full CPU writing
 * the same line; meanwhile the connections already open starve.  Like
 * nginx, the worker stops accepting for a short while instead, logs once
 * per interval with a count, and keeps serving what it has.
 *
 * A refused request is answered and the connection closed while the client
 * may still be sending its body; closing a socket with unread data sends a
 * reset that can destroy the answer before the client reads it.  A
 * lingering close (nginx's lingering_close) keeps reading and discarding
 * for a few seconds after the answer and the FIN are out. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/listener.h>

#include "conn.h"
#include "log.h"
#include "clock.h"

#define ACCEPT_PAUSE_MS 500         /* accepts stay off this long after EMFILE */
#define ACCEPT_LOG_MS 5000          /* at most one accept-failure line per this */
#define LINGER_MS 5000              /* a lingering close lasts at most this */
#define LINGER_MAX 256              /* lingering closes at once, each an fd */
#define LINGER_READS 4              /* reads per wakeup: a client that keeps the
                                     * socket full must not hold the worker;
                                     * the event, persistent, fires again */

typedef struct lingerer {
    struct event *ev;
    int fd;
    int64_t until_us;
    struct lingerer *next;
} lingerer;

typedef struct llmr_guard {
    struct event *resume;           /* turns accepting back on */
    int paused;
    unsigned long failed;           /* accept failures since the last log line */
    int last_errno;
    int64_t last_log_us;
    lingerer *lingering;
    int nlinger;
} llmr_guard;

/* libevent hands the listener's error callback evhttp's pointer, not ours:
 * there is one worker per process, so it is found here. */
static llmr_worker *guard_worker;

static void set_accepting(llmr_worker *w, int on)
{
    for (int i = 0; i < w->nbound; i++) {
        struct evconnlistener *l = evhttp_bound_socket_get_listener(w->bound[i]);
        if (on)
            evconnlistener_enable(l);
        else
            evconnlistener_disable(l);
    }
}

static void log_failures(llmr_worker *w, int force)
{
    llmr_guard *g = w->guard;
    int64_t now = llmr_clock_us();

    if (g->failed == 0 || (!force && now - g->last_log_us < ACCEPT_LOG_MS * 1000))
        return;
    llmr_warn("worker %d: accept() failed %lu time(s): %s; accepting paused %d ms at a "
              "time (raise worker_rlimit_nofile?)", w->index, g->failed,
              strerror(g->last_errno), ACCEPT_PAUSE_MS);
    g->failed = 0;
    g->last_log_us = now;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    llmr_worker *w = arg;

    (void)fd;
    (void)what;
    w->guard->paused = 0;
    log_failures(w, 0);
    if (!w->draining)
        set_accepting(w, 1);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    llmr_worker *w = guard_worker;
    llmr_guard *g = w != NULL ? w->guard : NULL;
    int err = errno;
    struct timeval tv = { 0, ACCEPT_PAUSE_MS * 1000 };

    (void)l;
    (void)arg;
    if (g == NULL)
        return;
    g->failed++;
    g->last_errno = err;
    log_failures(w, 0);
    if (!g->paused) {
        g->paused = 1;
        set_accepting(w, 0);
        evtimer_add(g->resume, &tv);
    }
}

void llmr_guard_listeners(llmr_worker *w)
{
    for (int i = 0; i < w->nbound; i++)
        evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(w->bound[i]),
                                    on_accept_error);
}

static void linger_free(llmr_guard *g, lingerer *l)
{
    for (lingerer **p = &g->lingering; *p != NULL; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            break;
        }
    event_free(l->ev);
    close(l->fd);
    g->nlinger--;
    free(l);
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
    llmr_worker *w = guard_worker;
    lingerer *l = arg;
    char buf[16384];
    ssize_t n = 0;

    if (what & EV_READ)
        for (int i = 0; i < LINGER_READS && (n = recv(fd, buf, sizeof(buf), 0)) > 0; i++)
            ;
    if ((what & EV_TIMEOUT) || n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        || llmr_clock_us() >= l->until_us)
        linger_free(w->guard, l);
}

void llmr_guard_linger(llmr_worker *w, int fd)
{
    llmr_guard *g = w->guard;
    struct timeval tv = { LINGER_MS / 1000, (LINGER_MS % 1000) * 1000 };
    lingerer *l;
    int dup_fd;

    if (g == NULL || g->nlinger >= LINGER_MAX
        || (dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
        return;
    if ((l = calloc(1, sizeof(*l))) == NULL
        || (l->ev = event_new(w->base, dup_fd, EV_READ | EV_PERSIST, on_linger, l)) == NULL) {
        free(l);
        close(dup_fd);
        return;
    }
    l->fd = dup_fd;
    l->until_us = llmr_clock_us() + LINGER_MS * 1000;
    l->next = g->lingering;
    g->lingering = l;
    g->nlinger++;
    event_add(l->ev, &tv);
}

int llmr_guard_init(llmr_worker *w)
{
    llmr_guard *g = calloc(1, sizeof(*g));

    if (g == NULL || (g->resume = evtimer_new(w->base, on_resume, w)) == NULL) {
        free(g);
        return -1;
    }
    w->guard = g;
    guard_worker = w;
    return 0;
}

void llmr_guard_free(llmr_worker *w)
{
    llmr_guard *g = w->guard;

    if (g == NULL)
        return;
    log_failures(w, 1);
    while (g->lingering != NULL)
        linger_free(g, g->lingering);
    event_free(g->resume);
    free(g);
    w->guard = NULL;
    guard_worker = NULL;
}
