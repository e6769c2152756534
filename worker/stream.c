/* Server-sent events relayed chunk by chunk.  The upstream transfer pauses
 * while the client's output buffer is past LLMR_STREAM_HIGH_WATER and
 * resumes when it drains, so a stream holds at most that much plus one
 * libcurl read (16 KiB) and one partial SSE line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "clock.h"
#include "fmt.h"
#include "stream.h"
#include "cache.h"

#define SSE_LINE_MAX (1 << 20)  /* longer data lines are relayed, not read */

/* stream_idle_timeout: a stream whose upstream sends nothing for that long
 * is ended with an error event.  The timer runs from the last bytes; a
 * stream paused for a slow client is not the upstream's silence. */
static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    llmr_request *r = arg;
    llmr_relay *rl = &r->relay;
    int64_t idle = (int64_t)(r->w->conf->stream_idle_timeout * 1e6);
    int64_t left = rl->last_data_us + idle - llmr_clock_us();

    (void)fd;
    (void)what;
    LLMR_CHECK(r->state == LLMR_REQ_STREAMING, "idle timer of a request not streaming");
    if (rl->paused) {
        rl->last_data_us = llmr_clock_us();
        left = idle;
    }
    if (left > 0) {
        struct timeval tv = { (time_t)(left / 1000000), (suseconds_t)(left % 1000000) };
        evtimer_add(&rl->idle, &tv);
        return;
    }
    llmr_request_stalled(r);
}

static void on_flush(evutil_socket_t fd, short what, void *arg);

void llmr_relay_init(llmr_request *r)
{
    evtimer_assign(&r->relay.idle, r->w->base, on_idle, r);
    event_assign(&r->relay.flush, r->w->base, -1, 0, on_flush, r);
}

static void watch_idle(llmr_request *r)
{
    int64_t idle = (int64_t)(r->w->conf->stream_idle_timeout * 1e6);
    struct timeval tv = { (time_t)(idle / 1000000), (suseconds_t)(idle % 1000000) };

    r->relay.last_data_us = llmr_clock_us();
    evtimer_add(&r->relay.idle, &tv);
}

/* The deployment's time to first token, the first token seen at `at_us`:
 * its moving average (the router's) and its histogram (metrics). */
static void note_ttft(llmr_request *r, int64_t at_us)
{
    llmr_slot *s = llmr_attempt_slot(r);
    int64_t us = at_us - r->at.t_start_us;

    llmr_ewma_add(&s->ttft_ewma_us, us);
    llmr_hist_add(&s->ttft, us);
}

void llmr_stream_ttft(llmr_request *r, int64_t at_us)
{
    note_ttft(r, at_us);
}

void llmr_stream_commit(llmr_request *r)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);
    llmr_relay *rl = &r->relay;

    llmr_request_set_state(r, LLMR_REQ_STREAMING);
    evtimer_del(&r->first_byte);
    /* A Responses stream opens with response.created before the model has
     * made anything: its time to first token is to the first delta. */
    rl->sse.responses = r->op == LLMR_OP_RESPONSES;
    if (!rl->sse.responses && !llmr_anth_stream_begin(r))
        note_ttft(r, llmr_clock_us());
    llmr_reply_headers(r, 1);
    evhttp_add_header(out, "Content-Type",
                      r->at.content_type[0] ? r->at.content_type : "text/event-stream");
    evhttp_add_header(out, "Cache-Control", "no-cache");
    rl->chunk = evbuffer_new();
    llmr_http_stream_start(r->w, r->req, (int)r->at.status);
    r->log.ttfb_us = llmr_clock_us() - r->t_start_us;
    /* evhttp frames the body in chunks for HTTP/1.1 clients and says so in
     * a header; HTTP/1.0 clients get it raw until the connection closes. */
    const char *te = evhttp_find_header(out, "Transfer-Encoding");
    rl->chunked = te != NULL && strcasecmp(te, "chunked") == 0;
    watch_idle(r);
}

/* Reads the JSON of one "data:" line for usage, or for content to count:
 * the few members wanted are found by scanning, the event is not
 * tokenized (that was 60% of the instructions of a relayed event).  Only
 * the usage object, on the last event, is parsed.  The content's length
 * is that of its JSON text, escapes as sent. */
