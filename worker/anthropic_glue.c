/* Where the request path meets the Anthropic translations (anthropic.h).
 * Which way a request goes depends on who speaks what:
 *
 *   client API      deployment          body up          answer down
 *   chat            anthropic/          chat->messages   message->chat, events->chunks
 *   /v1/messages    anthropic/          as sent (model)  as sent
 *   /v1/messages    openai, azure       messages->chat   chat->message, chunks->events
 *
 * and errors go to the client in its own API's shape. */
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "anthropic.h"
#include "clock.h"
#include "log.h"
#include "stream.h"

enum anth_mode { M_NONE, M_CHAT_TO_ANTH, M_PASS, M_ANTH_TO_CHAT };

struct llmr_anth_state {
    int include_usage;          /* the chat client asked for the usage chunk */
    enum anth_mode mode;        /* of the committed stream */
    llmr_anth_up *up;           /* Anthropic events in (M_CHAT_TO_ANTH, M_PASS) */
    llmr_anth_down *down;       /* chat chunks in (M_ANTH_TO_CHAT) */
    struct evbuffer *xout;      /* translated bytes on their way out */
    struct curl_slist *headers; /* the deployment's and the client's anthropic-beta */
    int ttft_done;
    char err[256];              /* why the client's body could not be translated */
};

static enum anth_mode mode_of(const llmr_request *r, const llmr_deployment *d)
{
    int anth = d->provider == LLMR_PROVIDER_ANTHROPIC;

    if (r->ctl.anthropic_in)
        return anth ? M_PASS : M_ANTH_TO_CHAT;
    return anth && r->op == LLMR_OP_CHAT ? M_CHAT_TO_ANTH : M_NONE;
}

static struct llmr_anth_state *state(llmr_request *r)
{
    if (r->anth == NULL)
        r->anth = calloc(1, sizeof(*r->anth));
    return r->anth;
}

void llmr_anth_free(llmr_request *r)
{
    if (r->anth == NULL)
        return;
    llmr_anth_up_free(r->anth->up);
    llmr_anth_down_free(r->anth->down);
    if (r->anth->xout != NULL)
        evbuffer_free(r->anth->xout);
    for (struct curl_slist *h = r->anth->headers; h != NULL; h = h->next)
        explicit_bzero(h->data, strlen(h->data));      /* the key: no copy left behind */
    curl_slist_free_all(r->anth->headers);
    free(r->anth);
    r->anth = NULL;
}

/* ---- the body up ------------------------------------------------------- */

int llmr_anth_up_body(llmr_request *r, const llmr_deployment *d)
{
    enum anth_mode m = mode_of(r, d);
    struct llmr_anth_state *s;
    struct evbuffer *b;
    size_t n;
    int rc;

    if (m == M_NONE || m == M_PASS)
        return 0;
    if ((s = state(r)) == NULL || (b = evbuffer_new()) == NULL)
        return -1;
    if (m == M_CHAT_TO_ANTH)
        rc = llmr_anth_chat_to_messages(r->body, r->len, d->upstream_model, b,
                                        &s->include_usage, s->err, sizeof(s->err));
    else
        rc = llmr_anth_messages_to_chat(r->body, r->len, d->upstream_model, b, s->err,
                                        sizeof(s->err));
    n = evbuffer_get_length(b);
    free(r->at.up_body);
    r->at.up_body = rc == 0 ? malloc(n > 0 ? n : 1) : NULL;
    r->at.up_model = NULL;      /* rebuilt for the next attempt, whatever its model */
    if (r->at.up_body != NULL)
        evbuffer_remove(b, r->at.up_body, n);
    r->at.up_len = n;
    evbuffer_free(b);
    return rc < 0 ? -2 : r->at.up_body != NULL ? 1 : -1;
}

void llmr_anth_bad_request(llmr_request *r, llmr_reply *rep)
{
    llmr_reply_error(rep, LLMR_E_TRANSLATE_REQUEST,
                     r->anth != NULL ? r->anth->err : "the body cannot be translated");
    rep->headers = 1;
}

