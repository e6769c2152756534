/* libcurl multi-socket API driven by the worker's libevent loop, the way
 * curl's hiperfifo example does it: curl tells us which sockets to watch
 * and when to wake it; libevent tells curl what became ready.
 *
 * New connections are gated per origin (scheme, host, port and TLS trust):
 * at most server.upstream_max_connecting transfers of one origin wait for
 * their connection at once (TCP connect and TLS handshake).  A transfer
 * that would need one more new connection waits in the origin's FIFO until
 * a connection is set up or comes free, bounded by its attempt's deadline;
 * a burst of clients then queues behind a few handshakes instead of
 * starting hundreds that all crawl (and time out, and start over).  The
 * counts come from curl's callbacks: OPENSOCKET/CLOSESOCKET for the
 * sockets of an origin, PREREQ for a transfer that has its connection. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "worker_internal.h"

#define EASY_POOL_MAX 256

enum { X_IDLE, X_QUEUED, X_SETUP, X_READY };

typedef struct up_origin up_origin;

/* One easy handle's gate state, made with the handle and kept with it. */
typedef struct up_xfer {
    CURL *easy;
    llmr_worker *w;
    up_origin *o;               /* of the current attempt */
    struct up_xfer *prev, *next;    /* the origin's queue, while X_QUEUED */
    struct event *expire;       /* the attempt's deadline, while X_QUEUED */
    int64_t deadline_us;
    int state;
    int sock_errno;             /* why a socket() of the attempt failed */
    int sends;                  /* times curl set out to send the attempt */
    int expired_queued;         /* the attempt's deadline passed in the queue */
    const char *url;            /* a target's URL the handle holds, or NULL */
    const char *proxy, *noproxy;    /* the proxy strings it holds, or NULL */
    llmr_upstream_done_fn *done;    /* the owner's completion callback */
    void *arg;
} up_xfer;

struct up_origin {
    int conns;                  /* its sockets open (set up or being set up) */
    int setup;                  /* transfers in curl without their connection yet */
    int ready;                  /* transfers in curl on their connection */
    up_xfer *qhead, *qtail;
    int dirty;
    up_origin *next_dirty;
};

struct llmr_up {
    up_origin *origins;
    int *origin_of;             /* per deployment */
    int *fd_origin;             /* per fd: origin + 1 of a socket we opened */
    struct event **parked;      /* per fd: its read event, kept while idle in the pool */
    int nfd;
    up_xfer **map;              /* easy handle -> its up_xfer (open addressing) */
    size_t mapcap, mapn;
    struct event *wake;         /* drains the dirty origins' queues */
    up_origin *dirty;
    int max_connecting;         /* 0 = no limit */
};

/* ---- easy handle -> up_xfer ------------------------------------------- */

/* splitmix64's finalizer: handles lie at multiples of their size, so the
 * low bits of the address alone would pile up in a few slots. */
static size_t map_slot(const struct llmr_up *u, const void *easy)
{
    uint64_t h = (uint64_t)(uintptr_t)easy;

    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    return (size_t)(h ^ (h >> 31)) & (u->mapcap - 1);
}

static up_xfer *xfer_of(llmr_worker *w, CURL *easy)
{
    struct llmr_up *u = w->up;

    for (size_t i = map_slot(u, easy); u->map[i] != NULL; i = (i + 1) & (u->mapcap - 1))
        if (u->map[i]->easy == easy)
            return u->map[i];
    return NULL;
}

static void map_put(struct llmr_up *u, up_xfer *x)
{
    size_t i = map_slot(u, x->easy);

    while (u->map[i] != NULL)
        i = (i + 1) & (u->mapcap - 1);
    u->map[i] = x;
    u->mapn++;
}

static int map_add(struct llmr_up *u, up_xfer *x)
{
    if (2 * (u->mapn + 1) > u->mapcap) {
        up_xfer **old = u->map;
        size_t oldcap = u->mapcap;

        u->map = calloc(oldcap * 2, sizeof(*u->map));
        if (u->map == NULL) {
            u->map = old;
            return -1;
        }
        u->mapcap = oldcap * 2;
        u->mapn = 0;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i] != NULL)
                map_put(u, old[i]);
        free(old);
    }
    map_put(u, x);
    return 0;
}

