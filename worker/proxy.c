#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "log.h"

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
    c->client_gone = NULL;
    llmr_upstream_release(c->w, c->easy);
    c->easy = NULL;
    if (c->resp != NULL)
        evbuffer_free(c->resp);
    free(c->up_body);
    free(c);
}

static llmr_slot *dep_slot(llmr_call *c)
{
    return llmr_shm_slot(c->w->shm, c->w->conf->deployments[c->dep].slot);
}

/* Ends the attempt in flight, if any, with `outcome` for its deployment. */
static void attempt_end(llmr_call *c, enum llmr_outcome outcome)
{
    if (c->dep < 0)
        return;
    llmr_counters_attempt_end(dep_slot(c), outcome, llmr_now_us() - c->t_attempt_us);
}

static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
    llmr_call *c = arg;
    llmr_worker *w = c->w;
    struct evhttp_request *req = c->req;

    (void)evcon;
    if (c->easy != NULL) {
        llmr_upstream_abort(w, c->easy);
        attempt_end(c, LLMR_OUTCOME_CANCELLED);
    }
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

static void add_headers(llmr_call *c)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(c->req);
    char n[16];

    if (c->retry_after[0])
        evhttp_add_header(out, "Retry-After", c->retry_after);
    if (c->dep >= 0)
        evhttp_add_header(out, "x-llmroute-deployment", c->w->conf->deployments[c->dep].id);
    snprintf(n, sizeof(n), "%d", c->attempts);
    evhttp_add_header(out, "x-llmroute-attempts", n);
    evhttp_add_header(out, "x-llmroute-model-group", c->w->conf->groups[c->group].name);
}

/* The call is answered: detach from the client's connection first, since
 * sending may close it and that must not look like the client leaving. */
static void finish(llmr_call *c, int status)
{
    llmr_worker *w = c->w;
    struct evhttp_request *req = c->req;

    evhttp_connection_set_closecb(c->evcon, NULL, NULL);
    add_headers(c);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      c->content_type[0] ? c->content_type : "application/json");
    llmr_http_reply(w, req, status, c->resp);
    call_free(c);
}

static void fail(llmr_call *c, int status, const char *type, const char *code,
                 const char *what, CURLcode result)
{
    llmr_worker *w = c->w;
    struct evhttp_request *req = c->req;
    const char *id = w->conf->deployments[c->dep].id;
    const char *group = w->conf->groups[c->group].name;

    evhttp_connection_set_closecb(c->evcon, NULL, NULL);
    c->retry_after[0] = '\0';
    add_headers(c);
    call_free(c);
    llmr_warn("%s: deployment %s %s: %s", group, id, what, curl_easy_strerror(result));
    llmr_http_error(w, req, status, type, NULL, code, "deployment %s of model group %s %s: %s",
                    id, group, what, curl_easy_strerror(result));
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    llmr_call *c = arg;
    size_t len = size * n;

    if (evbuffer_get_length(c->resp) + len > (size_t)LLMR_RESPONSE_MAX)
        return 0;
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
 * line (after a redirect or a 100 Continue) starts over. */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    llmr_call *c = arg;
    size_t len = size * n;

    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
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
    char *b = malloc(cap), *p;

    if (b == NULL)
        return -1;
    memcpy(b, c->body, c->model_start);
    p = b + c->model_start;
    p += llmr_json_escape(p, 2 * mlen + 1, d->upstream_model, mlen);
    memcpy(p, c->body + c->model_end, c->len - c->model_end);
    p += c->len - c->model_end;
    free(c->up_body);
    c->up_body = b;
    c->up_len = (size_t)(p - b);
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

static int attempt_setup(llmr_call *c, const llmr_deployment *d)
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
    return 0;
}

