/* One asynchronous Redis connection: see redis.h for the behaviour. */
#include "redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "clock.h"

enum rstate { R_DOWN, R_CONNECTING, R_AUTH, R_UP };

typedef struct {
    llmr_redis_reply_cb cb;     /* NULL: an internal command of the handshake */
    void *arg;
    int64_t deadline_ms;
} pending;

struct llmr_redis {
    struct event_base *base;
    struct evdns_base *dns;
    SSL_CTX *ssl;
    llmr_redis_opts o;
    llmr_redis_state_cb on_state;
    llmr_redis_push_cb on_push;
    void *arg;

    struct bufferevent *bev;
    redisReader *reader;
    enum rstate st;
    int reported;               /* last state reported: -1 none yet, 0 down, 1 up */
    int backoff_ms;
    int handshake_left;         /* AUTH/SELECT replies still awaited */

    pending q[LLMR_REDIS_MAX_PENDING];
    int qhead, qlen;

    struct event *timer;        /* connect or oldest command's deadline */
    struct event *retry;        /* reconnect after back-off */
    int busy;                   /* inside our callbacks: free is deferred */
    int freeing;
};

static void start_connect(llmr_redis *r);

void llmr_redis_opts_init(llmr_redis_opts *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->host, sizeof o->host, "127.0.0.1");
    o->port = 6379;
    o->connect_timeout_ms = 1000;
    o->command_timeout_ms = 500;
    o->reconnect_min_ms = 100;
    o->reconnect_max_ms = 5000;
}

static int copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, s, n);
    dst[n] = 0;
    return 0;
}

static int parse_port(const char *s, size_t n, int *out)
{
    int v = 0;

    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *out = v;
    return 0;
}

static int url_fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s", what);
    return -1;
}

/* The user-info part: [user]:password or password-less user. */
static int parse_userinfo(const char *s, size_t n, llmr_redis_opts *o)
{
    const char *colon = memchr(s, ':', n);

    if (!colon)
        return copy_part(o->username, sizeof o->username, s, n);
    if (copy_part(o->username, sizeof o->username, s, (size_t)(colon - s)) != 0)
        return -1;
    return copy_part(o->password, sizeof o->password, colon + 1, n - (size_t)(colon - s) - 1);
}

static int parse_hostport(const char *s, size_t n, llmr_redis_opts *o)
{
    const char *colon;

    if (n > 0 && s[0] == '[') {                 /* [::1]:6379 */
        const char *end = memchr(s, ']', n);
        if (!end || copy_part(o->host, sizeof o->host, s + 1, (size_t)(end - s - 1)) != 0)
            return -1;
        n -= (size_t)(end + 1 - s);
        s = end + 1;
        if (n == 0)
            return 0;
        return s[0] == ':' ? parse_port(s + 1, n - 1, &o->port) : -1;
    }
    colon = memchr(s, ':', n);
    if (!colon)
        return n ? copy_part(o->host, sizeof o->host, s, n) : 0;
    if (colon > s && copy_part(o->host, sizeof o->host, s, (size_t)(colon - s)) != 0)
        return -1;
    return parse_port(colon + 1, n - (size_t)(colon - s) - 1, &o->port);
}

int llmr_redis_parse_url(const char *url, llmr_redis_opts *o, char *err, size_t errlen)
{
    const char *p, *end, *at, *slash;

    if (strncmp(url, "redis://", 8) == 0)
        p = url + 8, o->tls = 0;
    else if (strncmp(url, "rediss://", 9) == 0)
        p = url + 9, o->tls = 1;
    else
        return url_fail(err, errlen, "must start with redis:// or rediss://");
    end = p + strcspn(p, "?#");
    slash = memchr(p, '/', (size_t)(end - p));
    if (!slash)
        slash = end;
    at = NULL;
    for (const char *c = p; c < slash; c++)     /* the last @ ends the user info */
        if (*c == '@')
            at = c;
    if (at && parse_userinfo(p, (size_t)(at - p), o) != 0)
        return url_fail(err, errlen, "user or password too long");
    if (parse_hostport(at ? at + 1 : p, (size_t)(slash - (at ? at + 1 : p)), o) != 0)
        return url_fail(err, errlen, "bad host or port");
    if (slash < end && slash + 1 < end) {
        char *e;
        long db = strtol(slash + 1, &e, 10);
        if (e != end || db < 0 || db > 1000000)
            return url_fail(err, errlen, "bad database number");
        o->db = (int)db;
    }
    return 0;
}

