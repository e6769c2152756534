/* The HTTP face of a worker: which path does what, authentication, request
 * validation, and every error in OpenAI's shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>

#include "conn.h"
#include "errors.h"
#include "fmt.h"
#include "log.h"
#include "request.h"
#include "cache.h"
#include "worker_internal.h"

enum route_kind { ROUTE_PROXY, ROUTE_MODELS, ROUTE_LIVE, ROUTE_READY, ROUTE_METRICS,
                  ROUTE_STATUS, ROUTE_UI, ROUTE_HEALTH, ROUTE_MESSAGES, ROUTE_COUNT_TOKENS };

typedef struct route {
    const char *path;
    enum route_kind kind;
    enum llmr_op op;
} route;

static const route routes[] = {
    { "/v1/chat/completions", ROUTE_PROXY, LLMR_OP_CHAT },
    { "/chat/completions", ROUTE_PROXY, LLMR_OP_CHAT },
    { "/v1/completions", ROUTE_PROXY, LLMR_OP_COMPLETIONS },
    { "/completions", ROUTE_PROXY, LLMR_OP_COMPLETIONS },
    { "/v1/embeddings", ROUTE_PROXY, LLMR_OP_EMBEDDINGS },
    { "/embeddings", ROUTE_PROXY, LLMR_OP_EMBEDDINGS },
    { "/v1/responses", ROUTE_PROXY, LLMR_OP_RESPONSES },
    { "/responses", ROUTE_PROXY, LLMR_OP_RESPONSES },
    { "/v1/models", ROUTE_MODELS, 0 },
    { "/models", ROUTE_MODELS, 0 },
    { "/health/liveliness", ROUTE_LIVE, 0 },
    { "/health/liveness", ROUTE_LIVE, 0 },
    { "/health/readiness", ROUTE_READY, 0 },
    { "/status.json", ROUTE_STATUS, 0 },
    { "/ui", ROUTE_UI, 0 },
    { "/health", ROUTE_HEALTH, 0 },         /* health.c; needs the master key */
    { "/metrics", ROUTE_METRICS, 0 },       /* metrics.c; the key unless metrics_public */
    { "/v1/messages", ROUTE_MESSAGES, 0 },  /* Anthropic's API: anthropic_http.c */
    { "/v1/messages/count_tokens", ROUTE_COUNT_TOKENS, 0 },
};

const char *llmr_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default:  return status < 400 ? "OK" : "Error";
    }
}

/* The tokenizer of request bodies: this file's own, reused from one body
 * to the next (the request reads what it needs of it when it starts). */
static llmr_json body_json;

void llmr_http_free(llmr_worker *w)
{
    (void)w;
    llmr_json_free(&body_json);
    llmr_anth_http_free();
}

/* A request counts as active until its reply has reached the socket, so
 * that a draining worker never exits with a reply still in its buffers.
 * This file is the count's one writer. */
static void active_begin(llmr_worker *w)
{
    w->active++;
    w->started++;
}

void llmr_http_active_end(llmr_worker *w)
{
    w->active--;
    LLMR_CHECK(w->active >= 0, "a request stopped counting twice");
}

static void on_reply_sent(struct evhttp_request *req, void *arg)
{
    llmr_worker *w = arg;

    llmr_conn_request_done(w, req);
    llmr_http_active_end(w);
}

/* evhttp only queues a reply: it arms EPOLLOUT and writes on the next loop
 * iteration.  A reply that fits in the socket buffer (nearly all of them)
 * is written here at once; triggering the write callback then lets evhttp
 * finish the request as if it had written it itself, and the EPOLLOUT it
 * armed is disarmed in the same iteration, so epoll never hears of it. */
static void flush_now(struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
    struct evbuffer *out = bev != NULL ? bufferevent_get_output(bev) : NULL;

    if (out == NULL || evbuffer_get_length(out) == 0)
        return;
    if (evbuffer_write(out, bufferevent_getfd(bev)) > 0 && evbuffer_get_length(out) == 0)
        bufferevent_trigger(bev, EV_WRITE, 0);
}

