/* A cacheable request's way through the response cache (README "Response
 * cache").  llmr_cache_begin() takes a validated request over and ends in
 * one of: an answer from the store (hit), an answer another request in
 * flight stored (coalesced), or the request started upstream with a ticket
 * (miss, bypass) that request.c hands back at its end, when a complete 200
 * is stored and a single-flight lead is let go.
 *
 * The ticket: one per cacheable request, owned by this file while the
 * request waits (a store read, a leader in flight) and by the request once
 * started.  A waiting client that leaves marks it dead; a callback still
 * due frees it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>

#include "cache.h"
#include "cache_redis.h"
#include "clock.h"
#include "conn.h"
#include "hblock.h"
#include "log.h"

#define POLL_FIRST_MS 2         /* a waiter looks at the store after this... */
#define POLL_MAX_MS 50          /* ...doubling up to this */
#define PURGE_EVERY_S 5
#define PURGE_BATCH 1000

static const char *const call_names[LLMR_OP_COUNT] = {
    [LLMR_OP_CHAT] = "chat", [LLMR_OP_COMPLETIONS] = "completions",
    [LLMR_OP_EMBEDDINGS] = "embeddings", [LLMR_OP_RESPONSES] = "responses",
};

typedef struct llmr_cache_ticket llmr_cache_ticket;

typedef struct llmr_cache {
    llmr_worker *w;
    llmr_cache_lmdb *lmdb;
    llmr_cache_redis *redis;
    llmr_cache_stats *stats;
    struct event *purge;
    llmr_cache_ticket *pending;     /* tickets of requests not started yet */
    llmr_json json;                 /* a waiter's body, parsed again to start it */
} llmr_cache;

struct llmr_cache_ticket {
    llmr_cache *c;
    llmr_cache_ticket *prev, *next; /* c->pending while not started */
    struct evhttp_request *req;
    enum llmr_op op;
    int group, stream;
    llmr_controls ctl;
    llmr_cache_ctl cc;
    const llmr_json *j;             /* the body's tokens, only within begin() */
    unsigned char key[LLMR_CACHE_KEY_LEN];
    char hex[65];
    const char *result;             /* x-llmroute-cache */
    uint32_t tag;
    int flight;                     /* the single-flight entry led or waited on, or -1 */
    int leader;
    int linked, busy, dead, held;
    int waited;                     /* it waited on a leader: its time is partly spent */
    int poll_ms;
    int64_t deadline_us;
    struct event poll;
    struct evbuffer *tee;           /* a stream's bytes, to store at its end */
    int tee_over;
};

static void count(llmr_cache *c, _Atomic int64_t *field)
{
    (void)c;
    atomic_fetch_add_explicit(field, 1, memory_order_relaxed);
}

int llmr_cache_on(const llmr_worker *w, enum llmr_op op)
{
    return w->cache != NULL && (w->conf->cache.call_types & (1u << op)) != 0;
}

/* ---- the ticket ------------------------------------------------------------ */

static void link_pending(llmr_cache_ticket *t)
{
    llmr_cache *c = t->c;

    t->prev = NULL;
    t->next = c->pending;
    if (c->pending != NULL)
        c->pending->prev = t;
    c->pending = t;
    t->linked = 1;
}

static void unlink_pending(llmr_cache_ticket *t)
{
    if (!t->linked)
        return;
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        t->c->pending = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
    t->linked = 0;
}

static void let_go(llmr_cache_ticket *t)
{
    if (t->leader && t->flight >= 0)
        llmr_cache_flight_release(t->c->w->shm, t->flight, t->tag, (int32_t)getpid());
    t->leader = 0;
}

static void ticket_free(llmr_cache_ticket *t)
{
    if (t == NULL)
        return;
    let_go(t);
    unlink_pending(t);
    event_del(&t->poll);
    if (t->tee != NULL)
        evbuffer_free(t->tee);
    free(t);
}

static void on_gone(struct evhttp_connection *evcon, void *arg);

/* The request waits (a store read, a leader): watch its client. */
static void pend(llmr_cache_ticket *t)
{
    if (!t->linked) {
        link_pending(t);
        llmr_conn_set_closecb(t->c->w, evhttp_request_get_connection(t->req), on_gone, t);
    }
}