static SSL_CTX *tls_ctx(const llmr_redis_opts *o, char *err, size_t errlen)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());

    if (!c) {
        snprintf(err, errlen, "TLS: cannot create a context");
        return NULL;
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    if ((o->tls_ca[0] ? SSL_CTX_load_verify_locations(c, o->tls_ca, NULL)
                      : SSL_CTX_set_default_verify_paths(c)) != 1) {
        snprintf(err, errlen, "TLS: cannot load the CA %s", o->tls_ca[0] ? o->tls_ca : "store");
        SSL_CTX_free(c);
        return NULL;
    }
    return c;
}

/* ---------------------------------------------------------------- queue */

static pending *q_at(llmr_redis *r, int i)
{
    return &r->q[(r->qhead + i) % LLMR_REDIS_MAX_PENDING];
}

static void arm_timer(llmr_redis *r)
{
    int64_t due, now = llmr_clock_us() / 1000;
    struct timeval tv;

    if (r->st == R_CONNECTING)
        return;                                  /* the connect deadline stands */
    if (r->qlen == 0) {
        evtimer_del(r->timer);
        return;
    }
    due = q_at(r, 0)->deadline_ms - now;
    if (due < 0)
        due = 0;
    tv.tv_sec = (time_t)(due / 1000);
    tv.tv_usec = (suseconds_t)(due % 1000) * 1000;
    evtimer_add(r->timer, &tv);
}

static void report(llmr_redis *r, int up, const char *why)
{
    if (r->reported == up)
        return;
    r->reported = up;
    if (r->on_state)
        r->on_state(r, up, why, r->arg);
}

static void really_free(llmr_redis *r);

/* Calls every pending callback with NULL; they may issue commands (refused:
 * the state is already down) but the queue they see is empty. */
static void fail_pending(llmr_redis *r)
{
    int n = r->qlen, head = r->qhead;

    r->qlen = 0;
    r->qhead = 0;
    for (int i = 0; i < n; i++) {
        pending p = r->q[(head + i) % LLMR_REDIS_MAX_PENDING];
        if (p.cb)
            p.cb(r, NULL, p.arg);
    }
}

static void drop(llmr_redis *r, const char *why)
{
    struct timeval tv;

    if (r->bev) {
        bufferevent_free(r->bev);
        r->bev = NULL;
    }
    if (r->reader) {
        redisReaderFree(r->reader);
        r->reader = NULL;
    }
    r->st = R_DOWN;
    evtimer_del(r->timer);
    r->busy++;
    fail_pending(r);
    report(r, 0, why);
    r->busy--;
    if (r->freeing) {
        if (r->busy == 0)
            really_free(r);
        return;
    }
    tv.tv_sec = r->backoff_ms / 1000;
    tv.tv_usec = (r->backoff_ms % 1000) * 1000;
    evtimer_add(r->retry, &tv);
    r->backoff_ms = r->backoff_ms * 2 > r->o.reconnect_max_ms ? r->o.reconnect_max_ms
                                                               : r->backoff_ms * 2;
}

static int send_raw(llmr_redis *r, llmr_redis_reply_cb cb, void *arg, const char *cmd,
                    size_t len)
{
    pending *p;

    if (r->qlen >= LLMR_REDIS_MAX_PENDING || !r->bev)
        return -1;
    if (evbuffer_add(bufferevent_get_output(r->bev), cmd, len) != 0)
        return -1;
    p = q_at(r, r->qlen++);
    p->cb = cb;
    p->arg = arg;
    p->deadline_ms = llmr_clock_us() / 1000 + r->o.command_timeout_ms;
    if (r->qlen == 1)
        arm_timer(r);
    return 0;
}

/* ---------------------------------------------------------------- replies */

static int is_str(const redisReply *e, const char *s)
{
    size_t n = strlen(s);
    return e->type == REDIS_REPLY_STRING && (size_t)e->len == n && memcmp(e->str, s, n) == 0;
}