/* Linear probing: re-places the entries after the hole so that no lookup
 * stops at it. */
static void map_del(struct llmr_up *u, const up_xfer *x)
{
    size_t m = u->mapcap - 1, i = map_slot(u, x->easy);

    while (u->map[i] != x)
        i = (i + 1) & m;
    u->map[i] = NULL;
    u->mapn--;
    for (i = (i + 1) & m; u->map[i] != NULL; i = (i + 1) & m) {
        up_xfer *e = u->map[i];
        u->map[i] = NULL;
        u->mapn--;
        map_put(u, e);
    }
}

/* ---- the gate ---------------------------------------------------------- */

/* Connections of the origin that no transfer holds or is about to take.
 * With HTTP/2 many transfers ride one connection, so this goes negative
 * and only the count of transfers still setting up (`setup`) lets new
 * ones in: a transfer that waits on an h2 connection being set up
 * (PIPEWAIT) counts there until it is multiplexed onto it. */
static int idle_conns(const up_origin *o)
{
    return o->conns - o->setup - o->ready;
}

static int may_connect(const struct llmr_up *u, const up_origin *o)
{
    return u->max_connecting == 0 || o->setup < u->max_connecting || idle_conns(o) > 0;
}

/* Something changed that may let the origin's queue move: drain it soon,
 * outside curl's callbacks (curl must not be re-entered from them). */
static void mark_dirty(llmr_worker *w, up_origin *o)
{
    struct llmr_up *u = w->up;

    if (o->qhead == NULL || o->dirty)
        return;
    o->dirty = 1;
    o->next_dirty = u->dirty;
    u->dirty = o;
    event_active(u->wake, EV_TIMEOUT, 0);
}

static void dequeue(up_xfer *x)
{
    up_origin *o = x->o;

    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        o->qhead = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    else
        o->qtail = x->prev;
    x->prev = x->next = NULL;
    evtimer_del(x->expire);
}

/* The transfer leaves the gate: queue, curl, or both already. */
static void gate_leave(up_xfer *x)
{
    if (x->state == X_QUEUED)
        dequeue(x);
    else if (x->state == X_SETUP)
        x->o->setup--;
    else if (x->state == X_READY)
        x->o->ready--;
    if (x->state != X_IDLE)
        mark_dirty(x->w, x->o);
    x->state = X_IDLE;
}

static int launch(up_xfer *x)
{
    CURLMcode rc = curl_multi_add_handle(x->w->multi, x->easy);

    if (rc != CURLM_OK) {
        llmr_error("curl_multi_add_handle: %s", curl_multi_strerror(rc));
        return -1;
    }
    x->state = X_SETUP;
    x->o->setup++;
    return 0;
}

/* A queued transfer's turn: its attempt's time left, not more. */
static void launch_queued(up_xfer *x)
{
    int64_t left_ms = (x->deadline_us - llmr_clock_us()) / 1000;

    dequeue(x);
    x->state = X_IDLE;
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, left_ms < 1 ? 1L : (long)left_ms);
    if (launch(x) == 0)
        return;
    x->done(x->arg, CURLE_FAILED_INIT);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct llmr_up *u = arg;
    up_origin *o;

    (void)fd;
    (void)what;
    while ((o = u->dirty) != NULL) {
        u->dirty = o->next_dirty;
        o->dirty = 0;
        while (o->qhead != NULL && may_connect(u, o))
            launch_queued(o->qhead);
    }
}

/* A queued transfer's attempt ran out of time before its turn: it ends as
 * a timeout, as it would have in a connect that never finished. */
static void on_expire(evutil_socket_t fd, short what, void *arg)
{
    up_xfer *x = arg;

    (void)fd;
    (void)what;
    if (x->state != X_QUEUED)
        return;
    gate_leave(x);
    x->expired_queued = 1;
    llmr_warn("no connection to the upstream came free before the attempt's deadline");
    x->done(x->arg, CURLE_OPERATION_TIMEDOUT);
}

