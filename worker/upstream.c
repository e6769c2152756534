/* libcurl multi-socket API driven by the worker's libevent loop, the way
 * curl's hiperfifo example does it: curl tells us which sockets to watch
 * and when to wake it; libevent tells curl what became ready. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker.h"

#define EASY_POOL_MAX 256

static void check_done(llmr_worker *w)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        void *call = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&call);
        curl_multi_remove_handle(w->multi, easy);
        llmr_proxy_done(call, result);
    }
}

static void on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
    llmr_worker *w = arg;
    int action = (what & EV_READ ? CURL_CSELECT_IN : 0)
               | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;

    curl_multi_socket_action(w->multi, fd, action, &running);
    check_done(w);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    llmr_worker *w = arg;
    int running;

    (void)fd;
    (void)what;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(w);
}

/* CURLMOPT_TIMERFUNCTION: curl must not be re-entered from here.  A zero
 * timeout (a transfer was just added) activates the timer event directly,
 * so curl runs later in this same loop iteration instead of after another
 * epoll_wait. */
static int set_timer(CURLM *multi, long timeout_ms, void *arg)
{
    llmr_worker *w = arg;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0)
        return evtimer_del(w->curl_timer);
    if (timeout_ms == 0) {
        evtimer_del(w->curl_timer);
        event_active(w->curl_timer, EV_TIMEOUT, 0);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(w->curl_timer, &tv);
}

/* CURLMOPT_SOCKETFUNCTION: one persistent event per socket, kept as the
 * socket's curl-assigned pointer. */
static int watch_socket(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
    llmr_worker *w = arg;
    struct event *ev = sockp;
    short kind;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (ev != NULL)
            event_free(ev);
        curl_multi_assign(w->multi, s, NULL);
        return 0;
    }
    kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0)
         | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (ev == NULL) {
        ev = event_new(w->base, s, kind, on_socket_ready, w);
        if (ev == NULL)
            return -1;
        curl_multi_assign(w->multi, s, ev);
    } else if (event_get_events(ev) == kind && event_pending(ev, EV_READ | EV_WRITE, NULL)) {
        return 0;
    } else {
        event_del(ev);
        event_assign(ev, w->base, s, kind, on_socket_ready, w);
    }
    return event_add(ev, NULL);
}

int llmr_upstream_init(llmr_worker *w)
{
    w->multi = curl_multi_init();
    w->curl_timer = evtimer_new(w->base, on_timer, w);
    w->easy_pool = calloc(EASY_POOL_MAX, sizeof(CURL *));
    if (w->multi == NULL || w->curl_timer == NULL || w->easy_pool == NULL)
        return -1;
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, watch_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, set_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    /* Keep-alive connections to upstreams are the main saving of a proxy:
     * keep enough of them for every deployment's parallel requests. */
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, 1024L);
    return 0;
}

void llmr_upstream_free(llmr_worker *w)
{
    for (int i = 0; i < w->npool; i++)
        curl_easy_cleanup(w->easy_pool[i]);
    free(w->easy_pool);
    w->easy_pool = NULL;
    w->npool = 0;
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    w->multi = NULL;
    if (w->curl_timer != NULL)
        event_free(w->curl_timer);
    w->curl_timer = NULL;
}

/* Easy handles are reused without curl_easy_reset() (5% of a request's CPU):
 * a handle keeps the options of its last use, so attempt_setup() in proxy.c
 * sets every option the proxy uses, on every attempt. */
CURL *llmr_upstream_easy(llmr_worker *w)
{
    if (w->npool > 0)
        return w->easy_pool[--w->npool];
    return curl_easy_init();
}

void llmr_upstream_release(llmr_worker *w, CURL *easy)
{
    if (easy == NULL)
        return;
    if (w->npool < EASY_POOL_MAX) {
        w->easy_pool[w->npool++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
}

int llmr_upstream_start(llmr_worker *w, CURL *easy)
{
    CURLMcode rc = curl_multi_add_handle(w->multi, easy);

    if (rc != CURLM_OK) {
        llmr_error("curl_multi_add_handle: %s", curl_multi_strerror(rc));
        return -1;
    }
    return 0;
}

void llmr_upstream_abort(llmr_worker *w, CURL *easy)
{
    curl_multi_remove_handle(w->multi, easy);
}
