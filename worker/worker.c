/* A worker's process cycle: set up the loop after fork, serve, drain on
 * SIGQUIT, stop at once on SIGTERM/SIGINT. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "request.h"
#include "cache.h"
#include "stream.h"
#include "worker_internal.h"

static void stop_accepting(llmr_worker *w)
{
    for (int i = 0; i < w->nbound; i++)
        if (w->bound[i] != NULL)
            evhttp_del_accept_socket(w->http, w->bound[i]);
    w->nbound = 0;
}

/* While draining, a connection accepted just before the listener closed may
 * still be delivering its request, so the worker leaves only after a whole
 * tick in which nothing was in flight and no request started, or when
 * drain_timeout has passed. */
#define DRAIN_TICK_MS 100

/* At drain_timeout the calls still running are ended with a word to their
 * clients (llmr_request_drain_deadline); the worker then waits up to this
 * long for those last bytes to reach the sockets. */
#define DRAIN_FLUSH_TICKS 10

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    llmr_worker *w = arg;
    double waited = (double)(++w->drain_ticks) * DRAIN_TICK_MS / 1000.0;

    (void)fd;
    (void)what;
    if (w->active <= 0 && w->started == w->started_at_tick) {
        event_base_loopexit(w->base, NULL);
    } else if (w->drain_final) {
        if (++w->drain_final_ticks >= DRAIN_FLUSH_TICKS || w->active <= 0)
            event_base_loopexit(w->base, NULL);
    } else if (waited >= w->conf->drain_timeout) {
        llmr_warn("worker %d: drain_timeout passed with %ld request(s) in flight; ending "
                  "them", w->index, w->active);
        w->drain_final = 1;
        llmr_request_drain_deadline(w);
        llmr_cache_drain_deadline(w);
    }
    w->started_at_tick = w->started;
}

/* Graceful: stop taking connections, let every request in flight finish,
 * then leave; idle keep-alive connections close with the process. */
static void on_quit(evutil_socket_t fd, short what, void *arg)
{
    llmr_worker *w = arg;
    struct timeval tv = { 0, DRAIN_TICK_MS * 1000 };

    (void)fd;
    (void)what;
    if (w->draining)
        return;
    w->draining = 1;
    stop_accepting(w);
    llmr_info("worker %d (generation %u): draining %ld request(s)", w->index,
              w->generation, w->active);
    w->started_at_tick = w->started;
    evtimer_add(w->drain_timer, &tv);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    llmr_worker *w = arg;

    (void)fd;
    (void)what;
    event_base_loopbreak(w->base);
}

static int listen_on(llmr_worker *w, const int *fds, int nfds)
{
    w->bound = calloc((size_t)nfds, sizeof(*w->bound));
    if (w->bound == NULL)
        return -1;
    for (int i = 0; i < nfds; i++) {
        w->bound[i] = evhttp_accept_socket_with_handle(w->http, fds[i]);
        if (w->bound[i] == NULL) {
            llmr_error("worker %d: cannot accept on fd %d", w->index, fds[i]);
            return -1;
        }
        w->nbound++;
    }
    return 0;
}

static int setup_signals(llmr_worker *w)
{
    sigset_t none;

    w->sig_quit = evsignal_new(w->base, SIGQUIT, on_quit, w);
    w->sig_term = evsignal_new(w->base, SIGTERM, on_stop, w);
    w->sig_int = evsignal_new(w->base, SIGINT, on_stop, w);
    w->drain_timer = event_new(w->base, -1, EV_PERSIST, on_drain_tick, w);
    if (w->sig_quit == NULL || w->sig_term == NULL || w->sig_int == NULL
        || w->drain_timer == NULL)
        return -1;
    if (evsignal_add(w->sig_quit, NULL) < 0 || evsignal_add(w->sig_term, NULL) < 0
        || evsignal_add(w->sig_int, NULL) < 0)
        return -1;
    /* The master blocks these around fork; libevent delivers them now. */
    sigemptyset(&none);
    return sigprocmask(SIG_SETMASK, &none, NULL);
}

