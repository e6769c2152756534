/* The access log (access_log.h).  A line is formatted straight into the
 * worker's buffer; the buffer goes to the file in one write() when it
 * passes FLUSH_AT, every FLUSH_MS, on SIGUSR1 before the reopen, and when
 * the worker exits.  One write() of whole lines on an O_APPEND file is
 * placed at the end as a unit, so the workers' lines never interleave. */
#include "access_log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>

#include "clock.h"
#include "fmt.h"
#include "log.h"
#include "request.h"

#define BUF_CAP (128 * 1024)
/* No line is longer: each of its at most 14 strings is at most STR_MAX
 * bytes, 6 per byte escaped, and the rest is a few hundred bytes. */
#define LINE_MAX_LEN (24 * 1024)
#define FLUSH_AT (64 * 1024)
#define FLUSH_MS 1000
#define STR_MAX 256                 /* bytes of a client-supplied string logged */

typedef struct llmr_alog {
    int fd;                         /* -1: off, or the file could not be opened */
    size_t used;
    struct event *timer, *sig_reopen;
    struct event *flush_soon;       /* activated past FLUSH_AT: see line_added() */
    struct llmr_request *bound;     /* the routed request being answered */
    int in_handle;                  /* inside llmr_http_handle(): t_handle is ours */
    int64_t t_handle_us;
    char buf[BUF_CAP];
} llmr_alog;

static void flush(llmr_alog *a)
{
    ssize_t n;

    if (a->used == 0)
        return;
    /* One write() of whole lines.  A short write (a full disk) loses the
     * rest rather than splitting a line across two writes. */
    n = write(a->fd, a->buf, a->used);
    if (n < 0 || (size_t)n != a->used)
        llmr_warn("access log: write: %s", n < 0 ? strerror(errno) : "short write");
    a->used = 0;
}

static int open_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0)
        llmr_error("access log %s: %s", path, strerror(errno));
    return fd;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    llmr_alog *a = ((llmr_worker *)arg)->alog;

    (void)fd;
    (void)what;
    if (a->fd >= 0)
        flush(a);
}

/* A line is formatted before its reply is sent (the request may be freed
 * once it is), so the write() that FLUSH_AT calls for must not run there:
 * one request in every hundred or so would wait for the file before its
 * client got its answer.  The buffer is written from an event activated
 * now, which runs after the callbacks already due in this loop pass, the
 * reply's own sending among them.  Only a buffer without room for a whole
 * line is written at once. */
static void room_for_a_line(llmr_alog *a)
{
    if (a->used > BUF_CAP - LINE_MAX_LEN)
        flush(a);
}

static void line_added(llmr_alog *a)
{
    if (a->used > FLUSH_AT)
        event_active(a->flush_soon, EV_TIMEOUT, 1);
}

/* SIGUSR1 (the master forwards its own): logrotate has renamed the file. */
static void on_reopen(evutil_socket_t fd, short what, void *arg)
{
    llmr_worker *w = arg;
    llmr_alog *a = w->alog;
    int nfd;

    (void)fd;
    (void)what;
    if (w->conf->access_log == NULL)
        return;
    if (a->fd >= 0)
        flush(a);
    nfd = open_file(w->conf->access_log);
    if (nfd < 0)
        return;                     /* keep writing to the old one */
    if (a->fd >= 0)
        close(a->fd);
    a->fd = nfd;
}

int llmr_alog_open(llmr_worker *w)
{
    struct timeval tv = { FLUSH_MS / 1000, (FLUSH_MS % 1000) * 1000 };
    llmr_alog *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return -1;
    w->alog = a;
    a->fd = -1;
    a->sig_reopen = evsignal_new(w->base, SIGUSR1, on_reopen, w);
    if (a->sig_reopen == NULL || evsignal_add(a->sig_reopen, NULL) < 0)
        return -1;
    if (w->conf->access_log == NULL)
        return 0;
    a->timer = event_new(w->base, -1, EV_PERSIST, on_timer, w);
    if (a->timer == NULL || evtimer_add(a->timer, &tv) < 0)
        return -1;
    if ((a->flush_soon = event_new(w->base, -1, 0, on_timer, w)) == NULL)
        return -1;
    /* A file that cannot be opened is reported and the worker serves on. */
    a->fd = open_file(w->conf->access_log);
    return 0;
}

void llmr_alog_close(llmr_worker *w)
{
    llmr_alog *a = w->alog;

    if (a == NULL)
        return;
    if (a->fd >= 0) {
        flush(a);
        close(a->fd);
    }
    if (a->timer != NULL)
        event_free(a->timer);
    if (a->flush_soon != NULL)
        event_free(a->flush_soon);
    if (a->sig_reopen != NULL)
        event_free(a->sig_reopen);
    free(a);
    w->alog = NULL;
}

void llmr_alog_handle_begin(llmr_worker *w)
{
    if (w->alog != NULL && w->alog->fd >= 0) {
        w->alog->in_handle = 1;
        w->alog->t_handle_us = llmr_clock_us();
    }
}

void llmr_alog_handle_end(llmr_worker *w)
{
    if (w->alog != NULL)
        w->alog->in_handle = 0;
}