/* Starts one attempt on deployment c->dep. */
static int attempt(llmr_call *c)
{
    const llmr_deployment *d = &c->w->conf->deployments[c->dep];

    c->attempts++;
    c->status = 0;
    c->content_type[0] = c->retry_after[0] = '\0';
    evbuffer_drain(c->resp, evbuffer_get_length(c->resp));
    if (build_body(c, d) < 0 || (c->easy = llmr_upstream_easy(c->w)) == NULL)
        return -1;
    attempt_setup(c, d);
    c->t_attempt_us = llmr_now_us();
    llmr_counters_attempt_start(dep_slot(c));
    if (llmr_upstream_start(c->w, c->easy) < 0) {
        attempt_end(c, LLMR_OUTCOME_CANCELLED);
        return -1;
    }
    return 0;
}

/* Usage from a JSON response, into the deployment's counters. */
static void account_usage(llmr_call *c)
{
    llmr_json *j = &c->w->json;
    size_t len = evbuffer_get_length(c->resp);
    const char *body = (const char *)evbuffer_pullup(c->resp, -1);
    int64_t prompt = 0, completion = 0;
    int u;

    if (body == NULL || llmr_json_parse(j, body, len, (int)(len / 2) + 64) < 0
        || j->toks[0].type != JSMN_OBJECT)
        return;
    u = llmr_json_get(j, 0, "usage");
    if (u < 0)
        return;
    llmr_json_int(j, llmr_json_get(j, u, "prompt_tokens"), &prompt);
    llmr_json_int(j, llmr_json_get(j, u, "completion_tokens"), &completion);
    llmr_counters_add_usage(dep_slot(c), prompt, completion);
}

void llmr_proxy_done(void *arg, CURLcode result)
{
    llmr_call *c = arg;
    long status = 0;

    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    llmr_upstream_release(c->w, c->easy);
    c->easy = NULL;
    if (result == CURLE_OPERATION_TIMEDOUT) {
        attempt_end(c, LLMR_OUTCOME_FAILURE);
        fail(c, 504, "timeout", "timeout", "timed out", result);
        return;
    }
    if (result != CURLE_OK) {
        attempt_end(c, LLMR_OUTCOME_FAILURE);
        fail(c, 502, "api_connection_error", "upstream_unreachable", "is unreachable", result);
        return;
    }
    c->status = status;
    if (status >= 200 && status < 300) {
        attempt_end(c, LLMR_OUTCOME_SUCCESS);
        account_usage(c);
    } else {
        attempt_end(c, LLMR_OUTCOME_FAILURE);
    }
    finish(c, (int)status);
}

void llmr_proxy_start(llmr_worker *w, struct evhttp_request *req, enum llmr_op op,
                      int group, const char *body, size_t len, int model_tok)
{
    llmr_call *c = calloc(1, sizeof(*c));

    if (c == NULL || (c->resp = evbuffer_new()) == NULL) {
        free(c);
        llmr_http_error(w, req, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    c->w = w;
    call_link(c);
    c->req = req;
    c->evcon = evhttp_request_get_connection(req);
    c->op = op;
    c->group = group;
    c->body = body;
    c->len = len;
    c->model_start = (size_t)w->json.toks[model_tok].start;
    c->model_end = (size_t)w->json.toks[model_tok].end;
    c->t_start_us = llmr_now_us();
    c->deadline_us = c->t_start_us + (int64_t)(w->conf->timeout * 1e6);
    c->dep = llmr_router_pick(w, group, NULL, 0);
    evhttp_connection_set_closecb(c->evcon, on_client_close, c);
    watch_client(c);
    if (c->dep < 0 || attempt(c) < 0) {
        evhttp_connection_set_closecb(c->evcon, NULL, NULL);
        call_free(c);
        llmr_http_error(w, req, 503, "server_error", NULL, "no_deployment",
                        "no deployment of model group %s could take the request",
                        w->conf->groups[group].name);
    }
}

void llmr_proxy_abort_all(llmr_worker *w)
{
    while (w->calls != NULL) {
        llmr_call *c = w->calls;
        evhttp_connection_set_closecb(c->evcon, NULL, NULL);
        if (c->easy != NULL) {
            llmr_upstream_abort(w, c->easy);
            attempt_end(c, LLMR_OUTCOME_CANCELLED);
        }
        call_free(c);
        w->active--;
    }
}
