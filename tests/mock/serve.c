/* One routed request's life: knobs → (latency) → drop | error | reply |
 * stream. A request that answers at once never leaves the stack; only
 * latency, drops and streams allocate a call and a timer. */
#include "mock.h"
#include "log.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define CT_JSON "application/json"
#define HDR_PREFIX "x-mock-"

static const char context_length_body[] =
    "{\"error\":{\"message\":\"This model's maximum context length is 4097 tokens. "
    "However, your messages resulted in 5000 tokens. Please reduce the length of "
    "the messages.\",\"type\":\"invalid_request_error\",\"param\":\"messages\","
    "\"code\":\"context_length_exceeded\"}}";

static const char content_policy_body[] =
    "{\"error\":{\"message\":\"The response was filtered due to the prompt triggering "
    "Azure OpenAI's content management policy.\",\"type\":null,\"param\":\"prompt\","
    "\"code\":\"content_filter\",\"status\":400}}";

/* evhttp 2.1 knows no phrase for 429; clients only log it, but a real one
 * makes captured traffic read like OpenAI's. NULL lets evhttp choose. */
static const char *reason(int status)
{
    return status == 429 ? "Too Many Requests" : NULL;
}

static void add_headers(struct mock_ctx *ctx, struct evhttp_request *req,
                        const char *content_type)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Type", content_type);
    if (ctx->name != NULL)
        evhttp_add_header(h, "x-mock-name", ctx->name);
}

/* OpenAI's error shape; type and code follow what OpenAI sends for the
 * status so clients (and llmroute's classifier) see the real thing. */
static void error_body(struct evbuffer *out, int status, const char *msg)
{
    const char *type = "invalid_request_error", *code = "null";

    if (status == 429) {
        type = "rate_limit_error";
        code = "\"rate_limit_exceeded\"";
    } else if (status >= 500) {
        type = "server_error";
    } else if (status == 401) {
        code = "\"invalid_api_key\"";
    }
    MOCK_ADD_LIT(out, "{\"error\":{\"message\":\"");
    mock_json_escape(out, msg, strlen(msg));
    evbuffer_add_printf(out, "\",\"type\":\"%s\",\"param\":null,\"code\":%s}}", type, code);
}

/* For answers given before a call exists: 404, bad JSON, bad knobs. */
static void reply_error_now(struct mock_ctx *ctx, struct evhttp_request *req,
                            int status, const char *msg)
{
    error_body(ctx->out, status, msg);
    add_headers(ctx, req, CT_JSON);
    evhttp_send_reply(req, status, reason(status), ctx->out);
    mock_stats_status(&ctx->stats, status);
    mock_stats_done(&ctx->stats);
    if (ctx->verbose)
        llmr_info("-> %d %s", status, msg);
}

/* upstream_headers: the first N of OpenAI's x-request-id,
 * openai-processing-ms, x-ratelimit-remaining-requests, then as many
 * x-ratelimit-extra-K as asked. */
static void upstream_headers(struct mock_call *c)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    long n = c->k.v[MK_UPSTREAM_HEADERS];
    char name[48], val[48];

    for (long i = 0; i < n; i++) {
        if (i == 0) {
            snprintf(name, sizeof(name), "x-request-id");
            snprintf(val, sizeof(val), "req-mock-%lu", c->id);
        } else if (i == 1) {
            snprintf(name, sizeof(name), "openai-processing-ms");
            snprintf(val, sizeof(val), "7");
        } else if (i == 2) {
            snprintf(name, sizeof(name), "x-ratelimit-remaining-requests");
            snprintf(val, sizeof(val), "99");
        } else {
            snprintf(name, sizeof(name), "x-ratelimit-extra-%ld", i);
            snprintf(val, sizeof(val), "%ld", i);
        }
        evhttp_add_header(h, name, val);
    }
}

