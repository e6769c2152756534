/* Server-sent events for "stream": true, paced by the call's timer. The
 * call is always on the heap here and stays on ctx->calls until the last
 * chunk, a drop, or the client's close. */
#include "mock.h"
#include "log.h"

#include <event2/buffer.h>
#include <event2/http.h>

/* One SSE event per HTTP chunk, as OpenAI sends them. */
static void send_event(struct mock_call *c)
{
    struct evbuffer *out = c->ctx->out;

    MOCK_ADD_LIT(out, "\n\n");
    evhttp_send_reply_chunk(c->req, out);
}

static void event_head(struct mock_call *c, struct evbuffer *out)
{
    int chat = c->ep == EP_CHAT;

    evbuffer_add_printf(out, "data: {\"id\":\"%s-mock-%lu\",\"object\":\"%s\","
                        "\"created\":%ld,\"model\":\"%.*s\",",
                        chat ? "chatcmpl" : "cmpl", c->id,
                        chat ? "chat.completion.chunk" : "text_completion",
                        c->created, (int)c->model_len, c->model);
}

static void send_content(struct mock_call *c)
{
    struct evbuffer *out = c->ctx->out;

    if (c->ep == EP_RESPONSES) {
        mock_responses_delta(c);
        return;
    }
    if (c->ep == EP_MESSAGES) {
        mock_anth_stream_delta(c);
        return;
    }
    event_head(c, out);
    if (c->ep == EP_CHAT && c->k.v[MK_MALFORMED] == 2 && c->sent == 1) {
        MOCK_ADD_LIT(out, "\"choices\":[{");     /* a chunk cut short: not JSON */
    } else if (c->ep == EP_CHAT && c->k.v[MK_TOOL_CALL]) {
        /* tool-call deltas: the call's id and name, then its arguments in pieces */
        static const char *const piece[] = { "", "{\\\"city\\\":", "\\\"Paris\\\"}" };
        if (c->sent == 0)
            evbuffer_add_printf(out, "\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                                "\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,"
                                "\"id\":\"call_mock_%lu\",\"type\":\"function\",\"function\":"
                                "{\"name\":\"get_weather\",\"arguments\":\"\"}}]},"
                                "\"finish_reason\":null}]}", c->id);
        else
            evbuffer_add_printf(out, "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
                                "[{\"index\":0,\"function\":{\"arguments\":\"%s\"}}]},"
                                "\"finish_reason\":null}]}", piece[c->sent < 3 ? c->sent : 0]);
    } else if (c->ep == EP_CHAT)
        evbuffer_add_printf(out, "\"choices\":[{\"index\":0,\"delta\":{%s\"content\":"
                            "\"tok%ld \"},\"finish_reason\":null}]}",
                            c->sent == 0 ? "\"role\":\"assistant\"," : "", c->sent);
    else
        evbuffer_add_printf(out, "\"choices\":[{\"index\":0,\"text\":\"tok%ld \","
                            "\"finish_reason\":null,\"logprobs\":null}]}", c->sent);
    send_event(c);
}

static void send_final(struct mock_call *c)
{
    struct evbuffer *out = c->ctx->out;
    long p = c->prompt_tokens, n = c->sent;

    if (c->ep == EP_RESPONSES) {        /* no [DONE]: response.completed ends it */
        mock_responses_completed(c);
        return;
    }
    if (c->ep == EP_MESSAGES) {         /* message_delta and message_stop end it */
        mock_anth_stream_close(c);
        return;
    }
    event_head(c, out);
    if (c->ep == EP_CHAT)
        evbuffer_add_printf(out, "\"choices\":[{\"index\":0,\"delta\":{},"
                            "\"finish_reason\":\"%s\"}]}",
                            c->k.v[MK_TOOL_CALL] ? "tool_calls" : "stop");
    else
        evbuffer_add_printf(out, "\"choices\":[{\"index\":0,\"text\":\"\","
                            "\"finish_reason\":\"stop\",\"logprobs\":null}]}");
    send_event(c);
    if (c->include_usage) {
        event_head(c, out);
        MOCK_ADD_LIT(out, "\"choices\":[],");
        mock_usage_json(c, out, p, n);
        MOCK_ADD_LIT(out, "}");
        send_event(c);
    }
    MOCK_ADD_LIT(out, "data: [DONE]");
    send_event(c);
}

static void stream_finish(struct mock_call *c)
{
    struct mock_ctx *ctx = c->ctx;
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);

    send_final(c);
    if (c->k.v[MK_STATUS] < 300) {
        ctx->stats.prompt_tokens += (unsigned long)c->prompt_tokens;
        ctx->stats.completion_tokens += (unsigned long)c->sent;
    }
    if (evcon != NULL)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    evhttp_send_reply_end(c->req);
    c->req = NULL;
    if (ctx->verbose)
        llmr_info("stream %lu done after %ld chunks", c->id, c->sent);
    mock_call_finish(c);
}

static int cut_due(const struct mock_call *c)
{
    return c->sent == c->k.v[MK_STALL_AFTER] || c->sent == c->k.v[MK_DROP_AFTER];
}

/* A drop wins over a stall set at the same count. A stalled call keeps
 * its connection and waits for the client to give up (on_close). */
static int stream_cut(struct mock_call *c)
{
    if (c->sent == c->k.v[MK_DROP_AFTER]) {
        c->ctx->stats.dropped++;
        mock_call_drop(c);
        return 1;
    }
    if (c->sent == c->k.v[MK_STALL_AFTER]) {
        c->phase = PH_STALLED;
        return 1;
    }
    return 0;
}

void mock_stream_step(struct mock_call *c)
{
    long delay = c->k.v[MK_CHUNK_DELAY_MS];

    for (;;) {
        if (stream_cut(c))
            return;
        if (c->sent >= c->k.v[MK_CHUNKS]
            || (c->ep == EP_MESSAGES && c->k.v[MK_MALFORMED] == 2 && c->sent >= 1)) {
            stream_finish(c);       /* malformed 2: an error event ends it early */
            return;
        }
        send_content(c);
        c->sent++;
        /* chunk_burst chunks leave together, then the pause. */
        if (delay > 0 && !cut_due(c) && c->sent % c->k.v[MK_CHUNK_BURST] == 0) {
            mock_call_arm(c, delay);
            return;
        }
    }
}

void mock_stream_start(struct mock_call *c)
{
    int status = (int)c->k.v[MK_STATUS];

    mock_reply_headers(c, "text/event-stream");
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Cache-Control", "no-cache");
    mock_stats_status(&c->ctx->stats, status);
    evhttp_send_reply_start(c->req, status, NULL);
    c->phase = PH_STREAM;
    if (c->ep == EP_RESPONSES)
        mock_responses_created(c);
    if (c->ep == EP_MESSAGES)
        mock_anth_stream_open(c);
    /* As a model does: response.created at once, output after a while. */
    if ((c->ep == EP_RESPONSES || c->ep == EP_MESSAGES) && c->k.v[MK_CHUNK_DELAY_MS] > 0) {
        mock_call_arm(c, c->k.v[MK_CHUNK_DELAY_MS]);
        return;
    }
    if (c->ctx->verbose)
        llmr_info("stream %lu started (%ld chunks)", c->id, c->k.v[MK_CHUNKS]);
    mock_stream_step(c);
}