static void unpend(llmr_cache_ticket *t)
{
    if (t->linked && t->req != NULL)
        llmr_conn_set_closecb(t->c->w, evhttp_request_get_connection(t->req), NULL, NULL);
    unlink_pending(t);
    event_del(&t->poll);
}

static void on_gone(struct evhttp_connection *evcon, void *arg)
{
    llmr_cache_ticket *t = arg;
    llmr_worker *w = t->c->w;
    struct evhttp_request *req = t->req;

    (void)evcon;
    unlink_pending(t);
    event_del(&t->poll);
    t->dead = 1;
    t->req = NULL;
    llmr_alog_reply(w, req, 499, -1);
    if (evhttp_request_get_connection(req) == NULL)
        llmr_http_discard(w, req);
    else
        llmr_http_active_end(w);
    if (!t->busy)
        ticket_free(t);
}

/* ---- answers of our own ---------------------------------------------------- */

static void reply_entry(llmr_cache_ticket *t, const llmr_cache_entry *e, const char *how)
{
    llmr_worker *w = t->c->w;
    struct evkeyvalq *out = evhttp_request_get_output_headers(t->req);
    struct evbuffer *b = evbuffer_new();
    llmr_hblock hb;

    evhttp_add_header(out, "Content-Type", e->content_type[0] ? e->content_type
                      : e->stream ? "text/event-stream" : "application/json");
    llmr_hblock_init(&hb);
    if (e->stream)
        llmr_hblock_add(&hb, "Cache-Control", "no-cache");
    llmr_hblock_add(&hb, "x-llmroute-cache", how);
    llmr_hblock_add(&hb, "x-llmroute-cache-key", t->hex);
    llmr_hblock_add(&hb, "x-llmroute-model-group", w->conf->groups[t->group].name);
    llmr_hblock_attach(&hb, out);
    if (b != NULL)
        evbuffer_add(b, e->body, e->len);
    llmr_http_reply(w, t->req, e->status, b);
    if (b != NULL)
        evbuffer_free(b);
}

/* A waiter's own timeout passed while the leader was still in flight. */
static void reply_wait_timeout(llmr_cache_ticket *t)
{
    llmr_worker *w = t->c->w;
    struct evkeyvalq *out = evhttp_request_get_output_headers(t->req);
    char msg[512];

    evhttp_add_header(out, "x-llmroute-cache", "miss");
    evhttp_add_header(out, "x-llmroute-cache-key", t->hex);
    evhttp_add_header(out, "x-llmroute-model-group", w->conf->groups[t->group].name);
    llmr_error_message(msg, sizeof(msg), LLMR_E_UPSTREAM_TIMEOUT, w->conf->groups[t->group].name,
                       0, " (waited for an identical request in flight)", "");
    llmr_error_reply_msg(w, t->req, LLMR_E_UPSTREAM_TIMEOUT, NULL, msg);
}

/* Whether a stored value answers this request (fresh, young enough). */
static int usable(const llmr_cache_ticket *t, const void *val, size_t len, llmr_cache_entry *e)
{
    int64_t now = llmr_wall_ms();

    if (llmr_cache_entry_unpack(val, len, e) < 0 || e->expires_ms <= now
        || e->stream != t->stream)
        return 0;
    return t->cc.s_maxage < 0 || now - e->created_ms <= (int64_t)(t->cc.s_maxage * 1000);
}

/* ---- the store: local or Redis ------------------------------------------- */

static void store_get(llmr_cache_ticket *t, llmr_cache_got_fn *got)
{
    llmr_cache *c = t->c;

    t->busy = 1;
    if (c->lmdb == NULL)
        t->j = NULL;            /* Redis answers after the tokens are reused */
    if (c->lmdb != NULL) {
        llmr_cache_lmdb_get(c->lmdb, t->key, got, t);
    } else if (llmr_cache_redis_get(c->redis, t->key, got, t) < 0) {
        count(c, &c->stats->errors);
        got(t, NULL, 0);            /* Redis down: a miss */
    }
}

/* ---- starting the request ------------------------------------------------ */

