/* One routed request's life (DESIGN.md §7): pick a deployment of the
 * group, call it; on a retryable failure try a fresh deployment of the same
 * group (429s after a back-off timer), then each fallback group in order;
 * answer with the first success, or with the last failure once everything
 * is spent.  A stream commits to its deployment with its first byte. */
#include "proxy.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "conn.h"
#include "log.h"

static void try_group(llmr_call *c);
static void done_upstream(llmr_call *c, CURLcode result);

int64_t llmr_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void call_link(llmr_call *c)
{
    c->prev = NULL;
    c->next = c->w->calls;
    if (c->next != NULL)
        c->next->prev = c;
    c->w->calls = c;
}

static void call_unlink(llmr_call *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->w->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void call_free(llmr_call *c)
{
    call_unlink(c);
    if (c->client_gone != NULL)
        event_free(c->client_gone);
    if (c->timer != NULL)
        event_free(c->timer);
    llmr_upstream_release(c->w, c->easy);
    if (c->resp != NULL)
        evbuffer_free(c->resp);
    if (c->chunk != NULL)
        evbuffer_free(c->chunk);
    llmr_sse_free(&c->sse);
    free(c->up_body);
    free(c);
}

static const llmr_deployment *dep_of(llmr_call *c)
{
    return &c->w->conf->deployments[c->dep];
}

static llmr_slot *dep_slot(llmr_call *c)
{
    return llmr_shm_slot(c->w->shm, dep_of(c)->slot);
}

static const char *group_name(llmr_call *c, int pos)
{
    return c->w->conf->groups[c->plan[pos]].name;
}

/* Ends the attempt in flight with `outcome` for its deployment. */
static void attempt_end(llmr_call *c, enum llmr_outcome outcome)
{
    if (c->easy != NULL) {
        llmr_upstream_abort(c->w, c->easy);
        llmr_upstream_release(c->w, c->easy);
        c->easy = NULL;
    }
    llmr_counters_attempt_end(dep_slot(c), c->w->wslot, outcome,
                              llmr_now_us() - c->t_attempt_us);
    /* A failed or abandoned attempt used no tokens of the deployment's tpm. */
    llmr_counters_tokens_used(dep_slot(c), c->tokens_est, 0, c->t_admit_ms, llmr_now_ms());
}

static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
    llmr_call *c = arg;
    llmr_worker *w = c->w;
    struct evhttp_request *req = c->req;

    (void)evcon;
    if (c->easy != NULL)
        attempt_end(c, LLMR_OUTCOME_CANCELLED);
    call_free(c);
    /* A detached request is ours to free; one still attached belongs to a
     * connection that evhttp is freeing itself. */
    if (evhttp_request_get_connection(req) == NULL)
        llmr_http_discard(w, req);
    else
        w->active--;
}

/* evhttp stops reading a connection while its request is handled, so it
 * would see a client leave only when the reply fails.  An EV_CLOSED watch
 * on the socket notices at once; freeing the connection then runs
 * on_client_close(), which aborts the upstream transfer. */
static void on_client_gone(evutil_socket_t fd, short what, void *arg)
{
    llmr_call *c = arg;

    (void)fd;
    (void)what;
    evhttp_connection_free(c->evcon);
}

static void watch_client(llmr_call *c)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
    evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;

    if (fd < 0 || !(event_base_get_features(c->w->base) & EV_FEATURE_EARLY_CLOSE))
        return;
    c->client_gone = event_new(c->w->base, fd, EV_CLOSED, on_client_gone, c);
    if (c->client_gone != NULL)
        event_add(c->client_gone, NULL);
}