/* A pushed message, not the answer to a command. */
static int push_message(llmr_redis *r, const redisReply *y)
{
    const redisReply *ch, *msg;

    if (!r->on_push || y->type != REDIS_REPLY_ARRAY || y->elements < 3)
        return 0;
    if (is_str(y->element[0], "message") && y->elements == 3)
        ch = y->element[1], msg = y->element[2];
    else if (is_str(y->element[0], "pmessage") && y->elements == 4)
        ch = y->element[2], msg = y->element[3];
    else
        return 0;
    if (ch->type == REDIS_REPLY_STRING && msg->type == REDIS_REPLY_STRING)
        r->on_push(r, ch->str, (size_t)ch->len, msg->str, (size_t)msg->len, r->arg);
    return 1;
}

static void handshake_reply(llmr_redis *r, const redisReply *y)
{
    char why[300];

    if (y->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof why, "handshake refused: %.200s", y->str);
        drop(r, why);
        return;
    }
    if (--r->handshake_left == 0) {
        r->st = R_UP;
        r->backoff_ms = r->o.reconnect_min_ms;
        report(r, 1, "connected");
    }
}

/* One reply off the reader; 0 to go on, -1 when the connection was dropped. */
static int dispatch(llmr_redis *r, redisReply *y)
{
    pending p;

    if (push_message(r, y))
        return 0;
    if (r->qlen == 0) {
        drop(r, "a reply nobody asked for");
        return -1;
    }
    p = *q_at(r, 0);
    r->qhead = (r->qhead + 1) % LLMR_REDIS_MAX_PENDING;
    r->qlen--;
    arm_timer(r);
    if (!p.cb) {
        handshake_reply(r, y);
        return r->st == R_DOWN ? -1 : 0;
    }
    p.cb(r, y, p.arg);
    return r->st == R_DOWN || r->freeing ? -1 : 0;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    llmr_redis *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char buf[16384];
    int n;

    r->busy++;
    while ((n = evbuffer_remove(in, buf, sizeof buf)) > 0) {
        void *y = NULL;
        if (redisReaderFeed(r->reader, buf, (size_t)n) != REDIS_OK) {
            drop(r, "protocol error");
            break;
        }
        for (;;) {
            if (redisReaderGetReply(r->reader, &y) != REDIS_OK) {
                drop(r, "protocol error");
                goto out;
            }
            if (!y)
                break;
            int gone = dispatch(r, y);
            freeReplyObject(y);
            if (gone)
                goto out;
        }
    }
out:
    r->busy--;
    if (r->freeing && r->busy == 0)
        really_free(r);
}