static void sse_event(llmr_sse *sse, const char *js, size_t len)
{
    static const char *const top[] = { "usage", "choices" };
    static const char *const choice[] = { "delta", "text" };
    size_t off[2], n[2], e, en, co[2], cn[2], so, sn;

    if (llmr_json_members(js, len, top, 2, off, n) < 0)
        return;
    if (n[0] > 0 && llmr_usage_object(js + off[0], n[0], &sse->prompt, &sse->completion) == 0)
        sse->got_usage = 1;
    if (n[1] == 0 || llmr_json_first(js + off[1], n[1], &e, &en) < 0)
        return;
    e += off[1];
    if (llmr_json_members(js + e, en, choice, 2, co, cn) < 0)
        return;
    if (cn[0] > 0) {            /* chat: choices[0].delta.content */
        if (llmr_json_member(js + e + co[0], cn[0], "content", &so, &sn) < 0)
            return;
        so += e + co[0];
    } else if (cn[1] > 0) {     /* completions: choices[0].text */
        so = e + co[1];
        sn = cn[1];
    } else {
        return;
    }
    if (js[so] == '"' && sn > 2) {
        sse->content_bytes += (int64_t)(sn - 2);
        sse->content_events++;
    }
}

static void sse_line(void *arg, const char *p, size_t n)
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
    if (n > 0 && *p == '{' && ((llmr_sse *)arg)->responses)
        llmr_responses_sse(arg, p, n);
    else if (n > 0 && *p == '{')
        sse_event(arg, p, n);
}

/* Splits bytes into lines, keeping a partial one in `held` for later; a
 * line past SSE_LINE_MAX is dropped, not read. */
void llmr_sse_split(struct evbuffer *held, const char *data, size_t len,
                    llmr_sse_line_fn *line, void *arg)
{
    const char *end = data + len, *nl;

    while (data < end && (nl = memchr(data, '\n', (size_t)(end - data))) != NULL) {
        size_t n = evbuffer_get_length(held);
        if (n == 0) {
            line(arg, data, (size_t)(nl - data));
        } else if (n < SSE_LINE_MAX) {
            evbuffer_add(held, data, (size_t)(nl - data));
            n = evbuffer_get_length(held);
            line(arg, (const char *)evbuffer_pullup(held, -1), n);
            evbuffer_drain(held, n);
        } else {
            evbuffer_drain(held, n);
        }
        data = nl + 1;
    }
    if (data < end && evbuffer_get_length(held) < SSE_LINE_MAX)
        evbuffer_add(held, data, (size_t)(end - data));
}

static void sse_scan(llmr_sse *sse, const char *data, size_t len)
{
    if (sse->line == NULL && (sse->line = evbuffer_new()) == NULL)
        return;
    llmr_sse_split(sse->line, data, len, sse_line, sse);
}

/* The client caught up: let the upstream transfer go on. */
static void on_drained(struct evhttp_connection *evcon, void *arg)
{
    llmr_request *r = arg;

    (void)evcon;
    if (r->relay.paused && r->at.easy != NULL) {
        r->relay.paused = 0;
        curl_easy_pause(r->at.easy, CURLPAUSE_CONT);
    }
}

/* When nothing is queued for the client, writes the chunk straight to its
 * socket: evhttp would queue it, arm EPOLLOUT, wait a loop iteration and
 * disarm it again, two epoll_ctl and a wakeup for every event of every
 * stream.  What the socket does not take is queued, framed, behind it.
 * Returns 0 when the chunk is written or queued, -1 to use evhttp. */