/* The x-llmroute-* headers of every routed response. */
void llmr_proxy_headers(llmr_call *c)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(c->req);
    char n[16];

    if (c->retry_after[0])
        evhttp_add_header(out, "Retry-After", c->retry_after);
    if (c->dep >= 0)
        evhttp_add_header(out, "x-llmroute-deployment", dep_of(c)->id);
    snprintf(n, sizeof(n), "%d", c->attempts);
    evhttp_add_header(out, "x-llmroute-attempts", n);
    evhttp_add_header(out, "x-llmroute-model-group", group_name(c, 0));
    if (c->pos > 0)
        evhttp_add_header(out, "x-llmroute-fallback", group_name(c, c->pos));
}

/* The call is answered: detach from the client's connection first, since
 * sending may close it and that must not look like the client leaving. */
static void detach(llmr_call *c)
{
    llmr_conn_set_closecb(c->w, c->evcon, NULL, NULL);
    if (c->client_gone != NULL)
        event_free(c->client_gone);
    c->client_gone = NULL;
}

static void reply_buffered(llmr_call *c, int status)
{
    llmr_worker *w = c->w;
    struct evhttp_request *req = c->req;

    detach(c);
    llmr_proxy_headers(c);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      c->content_type[0] ? c->content_type : "application/json");
    llmr_http_reply(w, req, status, c->resp);
    call_free(c);
}

static const char *const limit_names[] = {
    [LLMR_LIMIT_NONE] = "", [LLMR_LIMIT_PARALLEL] = "max_parallel_requests",
    [LLMR_LIMIT_RPM] = "rpm", [LLMR_LIMIT_TPM] = "tpm",
};

/* No deployment could take the request: every one is cooling down or at a
 * limit (429 with Retry-After), or too small for the prompt (400). */
static void reply_unavailable(llmr_call *c)
{
    llmr_worker *w = c->w;
    struct evhttp_request *req = c->req;
    char what[320], retry[24], group[LLMR_ID_MAX];
    enum llmr_unavail why = c->unavail;
    enum llmr_limit limit = c->limit;
    long long tokens = (long long)c->tokens_est;

    snprintf(group, sizeof(group), "%s", group_name(c, 0));
    if (why != LLMR_UNAVAIL_CONTEXT) {
        snprintf(retry, sizeof(retry), "%lld", (long long)((c->unavail_wait_ms + 999) / 1000));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", retry);
    }
    call_free(c);
    if (why == LLMR_UNAVAIL_CONTEXT) {
        llmr_http_error(w, req, 400, "invalid_request_error", "messages",
                        "context_length_exceeded", "model group %s: the prompt (about %lld "
                        "tokens) is longer than every deployment's max_input_tokens", group,
                        tokens);
    } else if (why == LLMR_UNAVAIL_LIMIT) {
        snprintf(what, sizeof(what), "model group %s: every deployment is at its %s limit",
                 group, limit_names[limit]);
        llmr_http_error(w, req, 429, "rate_limit_error", NULL, "rate_limit_exceeded", "%s",
                        what);
    } else {
        snprintf(what, sizeof(what), "no deployment of model group %s is available: every "
                 "deployment is cooling down after failures", group);
        llmr_http_error(w, req, 429, "rate_limit_error", NULL, "no_deployment_available",
                        "%s", what);
    }
}

/* Everything is spent: the last upstream answer if there was one, else our
 * own error for what went wrong. */
static void reply_final(llmr_call *c)
{
    llmr_worker *w = c->w;
    struct evhttp_request *req = c->req;
    char what[256];
    int status;

    if (c->final_status >= 400) {      /* an upstream answered: pass it on */
        reply_buffered(c, c->final_status);
        return;
    }
    detach(c);
    c->retry_after[0] = '\0';
    llmr_proxy_headers(c);
    if (c->final_err == LLMR_ERR_NONE) {      /* no attempt could be made */
        reply_unavailable(c);
        return;
    }
    status = c->final_err == LLMR_ERR_TIMEOUT ? 504 : 502;
    snprintf(what, sizeof(what), "model group %s: %s after %d attempt(s)%s",
             group_name(c, 0), c->final_err == LLMR_ERR_TIMEOUT ? "upstream timed out"
             : "upstream unreachable", c->attempts,
             c->dep >= 0 ? ", last on deployment " : "");
    if (c->dep >= 0)
        strncat(what, dep_of(c)->id, sizeof(what) - strlen(what) - 1);
    call_free(c);
    llmr_http_error(w, req, status, status == 504 ? "timeout" : "api_connection_error", NULL,
                    status == 504 ? "timeout" : "upstream_unreachable", "%s", what);
}