/* The per-fd arrays, grown to hold fd. */
static int fd_grow(struct llmr_up *u, int fd)
{
    int n = fd < 64 ? 128 : 2 * fd;
    int *m = realloc(u->fd_origin, (size_t)n * sizeof(int));
    struct event **p;

    if (m == NULL)
        return -1;
    u->fd_origin = m;
    if ((p = realloc(u->parked, (size_t)n * sizeof(*p))) == NULL)
        return -1;
    memset(m + u->nfd, 0, (size_t)(n - u->nfd) * sizeof(int));
    memset(p + u->nfd, 0, (size_t)(n - u->nfd) * sizeof(*p));
    u->parked = p;
    u->nfd = n;
    return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: curl's own socket(), with the socket noted
 * as one of the transfer's origin, and socket()'s errno kept so that the
 * proxy tells our own lack of descriptors or buffers apart from an
 * upstream that is down. */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    up_xfer *x = arg;
    struct llmr_up *u = x->w->up;
    curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);

    (void)purpose;
    if (fd == CURL_SOCKET_BAD)
        x->sock_errno = errno;
    if (fd == CURL_SOCKET_BAD || x->o == NULL)
        return fd;
    if (fd >= u->nfd && fd_grow(u, fd) < 0)
        return fd;                  /* not counted: the gate only loosens */
    u->fd_origin[fd] = (int)(x->o - u->origins) + 1;
    x->o->conns++;
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION.  Its data is the worker's, not a handle's:
 * curl keeps the value of the handle that made the connection, and closes
 * pooled connections long after that handle moved on. */
static int close_socket(void *arg, curl_socket_t fd)
{
    struct llmr_up *u = arg;

    if (fd >= 0 && fd < u->nfd && u->fd_origin[fd] > 0) {
        up_origin *o = &u->origins[u->fd_origin[fd] - 1];
        u->fd_origin[fd] = 0;
        o->conns--;
    }
    if (fd >= 0 && fd < u->nfd && u->parked[fd] != NULL) {
        event_free(u->parked[fd]);  /* out of epoll before the fd goes */
        u->parked[fd] = NULL;
    }
    return close(fd);
}

/* CURLOPT_PREREQFUNCTION: the transfer has its connection (connected and
 * TLS done, or reused); the next queued one may start.  Called again when
 * a reused connection closed without an answer and libcurl is about to send
 * the POST once more on a new one: the upstream may be generating (and
 * billing) the first copy, so the second send is refused and the failure
 * goes through the request's own retries, counted as an attempt. */
static int on_prereq(void *arg, char *ip, char *local_ip, int port, int local_port)
{
    up_xfer *x = arg;

    (void)ip;
    (void)local_ip;
    (void)port;
    (void)local_port;
    if (++x->sends > 1)
        return CURL_PREREQFUNC_ABORT;
    if (x->state == X_SETUP) {
        x->o->setup--;
        x->o->ready++;
        x->state = X_READY;
        mark_dirty(x->w, x->o);
    }
    return CURL_PREREQFUNC_OK;
}

static void check_done(llmr_worker *w)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        up_xfer *x;

        if (msg->msg != CURLMSG_DONE)
            continue;
        x = xfer_of(w, easy);
        curl_multi_remove_handle(w->multi, easy);
        gate_leave(x);
        x->done(x->arg, result);
    }
}

static void on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
    llmr_worker *w = arg;
    struct llmr_up *u = w->up;
    int action = (what & EV_READ ? CURL_CSELECT_IN : 0)
               | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;

    /* An idle pooled connection became readable (the upstream closed it,
     * or sent what no transfer asked for): stop watching it, without
     * waking curl, which checks a connection before it reuses one. */
    if (fd < u->nfd && u->parked[fd] != NULL) {
        event_del(u->parked[fd]);
        return;
    }
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

