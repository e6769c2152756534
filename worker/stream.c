/* Server-sent events relayed chunk by chunk.  The upstream transfer pauses
 * while the client's output buffer is past LLMR_STREAM_HIGH_WATER and
 * resumes when it drains, so a stream holds at most that much plus one
 * libcurl read (16 KiB) and one partial SSE line. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "log.h"
#include "proxy.h"

#define SSE_LINE_MAX (1 << 20)  /* longer data lines are relayed, not read */

void llmr_proxy_headers(llmr_call *c);

static llmr_slot *slot_of(llmr_call *c)
{
    return llmr_shm_slot(c->w->shm, c->w->conf->deployments[c->dep].slot);
}

/* stream_idle_timeout: a stream whose upstream sends nothing for that long
 * is ended with an error event.  The timer runs from the last bytes; a
 * stream paused for a slow client is not the upstream's silence. */
static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    llmr_call *c = arg;
    int64_t idle = (int64_t)(c->w->conf->stream_idle_timeout * 1e6);
    int64_t left = c->last_data_us + idle - llmr_now_us();

    (void)fd;
    (void)what;
    if (c->paused) {
        c->last_data_us = llmr_now_us();
        left = idle;
    }
    if (left > 0) {
        struct timeval tv = { (time_t)(left / 1000000), (suseconds_t)(left % 1000000) };
        evtimer_add(c->timer, &tv);
        return;
    }
    llmr_proxy_stream_stalled(c);
}

static void watch_idle(llmr_call *c)
{
    int64_t idle = (int64_t)(c->w->conf->stream_idle_timeout * 1e6);
    struct timeval tv = { (time_t)(idle / 1000000), (suseconds_t)(idle % 1000000) };

    c->last_data_us = llmr_now_us();
    event_assign(c->timer, c->w->base, -1, 0, on_idle, c);
    evtimer_add(c->timer, &tv);
}

void llmr_stream_commit(llmr_call *c)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(c->req);

    c->committed = 1;
    if (c->timer != NULL)
        evtimer_del(c->timer);
    llmr_ewma_add(&slot_of(c)->ttft_ewma_us, llmr_now_us() - c->t_attempt_us);
    llmr_proxy_headers(c);
    evhttp_add_header(out, "Content-Type",
                      c->content_type[0] ? c->content_type : "text/event-stream");
    evhttp_add_header(out, "Cache-Control", "no-cache");
    c->chunk = evbuffer_new();
    llmr_http_stream_start(c->w, c->req, (int)c->status);
    /* evhttp frames the body in chunks for HTTP/1.1 clients and says so in
     * a header; HTTP/1.0 clients get it raw until the connection closes. */
    const char *te = evhttp_find_header(out, "Transfer-Encoding");
    c->chunked = te != NULL && strcasecmp(te, "chunked") == 0;
    if (c->timer != NULL)
        watch_idle(c);
}

/* Reads the JSON of one "data:" line for usage, or for content to count. */
static void sse_event(llmr_call *c, const char *js, size_t len)
{
    llmr_json *j = &c->w->json;
    int u, ch, d, s;

    if (llmr_json_parse(j, js, len, 4096) < 0 || j->toks[0].type != JSMN_OBJECT)
        return;
    u = llmr_json_get(j, 0, "usage");
    if (u >= 0 && j->toks[u].type == JSMN_OBJECT) {
        c->sse.got_usage = 1;
        llmr_json_int(j, llmr_json_get(j, u, "prompt_tokens"), &c->sse.prompt);
        llmr_json_int(j, llmr_json_get(j, u, "completion_tokens"), &c->sse.completion);
    }
    ch = llmr_json_get(j, 0, "choices");
    if (ch < 0 || j->toks[ch].type != JSMN_ARRAY || j->toks[ch].size == 0)
        return;
    d = llmr_json_get(j, ch + 1, "delta");
    s = d >= 0 ? llmr_json_get(j, d, "content") : llmr_json_get(j, ch + 1, "text");
    if (s >= 0 && j->toks[s].type == JSMN_STRING && j->toks[s].end > j->toks[s].start) {
        c->sse.content_bytes += j->toks[s].end - j->toks[s].start;
        c->sse.content_events++;
    }
}

static void sse_line(llmr_call *c, const char *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n < 5 || memcmp(p, "data:", 5) != 0)
        return;
    p += 5;
    n -= 5;
    while (n > 0 && *p == ' ') {
        p++;
        n--;
    }
    if (n > 0 && *p == '{')
        sse_event(c, p, n);
}