/* Out of descriptors, every request fails the same way: one line a second
 * at most, with the count. */
static void log_local(llmr_worker *w, const char *group, const char *why)
{
    int64_t now = llmr_now_ms();

    w->local_fails++;
    if (now - w->local_fail_log_ms < 1000)
        return;
    llmr_error("%s: no upstream call could be made: %s (%lu request(s) answered 503 "
               "local_resource_exhausted since the last report)", group, why, w->local_fails);
    w->local_fail_log_ms = now;
    w->local_fails = 0;
}

/* The attempt could not be made for want of something of ours (descriptors,
 * memory): the request never reached the deployment, so it is not charged
 * with anything, and the client gets 503 and may come back shortly. */
static void reply_local(llmr_call *c, const char *why)
{
    llmr_worker *w = c->w;
    struct evhttp_request *req = c->req;
    char group[LLMR_ID_MAX];

    if (c->dep >= 0) {
        if (c->easy != NULL) {
            llmr_upstream_abort(w, c->easy);
            llmr_upstream_release(w, c->easy);
            c->easy = NULL;
        }
        llmr_counters_unadmit(dep_slot(c), w->wslot, c->tokens_est, c->t_admit_ms);
        c->attempts--;
        c->dep = -1;
    }
    snprintf(group, sizeof(group), "%s", group_name(c, c->pos));
    detach(c);
    c->retry_after[0] = '\0';
    llmr_proxy_headers(c);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    call_free(c);
    log_local(w, group, why);
    llmr_http_error(w, req, 503, "server_error", NULL, "local_resource_exhausted",
                    "llmroute could not call an upstream of model group %s: %s (no "
                    "deployment is at fault; retry shortly)", group, why);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    llmr_call *c = arg;
    size_t len = size * n;

    if (c->stream && c->status >= 200 && c->status < 300) {
        if (!c->committed)
            llmr_stream_commit(c);
        return llmr_stream_write(c, data, len);
    }
    if (evbuffer_get_length(c->resp) + len > (size_t)LLMR_RESPONSE_MAX)
        return 0;
    if (llmr_proxy_over_budget(c, len))
        return CURL_WRITEFUNC_PAUSE;
    return evbuffer_add(c->resp, data, len) == 0 ? len : 0;
}

static void copy_header_value(char *dst, size_t cap, const char *v, size_t len)
{
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
        len--;
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

/* Keeps what the client needs from the upstream's headers.  A new status
 * line (after a 100 Continue) starts over. */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    llmr_call *c = arg;
    size_t len = size * n;

    if (len >= 12 && memcmp(data, "HTTP/", 5) == 0) {
        const char *sp = memchr(data, ' ', len);
        c->status = sp != NULL ? strtol(sp + 1, NULL, 10) : 0;
        c->content_type[0] = '\0';
        c->retry_after[0] = '\0';
    } else if (len > 13 && strncasecmp(data, "content-type:", 13) == 0) {
        copy_header_value(c->content_type, sizeof(c->content_type), data + 13, len - 13);
    } else if (len > 12 && strncasecmp(data, "retry-after:", 12) == 0) {
        copy_header_value(c->retry_after, sizeof(c->retry_after), data + 12, len - 12);
    }
    return len;
}

/* The client's body with "model" replaced by the deployment's model name;
 * every other byte goes upstream untouched. */