/* curl stops watching a socket of ours: a keep-alive connection going
 * back to the pool, mostly, that the next transfer will watch for reading
 * again.  Its read event stays registered (parked) so that the next use
 * costs no epoll_ctl, and the two it saves per request (the delete now,
 * the add then) are most of a proxied request's epoll_ctl.  Returns 0 if
 * parked. */
static int park(struct llmr_up *u, curl_socket_t s, struct event *ev)
{
    if (s < 0 || s >= u->nfd || u->fd_origin[s] == 0 || u->parked[s] != NULL
        || event_get_events(ev) != (EV_PERSIST | EV_READ))
        return -1;
    u->parked[s] = ev;
    return 0;
}

/* The parked event of socket s, now curl's again, or NULL. */
static struct event *unpark(struct llmr_up *u, curl_socket_t s)
{
    struct event *ev;

    if (s < 0 || s >= u->nfd || (ev = u->parked[s]) == NULL)
        return NULL;
    u->parked[s] = NULL;
    return ev;
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
        if (ev != NULL && park(w->up, s, ev) < 0)
            event_free(ev);
        curl_multi_assign(w->multi, s, NULL);
        return 0;
    }
    kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0)
         | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (ev == NULL && (ev = unpark(w->up, s)) != NULL)
        curl_multi_assign(w->multi, s, ev);
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

/* The origin a deployment's connections belong to: curl pools connections
 * by scheme, host and port, and keeps apart those of another TLS trust or
 * HTTP version. */
