/* Per-connection guard in front of evhttp (libevent 2.1 has no hook between
 * a request's head and its body, and evhttp's own framing is lax: it takes
 * the first of two Content-Length headers, "+5" or " 5" as 5, "0x5" as a
 * chunk size, ignores a Transfer-Encoding it does not know, folds obsolete
 * continuation lines and never reads the body of a GET that announces one.
 * Behind a front proxy that reads the same bytes differently, the rest of a
 * body becomes a second request: request smuggling.)
 *
 * So every byte a client sends is first read here, from an evbuffer
 * callback on the connection's input, by a small strict parser of request
 * heads and body framing.  Anything ambiguous is refused the way nginx
 * does: an answer (400, 413 by Content-Length before any of the body is
 * read, 408 past the deadlines) and the connection closed, so the bytes
 * after it are never taken as a request.  The same parser keeps the two
 * deadlines of a request: client_header_timeout for the whole head and
 * client_body_timeout for the whole body, totals that a client sending one
 * byte at a time cannot stretch. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "access_log.h"
#include "conn.h"
#include "hblock.h"
#include "log.h"
#include "clock.h"
#include "errors.h"
#include "anthropic.h"

#define LINE_KEEP 512               /* head bytes of a line kept for checks */
#define CHUNK_DIGITS 15             /* a chunk size fits in 60 bits */

enum phase {
    P_HEAD, P_BODY, P_CSIZE, P_CSIZE_LF, P_CDATA, P_CDATA_CR, P_CDATA_LF, P_TRAILER,
    P_REFUSED
};

typedef struct conn {
    llmr_worker *w;
    struct bufferevent *bev;
    struct evhttp_connection *evcon;    /* once adopted */
    struct event *ev;                   /* adoption, then deadlines and refusals */
    int fd;
    void (*user_cb)(struct evhttp_connection *, void *);
    void *user_arg;

    enum phase phase;
    char line[LINE_KEEP];
    size_t linelen;
    int lines;                          /* lines of this head so far */
    int body_method;                    /* POST, PUT or PATCH */
    int ncl, nte, cl_bad, te_chunked;
    int64_t cl, left, chunk, body_total;
    int digits;
    int deadline;                       /* 0, or the phase it guards: 'h' / 'b' */
    int close_after;                    /* a body evhttp will not read was announced */
    int anth_path;                      /* the target is /v1/messages[...]: Anthropic's shape */
    int busy;                           /* a request of it is being answered */
    struct event *watch;                /* the socket's end, while evhttp does not read */
    short watching;                     /* watch's events: 0, EV_CLOSED, or with EV_READ */
    int fresh;                          /* evhttp read bytes since the watch last ran */
    struct conn *pprev, *pnext;         /* in llmr_conns.pending until adopted */

    int status;                         /* the refusal, once decided */
    enum llmr_error_kind kind;
    char msg[200];
} conn;

typedef struct llmr_conns {
    conn **byfd;                        /* adopted connections by socket */
    int nbyfd;
    conn *pending;                      /* created, not adopted yet */
} llmr_conns;

static void pending_unlink(llmr_conns *cs, conn *k)
{
    if (k->pprev != NULL)
        k->pprev->pnext = k->pnext;
    else if (cs->pending == k)
        cs->pending = k->pnext;
    if (k->pnext != NULL)
        k->pnext->pprev = k->pprev;
    k->pprev = k->pnext = NULL;
}

static void arm_deadline(conn *k, int which);


/* ---- refusing a request ------------------------------------------------- */