static void handshake(llmr_redis *r)
{
    char *cmd = NULL;
    int len;

    r->st = R_AUTH;
    r->handshake_left = 0;
    if (r->o.password[0]) {
        len = r->o.username[0]
                  ? redisFormatCommand(&cmd, "AUTH %s %s", r->o.username, r->o.password)
                  : redisFormatCommand(&cmd, "AUTH %s", r->o.password);
        if (len > 0 && send_raw(r, NULL, NULL, cmd, (size_t)len) == 0)
            r->handshake_left++;
        free(cmd);
    }
    if (r->o.db > 0) {
        len = redisFormatCommand(&cmd, "SELECT %d", r->o.db);
        if (len > 0 && send_raw(r, NULL, NULL, cmd, (size_t)len) == 0)
            r->handshake_left++;
        free(cmd);
    }
    if (r->handshake_left == 0) {
        r->st = R_UP;
        r->backoff_ms = r->o.reconnect_min_ms;
        report(r, 1, "connected");
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    llmr_redis *r = arg;
    char why[200];

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        evtimer_del(r->timer);
        r->busy++;
        handshake(r);
        r->busy--;
        if (r->freeing && r->busy == 0)
            really_free(r);
        return;
    }
    if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof why, "connection closed by Redis");
    else {
        int dnserr = bufferevent_socket_get_dns_error(bev);
        unsigned long e = r->ssl ? bufferevent_get_openssl_error(bev) : 0;
        if (dnserr)
            snprintf(why, sizeof why, "cannot resolve %.100s: %s", r->o.host,
                     evutil_gai_strerror(dnserr));
        else if (e)
            snprintf(why, sizeof why, "TLS: %s", ERR_reason_error_string(e));
        else
            snprintf(why, sizeof why, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    drop(r, why);
}

static void on_timer(evutil_socket_t fd, short ev, void *arg)
{
    llmr_redis *r = arg;

    (void)fd, (void)ev;
    drop(r, r->st == R_CONNECTING ? "connect timed out" : "command timed out");
}

static void on_retry(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd, (void)ev;
    start_connect(arg);
}

static struct bufferevent *new_bev(llmr_redis *r)
{
    SSL *ssl;
    unsigned char ip[16];

    if (!r->ssl)
        return bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!(ssl = SSL_new(r->ssl)))
        return NULL;
    if (inet_pton(AF_INET, r->o.host, ip) == 1 || inet_pton(AF_INET6, r->o.host, ip) == 1)
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), r->o.host);
    else {
        SSL_set_tlsext_host_name(ssl, r->o.host);
        SSL_set1_host(ssl, r->o.host);
    }
    return bufferevent_openssl_socket_new(r->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static void start_connect(llmr_redis *r)
{
    struct timeval tv = { r->o.connect_timeout_ms / 1000,
                          (r->o.connect_timeout_ms % 1000) * 1000 };

    r->reader = redisReaderCreate();
    r->bev = r->reader ? new_bev(r) : NULL;
    if (!r->bev) {
        drop(r, "out of memory");
        return;
    }
    r->st = R_CONNECTING;
    bufferevent_setcb(r->bev, on_read, NULL, on_event, r);
    bufferevent_enable(r->bev, EV_READ | EV_WRITE);
    evtimer_add(r->timer, &tv);
    if (bufferevent_socket_connect_hostname(r->bev, r->dns, AF_UNSPEC, r->o.host,
                                            r->o.port) != 0)
        drop(r, "cannot start connecting");
}

llmr_redis *llmr_redis_new(struct event_base *base, const llmr_redis_opts *o,
                           llmr_redis_state_cb on_state, llmr_redis_push_cb on_push,
                           void *arg, char *err, size_t errlen)
{
    llmr_redis *r = calloc(1, sizeof *r);

    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->base = base;
    r->o = *o;
    r->on_state = on_state;
    r->on_push = on_push;
    r->arg = arg;
    r->reported = -1;
    r->backoff_ms = o->reconnect_min_ms > 0 ? o->reconnect_min_ms : 100;
    if (r->o.reconnect_max_ms < r->backoff_ms)
        r->o.reconnect_max_ms = r->backoff_ms;
    r->timer = evtimer_new(base, on_timer, r);
    r->retry = evtimer_new(base, on_retry, r);
    /* evdns reads resolv.conf and /etc/hosts once, here, off the loop's path */
    r->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS
                                      | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (o->tls && !(r->ssl = tls_ctx(o, err, errlen))) {
        really_free(r);
        return NULL;
    }
    if (!r->timer || !r->retry || !r->dns) {
        snprintf(err, errlen, "out of memory");
        really_free(r);
        return NULL;
    }
    start_connect(r);
    return r;
}

static void really_free(llmr_redis *r)
{
    if (r->bev)
        bufferevent_free(r->bev);
    if (r->reader)
        redisReaderFree(r->reader);
    if (r->timer)
        event_free(r->timer);
    if (r->retry)
        event_free(r->retry);
    if (r->dns)
        evdns_base_free(r->dns, 0);
    if (r->ssl)
        SSL_CTX_free(r->ssl);
    free(r);
}

void llmr_redis_free(llmr_redis *r)
{
    if (!r || r->freeing)
        return;
    r->freeing = 1;
    r->on_state = NULL;
    r->on_push = NULL;
    r->busy++;
    r->st = R_DOWN;
    fail_pending(r);
    r->busy--;
    if (r->busy == 0)
        really_free(r);
}

int llmr_redis_up(const llmr_redis *r)
{
    return r && r->st == R_UP && !r->freeing;
}

int llmr_redis_pending(const llmr_redis *r)
{
    return r ? r->qlen : 0;
}

static int send_formatted(llmr_redis *r, llmr_redis_reply_cb cb, void *arg, char *cmd, int len)
{
    int rc = -1;

    if (len > 0 && cb)
        rc = send_raw(r, cb, arg, cmd, (size_t)len);
    free(cmd);
    return rc;
}

int llmr_redis_cmd(llmr_redis *r, llmr_redis_reply_cb cb, void *arg, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    int len;

    if (!llmr_redis_up(r))
        return -1;
    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    return send_formatted(r, cb, arg, cmd, len);
}

int llmr_redis_cmd_argv(llmr_redis *r, llmr_redis_reply_cb cb, void *arg, int argc,
                        const char **argv, const size_t *argvlen)
{
    char *cmd = NULL;
    int len;

    if (!llmr_redis_up(r))
        return -1;
    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    return send_formatted(r, cb, arg, cmd, len);
}