void mock_reply_headers(struct mock_call *c, const char *content_type)
{
    add_headers(c->ctx, c->req, content_type);
    upstream_headers(c);
    if (c->k.set & (1u << MK_RETRY_AFTER))
        evhttp_add_header(evhttp_request_get_output_headers(c->req),
                          "Retry-After", c->k.retry_after);
}

static void on_close(struct evhttp_connection *evcon, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);

static void call_unwatch(struct mock_call *c)
{
    if (c->watch != NULL) {
        event_free(c->watch);
        c->watch = NULL;
    }
}

/* The final reply is about to go out: from here evhttp owns the request,
 * and a later close of the (kept-alive) connection is none of ours. */
static void call_unhook(struct mock_call *c)
{
    struct evhttp_connection *evcon;

    if (c->timer == NULL || c->req == NULL)
        return;
    evcon = evhttp_request_get_connection(c->req);
    if (evcon != NULL)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
}

void mock_call_finish(struct mock_call *c)
{
    struct mock_ctx *ctx = c->ctx;

    mock_stats_done(&ctx->stats);
    if (c->timer == NULL)
        return;
    call_unhook(c);
    call_unwatch(c);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ctx->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    event_free(c->timer);
    c->timer = NULL;
    free(c);
}

void mock_calls_free(struct mock_ctx *ctx)
{
    while (ctx->calls != NULL) {
        struct mock_call *c = ctx->calls;

        ctx->calls = c->next;
        call_unhook(c);
        call_unwatch(c);
        event_free(c->timer);
        c->timer = NULL;
        free(c);
    }
}

void mock_call_arm(struct mock_call *c, long ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

    evtimer_add(c->timer, &tv);
}

/* Moves a stack call to the heap, with its own copy of the model (the
 * request body it pointed into may not outlive a dropped connection). */
static struct mock_call *call_detach(const struct mock_call *s)
{
    struct mock_ctx *ctx = s->ctx;
    struct mock_call *c = malloc(sizeof(*c) + s->model_len + 1);

    if (c == NULL)
        return NULL;
    *c = *s;
    memcpy(c->model_copy, s->model, s->model_len);
    c->model_copy[s->model_len] = '\0';
    c->model = c->model_copy;
    c->timer = evtimer_new(ctx->base, on_timer, c);
    if (c->timer == NULL) {
        free(c);
        return NULL;
    }
    c->prev = NULL;
    c->next = ctx->calls;
    if (ctx->calls != NULL)
        ctx->calls->prev = c;
    ctx->calls = c;
    evhttp_connection_set_closecb(evhttp_request_get_connection(c->req), on_close, c);
    return c;
}

/* Waits for buffered chunks to reach the socket before closing, so a test
 * sees exactly drop_after chunks and then the cut. */
void mock_call_drop(struct mock_call *c)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

    if (bev != NULL && evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        c->phase = PH_DROPPING;
        mock_call_arm(c, 1);
        return;
    }
    call_unhook(c);
    if (evcon != NULL)
        evhttp_connection_free(evcon);
    c->req = NULL;
    mock_call_finish(c);
}

/* evhttp detached the request from the dead connection before calling us
 * (it does so for a request the user has not finished): it is ours to free. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct mock_call *c = arg;

    (void)evcon;
    c->ctx->stats.client_closed++;
    if (c->phase >= PH_STREAM)
        c->ctx->stats.stream_client_closed++;
    if (evhttp_request_get_connection(c->req) == NULL)
        evhttp_request_free(c->req);
    c->req = NULL;
    mock_call_finish(c);
}

/* An embedding of `dims` numbers: 0.1,0.2,0.3 for the default 3, else
 * 12-byte numbers (about what OpenAI sends), written in blocks so that a
 * 50 MB answer is quick to build. */
