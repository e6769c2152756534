/* One routed request's life (DESIGN.md §7): pick a deployment of the
 * group, call it; on a retryable failure try a fresh deployment of the same
 * group (after a back-off timer), then each fallback group in order; answer
 * with the first success, or with the last failure once everything is
 * spent.  A stream commits to its deployment with its first byte.
 *
 * The states and their transitions are in request.h.  Every path ends in
 * llmr_request_finish(), which answers and only then frees; each timer has
 * one job, so no callback finds another's state behind it. */
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "stream.h"
#include "cache.h"

static void try_group(llmr_request *r);
static void on_attempt_done(void *arg, CURLcode result);

/* ---- states ------------------------------------------------------------ */

#define S(x) (1u << LLMR_REQ_##x)

/* legal[from]: the states `from` may move to.  Any live state may finish. */
static const unsigned legal[LLMR_REQ_NSTATES] = {
    [LLMR_REQ_ADMITTED] = S(ATTEMPT) | S(REPLYING),
    [LLMR_REQ_BACKOFF] = S(ADMITTED) | S(REPLYING),
    [LLMR_REQ_ATTEMPT] = S(ADMITTED) | S(BACKOFF) | S(STREAMING) | S(REPLYING),
    [LLMR_REQ_STREAMING] = S(REPLYING),
    [LLMR_REQ_REPLYING] = S(DONE),
    [LLMR_REQ_DONE] = 0,
};

void llmr_request_set_state(llmr_request *r, enum llmr_req_state to)
{
    LLMR_CHECK(legal[r->state] & (1u << to), "illegal request state transition");
    r->state = to;
}

/* Every callback of a request starts here: a finished request must have
 * no event, timer or transfer left that points at it. */
static void check_live(const llmr_request *r)
{
    LLMR_CHECK(r->state != LLMR_REQ_REPLYING && r->state != LLMR_REQ_DONE,
               "callback on a finished request");
    (void)r;
}

/* ---- life ---------------------------------------------------------------- */

static void link_request(llmr_request *r)
{
    r->prev = NULL;
    r->next = r->w->requests;
    if (r->next != NULL)
        r->next->prev = r;
    r->w->requests = r;
}