static void start(llmr_cache_ticket *t)
{
    llmr_cache *c = t->c;
    llmr_worker *w = c->w;
    struct evhttp_request *req = t->req;
    const llmr_json *j = t->j;
    llmr_controls ctl = t->ctl;

    unpend(t);
    if (j == NULL) {            /* it waited: its tokens went to later requests */
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        const char *body = (const char *)evbuffer_pullup(in, -1);
        if (body == NULL || llmr_json_parse(&c->json, body, len, (int)(len / 2) + 64) < 0) {
            ticket_free(t);
            llmr_error_reply(w, req, LLMR_E_OUT_OF_MEMORY);
            return;
        }
        j = &c->json;
    }
    t->j = NULL;
    if (t->waited) {            /* what is left of its own timeout, not a fresh one */
        int64_t left = t->deadline_us - llmr_clock_us();
        ctl.timeout = left > 1000 ? (double)left / 1e6 : 0.001;
    }
    ctl.cache = t;              /* the request owns the ticket from here */
    llmr_request_start_ctl(w, req, t->op, t->group, j, &ctl);
}

/* The store has no answer: lead the key, wait for its leader, or go alone. */
static void on_miss(llmr_cache_ticket *t)
{
    llmr_cache *c = t->c;
    int64_t now = llmr_wall_ms();
    int64_t dl = now + (t->deadline_us - llmr_clock_us()) / 1000;
    int rc = t->cc.no_store ? -1
             : llmr_cache_flight_join(c->w->shm, t->tag, (int32_t)getpid(), dl, now, &t->flight);

    if (rc == 0) {              /* an identical request is in flight */
        struct timeval tv = { 0, POLL_FIRST_MS * 1000 };
        t->j = NULL;            /* the tokens go to the next request */
        t->waited = 1;
        t->poll_ms = POLL_FIRST_MS;
        pend(t);
        evtimer_add(&t->poll, &tv);
        return;
    }
    t->leader = rc == 1;
    if (rc < 0)
        t->flight = -1;
    count(c, &c->stats->misses);
    t->result = "miss";
    start(t);
}

/* A lookup's answer came: 1 when the ticket is done with (dropped, or
 * answered from the store as `how`), 0 when the caller goes on with it. */
static int answered(llmr_cache_ticket *t, const void *val, size_t len,
                    _Atomic int64_t *counter, const char *how)
{
    llmr_cache_entry e;

    t->busy = 0;
    if (t->dead) {
        ticket_free(t);
        return 1;
    }
    if (val == NULL || !usable(t, val, len, &e))
        return 0;
    count(t->c, counter);
    unpend(t);
    reply_entry(t, &e, how);
    ticket_free(t);
    return 1;
}

static void on_lookup(void *arg, const void *val, size_t len)
{
    llmr_cache_ticket *t = arg;

    if (!answered(t, val, len, &t->c->stats->hits, "hit"))
        on_miss(t);
}

/* A waiter looks again: the answer stored, the leader still at it, or the
 * leader gone without an answer (then this one may lead). */
static void on_poll_got(void *arg, const void *val, size_t len)
{
    llmr_cache_ticket *t = arg;

    if (answered(t, val, len, &t->c->stats->coalesced, "coalesced"))
        return;
    if (llmr_clock_us() >= t->deadline_us) {
        count(t->c, &t->c->stats->misses);
        unpend(t);
        reply_wait_timeout(t);
        ticket_free(t);
    } else if (t->held) {
        int64_t left = (t->deadline_us - llmr_clock_us()) / 1000;
        int ms = t->poll_ms * 2 < POLL_MAX_MS ? t->poll_ms * 2 : POLL_MAX_MS;
        struct timeval tv;
        t->poll_ms = ms;
        if (left < ms)
            ms = left > 0 ? (int)left : 0;
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (ms % 1000) * 1000;
        evtimer_add(&t->poll, &tv);
    } else {
        on_miss(t);
    }
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    llmr_cache_ticket *t = arg;

    (void)fd;
    (void)what;
    /* Held first, then the store: a leader stores before it lets go. */
    t->held = llmr_cache_flight_held(t->c->w->shm, t->flight, t->tag, llmr_wall_ms());
    store_get(t, on_poll_got);
}

/* ---- the request path ---------------------------------------------------- */

static double request_timeout(const llmr_conf *conf, const llmr_controls *ctl)
{
    return ctl->timeout > 0 && ctl->timeout < conf->timeout ? ctl->timeout : conf->timeout;
}