static void embedding(struct evbuffer *out, long dims)
{
    char block[4096];
    size_t n = 0;

    if (dims == 3) {
        MOCK_ADD_LIT(out, "0.1,0.2,0.3");
        return;
    }
    for (long i = 0; i < dims; i++) {
        if (n + 16 > sizeof(block)) {
            evbuffer_add(out, block, n);
            n = 0;
        }
        n += (size_t)snprintf(block + n, sizeof(block) - n, "%s-0.0%08ld", i ? "," : "",
                              (i * 7919) % 100000000);
    }
    evbuffer_add(out, block, n);
}

/* The same numbers as embedding() as OpenAI's encoding_format "base64"
 * sends them: little-endian float32s, base64-encoded. */
static void embedding_base64(struct evbuffer *out, long dims)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char in[3 * 1024];
    char enc[4 * 1024];
    size_t n = 0, bytes = (size_t)dims * 4, done = 0;

    while (done < bytes) {
        size_t k, m = 0;
        for (n = 0; n < sizeof(in) && done < bytes; n++, done++) {
            long i = (long)(done / 4);
            float f = dims == 3 ? (float)(i + 1) / 10.0f
                                : -(float)((i * 7919) % 100000000) / 1e10f;
            uint32_t u;
            memcpy(&u, &f, sizeof(u));
            in[n] = (unsigned char)(u >> (8 * (done % 4)));
        }
        for (k = 0; k + 2 < n; k += 3, m += 4) {
            uint32_t v = (uint32_t)in[k] << 16 | (uint32_t)in[k + 1] << 8 | in[k + 2];
            enc[m] = b64[v >> 18];
            enc[m + 1] = b64[(v >> 12) & 63];
            enc[m + 2] = b64[(v >> 6) & 63];
            enc[m + 3] = b64[v & 63];
        }
        if (k < n) {        /* the tail, only ever at the very end */
            uint32_t v = (uint32_t)in[k] << 16 | (k + 1 < n ? (uint32_t)in[k + 1] << 8 : 0);
            enc[m] = b64[v >> 18];
            enc[m + 1] = b64[(v >> 12) & 63];
            enc[m + 2] = k + 1 < n ? b64[(v >> 6) & 63] : '=';
            enc[m + 3] = '=';
            m += 4;
        }
        evbuffer_add(out, enc, m);
    }
}

void mock_usage_json(const struct mock_call *c, struct evbuffer *out, long prompt,
                     long completion)
{
    char pt[32], ct[32], tt[32];

    if (c->k.set & (1u << MK_USAGE_TOKENS)) {
        snprintf(pt, sizeof(pt), "%s", c->k.usage_tokens);
        snprintf(ct, sizeof(ct), "%s", c->k.usage_tokens);
        snprintf(tt, sizeof(tt), "%s", c->k.usage_tokens);
    } else {
        snprintf(pt, sizeof(pt), "%ld", prompt);
        snprintf(ct, sizeof(ct), "%ld", completion);
        snprintf(tt, sizeof(tt), "%ld", prompt + (completion > 0 ? completion : 0));
    }
    if (completion >= 0)
        evbuffer_add_printf(out, "\"usage\":{\"prompt_tokens\":%s,\"completion_tokens\":%s,"
                            "\"total_tokens\":%s}", pt, ct, tt);
    else
        evbuffer_add_printf(out, "\"usage\":{\"prompt_tokens\":%s,\"total_tokens\":%s}", pt, tt);
}

/* pad_bytes: that many more bytes of content, for answers of a given size. */
static void pad(struct evbuffer *out, long n)
{
    static char xs[65536];

    if (xs[0] != 'x')
        memset(xs, 'x', sizeof(xs));
    for (; n > 0; n -= (long)sizeof(xs))
        evbuffer_add(out, xs, n < (long)sizeof(xs) ? (size_t)n : sizeof(xs));
}

/* The embeddings knob when given, else one per input, as OpenAI answers. */
static long embeddings_count(const struct mock_call *c)
{
    if (c->k.set & (1u << MK_EMBEDDINGS))
        return c->k.v[MK_EMBEDDINGS];
    return c->inputs > 0 ? c->inputs : 1;
}