static void send_refusal(conn *k)
{
    char json[512], head[320], id[32];
    int n, h;
    struct iovec iov[2];
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

    /* An Anthropic SDK reads only its own error shape (e.g. a 413 there). */
    n = k->anth_path ? (int)llmr_anth_error_buf(json, sizeof(json), k->status, k->msg)
                     : (int)llmr_error_json(json, sizeof(json), k->kind, NULL, NULL, k->msg);
    llmr_request_id_new(id, sizeof(id));
    h = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                 "x-request-id: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
                 k->status, llmr_http_reason(k->status), id, n);
    iov[0].iov_base = head;
    iov[0].iov_len = (size_t)h;
    iov[1].iov_base = json;
    iov[1].iov_len = (size_t)n;
    /* A few hundred bytes into a socket that took nothing yet: they fit. */
    if (sendmsg(k->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        llmr_debug("refusal to fd %d not sent: %s", k->fd, strerror(errno));
    llmr_alog_refusal(k->w, k->fd, id, k->status, h + n);
}

/* Runs from the loop, never inside evhttp's reading: answers, closes the
 * connection (which frees k through on_close) and lingers. */
static void refuse_now(conn *k)
{
    llmr_worker *w = k->w;
    int fd = k->fd;

    if (k->status != 0) {
        send_refusal(k);
        llmr_guard_linger(w, fd);
    }
    evhttp_connection_free(k->evcon);
}

/* evhttp must not read on: its callbacks are cut now and the answer goes
 * out from the loop (on_event). */
static void answer_from_loop(conn *k)
{
    bufferevent_setcb(k->bev, NULL, NULL, NULL, NULL);
    bufferevent_disable(k->bev, EV_READ);
    event_del(k->ev);
    event_active(k->ev, EV_READ, 1);
}

/* Decided inside the input callback; answered by answer_from_loop() at
 * once, or by on_adopt when the connection is not adopted yet. */
static void refuse(conn *k, enum llmr_error_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void refuse(conn *k, enum llmr_error_kind kind, const char *fmt, ...)
{
    va_list ap;

    if (k->phase == P_REFUSED)
        return;
    k->phase = P_REFUSED;
    k->status = llmr_error_def_of(kind)->status;
    k->kind = kind;
    va_start(ap, fmt);
    vsnprintf(k->msg, sizeof(k->msg), fmt, ap);
    va_end(ap);
    if (k->evcon != NULL)
        answer_from_loop(k);    /* else on_adopt answers it */
}


/* ---- the strict parser ------------------------------------------------- */

/* 1 to 18 decimal digits and nothing else: no sign, space or hex. */
static int parse_length(const char *v, size_t n, int64_t *out)
{
    int64_t x = 0;

    if (n == 0 || n > 18)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return 0;
}

static void header_line(conn *k, const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n), *v;
    size_t name, vn;

    if (p[0] == ' ' || p[0] == '\t') {
        refuse(k, LLMR_E_BAD_REQUEST, "obsolete line folding in a header is not allowed");
        return;
    }
    if (colon == NULL || colon == p) {
        refuse(k, LLMR_E_BAD_REQUEST, "malformed header line");
        return;
    }
    name = (size_t)(colon - p);
    for (size_t i = 0; i < name; i++)
        if (!llmr_http_tchar((unsigned char)p[i])) {
            refuse(k, LLMR_E_BAD_REQUEST, "invalid character in a header name");
            return;
        }
    v = colon + 1;
    vn = n - name - 1;
    while (vn > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vn--;
    }
    if (name == 17 && strncasecmp(p, "transfer-encoding", 17) == 0) {
        /* Exactly "chunked": "chunked " or "chunked, x" is read otherwise elsewhere. */
        k->nte++;
        k->te_chunked = vn == 7 && strncasecmp(v, "chunked", 7) == 0;
        return;
    }
    while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
        vn--;
    if (name == 14 && strncasecmp(p, "content-length", 14) == 0) {
        k->ncl++;
        if (parse_length(v, vn, &k->cl) < 0)
            k->cl_bad = 1;
    }
}

/* Whether a request target (up to its space) is POST /v1/messages or its
 * count_tokens, the query aside: their refusals take Anthropic's shape. */
static int is_anth_target(const char *t, size_t n)
{
    static const char base[] = "/v1/messages";
    size_t b = sizeof(base) - 1, c = sizeof("/count_tokens") - 1;
    const char *end = memchr(t, ' ', n), *q;

    n = end != NULL ? (size_t)(end - t) : n;
    q = memchr(t, '?', n);
    n = q != NULL ? (size_t)(q - t) : n;
    return n >= b && memcmp(t, base, b) == 0
           && (n == b || (n == b + c && memcmp(t + b, "/count_tokens", c) == 0));
}

static void request_line(conn *k, const char *p, size_t n)
{
    const char *sp = memchr(p, ' ', n);
    size_t m = sp != NULL ? (size_t)(sp - p) : n;

    k->body_method = (m == 4 && memcmp(p, "POST", 4) == 0) || (m == 3 && memcmp(p, "PUT", 3) == 0)
                     || (m == 5 && memcmp(p, "PATCH", 5) == 0);
    k->ncl = k->nte = k->cl_bad = k->te_chunked = 0;
    k->cl = k->body_total = 0;
    k->anth_path = sp != NULL && is_anth_target(sp + 1, n - m - 1);
}

static void next_request(conn *k)
{
    k->phase = P_HEAD;
    k->lines = 0;
    k->linelen = 0;
    arm_deadline(k, 0);
}

/* The blank line ended a head: how is its body framed? */
static void head_done(conn *k)
{
    long max = k->w->conf->max_body_bytes;

    /* evhttp reads no body for GET, DELETE...: the bytes announced would be
     * taken for the next request, so the connection closes after this one. */
    if (!k->body_method && (k->nte > 0 || (k->ncl == 1 && k->cl > 0)))
        k->close_after = 1;
    if (k->nte > 0) {
        if (k->nte > 1 || !k->te_chunked)
            refuse(k, LLMR_E_BAD_REQUEST, "Transfer-Encoding must be exactly \"chunked\"");
        else if (k->ncl > 0)
            refuse(k, LLMR_E_BAD_REQUEST, "both Content-Length and Transfer-Encoding");
        if (k->phase == P_REFUSED)
            return;
        k->phase = P_CSIZE;
        k->chunk = k->digits = 0;
        arm_deadline(k, 'b');
        return;
    }
    if (k->ncl > 1)
        refuse(k, LLMR_E_BAD_REQUEST, "more than one Content-Length header");
    else if (k->cl_bad)
        refuse(k, LLMR_E_BAD_REQUEST, "Content-Length must be a plain decimal number");
    else if (k->ncl == 1 && k->cl > max)
        refuse(k, LLMR_E_FRAMING_TOO_LARGE, "request body of %lld bytes exceeds "
               "max_body_bytes (%ld)", (long long)k->cl, max);
    if (k->phase == P_REFUSED)
        return;
    if (k->ncl == 1 && k->cl > 0) {
        k->phase = P_BODY;
        k->left = k->cl;
        arm_deadline(k, 'b');
    } else {
        next_request(k);
    }
}

/* One complete line of a head or of a chunked body's trailer. */
static void line_done(conn *k)
{
    size_t n = k->linelen;

    if (n > 0 && k->line[n - 1] == '\r')
        n--;
    k->linelen = 0;
    if (k->phase == P_TRAILER) {
        if (n == 0)
            next_request(k);
        return;
    }
    if (n == 0) {
        if (k->lines > 0)
            head_done(k);
        return;                 /* an empty line before a request is evhttp's to judge */
    }
    if (k->lines++ == 0)
        request_line(k, k->line, n);
    else
        header_line(k, k->line, n);
}

static void chunk_size_char(conn *k, unsigned char c)
{
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

    if (d >= 0 && k->digits < CHUNK_DIGITS) {
        k->chunk = k->chunk * 16 + d;
        k->digits++;
        return;
    }
    if ((c != '\r' && c != '\n') || k->digits == 0) {
        refuse(k, LLMR_E_BAD_REQUEST, c == ';' ? "chunk extensions are not supported"
               : "invalid chunk size in a chunked body");
        return;
    }
    if (c == '\r') {
        k->phase = P_CSIZE_LF;
        return;
    }
    k->body_total += k->chunk;
    if (k->body_total > k->w->conf->max_body_bytes) {
        refuse(k, LLMR_E_FRAMING_TOO_LARGE, "chunked request body exceeds max_body_bytes "
               "(%ld)", k->w->conf->max_body_bytes);
        return;
    }
    k->left = k->chunk;
    k->chunk = k->digits = 0;
    k->phase = k->left > 0 ? P_CDATA : P_TRAILER;
}

/* Bytes of a head or trailer line, up to and with its '\n' (a line at a
 * time, not a byte: this parser read every byte of every head, and was the
 * costliest code of ours on a proxied request).  The first LINE_KEEP bytes
 * of a line are kept for the checks; a long request line is kept only as
 * far as its method, evhttp bounding the whole head (max_headers_size). */
static size_t feed_line(conn *k, const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    size_t take = nl != NULL ? (size_t)(nl - p) : n;
    size_t room = sizeof(k->line) - k->linelen, keep = take < room ? take : room;

    if (k->phase == P_HEAD && k->lines == 0 && k->linelen == 0 && k->deadline != 'h')
        arm_deadline(k, 'h');
    memcpy(k->line + k->linelen, p, keep);
    k->linelen += keep;
    if (keep < take && k->phase == P_HEAD && k->lines > 0
        && memchr(k->line, ':', k->linelen) == NULL) {
        refuse(k, LLMR_E_BAD_REQUEST, "header name too long");
        return n;
    }
    if (nl == NULL)
        return take;
    line_done(k);
    return take + 1;
}

/* Feeds bytes to the parser; returns how many it took (body data in bulk). */
static size_t feed(conn *k, const char *p, size_t n)
{
    unsigned char c = (unsigned char)p[0];
    size_t take;

    switch (k->phase) {
    case P_BODY:
    case P_CDATA:
        take = (int64_t)n < k->left ? n : (size_t)k->left;
        k->left -= (int64_t)take;
        if (k->left == 0) {
            if (k->phase == P_BODY)
                next_request(k);
            else
                k->phase = P_CDATA_CR;
        }
        return take;
    case P_HEAD:
    case P_TRAILER:
        return feed_line(k, p, n);
    case P_CSIZE:
        chunk_size_char(k, c);
        return 1;
    case P_CSIZE_LF:
        if (c != '\n')
            refuse(k, LLMR_E_BAD_REQUEST, "invalid chunk size in a chunked body");
        else {
            k->phase = P_CSIZE;
            chunk_size_char(k, '\n');
        }
        return 1;
    case P_CDATA_CR:
    case P_CDATA_LF:
        if (c != (k->phase == P_CDATA_CR ? '\r' : '\n'))
            refuse(k, LLMR_E_BAD_REQUEST, "chunk data not followed by CRLF");
        else
            k->phase = k->phase == P_CDATA_CR ? P_CDATA_LF : P_CSIZE;
        return 1;
    case P_REFUSED:
    default:
        return n;
    }
}

/* Every byte the socket delivers passes here before evhttp parses it. */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    conn *k = arg;
    struct evbuffer_ptr pos;
    struct evbuffer_iovec v[8];
    size_t left = info->n_added;

    if (left == 0 || evbuffer_ptr_set(buf, &pos, info->orig_size, EVBUFFER_PTR_SET) < 0)
        return;
    k->fresh = 1;
    while (left > 0 && k->phase != P_REFUSED) {
        int nv = evbuffer_peek(buf, (ev_ssize_t)left, &pos, v, 8);
        size_t got = 0;
        if (nv <= 0)
            break;
        for (int i = 0; i < nv && i < 8 && got < left && k->phase != P_REFUSED; i++) {
            const char *p = v[i].iov_base;
            size_t n = v[i].iov_len < left - got ? v[i].iov_len : left - got, off = 0;
            while (off < n && k->phase != P_REFUSED)
                off += feed(k, p + off, n - off);
            got += n;
        }
        left -= got < left ? got : left;
        if (left > 0 && evbuffer_ptr_set(buf, &pos, got, EVBUFFER_PTR_ADD) < 0)
            break;
    }
}