#define BETA_MAX 1024       /* a longer anthropic-beta is not passed on */

/* Whether v is a header value to pass on: printable ASCII, bounded. */
static int beta_ok(const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > BETA_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            return 0;
    return 1;
}

/* Anthropic's beta features are asked for per request (Claude Code does):
 * a /v1/messages client's anthropic-beta goes with its body to an
 * anthropic/ deployment, on a copy of the deployment's header list. */
const struct curl_slist *llmr_anth_headers(llmr_request *r, const llmr_deployment *d)
{
    const char *beta;
    struct llmr_anth_state *s;
    struct curl_slist *h = NULL, *n;
    char line[BETA_MAX + 32];

    if (mode_of(r, d) != M_PASS)
        return NULL;
    beta = evhttp_find_header(evhttp_request_get_input_headers(r->req), "anthropic-beta");
    if (beta == NULL || !beta_ok(beta) || (s = state(r)) == NULL)
        return NULL;
    for (const struct curl_slist *t = r->w->targets[r->at.dep].headers; t != NULL; t = t->next)
        if ((n = curl_slist_append(h, t->data)) != NULL)
            h = n;
    snprintf(line, sizeof(line), "anthropic-beta: %s", beta);
    if ((n = curl_slist_append(h, line)) != NULL)
        h = n;
    for (struct curl_slist *o = s->headers; o != NULL; o = o->next)
        explicit_bzero(o->data, strlen(o->data));
    curl_slist_free_all(s->headers);    /* the last attempt's; its transfer is over */
    s->headers = h;
    return h;
}

/* ---- answers ----------------------------------------------------------- */

static void send_json(llmr_request *r, int status, struct evbuffer *b, int upstream,
                      const char *retry_after)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);

    llmr_reply_headers(r, upstream);
    if (retry_after != NULL && retry_after[0])
        evhttp_add_header(out, "Retry-After", retry_after);
    evhttp_add_header(out, "Content-Type", "application/json");
    llmr_http_reply(r->w, r->req, status, b);
}

/* Our own error, in Anthropic's shape for a /v1/messages client. */
static void own_error(llmr_request *r, const llmr_reply *rep)
{
    struct evbuffer *b = evbuffer_new();
    int status = llmr_error_def_of(rep->kind)->status;
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);

    if (b != NULL)
        llmr_anth_error_json(b, status, rep->msg);
    if (rep->headers) {
        send_json(r, status, b, 0, rep->retry_after);
    } else {
        evhttp_add_header(out, "x-request-id", llmr_request_id(r));
        if (rep->retry_after[0])
            evhttp_add_header(out, "Retry-After", rep->retry_after);
        evhttp_add_header(out, "Content-Type", "application/json");
        llmr_http_reply(r->w, r->req, status, b);
    }
    if (b != NULL)
        evbuffer_free(b);
}

/* The upstream's answer (a success or a passed-on error), translated. */
static void upstream_answer(llmr_request *r, const llmr_reply *rep, enum anth_mode m)
{
    size_t len = evbuffer_get_length(r->at.resp);
    const char *js = (const char *)evbuffer_pullup(r->at.resp, -1);
    struct evbuffer *b = evbuffer_new();
    int ok = rep->status >= 200 && rep->status < 300, rc = 0;
    char err[256] = "";

    if (b == NULL) {
        llmr_reply e;
        llmr_reply_error(&e, LLMR_E_OUT_OF_MEMORY);
        llmr_reply_send(r, &e);
        return;
    }
    if (ok && m == M_CHAT_TO_ANTH)
        rc = llmr_anth_message_to_chat(js, len, (int64_t)time(NULL), b, err, sizeof(err));
    else if (ok)
        rc = llmr_anth_chat_to_message(js, len, b, err, sizeof(err));
    else if (m == M_CHAT_TO_ANTH)
        llmr_anth_error_to_openai(js, len, rep->status, b);
    else
        llmr_anth_error_from_openai(js, len, rep->status, b);
    if (rc == 0) {
        send_json(r, rep->status, b, 1, NULL);
    } else {
        llmr_reply e;
        llmr_warn("%s: deployment %s: %s", llmr_request_id(r), llmr_attempt_dep(r)->id, err);
        llmr_reply_error(&e, LLMR_E_UPSTREAM_MALFORMED, llmr_attempt_dep(r)->id, err);
        e.headers = 1;
        if (m == M_CHAT_TO_ANTH)
            llmr_reply_send(r, &e);     /* OpenAI's shape: errors.c's own */
        else
            own_error(r, &e);
    }
    evbuffer_free(b);
}