static int build_body(llmr_call *c, const llmr_deployment *d)
{
    size_t mlen = strlen(d->upstream_model);
    size_t cap = c->len - (c->model_end - c->model_start) + 2 * mlen + 1;
    char *b, *p;

    if (c->up_model != NULL && strcmp(c->up_model, d->upstream_model) == 0)
        return 0;
    if ((b = malloc(cap)) == NULL)
        return -1;
    memcpy(b, c->body, c->model_start);
    p = b + c->model_start;
    p += llmr_json_escape(p, 2 * mlen + 1, d->upstream_model, mlen);
    memcpy(p, c->body + c->model_end, c->len - c->model_end);
    p += c->len - c->model_end;
    free(c->up_body);
    c->up_body = b;
    c->up_len = (size_t)(p - b);
    c->up_model = d->upstream_model;
    return 0;
}

static long attempt_timeout_ms(llmr_call *c, const llmr_deployment *d)
{
    int64_t left = c->deadline_us - llmr_now_us();
    int64_t per = d->timeout > 0 ? (int64_t)(d->timeout * 1e6) : left;

    if (per < left)
        left = per;
    return left < 1000 ? 1 : (long)(left / 1000);
}

/* Every option is set on every attempt: easy handles are reused without a
 * reset (upstream.c). */
static void attempt_setup(llmr_call *c, const llmr_deployment *d)
{
    const llmr_target *t = &c->w->targets[c->dep];
    CURL *e = c->easy;

    curl_easy_setopt(e, CURLOPT_URL, t->url[c->op]);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->up_body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->up_len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, attempt_timeout_ms(c, d));
}

/* A stream's first byte must come within stream_timeout (else timeout). */
static void on_first_byte_deadline(evutil_socket_t fd, short what, void *arg);

static int64_t first_byte_budget_us(llmr_call *c)
{
    double t = c->w->conf->stream_timeout;

    return c->stream && t > 0 ? (int64_t)(t * 1e6) : 0;
}

/* Starts one attempt on deployment c->dep. */
static int attempt(llmr_call *c)
{
    const llmr_deployment *d = dep_of(c);
    int64_t fb = first_byte_budget_us(c);

    c->attempts++;
    c->group_attempts++;
    c->status = 0;
    c->content_type[0] = c->retry_after[0] = '\0';
    evbuffer_drain(c->resp, evbuffer_get_length(c->resp));
    if (build_body(c, d) < 0 || (c->easy = llmr_upstream_easy(c->w)) == NULL)
        return -1;      /* the caller gives the router's places back */
    attempt_setup(c, d);
    c->t_attempt_us = llmr_now_us();
    if (llmr_upstream_start(c->w, c->easy) < 0) {
        llmr_upstream_release(c->w, c->easy);
        c->easy = NULL;
        return -1;
    }
    if (fb > 0) {
        struct timeval tv = { (time_t)(fb / 1000000), (suseconds_t)(fb % 1000000) };
        event_assign(c->timer, c->w->base, -1, 0, on_first_byte_deadline, c);
        evtimer_add(c->timer, &tv);
    }
    return 0;
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    try_group(arg);
}

/* Whether the current group has a deployment that could take a retry:
 * -1 none, 1 one that has not failed this request, 0 only failed ones. */
static int group_room(llmr_call *c)
{
    llmr_pick_req rq = { .tokens = c->tokens_est, .stream = c->stream, .avoid = c->failed,
                         .navoid = c->nfailed };
    llmr_pick pick;
    int dep = llmr_router_pick(c->w, c->plan[c->pos], &rq, &pick);

    if (dep < 0)
        return -1;
    for (int k = 0; k < c->nfailed; k++)
        if (c->failed[k] == dep)
            return 0;
    return 1;
}