void llmr_http_reply(llmr_worker *w, struct evhttp_request *req, int status,
                     struct evbuffer *body)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);

    int64_t len = body != NULL ? (int64_t)evbuffer_get_length(body) : 0;
    int head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
    char n[LLMR_FMT_MAX];

    if (w->draining)
        evhttp_add_header(out, "Connection", "close");
    llmr_reply_common(out);
    /* The length is set here (evhttp's own goes through snprintf); to HEAD,
     * as nginx does, the length the body would have had. */
    if (status >= 200 && status != 204 && status != 304) {
        llmr_fmt_int(n, len);
        evhttp_add_header(out, "Content-Length", n);
    }
    /* evhttp would send a HEAD reply's body too: on a kept-alive connection
     * the client would read it as the start of the next response. */
    if (head && body != NULL)
        evbuffer_drain(body, evbuffer_get_length(body));
    llmr_alog_reply(w, req, status, head ? 0 : len);
    evhttp_request_set_on_complete_cb(req, on_reply_sent, w);
    evhttp_send_reply(req, status, llmr_http_reason(status), head ? NULL : body);
    flush_now(evcon);
}

int llmr_http_method_ok(struct evhttp_request *req, enum evhttp_cmd_type want)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);

    return m == want || (want == EVHTTP_REQ_GET && m == EVHTTP_REQ_HEAD);
}

const char *llmr_http_allow(enum evhttp_cmd_type want)
{
    return want == EVHTTP_REQ_GET ? "GET, HEAD" : want == EVHTTP_REQ_POST ? "POST" : "";
}

void llmr_http_stream_start(llmr_worker *w, struct evhttp_request *req, int status)
{
    if (w->draining)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    llmr_reply_common(evhttp_request_get_output_headers(req));
    evhttp_send_reply_start(req, status, llmr_http_reason(status));
}

void llmr_http_stream_end(llmr_worker *w, struct evhttp_request *req)
{
    llmr_alog_reply(w, req, evhttp_request_get_response_code(req), -1);
    evhttp_request_set_on_complete_cb(req, on_reply_sent, w);
    evhttp_send_reply_end(req);
}

void llmr_http_discard(llmr_worker *w, struct evhttp_request *req)
{
    /* The client is gone: evhttp detached the request from its connection,
     * so sending "replies" only frees it. */
    evhttp_send_reply(req, 499, "Client Closed Request", NULL);
    llmr_http_active_end(w);
}

void llmr_http_reply_json(llmr_worker *w, struct evhttp_request *req, int status,
                          const char *json, size_t len)
{
    struct evbuffer *buf = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    if (buf != NULL)
        evbuffer_add(buf, json, len);
    llmr_http_reply(w, req, status, buf);
    if (buf != NULL)
        evbuffer_free(buf);
}

/* Constant time in the length of the expected key, so that response time
 * does not reveal how much of a guess was right. */
static int key_matches(const char *given, const char *expected)
{
    size_t n = strlen(expected), g = strlen(given);
    unsigned char diff = (unsigned char)(g != n);

    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(expected[i] ^ (i < g ? given[i] : 0));
    return diff == 0;
}

/* Authorization: Bearer <key>, or Azure's api-key: <key> (AzureOpenAI
 * clients send that one).  Neither ever goes upstream: the upstream gets
 * the deployment's own credentials. */
int llmr_http_authorized(llmr_worker *w, struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *h;

    if (w->conf->master_key == NULL)
        return 1;
    h = evhttp_find_header(in, "Authorization");
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0)
        return key_matches(h + 7, w->conf->master_key);
    h = evhttp_find_header(in, "api-key");
    if (h == NULL)      /* Anthropic's clients send x-api-key */
        h = evhttp_find_header(in, "x-api-key");
    return h != NULL && key_matches(h, w->conf->master_key);
}

/* The top-level fields llmroute itself reads (here, in request.c and in
 * estimate.c), and the controls (controls.c's llmr_control_keys, checked
 * from that list itself).  Each must appear once: with two, llmroute would
 * act on the first while an upstream may use the last (route on one model,
 * bill another), so a body that repeats one is refused.  Add a field here
 * when the worker starts reading it. */
static const char *const interpreted[] = {
    "model", "stream", "stream_options", "messages", "prompt", "input", "instructions",
    "previous_response_id",
};

/* The first field of either list that the body repeats, or NULL. */
static const char *duplicated(const llmr_json *j)
{
    int dup = llmr_json_dup_key(j, 0, interpreted,
                                (int)(sizeof(interpreted) / sizeof(interpreted[0])));

    if (dup >= 0)
        return interpreted[dup];
    dup = llmr_json_dup_key(j, 0, llmr_control_keys, llmr_ncontrol_keys);
    return dup >= 0 ? llmr_control_keys[dup] : NULL;
}