/* ---- deadlines ---------------------------------------------------------- */

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    conn *k = arg;

    (void)fd;
    if (k->phase == P_REFUSED) {        /* activated by refuse() */
        refuse_now(k);
        return;
    }
    if (!(what & EV_TIMEOUT))
        return;
    if (k->deadline == 'h' && k->lines == 0 && k->linelen == 0) {
        k->phase = P_REFUSED;           /* nothing sent: just close, as nginx does */
        refuse_now(k);
        return;
    }
    refuse(k, LLMR_E_REQUEST_TIMEOUT, "request %s not received within %s",
           k->deadline == 'b' ? "body" : "head",
           k->deadline == 'b' ? "client_body_timeout" : "client_header_timeout");
}

static void arm_deadline(conn *k, int which)
{
    const llmr_conf *c = k->w->conf;
    double s = which == 'b' ? c->client_body_timeout : c->client_header_timeout;
    struct timeval tv = { (time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6) };

    k->deadline = which;
    if (k->evcon == NULL)
        return;
    event_del(k->ev);
    if (which != 0)
        event_add(k->ev, &tv);
}


/* ---- a client leaving while its request waits --------------------------- */

/* evhttp stops reading a connection while its request is answered, so on
 * its own it would see a client leave only when the reply fails; the
 * upstream transfer would run on for nobody.  The watch notices at once.
 * It is one event for the connection's life, reading and watching the end
 * (EPOLLIN|EPOLLRDHUP), rather than an EV_CLOSED event per request: that
 * one changed the socket's epoll registration twice per request (evhttp's
 * read off, the close watch on; and back), where the standing read keeps
 * it as it is whatever evhttp enables.  While evhttp reads, the watch
 * leaves the bytes and the end to it. */