static void reply_body(struct mock_call *c, struct evbuffer *out)
{
    long p = c->prompt_tokens;
    int ml = (int)c->model_len;

    switch (c->ep) {
    case EP_CHAT:
        if (c->k.v[MK_TOOL_CALL]) {     /* a call of get_weather, as OpenAI answers it */
            evbuffer_add_printf(out, "{\"id\":\"chatcmpl-mock-%lu\",\"object\":"
                "\"chat.completion\",\"created\":%ld,\"model\":\"%.*s\",\"choices\":[{"
                "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
                "\"tool_calls\":[{\"id\":\"call_mock_%lu\",\"type\":\"function\",\"function\":"
                "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
                "\"finish_reason\":\"tool_calls\"}],", c->id, c->created, ml, c->model, c->id);
            mock_usage_json(c, out, p, 5);
            MOCK_ADD_LIT(out, "}");
            break;
        }
        evbuffer_add_printf(out, "{\"id\":\"chatcmpl-mock-%lu\",\"object\":\"chat.completion\","
            "\"created\":%ld,\"model\":\"%.*s\",\"choices\":[{\"index\":0,\"message\":"
            "{\"role\":\"assistant\",\"content\":\"mock reply", c->id, c->created, ml, c->model);
        pad(out, c->k.v[MK_PAD_BYTES]);
        MOCK_ADD_LIT(out, "\"},\"finish_reason\":\"stop\"}],");
        mock_usage_json(c, out, p, 5);
        MOCK_ADD_LIT(out, "}");
        break;
    case EP_COMPLETIONS:
        evbuffer_add_printf(out, "{\"id\":\"cmpl-mock-%lu\",\"object\":\"text_completion\","
            "\"created\":%ld,\"model\":\"%.*s\",\"choices\":[{\"index\":0,\"text\":\"mock reply\","
            "\"finish_reason\":\"stop\",\"logprobs\":null}],",
            c->id, c->created, ml, c->model);
        mock_usage_json(c, out, p, 5);
        MOCK_ADD_LIT(out, "}");
        break;
    case EP_EMBEDDINGS:
        MOCK_ADD_LIT(out, "{\"object\":\"list\",\"data\":[");
        for (long i = 0; i < embeddings_count(c); i++) {
            evbuffer_add_printf(out, "%s{\"object\":\"embedding\",\"index\":%ld,"
                                "\"embedding\":%s", i ? "," : "", i, c->base64 ? "\"" : "[");
            if (c->base64)
                embedding_base64(out, c->k.v[MK_EMBEDDING_DIMS]);
            else
                embedding(out, c->k.v[MK_EMBEDDING_DIMS]);
            evbuffer_add(out, c->base64 ? "\"}" : "]}", 2);
        }
        evbuffer_add_printf(out, "],\"model\":\"%.*s\",", ml, c->model);
        mock_usage_json(c, out, p, -1);
        MOCK_ADD_LIT(out, "}");
        break;
    case EP_RESPONSES:
        mock_responses_body(c, out);
        break;
    case EP_MESSAGES:               /* anthropic.c answers these itself */
    case EP_MODELS:
    case EP_NONE:
        evbuffer_add_printf(out, "{\"object\":\"list\",\"data\":[{\"id\":\"mock-model\","
            "\"object\":\"model\",\"created\":0,\"owned_by\":\"mock\"}]}");
        break;
    }
}

/* Keeps the first half of b: a JSON answer cut short, the framing intact. */
static void truncate_half(struct evbuffer *b)
{
    struct evbuffer *rest = evbuffer_new();

    if (rest == NULL)
        return;
    evbuffer_remove_buffer(b, rest, evbuffer_get_length(b) / 2);
    evbuffer_drain(b, evbuffer_get_length(b));
    evbuffer_add_buffer(b, rest);
    evbuffer_free(rest);
}