void llmr_alog_attempt(llmr_alog_rec *rec, int dep, int outcome, int err, int64_t dur_us,
                       int64_t prompt, int64_t completion)
{
    rec->upstream_us += dur_us;
    if (outcome == LLMR_OUTCOME_SUCCESS) {
        rec->prompt = prompt;
        rec->completion = completion;
    }
    if (rec->nat == LLMR_ALOG_ATTEMPTS) {
        rec->more++;
        return;
    }
    rec->at[rec->nat].dep = dep;
    rec->at[rec->nat].outcome = (signed char)outcome;
    rec->at[rec->nat].err = (signed char)err;
    rec->nat++;
}

/* ---- formatting ---------------------------------------------------------- */

typedef struct line {
    char *p;
    size_t n, cap;
} line;

static void put(line *l, const char *s, size_t len)
{
    if (len > l->cap - l->n)
        len = l->cap - l->n;
    memcpy(l->p + l->n, s, len);
    l->n += len;
}

static void putf(line *l, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (l->n + 1 >= l->cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(l->p + l->n, l->cap - l->n, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->n += (size_t)n < l->cap - l->n ? (size_t)n : l->cap - l->n - 1;
}

/* Integers by hand: a line per request formatted with vsnprintf (and its
 * floating point for the milliseconds) cost the worker about 3 µs of the
 * request's CPU (perf, issue 17). */
static void put_int(line *l, int64_t v)
{
    char d[LLMR_FMT_MAX];

    put(l, d, llmr_fmt_int(d, v));
}

static void put_key(line *l, const char *key)
{
    put(l, ",\"", 2);
    put(l, key, strlen(key));
    put(l, "\":", 2);
}

static void put_key_int(line *l, const char *key, int64_t v)
{
    put_key(l, key);
    put_int(l, v);
}

/* Microseconds as milliseconds with three decimals, as "%.3f" would. */
static void put_key_ms(line *l, const char *key, int64_t us)
{
    put_key(l, key);
    if (us < 0) {
        put(l, "null", 4);
        return;
    }
    put_int(l, us / 1000);
    put(l, (char[]){ '.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
                     (char)('0' + us % 10) }, 4);
}

/* A JSON string of at most STR_MAX bytes of s.  Every byte that is not
 * printable ASCII is escaped (\u00XX), so the line stays valid JSON and
 * valid UTF-8 whatever a client put in its path. */
static void put_str(line *l, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6] = { '\\', 'u', '0', '0' };

    size_t i = 0;

    put(l, "\"", 1);
    while (i < STR_MAX && s[i] != '\0') {
        size_t run = i;
        unsigned char c;

        /* The bytes that need no escape go in one copy. */
        while (run < STR_MAX && (c = (unsigned char)s[run]) >= 0x20 && c < 0x7f
               && c != '"' && c != '\\')
            run++;
        put(l, s + i, run - i);
        if (run >= STR_MAX || s[run] == '\0')
            break;
        c = (unsigned char)s[run];
        if (c == '"' || c == '\\') {
            put(l, "\\", 1);
            put(l, (const char *)&c, 1);
        } else {
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            put(l, esc, 6);
        }
        i = run + 1;
    }
    put(l, "\"", 1);
}

static void put_key_str(line *l, const char *key, const char *s)
{
    put_key(l, key);
    if (s == NULL)
        put(l, "null", 4);
    else
        put_str(l, s);
}

/* The date and time to the second is formatted once a second. */
static void put_time(line *l)
{
    static time_t sec = -1;
    static char t[32];
    struct timespec ts;
    struct tm tm;
    long ms;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != sec) {
        gmtime_r(&ts.tv_sec, &tm);
        strftime(t, sizeof(t), "{\"time\":\"%Y-%m-%dT%H:%M:%S.", &tm);
        sec = ts.tv_sec;
    }
    ms = ts.tv_nsec / 1000000;
    put(l, t, strlen(t));
    put(l, (char[]){ (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10),
                     'Z', '"' }, 5);
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

/* The client's address, its path without the query (a query may carry a
 * key), the method. */
static void put_client(line *l, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    const char *uri = evhttp_request_get_uri(req);
    char *addr = NULL, path[STR_MAX + 1];
    ev_uint16_t port = 0;
    size_t n;

    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &addr, &port);
    put_key_str(l, "client", addr);
    put_key_str(l, "method", method_name(evhttp_request_get_command(req)));
    uri = uri != NULL ? uri : "";
    n = strcspn(uri, "?#");
    n = n < STR_MAX ? n : STR_MAX;
    memcpy(path, uri, n);
    path[n] = '\0';
    put_key_str(l, "path", path);
}

static const char *outcome_name(int outcome, int err)
{
    if (outcome == LLMR_OUTCOME_SUCCESS)
        return "success";
    if (outcome == LLMR_OUTCOME_CANCELLED)
        return "cancelled";
    return llmr_err_name((enum llmr_err)err);
}