/* Decides what follows a failed attempt. */
static void after_failure(llmr_call *c, enum llmr_err err, int64_t ra)
{
    const llmr_conf *conf = c->w->conf;
    int64_t wait;
    int room;

    if (c->nfailed < LLMR_FAILED_MAX)
        c->failed[c->nfailed++] = c->dep;
    if (err == LLMR_ERR_CONTEXT_WINDOW || err == LLMR_ERR_CONTENT_POLICY) {
        if (llmr_plan_switch(c, err == LLMR_ERR_CONTEXT_WINDOW ? &conf->context_window_fallbacks
                                                          : &conf->content_policy_fallbacks))
            try_group(c);
        else
            reply_final(c);
        return;
    }
    /* A retry is only worth waiting for when the group still has a
     * deployment that is not cooling down; else fall back at once. */
    if (llmr_err_retryable(err) && c->group_attempts <= conf->num_retries
        && (room = group_room(c)) >= 0) {
        wait = llmr_backoff_ms(c, err, ra, room);
        if (llmr_now_us() + wait * 1000 >= c->deadline_us) {
            reply_final(c);         /* no wait may run past the timeout */
            return;
        }
        if (wait > 0) {
            struct timeval tv = { (time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000 };
            event_assign(c->timer, c->w->base, -1, 0, on_retry_timer, c);
            evtimer_add(c->timer, &tv);
        } else {
            try_group(c);
        }
        return;
    }
    if (llmr_plan_next(c))
        try_group(c);
    else
        reply_final(c);
}

/* Remembers why a group had no deployment, for the answer if nothing else
 * serves: a limit wins over a cooldown, the soonest wait is kept. */
static void note_unavailable(llmr_call *c, const llmr_pick *p)
{
    if (c->unavail == LLMR_UNAVAIL_NONE || c->unavail == LLMR_UNAVAIL_CONTEXT
        || (p->why == LLMR_UNAVAIL_LIMIT && c->unavail == LLMR_UNAVAIL_COOLING)) {
        c->unavail = p->why;
        c->limit = p->limit;
        c->unavail_wait_ms = p->wait_ms;
    } else if (p->why == c->unavail && p->wait_ms < c->unavail_wait_ms) {
        c->unavail_wait_ms = p->wait_ms;
    }
}

/* Picks a deployment of the current group and calls it; a group with no
 * deployment available passes to the next one, a prompt too long for every
 * deployment goes to the context-window fallbacks. */
static void try_group(llmr_call *c)
{
    llmr_pick_req rq = { .tokens = c->tokens_est, .stream = c->stream, .reserve = 1 };
    llmr_pick pick;

    for (;;) {
        if (llmr_now_us() >= c->deadline_us) {
            c->final_err = LLMR_ERR_TIMEOUT;
            c->final_status = 0;
            reply_final(c);
            return;
        }
        rq.avoid = c->failed;
        rq.navoid = c->nfailed;
        c->dep = llmr_router_pick(c->w, c->plan[c->pos], &rq, &pick);
        if (c->dep >= 0)
            break;
        note_unavailable(c, &pick);
        if (pick.why == LLMR_UNAVAIL_CONTEXT
            && llmr_plan_switch(c, &c->w->conf->context_window_fallbacks))
            continue;
        if (pick.why != LLMR_UNAVAIL_CONTEXT && llmr_plan_next(c))
            continue;
        reply_final(c);
        return;
    }
    c->t_admit_ms = llmr_now_ms();
    if (attempt(c) < 0)
        reply_local(c, "out of memory or descriptors to start a transfer");
}

/* An upstream may report any number: keep usage where the sums below and
 * the counters cannot overflow. */
static void clamp_usage(int64_t *prompt, int64_t *completion)
{
    *prompt = *prompt < 0 ? 0 : *prompt > LLMR_USAGE_MAX ? LLMR_USAGE_MAX : *prompt;
    *completion = *completion < 0 ? 0
                : *completion > LLMR_USAGE_MAX ? LLMR_USAGE_MAX : *completion;
}

/* Usage of a response into the deployment's counters.  Only the "usage"
 * member is tokenized (a few tokens): the rest of the answer, maybe 50 MB
 * of embeddings, is stepped over in one scan that allocates nothing. */
static void account_usage(llmr_call *c)
{
    llmr_json *j = &c->w->json;
    size_t len = evbuffer_get_length(c->resp), off, n;
    const char *body;
    int64_t prompt = 0, completion = 0;

    if (c->committed) {
        llmr_stream_usage(c, &prompt, &completion);
    } else {
        body = (const char *)evbuffer_pullup(c->resp, -1);
        if (body != NULL && llmr_json_member(body, len, "usage", &off, &n) == 0
            && llmr_json_parse(j, body + off, n, 256) == 0 && j->toks[0].type == JSMN_OBJECT) {
            llmr_json_int(j, llmr_json_get(j, 0, "prompt_tokens"), &prompt);
            llmr_json_int(j, llmr_json_get(j, 0, "completion_tokens"), &completion);
        } else {
            prompt = c->tokens_est;     /* no usage reported: keep the estimate */
        }
    }
    clamp_usage(&prompt, &completion);
    llmr_counters_add_usage(dep_slot(c), prompt, completion);
    llmr_counters_tokens_used(dep_slot(c), c->tokens_est, prompt + completion, c->t_admit_ms,
                              llmr_now_ms());
}

/* Whether every other deployment of the attempt's group is cooling down. */
static int last_usable(llmr_call *c)
{
    const llmr_group *g = &c->w->conf->groups[dep_of(c)->group];
    int64_t now = llmr_now_ms();

    for (int k = 0; k < g->ndeployments; k++) {
        int i = g->deployments[k];
        if (i != c->dep && llmr_cooldown_left_ms(llmr_shm_slot(c->w->shm,
                c->w->conf->deployments[i].slot), now) == 0)
            return 0;
    }
    return 1;
}

/* Records a failure against the deployment: its counters, and the window
 * that may cool it down for every worker. */
static void count_failure(llmr_call *c, enum llmr_err err, int64_t ra)
{
    const llmr_conf *conf = c->w->conf;
    int64_t cool;

    attempt_end(c, LLMR_OUTCOME_FAILURE);
    if (!llmr_err_retryable(err))
        return;
    cool = llmr_cooldown_ms(conf, err == LLMR_ERR_RATE_LIMIT ? ra : -1, last_usable(c));
    if (llmr_counters_fail(dep_slot(c), conf->allowed_fails, cool, 0, llmr_now_ms()))
        llmr_warn("deployment %s cools down for %.1f s after %s (more than %d failures this "
                  "minute)", dep_of(c)->id, (double)cool / 1000, llmr_err_name(err),
                  conf->allowed_fails);
}

static void on_first_byte_deadline(evutil_socket_t fd, short what, void *arg)
{
    llmr_call *c = arg;

    (void)fd;
    (void)what;
    if (c->committed || c->easy == NULL)
        return;
    llmr_warn("%s: deployment %s sent no first byte within stream_timeout",
              group_name(c, c->pos), dep_of(c)->id);
    count_failure(c, LLMR_ERR_TIMEOUT, -1);
    evbuffer_drain(c->resp, evbuffer_get_length(c->resp));
    c->final_err = LLMR_ERR_TIMEOUT;
    c->final_status = 0;
    after_failure(c, LLMR_ERR_TIMEOUT, -1);
}

static void done_success(llmr_call *c)
{
    if (c->timer != NULL)
        evtimer_del(c->timer);
    llmr_counters_attempt_end(dep_slot(c), c->w->wslot, LLMR_OUTCOME_SUCCESS,
                              llmr_now_us() - c->t_attempt_us);
    if (!c->committed)
        llmr_ewma_add(&dep_slot(c)->latency_ewma_us, llmr_now_us() - c->t_attempt_us);
    account_usage(c);
    if (c->committed) {
        detach(c);
        llmr_stream_end(c, LLMR_ERR_NONE, NULL);
        call_free(c);
    } else {
        reply_buffered(c, (int)c->status);
    }
}

/* Why an attempt failed for want of something of ours, or NULL: a socket()
 * out of descriptors or buffers, or libcurl out of memory. */
static const char *local_failure(const llmr_call *c, CURLcode result)
{
    int e = c->sock_errno;

    if (result == CURLE_OK)
        return NULL;
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
        return strerror(e);
    return result == CURLE_OUT_OF_MEMORY ? "out of memory" : NULL;
}

void llmr_proxy_done(void *arg, CURLcode result)
{
    llmr_call *c = arg;
    const char *local;

    llmr_upstream_facts(c->w, c->easy, &c->sock_errno, &c->sends);
    local = local_failure(c, result);

    if (local != NULL && !c->committed) {
        if (c->timer != NULL)
            evtimer_del(c->timer);
        llmr_upstream_release(c->w, c->easy);
        c->easy = NULL;
        reply_local(c, local);
        return;
    }
    if (c->sends > 1)
        llmr_warn("%s: deployment %s closed a reused connection without answering; the "
                  "request was not sent again", group_name(c, c->pos), dep_of(c)->id);
    done_upstream(c, result);
}

/* The attempt reached the deployment (or tried to): what it answered. */
static void done_upstream(llmr_call *c, CURLcode result)
{
    const char *body = (const char *)evbuffer_pullup(c->resp, -1);
    enum llmr_err err = llmr_classify(dep_of(c), result, c->status, body,
                                      evbuffer_get_length(c->resp));
    int64_t ra = llmr_retry_after_ms(c);

    llmr_upstream_release(c->w, c->easy);
    c->easy = NULL;
    if (err == LLMR_ERR_NONE) {
        done_success(c);
        return;
    }
    if (c->timer != NULL)
        evtimer_del(c->timer);
    count_failure(c, err, ra);
    llmr_warn("%s: deployment %s failed: %s (%s, HTTP %ld)", group_name(c, c->pos),
              dep_of(c)->id, llmr_err_name(err), curl_easy_strerror(result), c->status);
    if (c->committed) {     /* the client has bytes: end its stream with an error */
        char msg[256];
        snprintf(msg, sizeof(msg), "upstream deployment %s failed mid-stream: %s",
                 dep_of(c)->id, llmr_err_name(err));
        detach(c);
        llmr_stream_end(c, err, msg);
        call_free(c);
        return;
    }
    c->final_err = err;
    c->final_status = result == CURLE_OK ? (int)c->status : 0;
    after_failure(c, err, ra);
}

void llmr_proxy_start(llmr_worker *w, struct evhttp_request *req, enum llmr_op op,
                      int group, const char *body, size_t len, int model_tok)
{
    llmr_call *c = calloc(1, sizeof(*c));

    if (c == NULL || (c->resp = evbuffer_new()) == NULL
        || (c->timer = evtimer_new(w->base, on_retry_timer, c)) == NULL) {
        if (c != NULL && c->resp != NULL)
            evbuffer_free(c->resp);
        free(c);
        llmr_http_error(w, req, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    c->w = w;
    call_link(c);
    c->req = req;
    c->evcon = evhttp_request_get_connection(req);
    c->op = op;
    c->stream = op != LLMR_OP_EMBEDDINGS
             && llmr_json_is_true(&w->json, llmr_json_get(&w->json, 0, "stream"));
    c->body = body;
    c->len = len;
    c->model_start = (size_t)w->json.toks[model_tok].start;
    c->model_end = (size_t)w->json.toks[model_tok].end;
    c->plan[0] = group;
    c->nplan = 1;
    c->tokens_est = llmr_estimate_prompt_tokens(&w->json);
    c->dep = -1;
    c->t_start_us = llmr_now_us();
    c->deadline_us = c->t_start_us + (int64_t)(w->conf->timeout * 1e6);
    llmr_conn_set_closecb(w, c->evcon, on_client_close, c);
    watch_client(c);
    try_group(c);
}

void llmr_proxy_abort_all(llmr_worker *w)
{
    while (w->calls != NULL) {
        llmr_call *c = w->calls;
        detach(c);
        if (c->easy != NULL)
            attempt_end(c, LLMR_OUTCOME_CANCELLED);
        call_free(c);
        w->active--;
    }
}

/* For upstream.c's gate, which may hold the attempt back: whom it calls
 * and until when it may run (the same bound attempt_setup() gave curl). */
int llmr_proxy_attempt_info(void *arg, int64_t *deadline_us)
{
    llmr_call *c = arg;

    *deadline_us = llmr_now_us() + (int64_t)attempt_timeout_ms(c, dep_of(c)) * 1000;
    return c->dep;
}

/* ---- bounds: buffered answers, stalled streams, the drain deadline ------ */

#define BUDGET_STEP (1L << 20)      /* a growing answer checks the total per MiB */

/* What the worker holds for clients: answers being buffered from upstreams
 * and replies queued towards slow clients. */
static size_t worker_buffered(llmr_worker *w)
{
    size_t total = llmr_conn_output_bytes(w);

    for (llmr_call *o = w->calls; o != NULL; o = o->next)
        total += o->resp != NULL ? evbuffer_get_length(o->resp) : 0;
    return total;
}

static void on_over_budget(evutil_socket_t fd, short what, void *arg)
{
    llmr_call *c = arg;
    llmr_worker *w = c->w;
    struct evhttp_request *req = c->req;

    (void)fd;
    (void)what;
    llmr_warn("%s: answer from %s dropped: the worker holds more than max_buffered_bytes "
              "(%ld)", group_name(c, 0), dep_of(c)->id, w->conf->max_buffered_bytes);
    if (c->easy != NULL)
        attempt_end(c, LLMR_OUTCOME_CANCELLED);
    detach(c);
    call_free(c);
    llmr_http_error(w, req, 503, "api_error", NULL, "server_overloaded",
                    "the server holds too many buffered answers (max_buffered_bytes); "
                    "retry shortly or use stream: true");
}

int llmr_proxy_over_budget(llmr_call *c, size_t len)
{
    size_t had = evbuffer_get_length(c->resp);

    if ((had + len) / BUDGET_STEP == had / BUDGET_STEP
        || worker_buffered(c->w) + len <= (size_t)c->w->conf->max_buffered_bytes)
        return 0;
    /* Inside libcurl's write callback: pause, answer from the loop. */
    evtimer_del(c->timer);
    event_assign(c->timer, c->w->base, -1, 0, on_over_budget, c);
    event_active(c->timer, EV_TIMEOUT, 1);
    return 1;
}

/* A committed stream got nothing from its upstream for stream_idle_timeout. */
void llmr_proxy_stream_stalled(llmr_call *c)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "upstream deployment %s sent nothing for %g s "
             "(stream_idle_timeout)", dep_of(c)->id, c->w->conf->stream_idle_timeout);
    llmr_warn("%s: %s", group_name(c, c->pos), msg);
    count_failure(c, LLMR_ERR_TIMEOUT, -1);
    detach(c);
    llmr_stream_end(c, LLMR_ERR_TIMEOUT, msg);
    call_free(c);
}

/* drain_timeout passed: every stream still running gets an error event and
 * a clean end of its chunked reply, every call not yet answered a 503, so
 * no client is cut off without being told why. */
void llmr_proxy_drain_deadline(llmr_worker *w)
{
    static const char why[] = "the server is reloading or shutting down (drain_timeout "
                              "passed); retry the request";
    llmr_call *next;

    for (llmr_call *c = w->calls; c != NULL; c = next) {
        struct evhttp_request *req = c->req;
        next = c->next;
        if (c->easy != NULL)
            attempt_end(c, LLMR_OUTCOME_CANCELLED);
        evtimer_del(c->timer);
        detach(c);
        if (c->committed) {
            llmr_stream_abort(c, "server_shutting_down", why);
            call_free(c);
        } else {
            call_free(c);
            llmr_http_error(w, req, 503, "api_error", NULL, "server_shutting_down", "%s", why);
        }
    }
}