static void on_watch(evutil_socket_t fd, short what, void *arg);

static void set_watch(conn *k, short what)
{
    if (k->watch == NULL || k->watching == what)
        return;
    event_del(k->watch);
    k->watching = what;
    if (what != 0) {
        event_assign(k->watch, k->w->base, k->fd, what | EV_PERSIST, on_watch, k);
        event_add(k->watch, NULL);
    }
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    conn *k = arg;

    (void)fd;
    if (bufferevent_get_enabled(k->bev) & EV_READ) {
        k->fresh = 0;
        return;
    }
    /* Woken by the bytes evhttp has just read in this same loop pass (the
     * request it is now answering): stale.  Were more waiting, the watch,
     * level-triggered, comes again. */
    if (k->fresh) {
        k->fresh = 0;
        return;
    }
    if (k->user_cb == NULL) {
        /* A reply going out, a refusal: nothing waits to be cancelled, and
         * a level-triggered watch would wake the loop until evhttp reads
         * again.  The next request rearms it. */
        set_watch(k, 0);
        return;
    }
    if (what & EV_CLOSED) {
        evhttp_connection_free(k->evcon);   /* on_close tells the waiting request */
        return;
    }
    /* Bytes of a pipelined request: evhttp reads them after this reply;
     * until then only the end matters. */
    set_watch(k, EV_CLOSED);
}