static void put_routed(line *l, llmr_request *r)
{
    const llmr_conf *c = r->w->conf;
    const llmr_alog_rec *rec = &r->log;

    put_key_str(l, "model_group", r->plan.ngroups > 0 ? llmr_request_group_name(r, 0) : NULL);
    put(l, ",\"attempts\":[", 13);
    for (int i = 0; i < rec->nat; i++) {
        const char *o = outcome_name(rec->at[i].outcome, rec->at[i].err);

        put(l, ",{\"deployment\":" + (i == 0), 15 - (i == 0));
        put_str(l, c->deployments[rec->at[i].dep].id);
        put(l, ",\"outcome\":\"", 12);
        put(l, o, strlen(o));
        put(l, "\"}", 2);
    }
    put(l, "]", 1);
    if (rec->more > 0)
        putf(l, ",\"attempts_not_listed\":%d", rec->more);
    put_key_str(l, "fallback_group", r->plan.pos > 0 && r->plan.pos < r->plan.ngroups
                ? llmr_request_group_name(r, r->plan.pos) : NULL);
}

static void put_tokens(line *l, int64_t prompt, int64_t completion)
{
    if (prompt < 0)
        put(l, ",\"prompt_tokens\":null,\"completion_tokens\":null", 46);
    else
    {
        put_key_int(l, "prompt_tokens", prompt);
        put_key_int(l, "completion_tokens", completion);
    }
}

void llmr_alog_reply(llmr_worker *w, struct evhttp_request *req, int status,
                     int64_t body_len)
{
    llmr_alog *a = w->alog;
    llmr_request *r;
    struct evbuffer *in;
    const char *id;
    int64_t now = llmr_clock_us(), total = -1, ttfb, overhead = -1;
    line l;

    if (a == NULL || a->fd < 0)
        return;
    r = a->bound != NULL && a->bound->req == req ? a->bound : NULL;
    room_for_a_line(a);
    l = (line){ a->buf + a->used, 0, LINE_MAX_LEN };
    put_time(&l);
    id = evhttp_find_header(evhttp_request_get_output_headers(req), "x-request-id");
    /* A client that left (499) got no header: the line still carries the
     * request's own id, the one its warn lines in the error log start with. */
    if (id == NULL && r != NULL)
        id = llmr_request_id(r);
    put_key_str(&l, "request_id", id);
    put_client(&l, req);
    if (r != NULL) {
        put_routed(&l, r);
        total = now - r->t_start_us;
        overhead = total - r->log.upstream_us - r->log.backoff_us;
        body_len = body_len >= 0 ? body_len : r->log.bytes_out;
    } else {
        put(&l, ",\"model_group\":null,\"attempts\":[],\"fallback_group\":null", 55);
        if (a->in_handle)
            total = overhead = now - a->t_handle_us;
    }
    ttfb = r != NULL && r->log.ttfb_us > 0 ? r->log.ttfb_us : total;
    put_key_int(&l, "status", status);
    put_tokens(&l, r != NULL ? r->log.prompt : -1, r != NULL ? r->log.completion : -1);
    put_key_ms(&l, "total_ms", total);
    put_key_ms(&l, "ttfb_ms", ttfb);
    put_key_ms(&l, "overhead_ms", overhead < 0 ? -1 : overhead);
    put_key_ms(&l, "backoff_ms", r != NULL ? r->log.backoff_us : -1);
    in = evhttp_request_get_input_buffer(req);
    put_key_int(&l, "bytes_in", (int64_t)(r != NULL ? r->len
                                          : in != NULL ? evbuffer_get_length(in) : 0));
    put_key_int(&l, "bytes_out", body_len > 0 ? body_len : 0);
    put(&l, ",\"cache\":null}", 14);
    if (l.n >= l.cap)
        l.n = l.cap - 1;            /* never reached: the fields are bounded */
    l.p[l.n++] = '\n';
    a->used += l.n;
    line_added(a);
}

/* Rare (a refused head or body), so getpeername() here costs nothing. */
void llmr_alog_refusal(llmr_worker *w, int fd, const char *id, int status, int64_t bytes_out)
{
    llmr_alog *a = w->alog;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char addr[INET6_ADDRSTRLEN] = "";
    line l;

    if (a == NULL || a->fd < 0)
        return;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof(addr));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof(addr));
    }
    room_for_a_line(a);
    l = (line){ a->buf + a->used, 0, LINE_MAX_LEN };
    put_time(&l);
    put_key_str(&l, "request_id", id);
    put_key_str(&l, "client", addr[0] ? addr : NULL);
    putf(&l, ",\"method\":null,\"path\":null,\"model_group\":null,\"attempts\":[],"
         "\"fallback_group\":null,\"status\":%d", status);
    put_tokens(&l, -1, -1);
    putf(&l, ",\"total_ms\":null,\"ttfb_ms\":null,\"overhead_ms\":null,\"backoff_ms\":null,"
         "\"bytes_in\":null,"
         "\"bytes_out\":%lld,\"cache\":null}\n", (long long)bytes_out);
    a->used += l.n;
    line_added(a);
}

void llmr_alog_bind(llmr_worker *w, llmr_request *r)
{
    if (w->alog != NULL)
        w->alog->bound = r;
}