static int write_direct(llmr_relay *rl, struct bufferevent *bev, const char *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    char head[LLMR_FMT_MAX + 2];
    struct iovec iov[3];
    ssize_t n;

    if (!rl->chunked || evbuffer_get_length(out) != 0)
        return -1;
    iov[0].iov_base = head;
    iov[0].iov_len = llmr_fmt_hex(head, len);
    memcpy(head + iov[0].iov_len, "\r\n", 2);
    iov[0].iov_len += 2;
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

/* What the Responses events just read tell every worker: the id (GET by
 * id works while the stream still runs) and the time to the first token. */
static void responses_seen(llmr_request *r)
{
    llmr_sse *sse = &r->relay.sse;

    if (sse->resp_id_new) {
        sse->resp_id_new = 0;
        llmr_responses_remember(r->w, r->at.dep, sse->resp_id, strlen(sse->resp_id));
    }
    if (sse->first_token_us != 0 && !sse->ttft_done) {
        sse->ttft_done = 1;
        note_ttft(r, sse->first_token_us);
    }
}

/* Sends what this loop iteration's reads gathered in `held` as one chunk:
 * straight to the socket when nothing is queued, else through evhttp. */
static void flush(llmr_request *r)
{
    llmr_relay *rl = &r->relay;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(r->evcon);
    size_t len = rl->nheld;

    rl->nheld = 0;
    if (len == 0 || write_direct(rl, bev, rl->held, len) == 0)
        return;
    if (rl->chunk != NULL && evbuffer_add(rl->chunk, rl->held, len) == 0)
        evhttp_send_reply_chunk_with_cb(r->req, rl->chunk, on_drained, r);
}

/* Appends to `held`, a block kept for the stream's life: an evbuffer would
 * free its memory when sent and allocate anew for the next event. */
static int hold(llmr_relay *rl, const char *data, size_t len)
{
    if (rl->nheld + len > rl->held_cap) {
        size_t cap = rl->held_cap > 0 ? rl->held_cap : 1024;
        char *p;

        while (cap < rl->nheld + len)
            cap *= 2;
        if ((p = realloc(rl->held, cap)) == NULL)
            return -1;
        rl->held = p;
        rl->held_cap = cap;
    }
    memcpy(rl->held + rl->nheld, data, len);
    rl->nheld += len;
    return 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    llmr_request *r = arg;

    (void)fd;
    (void)what;
    if (r->state == LLMR_REQ_STREAMING)
        flush(r);
}

/* libcurl hands a chunked answer over one chunk at a time: an upstream
 * read holding ten events makes ten calls here.  They gather in `held`
 * and go to the client together once this loop iteration's reads are
 * done (an active event runs after the callbacks already queued), one
 * send for all of them instead of one each. */
size_t llmr_stream_write(llmr_request *r, const char *data, size_t len)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(r->evcon);
    llmr_relay *rl = &r->relay;
    size_t held = rl->nheld;

    rl->last_data_us = llmr_clock_us();
    if (evbuffer_get_length(bufferevent_get_output(bev)) > LLMR_STREAM_HIGH_WATER) {
        rl->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (held > LLMR_STREAM_HIGH_WATER) {    /* a long read: hold no more than that */
        flush(r);
        held = 0;
    }
    sse_scan(&rl->sse, data, len);
    llmr_cache_tee(r, data, len);
    r->log.bytes_out += (int64_t)len;
    if (rl->sse.responses)
        responses_seen(r);
    if (hold(rl, data, len) < 0)
        return 0;
    if (held == 0)      /* the first bytes of this iteration: send them at its end */
        event_active(&rl->flush, EV_TIMEOUT, 0);
    return len;
}

/* A Responses stream ends in its own error event: `event: error` and
 * {"type":"error","code","message","param"}, as OpenAI sends it. */
static void responses_error(llmr_request *r, const llmr_reply *rep)
{
    const llmr_error_def *d = llmr_error_def_of(rep->kind);
    const char *code = rep->code != NULL ? rep->code : d->code != NULL ? d->code : d->type;
    char esc[1024];

    llmr_json_escape(esc, sizeof(esc), rep->msg, strlen(rep->msg));
    evbuffer_add_printf(r->relay.chunk, "event: error\ndata: {\"type\":\"error\",\"code\":"
                        "\"%s\",\"message\":\"%s\",\"param\":null}\n\n", code, esc);
    evhttp_send_reply_chunk(r->req, r->relay.chunk);
}

/* The error event of errors.c's table, then the end of the chunked reply. */
void llmr_stream_end(llmr_request *r, const llmr_reply *rep)
{
    llmr_relay *rl = &r->relay;
    char json[1024];
    size_t n;

    event_del(&rl->idle);
    flush(r);               /* the events read before the end go first */
    event_del(&rl->flush);
    if (llmr_anth_stream_end(r, rep))
        return;
    if (rep->has_kind && rl->chunk != NULL && r->op == LLMR_OP_RESPONSES) {
        responses_error(r, rep);
    } else if (rep->has_kind && rl->chunk != NULL) {
        n = llmr_error_json(json, sizeof(json), rep->kind, NULL, rep->code, rep->msg);
        evbuffer_add(rl->chunk, "data: ", 6);
        evbuffer_add(rl->chunk, json, n);
        evbuffer_add(rl->chunk, "\n\n", 2);
        evhttp_send_reply_chunk(r->req, rl->chunk);
    }
    llmr_http_stream_end(r->w, r->req);
}

void llmr_stream_usage(const llmr_request *r, int64_t *prompt, int64_t *completion)
{
    const llmr_sse *sse = &r->relay.sse;

    if (sse->got_usage) {
        *prompt = sse->prompt;
        *completion = sse->completion;
        return;
    }
    /* No usage chunk: about 4 bytes of text a token, and at least one token
     * per content event, since servers stream roughly a token at a time. */
    *completion = (sse->content_bytes + 3) / 4;
    if (*completion < sse->content_events)
        *completion = sse->content_events;
    *prompt = r->tokens_est;
}

void llmr_relay_free(llmr_relay *rl)
{
    event_del(&rl->flush);
    free(rl->held);
    rl->held = NULL;
    rl->nheld = rl->held_cap = 0;
    if (rl->sse.line != NULL)
        evbuffer_free(rl->sse.line);
    rl->sse.line = NULL;
    if (rl->chunk != NULL)
        evbuffer_free(rl->chunk);
    rl->chunk = NULL;
}