static llmr_cache_ticket *ticket_new(llmr_worker *w, struct evhttp_request *req,
                                     enum llmr_op op, int group, const llmr_json *j,
                                     const llmr_controls *ctl)
{
    llmr_cache_ticket *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->c = w->cache;
    t->req = req;
    t->op = op;
    t->group = group;
    t->ctl = *ctl;
    t->ctl.cache = NULL;
    t->j = j;
    t->flight = -1;
    t->stream = op != LLMR_OP_EMBEDDINGS && llmr_json_is_true(j, llmr_json_get(j, 0, "stream"));
    t->deadline_us = llmr_clock_us() + (int64_t)(request_timeout(w->conf, ctl) * 1e6);
    evtimer_assign(&t->poll, w->base, on_poll, t);
    return t;
}

void llmr_cache_begin(llmr_worker *w, struct evhttp_request *req, enum llmr_op op, int group,
                      const llmr_json *j, const llmr_controls *ctl)
{
    llmr_cache_ticket *t = ticket_new(w, req, op, group, j, ctl);
    char err[256];
    const char *ns;

    if (t == NULL) {
        llmr_error_reply(w, req, LLMR_E_OUT_OF_MEMORY);
        return;
    }
    if (llmr_cache_ctl_read(j, &t->cc, err, sizeof(err)) < 0) {
        ticket_free(t);
        llmr_error_reply_msg(w, req, LLMR_E_INVALID_CONTROL, "cache", err);
        return;
    }
    ns = t->cc.has_ns ? t->cc.ns : w->conf->cache.ns;
    if (llmr_cache_key(j, call_names[op], t->stream, w->conf->groups[group].name, ns,
                       t->key) < 0) {
        ticket_free(t);
        llmr_error_reply(w, req, LLMR_E_OUT_OF_MEMORY);
        return;
    }
    llmr_cache_key_hex(t->key, t->hex);
    t->tag = ((uint32_t)t->key[0] << 24 | (uint32_t)t->key[1] << 16 | (uint32_t)t->key[2] << 8
              | t->key[3]) | 1u;       /* never 0: 0 is a free entry */
    if (t->cc.no_cache) {
        count(w->cache, &w->cache->stats->bypass);
        t->result = "bypass";
        start(t);
        return;
    }
    pend(t);                    /* a Redis read answers later */
    store_get(t, on_lookup);
    t = NULL;                   /* on_lookup may have freed or started it */
    (void)t;
}

/* Stores what the request answered, if it is a complete 200. */
static void store_answer(llmr_request *r, llmr_cache_ticket *t, const llmr_reply *rep)
{
    llmr_cache *c = t->c;
    const llmr_conf *conf = c->w->conf;
    int64_t now = llmr_wall_ms();
    double ttl = t->cc.ttl > 0 ? t->cc.ttl : conf->cache.ttl;
    llmr_cache_entry e = { .created_ms = now, .expires_ms = now + (int64_t)(ttl * 1000),
                           .status = 200 };
    unsigned char hdr[LLMR_CACHE_HDR_LEN];
    const void *body;
    size_t len;
    int rc;

    if (rep->how == LLMR_REPLY_UPSTREAM && rep->status == 200 && r->state != LLMR_REQ_STREAMING
        && !t->stream) {
        len = evbuffer_get_length(r->at.resp);
        body = evbuffer_pullup(r->at.resp, -1);
    } else if (rep->how == LLMR_REPLY_STREAM_END && !rep->has_kind && r->at.status == 200
               && t->stream && t->tee != NULL && !t->tee_over) {
        e.stream = 1;
        len = evbuffer_get_length(t->tee);
        body = evbuffer_pullup(t->tee, -1);
    } else {
        return;
    }
    memcpy(e.content_type, r->at.content_type,
           strnlen(r->at.content_type, sizeof(e.content_type) - 1));
    llmr_cache_entry_pack(&e, hdr);
    if (c->lmdb != NULL) {
        rc = llmr_cache_lmdb_put(c->lmdb, t->key, hdr, body, len, e.created_ms, e.expires_ms,
                                 now);
    } else {
        /* Redis: the lead goes with the write's reply, so that a waiter on
         * another connection never looks before the entry is there. */
        rc = llmr_cache_redis_set(c->redis, t->key, hdr, body, len,
                                  (int64_t)(ttl * 1000), t->leader ? t->flight : -1, t->tag);
        if (rc == 0)
            t->leader = 0;
    }
    count(c, rc == 0 ? &c->stats->stores : &c->stats->errors);
}

void llmr_cache_request_done(llmr_request *r, const llmr_reply *rep)
{
    llmr_cache_ticket *t = r->ctl.cache;

    if (t == NULL || t->cc.no_store)
        return;
    store_answer(r, t, rep);
    let_go(t);
}