static void call_reply(struct mock_call *c, int status)
{
    struct mock_ctx *ctx = c->ctx;

    if (c->k.v[MK_MALFORMED] == 2 && status < 300)    /* truncated JSON, whole HTTP */
        truncate_half(ctx->out);
    mock_reply_headers(c, CT_JSON);
    mock_stats_status(&ctx->stats, status);
    call_unhook(c);
    evhttp_send_reply(c->req, status, reason(status), ctx->out);
    if (ctx->verbose)
        llmr_info("-> %d (request %lu)", status, c->id);
    mock_call_finish(c);
}

void mock_call_reply(struct mock_call *c, int status)
{
    call_reply(c, status);
}

/* require_key: the key the request carries (Authorization: Bearer, or
 * Azure's api-key), "" when none. */
static const char *request_key(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *v = evhttp_find_header(h, "authorization");

    if (v != NULL && strncasecmp(v, "Bearer ", 7) == 0)
        return v + 7;
    if (v != NULL)
        return v;
    v = evhttp_find_header(h, "api-key");
    return v != NULL ? v : "";
}

static void call_respond(struct mock_call *c)
{
    struct mock_ctx *ctx = c->ctx;
    long err = c->k.v[MK_ERROR];
    int status = (int)c->k.v[MK_STATUS];
    char msg[32];

    if (c->ep == EP_MESSAGES) {     /* Anthropic's API: its own shapes (anthropic.c) */
        mock_anth_respond(c);
        return;
    }
    if (c->k.v[MK_DROP]) {
        ctx->stats.dropped++;
        mock_call_drop(c);
    } else if ((c->k.set & (1u << MK_REQUIRE_KEY))
               && strcmp(request_key(c->req), c->k.require_key) != 0) {
        /* Echoes the key it got, as some OpenAI-compatible servers do. */
        struct evbuffer *m = evbuffer_new();
        if (m != NULL) {
            evbuffer_add_printf(m, "Incorrect API key provided: %s. You can find your API "
                                "key in your account settings.", request_key(c->req));
            evbuffer_add(m, "", 1);
            error_body(ctx->out, 401, (const char *)evbuffer_pullup(m, -1));
            evbuffer_free(m);
        }
        call_reply(c, 401);
    } else if (err != ME_NONE) {
        evbuffer_add(ctx->out, err == ME_CONTEXT_LENGTH ? context_length_body : content_policy_body,
                     err == ME_CONTEXT_LENGTH ? sizeof(context_length_body) - 1
                                              : sizeof(content_policy_body) - 1);
        call_reply(c, 400);
    } else if (status >= 400) {
        snprintf(msg, sizeof(msg), "mock error %d", status);
        error_body(ctx->out, status, msg);
        call_reply(c, status);
    } else if (c->stream) {
        mock_stream_start(c);
    } else {
        reply_body(c, ctx->out);
        if (status < 300 && c->ep != EP_MODELS) {
            ctx->stats.prompt_tokens += (unsigned long)c->prompt_tokens;
            ctx->stats.completion_tokens += c->ep == EP_EMBEDDINGS ? 0 : 5;
        }
        call_reply(c, status);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct mock_call *c = arg;

    (void)fd;
    (void)what;
    switch (c->phase) {
    case PH_NEW:
    case PH_LATENCY:
        call_unwatch(c);
        call_respond(c);
        break;
    case PH_STREAM:
        mock_stream_step(c);
        break;
    case PH_DROPPING:
        mock_call_drop(c);
        break;
    case PH_STALLED:
        break;
    }
}

/* Bytes waiting mean a pipelined request, not a close: stop watching and
 * let evhttp read it after our reply. */
static void on_peer(evutil_socket_t fd, short what, void *arg)
{
    struct mock_call *c = arg;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

    (void)what;
    if (n > 0)
        return;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(c->watch, NULL);
        return;
    }
    c->ctx->stats.client_closed++;
    call_unwatch(c);
    mock_call_drop(c);
}