static int origin_key(const llmr_deployment *d, char *buf, size_t cap)
{
    CURLU *url = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int n = -1;

    if (url != NULL && curl_url_set(url, CURLUPART_URL, d->api_base, 0) == CURLUE_OK
        && curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
        && curl_url_get(url, CURLUPART_HOST, &host, 0) == CURLUE_OK
        && curl_url_get(url, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
        n = snprintf(buf, cap, "%s://%s:%s %d %d %s", scheme, host, port, d->ssl_verify,
                     d->http2, d->ca_file != NULL ? d->ca_file : "");
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(url);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int origins_build(llmr_worker *w)
{
    const llmr_conf *c = w->conf;
    struct llmr_up *u = w->up;
    int nd = c->ndeployments, n = 0;
    char **keys = calloc((size_t)nd + 1, sizeof(char *));
    char key[4096];
    int rc = -1;

    u->origins = calloc((size_t)nd + 1, sizeof(up_origin));
    u->origin_of = calloc((size_t)nd + 1, sizeof(int));
    if (keys == NULL || u->origins == NULL || u->origin_of == NULL)
        goto out;
    for (int i = 0; i < nd; i++) {
        int j;
        /* An api_base curl cannot parse gets an origin of its own. */
        if (origin_key(&c->deployments[i], key, sizeof(key)) < 0)
            snprintf(key, sizeof(key), "#%d", i);
        for (j = 0; j < n && strcmp(keys[j], key) != 0; j++)
            ;
        if (j == n && (keys[n++] = strdup(key)) == NULL)
            goto out;
        u->origin_of[i] = j;
    }
    rc = 0;
out:
    for (int j = 0; j < n; j++)
        free(keys[j]);
    free(keys);
    return rc;
}

int llmr_upstream_init(llmr_worker *w)
{
    struct llmr_up *u = calloc(1, sizeof(*u));

    w->up = u;
    w->multi = curl_multi_init();
    w->curl_timer = evtimer_new(w->base, on_timer, w);
    w->easy_pool = calloc(EASY_POOL_MAX, sizeof(CURL *));
    if (u == NULL || w->multi == NULL || w->curl_timer == NULL || w->easy_pool == NULL)
        return -1;
    u->max_connecting = w->conf->upstream_max_connecting;
    u->mapcap = 64;
    if ((u->map = calloc(u->mapcap, sizeof(*u->map))) == NULL
        || (u->wake = event_new(w->base, -1, 0, on_wake, u)) == NULL
        || origins_build(w) < 0 || llmr_tls_init(w) < 0)
        return -1;
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, watch_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, set_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    /* Keep-alive connections to upstreams are the main saving of a proxy:
     * keep enough of them for every deployment's parallel requests. */
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, 1024L);
    /* HTTP/2 upstreams: many transfers share one connection (libcurl's
     * default since 7.62, said here because the gate relies on it). */
    curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    return 0;
}

static void easy_destroy(llmr_worker *w, up_xfer *x)
{
    map_del(w->up, x);
    curl_easy_cleanup(x->easy);
    event_free(x->expire);
    free(x);
}

void llmr_upstream_free(llmr_worker *w)
{
    struct llmr_up *u = w->up;

    /* Every handle: the pooled ones and any a stopping worker still holds. */
    for (size_t i = 0; u != NULL && u->map != NULL && i < u->mapcap; i++) {
        up_xfer *x = u->map[i];
        if (x == NULL)
            continue;
        if (w->multi != NULL)
            curl_multi_remove_handle(w->multi, x->easy);
        curl_easy_cleanup(x->easy);
        event_free(x->expire);
        free(x);
    }
    free(w->easy_pool);
    w->easy_pool = NULL;
    w->npool = 0;
    /* Closes the pooled connections: the close callback still needs u. */
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    w->multi = NULL;
    for (int fd = 0; u != NULL && fd < u->nfd; fd++)
        if (u->parked[fd] != NULL)
            event_free(u->parked[fd]);
    llmr_tls_free(w);
    if (w->curl_timer != NULL)
        event_free(w->curl_timer);
    w->curl_timer = NULL;
    if (u == NULL)
        return;
    if (u->wake != NULL)
        event_free(u->wake);
    free(u->map);
    free(u->fd_origin);
    free(u->parked);
    free(u->origins);
    free(u->origin_of);
    free(u);
    w->up = NULL;
}

/* A new handle with what never changes between its uses: the gate's and
 * the TLS callbacks. */
static CURL *easy_create(llmr_worker *w)
{
    up_xfer *x = calloc(1, sizeof(*x));

    if (x == NULL)
        return NULL;
    x->w = w;
    x->easy = curl_easy_init();
    x->expire = evtimer_new(w->base, on_expire, x);
    if (x->easy == NULL || x->expire == NULL || map_add(w->up, x) < 0) {
        curl_easy_cleanup(x->easy);
        if (x->expire != NULL)
            event_free(x->expire);
        free(x);
        return NULL;
    }
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, w->up);
    curl_easy_setopt(x->easy, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(x->easy, CURLOPT_PREREQDATA, x);
    llmr_tls_easy_init(w, x->easy);
    return x->easy;
}

/* Easy handles are reused without curl_easy_reset() (5% of a request's CPU):
 * a handle keeps the options of its last use, so llmr_upstream_start() sets
 * every option a transfer uses, on every attempt, and those of the
 * deployment's TLS. */
CURL *llmr_upstream_easy(llmr_worker *w)
{
    if (w->npool > 0)
        return w->easy_pool[--w->npool];
    return easy_create(w);
}

void llmr_upstream_release(llmr_worker *w, CURL *easy)
{
    up_xfer *x;

    if (easy == NULL)
        return;
    x = xfer_of(w, easy);
    if (x->state != X_IDLE)         /* released without an abort */
        llmr_upstream_abort(w, easy);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);  /* the owner's, going away */
    if (w->npool < EASY_POOL_MAX) {
        w->easy_pool[w->npool++] = easy;
    } else {
        easy_destroy(w, x);
    }
}

/* Where a transfer goes: the target's URL parsed (a one-off URL as a
 * string), and the proxy the environment names for it.  libcurl copies a
 * string set (a malloc and a free per request), so the strings, which live
 * as long as the worker, are set only when the handle holds others
 * (deployments of one group often share them). */
static void set_target(up_xfer *x, const llmr_target *t, const llmr_xfer_spec *s)
{
    CURL *e = x->easy;
    const char *url = s->url != NULL ? s->url : t->url[s->op];

    curl_easy_setopt(e, CURLOPT_CURLU, s->url != NULL ? NULL : t->uh[s->op]);
    if (s->url != NULL || x->url == NULL || strcmp(x->url, url) != 0)
        curl_easy_setopt(e, CURLOPT_URL, url);
    x->url = s->url != NULL ? NULL : url;
    if (x->proxy == NULL || strcmp(x->proxy, t->proxy) != 0)
        curl_easy_setopt(e, CURLOPT_PROXY, t->proxy);
    if (x->noproxy == NULL || strcmp(x->noproxy, t->noproxy) != 0)
        curl_easy_setopt(e, CURLOPT_NOPROXY, t->noproxy);
    x->proxy = t->proxy;
    x->noproxy = t->noproxy;
}

/* Every option of a transfer, set on every attempt (handles are reused
 * without a reset). */
static void setup(llmr_worker *w, up_xfer *x, const llmr_xfer_spec *s)
{
    CURL *e = x->easy;
    const llmr_target *t = &w->targets[s->dep];
    const llmr_deployment *d = &w->conf->deployments[s->dep];
    long h2 = d->http2 && strncasecmp(d->api_base, "https://", 8) == 0;

    set_target(x, t, s);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers != NULL ? s->headers : t->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->len);
    /* Set on every use: a reused handle must not keep a GET or DELETE. */
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, s->method);
    if (s->method != NULL)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s->on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s->arg);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, s->on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, s->arg);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    /* HTTP/2 when an HTTPS upstream offers it in ALPN, else (and for plain
     * http://, and with http2 = false) HTTP/1.1.  PIPEWAIT: a transfer to
     * an upstream whose first connection is still being set up waits to
     * learn whether it can share it, rather than opening one more.  Only
     * for https://, where ALPN tells at the handshake: over plain http
     * libcurl would learn it only from the first answer, and every other
     * transfer would wait for that answer. */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, h2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, h2);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
    if (s->errbuf != NULL)
        s->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, s->timeout_ms);
    llmr_tls_attempt(w, e, s->dep);
}