/* Checks the body of a routed call and hands it to the proxy.  url_model:
 * the group named by the path (Azure's deployment routes), which decides
 * over the body's model, then optional; NULL on the other routes. */
void llmr_http_proxy(llmr_worker *w, struct evhttp_request *req, enum llmr_op op,
                     const char *url_model)
{
    llmr_controls ctl;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *body;
    llmr_json *j = &body_json;
    const char *name;
    char buf[256];
    size_t name_len;
    int model, group;

    if ((long)len > w->conf->max_body_bytes) {
        llmr_error_reply(w, req, LLMR_E_BODY_TOO_LARGE, len, w->conf->max_body_bytes);
        return;
    }
    body = (const char *)evbuffer_pullup(in, -1);
    if (len == 0 || body == NULL
        || llmr_json_parse(j, body, len, (int)(len / 2) + 64) < 0
        || j->toks[0].type != JSMN_OBJECT) {
        llmr_error_reply(w, req, LLMR_E_INVALID_JSON, len == 0 || body == NULL ? "empty body"
                         : j->ntoks == 0 ? j->err : "not an object");
        return;
    }
    const char *dup = duplicated(j);
    if (dup != NULL) {
        char msg[256];
        llmr_error_message(msg, sizeof(msg), LLMR_E_DUPLICATE_KEY, dup);
        llmr_error_reply_msg(w, req, LLMR_E_DUPLICATE_KEY, dup, msg);
        return;
    }
    model = llmr_json_get(j, 0, "model");
    if ((url_model == NULL || model >= 0)
        && (model < 0 || j->toks[model].type != JSMN_STRING)) {
        llmr_error_reply(w, req, LLMR_E_MISSING_MODEL, model < 0
                         ? "you must provide a model parameter" : "model must be a string");
        return;
    }
    if (op == LLMR_OP_CHAT) {
        int m = llmr_json_get(j, 0, "messages");
        if (m < 0 || j->toks[m].type != JSMN_ARRAY) {
            llmr_error_reply(w, req, LLMR_E_MISSING_MESSAGES, m < 0 ? "messages is required"
                             : "messages must be an array");
            return;
        }
    }
    if (op == LLMR_OP_EMBEDDINGS && llmr_json_get(j, 0, "input") < 0) {
        llmr_error_reply(w, req, LLMR_E_MISSING_INPUT);
        return;
    }
    if (url_model != NULL) {
        name = url_model;
        name_len = strlen(url_model);
    } else {
        name = llmr_json_str(j, model, buf, sizeof(buf), &name_len);
    }
    group = llmr_conf_route_group(w->conf, name, name_len);
    if (group < 0) {
        llmr_error_reply(w, req, LLMR_E_MODEL_NOT_FOUND, LLMR_CLIP(name_len), name,
                         LLMR_CLIP_MORE(name_len));
        return;
    }
    if (op == LLMR_OP_RESPONSES && !llmr_responses_group_serves(w->conf, group)) {
        llmr_error_reply(w, req, LLMR_E_RESPONSES_UNSUPPORTED, w->conf->groups[group].name);
        return;
    }
    if (llmr_controls_read(w, req, j, &ctl) < 0)
        return;
    if (llmr_cache_on(w, op)) {
        llmr_cache_begin(w, req, op, group, j, &ctl);
        return;
    }
    llmr_request_start_ctl(w, req, op, group, j, &ctl);
}

static void handle_proxy(llmr_worker *w, struct evhttp_request *req, enum llmr_op op)
{
    llmr_http_proxy(w, req, op, NULL);
}

int llmr_http_models_build(llmr_worker *w)
{
    struct evbuffer *b = evbuffer_new();
    const llmr_conf *c = w->conf;

    if (b == NULL)
        return -1;
    evbuffer_add_printf(b, "{\"object\":\"list\",\"data\":[");
    for (int g = 0; g < c->ngroups; g++) {
        evbuffer_add_printf(b, "%s{\"id\":", g ? "," : "");
        llmr_json_add_str(b, c->groups[g].name);
        evbuffer_add_printf(b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"llmroute\"}");
    }
    for (int a = 0; a < c->naliases; a++) {    /* aliases, unless hidden */
        if (c->aliases[a].hidden)
            continue;
        evbuffer_add_printf(b, "%s{\"id\":", c->ngroups ? "," : "");
        llmr_json_add_str(b, c->aliases[a].name);
        evbuffer_add_printf(b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"llmroute\"}");
    }
    evbuffer_add_printf(b, "]}");
    w->models_len = evbuffer_get_length(b);
    w->models_body = malloc(w->models_len);
    if (w->models_body != NULL)
        evbuffer_remove(b, w->models_body, w->models_len);
    evbuffer_free(b);
    return w->models_body == NULL ? -1 : 0;
}