/* evhttp stops reading once a request is in, so a client that gives up
 * during the latency wait would go unseen until we write. A one-shot read
 * watch notices at once: inflight and client_closed then show whether
 * llmroute really abandons an upstream request on timeout or cancel. */
static void call_watch(struct mock_call *c)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

    if (fd < 0)
        return;
    c->watch = event_new(c->ctx->base, fd, EV_READ, on_peer, c);
    if (c->watch != NULL)
        event_add(c->watch, NULL);
}

/* Drops always go through the timer: freeing the connection from inside
 * evhttp's own request callback would pull it out from under evhttp. */
static void call_begin(struct mock_call *c)
{
    long latency = c->k.v[MK_LATENCY_MS];
    struct mock_call *h;

    if (latency == 0 && !c->stream && !c->k.v[MK_DROP]) {
        call_respond(c);
        return;
    }
    h = call_detach(c);
    if (h == NULL) {
        reply_error_now(c->ctx, c->req, 500, "mock out of memory");
        return;
    }
    if (latency > 0 || h->k.v[MK_DROP]) {
        h->phase = PH_LATENCY;
        call_watch(h);
        mock_call_arm(h, latency);
    } else {
        call_respond(h);
    }
}

static int header_knobs(struct evhttp_request *req, struct mock_knobs *k,
                        char *err, size_t errlen)
{
    struct evkeyval *h;
    size_t plen = strlen(HDR_PREFIX);

    TAILQ_FOREACH(h, evhttp_request_get_input_headers(req), next) {
        int id;

        if (strncasecmp(h->key, HDR_PREFIX, plen) != 0)
            continue;
        id = mock_knob_lookup(h->key + plen, strlen(h->key + plen), MS_HEADER);
        if (id >= 0 && mock_knob_set(k, id, h->value, strlen(h->value)) < 0) {
            snprintf(err, errlen, "invalid value for header %s", h->key);
            return -1;
        }
    }
    return 0;
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);

    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static enum mock_endpoint endpoint_of(const char *path, enum evhttp_cmd_type m)
{
    size_t n = strlen(path);

    while (n > 1 && path[n - 1] == '/')
        n--;
    if (m == EVHTTP_REQ_POST) {
        if (ends_with(path, n, "/v1/messages"))
            return EP_MESSAGES;
        if (ends_with(path, n, "/chat/completions"))
            return EP_CHAT;
        if (ends_with(path, n, "/completions"))
            return EP_COMPLETIONS;
        if (ends_with(path, n, "/embeddings"))
            return EP_EMBEDDINGS;
        if (ends_with(path, n, "/responses"))
            return EP_RESPONSES;
    } else if (m == EVHTTP_REQ_GET && ends_with(path, n, "/models")) {
        return EP_MODELS;
    }
    return EP_NONE;
}

/* Everything the call needs from the request, on the stack. Returns -1
 * after answering when the request is unusable. */
static int call_init(struct mock_call *c, struct mock_ctx *ctx, struct evhttp_request *req,
                     const char *body, size_t blen)
{
    struct mock_body b;
    struct mock_knobs hk = { 0 };
    char err[256];

    memset(&b, 0, sizeof(b));
    if (c->ep != EP_MODELS && mock_json_parse_body(body, blen, &b, err, sizeof(err)) < 0) {
        reply_error_now(ctx, req, 400, err);
        return -1;
    }
    if (header_knobs(req, &hk, err, sizeof(err)) < 0) {
        reply_error_now(ctx, req, 400, err);
        return -1;
    }
    c->k = ctx->cli;
    mock_knobs_merge(&c->k, &ctx->runtime);
    mock_knobs_merge(&c->k, &b.knobs);
    mock_knobs_merge(&c->k, &hk);
    c->id = ++ctx->seq;
    c->created = (long)time(NULL);
    c->prompt_tokens = (long)(blen / 4) + 1;
    c->stream = b.stream && (c->ep == EP_CHAT || c->ep == EP_COMPLETIONS
                             || c->ep == EP_RESPONSES || c->ep == EP_MESSAGES);
    c->has_max_tokens = memmem(body, blen, "\"max_tokens\"", 12) != NULL;
    c->include_usage = b.include_usage || c->k.v[MK_USAGE];
    c->inputs = b.inputs;
    c->base64 = b.base64;
    c->model = b.model != NULL ? b.model : "unknown";
    c->model_len = b.model != NULL ? b.model_len : strlen("unknown");
    return 0;
}