/* A passed-through 2xx answer is relayed as it came only when it is a
 * message: one cut short or that is no message is the upstream's fault, a
 * 502 the SDK can read, not a 200 it cannot parse. */
static int pass_answer_bad(llmr_request *r, const llmr_reply *rep, char *err, size_t cap)
{
    size_t len = evbuffer_get_length(r->at.resp);
    const char *js = (const char *)evbuffer_pullup(r->at.resp, -1);
    llmr_json j = { 0 };
    int bad = 0;

    if (rep->status < 200 || rep->status >= 300)
        return 0;
    if (llmr_anth_parse(&j, js, len) < 0) {
        snprintf(err, cap, "the Anthropic answer is not one JSON object");
        bad = 1;
    } else if (!llmr_json_eq(&j, llmr_json_get(&j, 0, "type"), "message")
               || !llmr_anth_is(&j, llmr_json_get(&j, 0, "content"), JSMN_ARRAY)) {
        snprintf(err, cap, "the Anthropic answer is not a message (type or content missing)");
        bad = 1;
    }
    llmr_json_free(&j);
    return bad;
}

int llmr_anth_reply(llmr_request *r, const llmr_reply *rep)
{
    enum anth_mode m = r->at.dep >= 0 ? mode_of(r, llmr_attempt_dep(r)) : M_NONE;
    char err[256];

    if (rep->how == LLMR_REPLY_ERROR && r->ctl.anthropic_in) {
        own_error(r, rep);
        return 1;
    }
    if (rep->how == LLMR_REPLY_UPSTREAM && m == M_PASS && pass_answer_bad(r, rep, err,
                                                                         sizeof(err))) {
        llmr_reply e;
        llmr_warn("%s: deployment %s: %s", llmr_request_id(r), llmr_attempt_dep(r)->id, err);
        llmr_reply_error(&e, LLMR_E_UPSTREAM_MALFORMED, llmr_attempt_dep(r)->id, err);
        e.headers = 1;
        own_error(r, &e);
        return 1;
    }
    if (rep->how != LLMR_REPLY_UPSTREAM || m == M_NONE || m == M_PASS)
        return 0;
    upstream_answer(r, rep, m);
    return 1;
}

/* ---- streams ----------------------------------------------------------- */

int llmr_anth_stream_begin(llmr_request *r)
{
    enum anth_mode m = mode_of(r, llmr_attempt_dep(r));
    struct llmr_anth_state *s;

    if (m == M_NONE || (s = state(r)) == NULL)
        return 0;
    s->mode = m;
    if (m == M_ANTH_TO_CHAT)
        s->down = llmr_anth_down_new(llmr_request_group_name(r, 0), r->tokens_est);
    else
        s->up = llmr_anth_up_new(s->include_usage, (int64_t)time(NULL));
    s->xout = evbuffer_new();
    if (s->xout == NULL || (s->up == NULL && s->down == NULL)) {
        s->mode = M_NONE;       /* without memory: relayed as it comes */
        return 0;
    }
    return m != M_ANTH_TO_CHAT;
}

/* What the translator learnt goes where the relay keeps a stream's usage,
 * and its first content event times the first token. */