static void unlink_request(llmr_request *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        r->w->requests = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* ---- the objects ---------------------------------------------------------
 * A request object is 5.6 KB, and its calloc() was the costliest allocation
 * of a proxied request (callgrind: about 7,300 instructions, most of them
 * glibc consolidating its fast bins before handing out a chunk that large,
 * then zeroing it).  Finished objects are kept, with their answer buffer
 * and its callback, up to POOL_MAX per worker; under AddressSanitizer a kept
 * object is poisoned, so a use after its end is still caught. */
#define POOL_MAX 256

static void count_resp(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg);

static llmr_request *request_alloc(llmr_worker *w)
{
    llmr_request *r = w->req_pool;
    struct evbuffer *resp;

    if (r != NULL) {
        UNPOISON(r, sizeof(*r));
        w->req_pool = r->next;
        w->req_pool_n--;
        resp = r->at.resp;
        memset(r, 0, sizeof(*r));
        r->at.resp = resp;
        return r;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return NULL;
    if ((r->at.resp = evbuffer_new()) == NULL
        || evbuffer_add_cb(r->at.resp, count_resp, w) == NULL) {
        if (r->at.resp != NULL)
            evbuffer_free(r->at.resp);
        free(r);
        return NULL;
    }
    return r;
}

static void request_release(llmr_worker *w, llmr_request *r)
{
    if (w->req_pool_n < POOL_MAX) {
        /* Emptied through its callback, which keeps w->resp_bytes. */
        evbuffer_drain(r->at.resp, evbuffer_get_length(r->at.resp));
        r->next = w->req_pool;
        w->req_pool = r;
        w->req_pool_n++;
        POISON(r, sizeof(*r));
        return;
    }
    w->resp_bytes -= evbuffer_get_length(r->at.resp);     /* no callback on free */
    evbuffer_free(r->at.resp);
    free(r);
}

void llmr_request_pool_free(llmr_worker *w)
{
    while (w->req_pool != NULL) {
        llmr_request *r = w->req_pool;

        UNPOISON(r, sizeof(*r));
        w->req_pool = r->next;
        evbuffer_free(r->at.resp);
        free(r);
    }
    w->req_pool_n = 0;
}

static void request_free(llmr_request *r)
{
    LLMR_CHECK(r->state == LLMR_REQ_DONE, "request freed before it was finished");
    LLMR_CHECK(!r->at.admitted, "request freed with its admission held");
    unlink_request(r);
    llmr_upstream_release(r->w, r->at.easy);
    llmr_relay_free(&r->relay);
    llmr_anth_free(r);
    llmr_cache_request_free(r);
    free(r->at.up_body);
    request_release(r->w, r);
}

static void stop_timers(llmr_request *r)
{
    event_del(&r->backoff);
    event_del(&r->first_byte);
    event_del(&r->over_budget);
    event_del(&r->relay.idle);
}

/* The request is being answered: detach from the client's connection
 * first, since sending may close it and that must not look like the
 * client leaving. */
static void detach(llmr_request *r, int gone)
{
    if (!gone)
        llmr_conn_set_closecb(r->w, r->evcon, NULL, NULL);
}

void llmr_request_finish(llmr_request *r, const llmr_reply *rep)
{
    llmr_request_set_state(r, LLMR_REQ_REPLYING);
    stop_timers(r);
    if (r->at.admitted)             /* the client left, the worker stops, ... */
        llmr_attempt_end(r, LLMR_OUTCOME_CANCELLED);
    detach(r, rep->how == LLMR_REPLY_GONE);
    llmr_alog_bind(r->w, rep->how == LLMR_REPLY_NONE ? NULL : r);
    llmr_cache_request_done(r, rep);
    if (rep->how == LLMR_REPLY_GONE)    /* logged before the request may be freed */
        llmr_alog_reply(r->w, r->req, 499, -1);
    llmr_reply_send(r, rep);
    llmr_alog_bind(r->w, NULL);
    llmr_request_set_state(r, LLMR_REQ_DONE);
    request_free(r);
}

static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
    llmr_request *r = arg;
    llmr_reply rep = { .how = LLMR_REPLY_GONE };

    (void)evcon;
    check_live(r);
    llmr_request_finish(r, &rep);
}

/* ---- failures and retries ------------------------------------------------ */

static void finish_final(llmr_request *r)
{
    llmr_reply rep;

    llmr_reply_final(r, &rep);
    llmr_request_finish(r, &rep);
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    llmr_request *r = arg;

    (void)fd;
    (void)what;
    check_live(r);
    r->log.backoff_us += llmr_clock_us() - r->log.backoff_since_us;
    llmr_request_set_state(r, LLMR_REQ_ADMITTED);
    try_group(r);
}

static void next_try(llmr_request *r)
{
    llmr_request_set_state(r, LLMR_REQ_ADMITTED);
    try_group(r);
}

/* Decides what follows a failed attempt (the request is in ATTEMPT). */
static void after_failure(llmr_request *r, enum llmr_err err, int64_t ra)
{
    const llmr_conf *conf = r->w->conf;
    llmr_plan *p = &r->plan;
    int64_t wait;
    int room;

    if (p->nfailed < LLMR_FAILED_MAX)
        p->failed[p->nfailed++] = r->at.dep;
    if (err == LLMR_ERR_CONTEXT_WINDOW || err == LLMR_ERR_CONTENT_POLICY) {
        if (llmr_plan_switch(r, err == LLMR_ERR_CONTEXT_WINDOW ? &conf->context_window_fallbacks
                                                          : &conf->content_policy_fallbacks))
            next_try(r);
        else
            finish_final(r);
        return;
    }
    /* A retry is only worth waiting for when the group still has a
     * deployment that is not cooling down; else fall back at once. */
    if (llmr_err_retryable(err) && p->group_attempts <= r->ctl.num_retries
        && (room = llmr_plan_group_room(r)) >= 0) {
        wait = llmr_backoff_ms(r, err, ra, room);
        if (llmr_clock_us() + wait * 1000 >= r->deadline_us) {
            finish_final(r);        /* no wait may run past the timeout */
        } else if (wait > 0) {
            struct timeval tv = { (time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000 };
            llmr_request_set_state(r, LLMR_REQ_BACKOFF);
            r->log.backoff_since_us = llmr_clock_us();
            evtimer_add(&r->backoff, &tv);
        } else {
            next_try(r);
        }
        return;
    }
    if (llmr_plan_next(r))
        next_try(r);
    else
        finish_final(r);
}

/* A deployment's own stream_timeout (litellm_params, as LiteLLM allows)
 * wins over the router's. */
static int64_t first_byte_budget_us(const llmr_request *r)
{
    double t = llmr_attempt_dep(r)->stream_timeout;

    if (t <= 0)
        t = r->w->conf->stream_timeout;

    return r->stream && t > 0 ? (int64_t)(t * 1e6) : 0;
}

/* Picks a deployment of the current group and calls it; a group with no
 * deployment available passes to the next one, a prompt too long for every
 * deployment goes to the context-window fallbacks. */
static void try_group(llmr_request *r)
{
    llmr_pick_req rq = { .tokens = r->tokens_est, .stream = r->stream, .reserve = 1,
                         .op = r->op, .prefer = r->prefer_dep + 1 };
    llmr_pick pick;
    llmr_reply rep;
    int64_t fb;
    int dep;

    for (;;) {
        if (llmr_clock_us() >= r->deadline_us) {
            r->plan.final_err = LLMR_ERR_TIMEOUT;
            r->plan.final_status = 0;
            finish_final(r);
            return;
        }
        rq.avoid = r->plan.failed;
        rq.navoid = r->plan.nfailed;
        /* A failed pick leaves r->at alone: it still describes the last
         * attempt, whose answer may be the one the client gets. */
        dep = llmr_router_pick(r->w, r->plan.group[r->plan.pos], &rq, &pick);
        if (dep >= 0) {
            r->at.dep = dep;
            r->at.pos = r->plan.pos;
            break;
        }
        llmr_plan_note_unavailable(&r->plan, &pick);
        if (pick.why == LLMR_UNAVAIL_CONTEXT
            && llmr_plan_switch(r, &r->w->conf->context_window_fallbacks))
            continue;
        if (pick.why != LLMR_UNAVAIL_CONTEXT && llmr_plan_next(r))
            continue;
        finish_final(r);
        return;
    }
    if ((dep = llmr_attempt_start(r, on_attempt_done)) < 0) {
        llmr_attempt_unadmit(r);
        if (dep == -2)      /* the body cannot be said in the deployment's API */
            llmr_anth_bad_request(r, &rep);
        else
            llmr_reply_local(r, &rep, "out of memory or descriptors to start a transfer");
        llmr_request_finish(r, &rep);
        return;
    }
    llmr_request_set_state(r, LLMR_REQ_ATTEMPT);
    if ((fb = first_byte_budget_us(r)) > 0) {
        struct timeval tv = { (time_t)(fb / 1000000), (suseconds_t)(fb % 1000000) };
        evtimer_add(&r->first_byte, &tv);
    }
}

/* The attempt's time ran out while its transfer still waited in our own
 * new-connection queue (upstream_max_connecting): it never reached the
 * deployment, which is charged with nothing; the client gets a timeout. */
static void timeout_in_queue(llmr_request *r)
{
    llmr_reply rep;

    llmr_warn("%s: %s: timed out waiting for a new connection to deployment %s "
              "(upstream_max_connecting)", llmr_request_id(r),
              llmr_request_group_name(r, r->plan.pos), llmr_attempt_dep(r)->id);
    /* not llmr_reply_final(): no attempt was made, so "after N attempt(s)"
     * would be wrong, and an earlier attempt's upstream answer is not it;
     * the message is made before unadmit forgets the deployment */
    llmr_reply_error(&rep, LLMR_E_QUEUE_TIMEOUT, llmr_request_group_name(r, r->plan.pos),
                     llmr_attempt_dep(r)->id);
    rep.headers = 1;
    llmr_attempt_unadmit(r);
    llmr_request_finish(r, &rep);
}

/* A stream's first byte must come within stream_timeout (else timeout). */
static void on_first_byte(evutil_socket_t fd, short what, void *arg)
{
    llmr_request *r = arg;

    (void)fd;
    (void)what;
    check_live(r);
    if (r->state != LLMR_REQ_ATTEMPT)
        return;
    if (llmr_upstream_never_sent(r->w, r->at.easy)) {
        timeout_in_queue(r);
        return;
    }
    llmr_warn("%s: %s: deployment %s sent no first byte within stream_timeout",
              llmr_request_id(r), llmr_request_group_name(r, r->plan.pos), llmr_attempt_dep(r)->id);
    llmr_attempt_failed(r, LLMR_ERR_TIMEOUT, -1);
    evbuffer_drain(r->at.resp, evbuffer_get_length(r->at.resp));
    r->plan.final_err = LLMR_ERR_TIMEOUT;
    r->plan.final_status = 0;
    after_failure(r, LLMR_ERR_TIMEOUT, -1);
}

#define CLASSIFY_LOOK 16384     /* the bytes of an error answer classify reads */

/* The attempt reached the deployment (or tried to): what it answered. */
static void done_upstream(llmr_request *r, CURLcode result)
{
    size_t len = evbuffer_get_length(r->at.resp);
    /* Only an error answer's words matter, and only its start: a success
     * (maybe 50 MB of embeddings) is never copied into one block here. */
    size_t look = result == CURLE_OK && (r->at.status < 200 || r->at.status >= 300)
                  ? (len < CLASSIFY_LOOK ? len : CLASSIFY_LOOK) : 0;
    const char *body = look > 0 ? (const char *)evbuffer_pullup(r->at.resp, (ev_ssize_t)look)
                                : NULL;
    enum llmr_err err = llmr_classify(llmr_attempt_dep(r), result, r->at.status, body, look);
    int64_t ra = llmr_retry_after_ms(r);
    llmr_reply rep = { .how = LLMR_REPLY_UPSTREAM, .headers = 1, .status = (int)r->at.status };
    char msg[256];

    llmr_upstream_release(r->w, r->at.easy);
    r->at.easy = NULL;
    if (err == LLMR_ERR_NONE) {
        llmr_attempt_succeeded(r);
        if (r->state == LLMR_REQ_STREAMING)
            rep.how = LLMR_REPLY_STREAM_END;
        llmr_request_finish(r, &rep);
        return;
    }
    llmr_attempt_failed(r, err, ra);
    llmr_warn("%s: %s: deployment %s failed: %s (%s, HTTP %ld)%s%s", llmr_request_id(r),
              llmr_request_group_name(r, r->plan.pos), llmr_attempt_dep(r)->id,
              llmr_err_name(err), curl_easy_strerror(result), r->at.status,
              *llmr_attempt_upstream_id(&r->at) ? " upstream x-request-id " : "",
              llmr_attempt_upstream_id(&r->at));
    if (r->state == LLMR_REQ_STREAMING) {   /* the client has bytes: an error event */
        snprintf(msg, sizeof(msg), "upstream deployment %s failed mid-stream: %s",
                 llmr_attempt_dep(r)->id, llmr_err_name(err));
        llmr_reply_stream_error(&rep, err, msg);
        llmr_request_finish(r, &rep);
        return;
    }
    r->plan.final_err = err;
    r->plan.final_status = result == CURLE_OK ? (int)r->at.status : 0;
    r->plan.final_curl = result;
    after_failure(r, err, ra);
}

/* upstream.c's completion callback for the attempt's transfer. */
static void on_attempt_done(void *arg, CURLcode result)
{
    llmr_request *r = arg;
    const char *local;
    llmr_reply rep;

    check_live(r);
    evtimer_del(&r->first_byte);
    if (llmr_upstream_never_sent(r->w, r->at.easy)) {
        timeout_in_queue(r);
        return;
    }
    llmr_upstream_facts(r->w, r->at.easy, &r->at.sock_errno, &r->at.sends);
    local = llmr_attempt_local_failure(r, result);
    if (local != NULL && r->state != LLMR_REQ_STREAMING) {
        llmr_attempt_unadmit(r);
        llmr_reply_local(r, &rep, local);
        llmr_request_finish(r, &rep);
        return;
    }
    if (r->at.sends > 1)
        llmr_warn("%s: %s: deployment %s closed a reused connection without answering; the "
                  "request was not sent again", llmr_request_id(r), llmr_request_group_name(r, r->plan.pos),
                  llmr_attempt_dep(r)->id);
    done_upstream(r, result);
}

/* ---- start and the worker's ends -------------------------------------- */

static void on_over_budget(evutil_socket_t fd, short what, void *arg);

/* The request's own timeout can only shorten router_settings.timeout. */
static double request_timeout(const llmr_conf *conf, const llmr_controls *ctl)
{
    return ctl->timeout > 0 && ctl->timeout < conf->timeout ? ctl->timeout : conf->timeout;
}

/* Keeps w->resp_bytes, the bytes of every request's buffered answer, in
 * step with each add and drain, whoever makes it. */
static void count_resp(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    llmr_worker *w = arg;

    (void)b;
    w->resp_bytes += info->n_added;
    w->resp_bytes -= info->n_deleted;
}

void llmr_request_start_ctl(llmr_worker *w, struct evhttp_request *req, enum llmr_op op,
                            int group, const llmr_json *j, const llmr_controls *ctl)
{
    llmr_request *r = request_alloc(w);

    if (r == NULL) {
        llmr_cache_ticket_drop(ctl->cache);
        llmr_error_reply(w, req, LLMR_E_OUT_OF_MEMORY);
        return;
    }
    r->log.prompt = r->log.completion = -1;     /* until an attempt succeeds */
    r->w = w;
    r->state = LLMR_REQ_ADMITTED;
    evtimer_assign(&r->backoff, w->base, on_backoff, r);
    evtimer_assign(&r->first_byte, w->base, on_first_byte, r);
    evtimer_assign(&r->over_budget, w->base, on_over_budget, r);
    llmr_relay_init(r);
    link_request(r);
    r->req = req;
    r->evcon = evhttp_request_get_connection(req);
    r->op = op;
    /* Everything the request needs of its body's tokens is read here: they
     * belong to the validator, which reuses them for the next body. */
    r->stream = op != LLMR_OP_EMBEDDINGS && llmr_json_is_true(j, llmr_json_get(j, 0, "stream"));
    r->body = j->js;
    r->len = j->len;
    r->ctl = *ctl;
    if (r->ctl.num_retries < 0)
        r->ctl.num_retries = w->conf->num_retries;
    r->tokens_est = llmr_estimate_prompt_tokens(j);
    r->prefer_dep = op == LLMR_OP_RESPONSES ? llmr_responses_prefer(w, j, group) : -1;
    r->plan.group[0] = group;
    r->plan.ngroups = 1;
    r->at.dep = -1;
    r->t_start_us = llmr_clock_us();
    r->deadline_us = r->t_start_us + (int64_t)(request_timeout(w->conf, ctl) * 1e6);
    llmr_conn_set_closecb(w, r->evcon, on_client_close, r);   /* conn.c watches the end */
    try_group(r);
}

void llmr_request_abort_all(llmr_worker *w)
{
    llmr_reply rep = { .how = LLMR_REPLY_NONE };

    while (w->requests != NULL)
        llmr_request_finish(w->requests, &rep);
    LLMR_CHECK(llmr_attempt_open_admissions() == 0, "an admission was never given back");
    LLMR_CHECK(w->resp_bytes == 0, "buffered answer bytes miscounted");
}

/* ---- bounds: buffered answers, stalled streams, the drain deadline ------ */

#define BUDGET_STEP (1L << 20)      /* a growing answer checks the total per MiB */

/* What the worker holds for clients: answers being buffered from upstreams
 * (counted as they come and go) and replies queued towards slow clients. */
static size_t worker_buffered(llmr_worker *w)
{
    return w->resp_bytes + llmr_conn_output_bytes(w);
}

static void on_over_budget(evutil_socket_t fd, short what, void *arg)
{
    llmr_request *r = arg;
    llmr_reply rep = { .how = LLMR_REPLY_ERROR };

    (void)fd;
    (void)what;
    check_live(r);
    llmr_warn("%s: %s: answer from %s dropped: the worker holds more than max_buffered_bytes "
              "(%ld)", llmr_request_id(r), llmr_request_group_name(r, 0), llmr_attempt_dep(r)->id,
              r->w->conf->max_buffered_bytes);
    llmr_reply_error(&rep, LLMR_E_OVERLOADED);
    llmr_request_finish(r, &rep);
}

int llmr_request_over_budget(llmr_request *r, size_t len)
{
    size_t had = evbuffer_get_length(r->at.resp);

    if ((had + len) / BUDGET_STEP == had / BUDGET_STEP
        || worker_buffered(r->w) + len <= (size_t)r->w->conf->max_buffered_bytes)
        return 0;
    /* Inside libcurl's write callback: pause, answer from the loop. */
    event_active(&r->over_budget, EV_TIMEOUT, 1);
    return 1;
}

/* A committed stream got nothing from its upstream for stream_idle_timeout. */
void llmr_request_stalled(llmr_request *r)
{
    llmr_reply rep;
    char msg[256];

    check_live(r);
    snprintf(msg, sizeof(msg), "upstream deployment %s sent nothing for %g s "
             "(stream_idle_timeout)", llmr_attempt_dep(r)->id, r->w->conf->stream_idle_timeout);
    llmr_warn("%s: %s: %s", llmr_request_id(r), llmr_request_group_name(r, r->plan.pos), msg);
    llmr_attempt_failed(r, LLMR_ERR_TIMEOUT, -1);
    llmr_reply_stream_error(&rep, LLMR_ERR_TIMEOUT, msg);
    llmr_request_finish(r, &rep);
}

/* drain_timeout passed: every stream still running gets an error event and
 * a clean end of its chunked reply, every request not yet answered a 503,
 * so no client is cut off without being told why. */
void llmr_request_drain_deadline(llmr_worker *w)
{
    llmr_request *next;

    for (llmr_request *r = w->requests; r != NULL; r = next) {
        llmr_reply rep;
        next = r->next;
        llmr_reply_error(&rep, LLMR_E_SHUTTING_DOWN);
        if (r->state == LLMR_REQ_STREAMING) {
            rep.how = LLMR_REPLY_STREAM_END;
            rep.has_kind = 1;
        }
        llmr_request_finish(r, &rep);
    }
}