/* Starts the transfer `s` describes, now or once the gate of its origin
 * lets it; its end is reported to s->done, never before this returns. */
int llmr_upstream_start(llmr_worker *w, CURL *easy, const llmr_xfer_spec *s)
{
    struct llmr_up *u = w->up;
    up_xfer *x = xfer_of(w, easy);
    struct timeval tv;
    int64_t wait_us;

    setup(w, x, s);
    x->sock_errno = 0;
    x->sends = 0;
    x->expired_queued = 0;
    x->done = s->done;
    x->arg = s->arg;
    x->deadline_us = llmr_clock_us() + (int64_t)s->timeout_ms * 1000;
    x->o = &u->origins[u->origin_of[s->dep]];
    if (x->o->qhead == NULL && may_connect(u, x->o))
        return launch(x);
    x->state = X_QUEUED;
    x->prev = x->o->qtail;
    x->next = NULL;
    if (x->o->qtail != NULL)
        x->o->qtail->next = x;
    else
        x->o->qhead = x;
    x->o->qtail = x;
    wait_us = x->deadline_us - llmr_clock_us();
    if (wait_us < 0)
        wait_us = 0;
    tv.tv_sec = (time_t)(wait_us / 1000000);
    tv.tv_usec = (suseconds_t)(wait_us % 1000000);
    evtimer_add(x->expire, &tv);
    return 0;
}

/* Ends an attempt in curl or still queued (a client gone, a deadline). */
void llmr_upstream_abort(llmr_worker *w, CURL *easy)
{
    up_xfer *x = xfer_of(w, easy);

    if (x->state != X_QUEUED)
        curl_multi_remove_handle(w->multi, easy);
    gate_leave(x);
}

void llmr_upstream_facts(llmr_worker *w, CURL *easy, int *sock_errno, int *sends)
{
    up_xfer *x = easy != NULL ? xfer_of(w, easy) : NULL;

    *sock_errno = x != NULL ? x->sock_errno : 0;
    *sends = x != NULL ? x->sends : 0;
}

int llmr_upstream_never_sent(llmr_worker *w, CURL *easy)
{
    up_xfer *x = easy != NULL ? xfer_of(w, easy) : NULL;

    return x != NULL && (x->state == X_QUEUED || x->expired_queued);
}