/* Not ready while draining, nor while multi-host sync has not yet taken
 * this host's first leases (or fallen back to its local share): limits
 * would refuse every request until then. */
static void handle_ready(llmr_worker *w, struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    int syncing = w->conf->sync && atomic_load_explicit(&w->shm->seg->hdr.sync_state,
                                                        memory_order_relaxed)
                                   == LLMR_SYNC_CONNECTING;

    if (b == NULL) {
        llmr_http_reply_json(w, req, 503, "{}", 2);
        return;
    }
    evbuffer_add_printf(b, "{\"status\":\"%s\",\"pid\":%d,\"generation\":%u,"
                        "\"deployments\":%d,", w->draining ? "draining" : syncing ?
                        "syncing" : "ready",
                        (int)getpid(), w->generation, w->conf->ndeployments);
    llmr_health_groups_json(w, b);
    evbuffer_add(b, "}", 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    llmr_http_reply(w, req, w->draining || syncing ? 503 : 200, b);
    evbuffer_free(b);
}

/* The fixed paths; the ones with a name in them are routes.c's. */
static const route *find_route(const char *path)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(path, routes[i].path) == 0)
            return &routes[i];
    return NULL;
}

static void handle(struct evhttp_request *req, void *arg);

/* The access log times what is answered synchronously from here. */
void llmr_http_handle(struct evhttp_request *req, void *arg)
{
    llmr_alog_handle_begin(arg);
    handle(req, arg);
    llmr_alog_handle_end(arg);
}

static void handle(struct evhttp_request *req, void *arg)
{
    llmr_worker *w = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    const route *r = find_route(path != NULL ? path : "");

    if (llmr_conn_request_start(w, req) < 0)
        return;                 /* refused by conn.c, which closes it */
    active_begin(w);
    if (r == NULL && llmr_routes_handle(w, req, path != NULL ? path : ""))
        return;                 /* routes.c: paths with a name in them */
    if (r == NULL) {
        llmr_error_reply(w, req, LLMR_E_NOT_FOUND, LLMR_CLIP(path != NULL ? strlen(path) : 0),
                         path != NULL ? path : "",
                         LLMR_CLIP_MORE(path != NULL ? strlen(path) : 0));
        return;
    }
    if (r->kind == ROUTE_MESSAGES || r->kind == ROUTE_COUNT_TOKENS) {
        llmr_anth_handle(w, req, r->kind == ROUTE_COUNT_TOKENS);    /* its own errors */
        return;
    }
    if (!llmr_http_method_ok(req, r->kind == ROUTE_PROXY ? EVHTTP_REQ_POST : EVHTTP_REQ_GET)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          llmr_http_allow(r->kind == ROUTE_PROXY ? EVHTTP_REQ_POST
                                          : EVHTTP_REQ_GET));
        llmr_error_reply(w, req, LLMR_E_METHOD_NOT_ALLOWED, r->path);
        return;
    }
    if (r->kind == ROUTE_LIVE) {
        llmr_http_reply_json(w, req, 200, "\"I'm alive!\"", 12);
        return;
    }
    if (r->kind == ROUTE_READY) {
        handle_ready(w, req);
        return;
    }
    if (r->kind == ROUTE_UI) {      /* no data in it: the page asks for the key */
        llmr_ui_page_reply(w, req);
        return;
    }
    if (r->kind == ROUTE_METRICS && w->conf->metrics_public) {
        llmr_metrics_handle(w, req);
        return;
    }
    if (!llmr_http_authorized(w, req)) {
        llmr_error_reply(w, req, LLMR_E_INVALID_API_KEY);
        return;
    }
    if (r->kind == ROUTE_METRICS)
        llmr_metrics_handle(w, req);
    else if (r->kind == ROUTE_HEALTH)
        llmr_health_reply(w, req);
    else if (r->kind == ROUTE_MODELS)
        llmr_http_reply_json(w, req, 200, w->models_body, w->models_len);
    else if (r->kind == ROUTE_STATUS)
        llmr_ui_status_json(w, req);
    else
        handle_proxy(w, req, r->op);
}