/* Splits the relayed bytes into lines, keeping a partial one for later. */
static void sse_scan(llmr_call *c, const char *data, size_t len)
{
    const char *end = data + len, *nl;

    if (c->sse.line == NULL && (c->sse.line = evbuffer_new()) == NULL)
        return;
    while (data < end && (nl = memchr(data, '\n', (size_t)(end - data))) != NULL) {
        size_t held = evbuffer_get_length(c->sse.line);
        if (held == 0) {
            sse_line(c, data, (size_t)(nl - data));
        } else if (held < SSE_LINE_MAX) {
            evbuffer_add(c->sse.line, data, (size_t)(nl - data));
            held = evbuffer_get_length(c->sse.line);
            sse_line(c, (const char *)evbuffer_pullup(c->sse.line, -1), held);
            evbuffer_drain(c->sse.line, held);
        } else {
            evbuffer_drain(c->sse.line, held);
        }
        data = nl + 1;
    }
    if (data < end && evbuffer_get_length(c->sse.line) < SSE_LINE_MAX)
        evbuffer_add(c->sse.line, data, (size_t)(end - data));
}

/* The client caught up: let the upstream transfer go on. */
static void on_drained(struct evhttp_connection *evcon, void *arg)
{
    llmr_call *c = arg;

    (void)evcon;
    if (c->paused && c->easy != NULL) {
        c->paused = 0;
        curl_easy_pause(c->easy, CURLPAUSE_CONT);
    }
}

/* When nothing is queued for the client, writes the chunk straight to its
 * socket: evhttp would queue it, arm EPOLLOUT, wait a loop iteration and
 * disarm it again, two epoll_ctl and a wakeup for every event of every
 * stream.  What the socket does not take is queued, framed, behind it.
 * Returns 0 when the chunk is written or queued, -1 to use evhttp. */
static int write_direct(llmr_call *c, struct bufferevent *bev, const char *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    char head[24];
    struct iovec iov[3];
    ssize_t n;

    if (!c->chunked || evbuffer_get_length(out) != 0)
        return -1;
    iov[0].iov_base = head;
    iov[0].iov_len = (size_t)snprintf(head, sizeof(head), "%zx\r\n", len);
    iov[1].iov_base = (void *)data;
    iov[1].iov_len = len;
    iov[2].iov_base = (void *)"\r\n";
    iov[2].iov_len = 2;
    n = writev(bufferevent_getfd(bev), iov, 3);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return -1;          /* evhttp will see the error and close */
    for (int i = 0; i < 3; i++) {
        size_t skip = n > 0 ? ((size_t)n < iov[i].iov_len ? (size_t)n : iov[i].iov_len) : 0;
        n -= (ssize_t)skip;
        if (skip < iov[i].iov_len)
            evbuffer_add(out, (char *)iov[i].iov_base + skip, iov[i].iov_len - skip);
    }
    return 0;
}

size_t llmr_stream_write(llmr_call *c, const char *data, size_t len)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);

    c->last_data_us = llmr_now_us();
    if (evbuffer_get_length(bufferevent_get_output(bev)) > LLMR_STREAM_HIGH_WATER) {
        c->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    sse_scan(c, data, len);
    if (write_direct(c, bev, data, len) == 0)
        return len;
    if (c->chunk == NULL || evbuffer_add(c->chunk, data, len) != 0)
        return 0;
    evhttp_send_reply_chunk_with_cb(c->req, c->chunk, on_drained, c);
    return len;
}

static void error_event(llmr_call *c, const char *type, const char *code, const char *message)
{
    char esc[512];

    if (c->chunk == NULL)
        return;
    llmr_json_escape(esc, sizeof(esc), message, strlen(message));
    evbuffer_add_printf(c->chunk, "data: {\"error\":{\"message\":\"%s\",\"type\":\"%s\","
                        "\"param\":null,\"code\":\"%s\"}}\n\n", esc, type, code);
    evhttp_send_reply_chunk(c->req, c->chunk);
}

void llmr_stream_end(llmr_call *c, enum llmr_err err, const char *message)
{
    if (c->timer != NULL)
        evtimer_del(c->timer);
    if (err != LLMR_ERR_NONE)
        error_event(c, err == LLMR_ERR_TIMEOUT ? "timeout" : "api_error", llmr_err_name(err),
                    message);
    llmr_http_stream_end(c->w, c->req);
}

void llmr_stream_abort(llmr_call *c, const char *code, const char *message)
{
    if (c->timer != NULL)
        evtimer_del(c->timer);
    error_event(c, "api_error", code, message);
    llmr_http_stream_end(c->w, c->req);
}

void llmr_stream_usage(llmr_call *c, int64_t *prompt, int64_t *completion)
{
    if (c->sse.got_usage) {
        *prompt = c->sse.prompt;
        *completion = c->sse.completion;
        return;
    }
    /* No usage chunk: about 4 bytes of text a token, and at least one token
     * per content event, since servers stream roughly a token at a time. */
    *completion = (c->sse.content_bytes + 3) / 4;
    if (*completion < c->sse.content_events)
        *completion = c->sse.content_events;
    *prompt = c->tokens_est;
}

void llmr_sse_free(llmr_sse *s)
{
    if (s->line != NULL)
        evbuffer_free(s->line);
    s->line = NULL;
}