void llmr_cache_ticket_drop(llmr_cache_ticket *t)
{
    ticket_free(t);
}

void llmr_cache_request_free(llmr_request *r)
{
    ticket_free(r->ctl.cache);
    r->ctl.cache = NULL;
}

void llmr_cache_headers(llmr_request *r, llmr_hblock *b)
{
    llmr_cache_ticket *t = r->ctl.cache;

    if (t == NULL)
        return;
    llmr_hblock_add(b, "x-llmroute-cache", t->result != NULL ? t->result : "miss");
    llmr_hblock_add(b, "x-llmroute-cache-key", t->hex);
}

void llmr_cache_tee(llmr_request *r, const char *data, size_t len)
{
    llmr_cache_ticket *t = r->ctl.cache;
    size_t max;

    if (t == NULL || t->cc.no_store || t->tee_over)
        return;
    max = t->c->lmdb != NULL ? llmr_cache_lmdb_entry_max(t->c->lmdb) : LLMR_CACHE_REDIS_MAX;
    if (t->tee == NULL && (t->tee = evbuffer_new()) == NULL) {
        t->tee_over = 1;
        return;
    }
    if (evbuffer_get_length(t->tee) + len > max || evbuffer_add(t->tee, data, len) != 0) {
        t->tee_over = 1;
        evbuffer_free(t->tee);
        t->tee = NULL;
    }
}

/* ---- the worker's cache ---------------------------------------------------- */

/* Expired entries go off the request path: one worker (the first of each
 * generation) purges a batch every few seconds. */
static void on_purge(evutil_socket_t fd, short what, void *arg)
{
    llmr_cache *c = arg;

    (void)fd;
    (void)what;
    llmr_cache_lmdb_purge(c->lmdb, llmr_wall_ms(), PURGE_BATCH);
}

int llmr_cache_init(llmr_worker *w)
{
    const llmr_conf *conf = w->conf;
    llmr_cache *c;
    char err[512];

    if (!conf->cache_responses)
        return 0;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return -1;
    c->w = w;
    c->stats = llmr_shm_cache_stats(w->shm);
    w->cache = c;
    if (conf->cache.type == LLMR_CACHE_REDIS) {
        if ((c->redis = llmr_cache_redis_new(w, c->stats, err, sizeof(err))) == NULL) {
            llmr_error("worker %d: cache: %s", w->index, err);
            return -1;
        }
        return 0;
    }
    if (llmr_cache_lmdb_open(&c->lmdb, conf->cache.path, conf->cache.max_size_mb, c->stats,
                             err, sizeof(err)) < 0) {
        llmr_error("worker %d: cache: %s", w->index, err);
        return -1;
    }
    if (w->index == 0) {
        struct timeval tv = { PURGE_EVERY_S, 0 };
        if ((c->purge = event_new(w->base, -1, EV_PERSIST, on_purge, c)) == NULL
            || event_add(c->purge, &tv) < 0)
            return -1;
    }
    return 0;
}

void llmr_cache_drain_deadline(llmr_worker *w)
{
    llmr_cache *c = w->cache;
    llmr_cache_ticket *t, *next;

    for (t = c != NULL ? c->pending : NULL; t != NULL; t = next) {
        next = t->next;
        if (t->busy)            /* its store read answers first */
            continue;
        unpend(t);
        llmr_error_reply(w, t->req, LLMR_E_SHUTTING_DOWN);
        ticket_free(t);
    }
}

/* Worker exit: requests still waiting are dropped without an answer, like
 * llmr_request_abort_all() does for started ones. */
void llmr_cache_free(llmr_worker *w)
{
    llmr_cache *c = w->cache;

    llmr_cache_key_free();
    if (c == NULL)
        return;
    while (c->pending != NULL) {
        llmr_cache_ticket *t = c->pending;
        unpend(t);
        llmr_http_active_end(w);
        if (t->busy)            /* its store read answers (NULL) as Redis is freed */
            t->dead = 1;
        else
            ticket_free(t);
    }
    llmr_cache_redis_free(c->redis);
    c->redis = NULL;
    llmr_cache_lmdb_close(c->lmdb);
    if (c->purge != NULL)
        event_free(c->purge);
    llmr_json_free(&c->json);
    free(c);
    w->cache = NULL;
}