static void routed(struct mock_ctx *ctx, struct evhttp_request *req,
                   const char *path, const char *body, size_t blen)
{
    struct mock_call c;
    char msg[128];

    memset(&c, 0, sizeof(c));
    c.ctx = ctx;
    c.req = req;
    c.ep = endpoint_of(path, evhttp_request_get_command(req));
    if (c.ep == EP_NONE && mock_responses_by_id(ctx, req, path))
        return;
    if (c.ep == EP_NONE) {
        snprintf(msg, sizeof(msg), "Invalid URL (%s %.80s)", ctx->stats.last_method, path);
        reply_error_now(ctx, req, 404, msg);
        return;
    }
    if (call_init(&c, ctx, req, body, blen) == 0)
        call_begin(&c);
}

static void reply_ok_json(struct mock_ctx *ctx, struct evhttp_request *req)
{
    MOCK_ADD_LIT(ctx->out, "{\"ok\":true}");
    add_headers(ctx, req, CT_JSON);
    evhttp_send_reply(req, 200, NULL, ctx->out);
}

/* The /__mock/ endpoints: not counted, never delayed. A bad config changes nothing. */
static void admin(struct mock_ctx *ctx, struct evhttp_request *req,
                  const char *what, const char *body, size_t blen)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    struct mock_knobs k;
    char err[256];

    if (m == EVHTTP_REQ_GET && strcmp(what, "stats") == 0) {
        mock_stats_render(&ctx->stats, ctx->name, ctx->out);
        add_headers(ctx, req, CT_JSON);
        evhttp_send_reply(req, 200, NULL, ctx->out);
    } else if (m == EVHTTP_REQ_POST && strcmp(what, "config") == 0) {
        k = ctx->runtime;
        if (mock_json_parse_config(body, blen, &k, err, sizeof(err)) < 0) {
            error_body(ctx->out, 400, err);
            add_headers(ctx, req, CT_JSON);
            evhttp_send_reply(req, 400, NULL, ctx->out);
            return;
        }
        ctx->runtime = k;
        reply_ok_json(ctx, req);
    } else if (m == EVHTTP_REQ_POST && strcmp(what, "reset") == 0) {
        memset(&ctx->runtime, 0, sizeof(ctx->runtime));
        mock_stats_reset(&ctx->stats);
        reply_ok_json(ctx, req);
    } else {
        error_body(ctx->out, 404, "unknown mock admin endpoint");
        add_headers(ctx, req, CT_JSON);
        evhttp_send_reply(req, 404, NULL, ctx->out);
    }
}

void mock_handle(struct evhttp_request *req, void *arg)
{
    struct mock_ctx *ctx = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    const char *body = blen > 0 ? (const char *)evbuffer_pullup(in, -1) : NULL;

    if (body == NULL) {
        body = "";
        blen = 0;
    }
    if (path == NULL || *path == '\0')
        path = "/";
    if (query == NULL)
        query = "";
    if (strncmp(path, "/__mock/", 8) == 0) {
        admin(ctx, req, path + 8, body, blen);
        return;
    }
    mock_stats_arrival(&ctx->stats, req, path, query, body, blen);
    if (ctx->verbose)
        llmr_info("%s %s%s%s (%zu bytes)", ctx->stats.last_method, path,
                  *query ? "?" : "", query, blen);
    routed(ctx, req, path, body, blen);
}