/* ---- life of a connection ---------------------------------------------- */

static conn *conn_of(llmr_worker *w, struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
    int fd = bev != NULL ? (int)bufferevent_getfd(bev) : -1;
    llmr_conns *cs = w->conns;

    if (cs == NULL || fd < 0 || fd >= cs->nbyfd || cs->byfd[fd] == NULL
        || cs->byfd[fd]->evcon != evcon)
        return NULL;
    return cs->byfd[fd];
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    conn *k = arg;
    llmr_conns *cs = k->w->conns;

    /* A reply handed to evhttp whose client went before it was all sent:
     * on_reply_sent will never run, yet the request must stop counting
     * (a draining worker would wait for it until drain_timeout).  With a
     * request still attached, request.c's own callback does that. */
    if (k->busy && k->user_cb == NULL)
        llmr_http_active_end(k->w);
    if (k->user_cb != NULL)
        k->user_cb(evcon, k->user_arg);
    /* evhttp drains the input after this; k must not hear of it. */
    evbuffer_remove_cb(bufferevent_get_input(k->bev), on_input, k);
    if (k->fd >= 0 && k->fd < cs->nbyfd && cs->byfd[k->fd] == k)
        cs->byfd[k->fd] = NULL;
    if (k->watch != NULL)
        event_free(k->watch);
    event_free(k->ev);
    free(k);
}

static int track(llmr_conns *cs, conn *k)
{
    if (k->fd >= cs->nbyfd) {
        int n = k->fd * 2 + 64;
        conn **t = realloc(cs->byfd, (size_t)n * sizeof(*t));
        if (t == NULL)
            return -1;
        memset(t + cs->nbyfd, 0, (size_t)(n - cs->nbyfd) * sizeof(*t));
        cs->byfd = t;
        cs->nbyfd = n;
    }
    cs->byfd[k->fd] = k;
    return 0;
}

/* Runs right after evhttp has built the connection around our bufferevent
 * (same loop pass, before any byte is read): from now on its close callback
 * tells us when it goes.  A reference held since creation keeps the
 * bufferevent readable in case evhttp failed and freed it meanwhile. */