static int setup_http(llmr_worker *w)
{
    const llmr_conf *c = w->conf;
    /* conn.c refuses a Content-Length or chunked total past max_body_bytes
     * before the body is read; this cap is evhttp's own backstop. */
    ev_ssize_t hard_cap = c->max_body_bytes * 4 + (4 << 20);

    w->http = evhttp_new(w->base);
    if (w->http == NULL)
        return -1;
    evhttp_set_max_body_size(w->http, hard_cap);
    evhttp_set_flags(w->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_max_headers_size(w->http, 64 * 1024);
    /* Idle keep-alive connections and stalled writes; lifted while a request
     * is answered (conn.c), where stream_idle_timeout and timeout rule. */
    evhttp_set_timeout(w->http, LLMR_IDLE_TIMEOUT);
    evhttp_set_bevcb(w->http, llmr_conn_new_bev, w);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD
                               | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS
                               | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(w->http, llmr_http_handle, w);
    return 0;
}

/* With the changelist, libevent folds the interest changes a loop
 * iteration makes on one fd (evhttp and libcurl both toggle read and write
 * per request) into at most one epoll_ctl. */
static struct event_base *new_base(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;

    if (cfg == NULL)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

static int worker_init(llmr_worker *w, const int *fds, int nfds)
{
    w->base = new_base();
    if (w->base == NULL || llmr_alog_open(w) < 0 || setup_signals(w) < 0
        || llmr_guard_init(w) < 0
        || llmr_conn_init(w) < 0 || setup_http(w) < 0
        || llmr_upstream_init(w) < 0 || llmr_targets_build(w) < 0
        || llmr_router_init(w) < 0 || llmr_http_models_build(w) < 0
        || llmr_cache_init(w) < 0)
        return -1;
    if (listen_on(w, fds, nfds) < 0)
        return -1;
    llmr_guard_listeners(w);
    return 0;
}

static void worker_free(llmr_worker *w)
{
    llmr_request_abort_all(w);
    llmr_responses_abort_all(w);
    llmr_cache_free(w);
    if (w->http != NULL)
        evhttp_free(w->http);
    llmr_conn_free_all(w);
    llmr_guard_free(w);
    free(w->bound);
    llmr_upstream_free(w);
    llmr_targets_free(w);
    llmr_router_free(w);
    llmr_http_free(w);
    free(w->models_body);
    llmr_request_pool_free(w);
    llmr_alog_close(w);
    if (w->sig_quit != NULL)
        event_free(w->sig_quit);
    if (w->sig_term != NULL)
        event_free(w->sig_term);
    if (w->sig_int != NULL)
        event_free(w->sig_int);
    if (w->drain_timer != NULL)
        event_free(w->drain_timer);
    if (w->base != NULL)
        event_base_free(w->base);
}

int llmr_worker_main(const llmr_conf *conf, llmr_shm *shm, const int *fds, int nfds,
                     int index, int wslot, uint32_t generation)
{
    llmr_worker w;
    pid_t master = getppid();

    memset(&w, 0, sizeof(w));
    w.conf = conf;
    w.shm = shm;
    w.index = index;
    w.wslot = wslot;
    w.generation = generation;
    /* A worker must not outlive its master and keep serving a stale config,
     * but the requests it has in flight when the master dies are finished:
     * the master's death reads as a graceful stop (SIGQUIT). */
    if (prctl(PR_SET_PDEATHSIG, SIGQUIT) == -1 || getppid() != master)
        return LLMR_EXIT_FATAL;
    llmr_request_ids_seed();
    if (worker_init(&w, fds, nfds) < 0) {
        llmr_error("worker %d: start-up failed", index);
        worker_free(&w);
        return LLMR_EXIT_FATAL;
    }
    /* It listens: the master may now drain the generation it replaces. */
    llmr_shm_worker_ready(shm, wslot, generation);
    llmr_debug("worker %d (generation %u) started", index, generation);
    event_base_dispatch(w.base);
    worker_free(&w);
    return 0;
}