static void note_progress(llmr_request *r, struct llmr_anth_state *s)
{
    llmr_sse *sse = &r->relay.sse;

    if (s->up != NULL) {
        sse->got_usage = llmr_anth_up_usage(s->up, &sse->prompt, &sse->completion);
        if (!s->ttft_done && llmr_anth_up_content_events(s->up) > 0) {
            s->ttft_done = 1;
            llmr_stream_ttft(r, llmr_clock_us());
        }
    }
    if (s->down != NULL)    /* the events written carry no chat usage to read */
        sse->got_usage = llmr_anth_down_usage(s->down, &sse->prompt, &sse->completion);
}

size_t llmr_anth_stream_write(llmr_request *r, const char *data, size_t len)
{
    struct llmr_anth_state *s = r->anth;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(r->evcon);
    size_t n;
    int rc;

    if (s == NULL || s->mode == M_NONE)
        return llmr_stream_write(r, data, len);
    if (evbuffer_get_length(bufferevent_get_output(bev)) > LLMR_STREAM_HIGH_WATER)
        return llmr_stream_write(r, data, len);     /* it pauses the transfer */
    if (s->mode == M_PASS) {        /* read for usage and the first token only */
        rc = llmr_anth_up_feed(s->up, data, len, s->xout);
        evbuffer_drain(s->xout, evbuffer_get_length(s->xout));
        n = llmr_stream_write(r, data, len);
        if (rc == 0)
            note_progress(r, s);
        return n;
    }
    if (s->mode == M_CHAT_TO_ANTH)
        rc = llmr_anth_up_feed(s->up, data, len, s->xout);
    else
        rc = llmr_anth_down_feed(s->down, data, len, s->xout);
    if ((n = evbuffer_get_length(s->xout)) > 0) {
        size_t w = llmr_stream_write(r, (const char *)evbuffer_pullup(s->xout, -1), n);
        evbuffer_drain(s->xout, n);
        if (w != n)
            return 0;
    }
    note_progress(r, s);
    if (rc < 0)
        llmr_warn("%s: deployment %s sent a malformed stream", llmr_request_id(r),
                  llmr_attempt_dep(r)->id);
    return rc < 0 ? 0 : len;
}

/* Anthropic's error event, then the end of the reply. */
static void error_event(llmr_request *r, const llmr_reply *rep)
{
    struct evbuffer *c = r->relay.chunk;

    evbuffer_add_printf(c, "event: error\ndata: ");
    llmr_anth_error_json(c, llmr_error_def_of(rep->kind)->status, rep->msg);
    evbuffer_add(c, "\n\n", 2);
    evhttp_send_reply_chunk(r->req, c);
}

int llmr_anth_stream_end(llmr_request *r, const llmr_reply *rep)
{
    struct llmr_anth_state *s = r->anth;

    if (r->relay.chunk == NULL)
        return 0;
    /* The translator already wrote the error it saw (an upstream error
     * event, a malformed one) in the client's API: a second, llmroute's
     * own "failed mid-stream", would only say it again, less precisely. */
    if (rep->has_kind && s != NULL && ((s->mode == M_CHAT_TO_ANTH && llmr_anth_up_failed(s->up))
                                       || (s->mode == M_ANTH_TO_CHAT
                                           && llmr_anth_down_done(s->down)))) {
        llmr_http_stream_end(r->w, r->req);
        return 1;
    }
    if (rep->has_kind && r->ctl.anthropic_in) {
        error_event(r, rep);
        llmr_http_stream_end(r->w, r->req);
        return 1;
    }
    if (!rep->has_kind && s != NULL && s->mode == M_ANTH_TO_CHAT
        && !llmr_anth_down_done(s->down)) {
        llmr_anth_down_finish(s->down, r->relay.chunk);
        evhttp_send_reply_chunk(r->req, r->relay.chunk);
    }
    return 0;
}