static void on_adopt(evutil_socket_t fd, short what, void *arg)
{
    conn *k = arg;
    struct bufferevent *bev = k->bev;
    void *evcon = NULL;

    (void)fd;
    (void)what;
    pending_unlink(k->w->conns, k);
    bufferevent_getcb(bev, NULL, NULL, NULL, &evcon);
    k->fd = (int)bufferevent_getfd(bev);
    if (evcon == NULL || k->fd < 0 || track(k->w->conns, k) < 0) {
        evbuffer_remove_cb(bufferevent_get_input(bev), on_input, k);
        if (evcon != NULL)
            evhttp_connection_free(evcon);
        event_free(k->ev);
        free(k);
        bufferevent_decref(bev);
        return;
    }
    k->evcon = evcon;
    event_assign(k->ev, k->w->base, -1, 0, on_event, k);
    evhttp_connection_set_closecb(k->evcon, on_close, k);
    if (event_base_get_features(k->w->base) & EV_FEATURE_EARLY_CLOSE)
        k->watch = event_new(k->w->base, -1, 0, on_watch, k);
    set_watch(k, EV_READ | EV_CLOSED);
    bufferevent_decref(bev);
    if (k->phase == P_REFUSED)  /* refused before it was adopted */
        answer_from_loop(k);
    else
        arm_deadline(k, 'h');
}

struct bufferevent *llmr_conn_new_bev(struct event_base *base, void *arg)
{
    llmr_worker *w = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    conn *k = bev != NULL ? calloc(1, sizeof(*k)) : NULL;

    if (k == NULL)
        return bev;             /* served unguarded rather than refused */
    k->w = w;
    k->bev = bev;
    k->fd = -1;
    if ((k->ev = event_new(base, -1, 0, on_adopt, k)) == NULL
        || evbuffer_add_cb(bufferevent_get_input(bev), on_input, k) == NULL) {
        if (k->ev != NULL)
            event_free(k->ev);
        free(k);
        return bev;
    }
    bufferevent_incref(bev);
    k->pnext = w->conns->pending;
    if (k->pnext != NULL)
        k->pnext->pprev = k;
    w->conns->pending = k;
    event_active(k->ev, EV_TIMEOUT, 1);
    return bev;
}

int llmr_conn_request_start(llmr_worker *w, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    conn *k = conn_of(w, evcon);
    struct timeval wt = { LLMR_IDLE_TIMEOUT, 0 };

    if (k != NULL && k->phase == P_REFUSED)
        return -1;
    if (k != NULL) {
        k->busy = 1;
        set_watch(k, EV_READ | EV_CLOSED);
    }
    if (k != NULL && k->close_after)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    if (evcon != NULL)
        bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), NULL, &wt);
    return 0;
}

void llmr_conn_request_done(llmr_worker *w, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct timeval t = { LLMR_IDLE_TIMEOUT, 0 };
    conn *k = conn_of(w, evcon);

    if (k != NULL)
        k->busy = 0;
    if (evcon != NULL)
        bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), &t, &t);
}

void llmr_conn_set_closecb(llmr_worker *w, struct evhttp_connection *evcon,
                           void (*cb)(struct evhttp_connection *, void *), void *arg)
{
    conn *k = conn_of(w, evcon);

    if (k == NULL) {
        evhttp_connection_set_closecb(evcon, cb, arg);
        return;
    }
    k->user_cb = cb;
    k->user_arg = arg;
}

int llmr_conn_init(llmr_worker *w)
{
    w->conns = calloc(1, sizeof(*w->conns));
    return w->conns == NULL ? -1 : 0;
}

/* After evhttp_free(), which closed every connection (and so freed each
 * conn through on_close). */
void llmr_conn_free_all(llmr_worker *w)
{
    if (w->conns == NULL)
        return;
    while (w->conns->pending != NULL) {     /* the loop ended before adopting them */
        conn *k = w->conns->pending;
        pending_unlink(w->conns, k);
        evbuffer_remove_cb(bufferevent_get_input(k->bev), on_input, k);
        event_free(k->ev);
        bufferevent_decref(k->bev);
        free(k);
    }
    free(w->conns->byfd);
    free(w->conns);
    w->conns = NULL;
}

size_t llmr_conn_output_bytes(llmr_worker *w)
{
    llmr_conns *cs = w->conns;
    size_t total = 0;

    for (int i = 0; cs != NULL && i < cs->nbyfd; i++)
        if (cs->byfd[i] != NULL)
            total += evbuffer_get_length(bufferevent_get_output(cs->byfd[i]->bev));
    return total;
}
