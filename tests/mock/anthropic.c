/* The Anthropic Messages API of the mock: POST …/v1/messages answers as
 * Anthropic does (README.md): a message object, or with "stream": true the
 * event stream (message_start, content_block_start, ping, text deltas,
 * content_block_stop, [a tool_use block], message_delta, message_stop);
 * errors in Anthropic's shape ({"type":"error","error":{type,message}}),
 * 529 overloaded_error included.  Like Anthropic it refuses a request
 * without the anthropic-version header or max_tokens, and with require_key
 * checks x-api-key. */
#include "mock.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <stdio.h>
#include <string.h>

static const char *error_type(int status)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 529: return "overloaded_error";
    default:  return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static void error_reply(struct mock_call *c, int status, const char *msg)
{
    struct evbuffer *out = c->ctx->out;

    evbuffer_add_printf(out, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"",
                        error_type(status));
    mock_json_escape(out, msg, strlen(msg));
    MOCK_ADD_LIT(out, "\"}}");
    mock_call_reply(c, status);
}

static void usage(const struct mock_call *c, struct evbuffer *out, long completion)
{
    evbuffer_add_printf(out, "\"usage\":{\"input_tokens\":%ld,\"output_tokens\":%ld,"
                        "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0}",
                        c->prompt_tokens, completion);
}

static void message_body(struct mock_call *c, struct evbuffer *out)
{
    int tool = c->k.v[MK_TOOL_CALL] != 0;

    evbuffer_add_printf(out, "{\"id\":\"msg_mock_%lu\",\"type\":\"message\",\"role\":"
                        "\"assistant\",\"model\":\"%.*s\",\"content\":[{\"type\":\"text\","
                        "\"text\":\"mock reply\"}", c->id, (int)c->model_len, c->model);
    if (tool)
        evbuffer_add_printf(out, ",{\"type\":\"tool_use\",\"id\":\"toolu_mock_%lu\",\"name\":"
                            "\"get_weather\",\"input\":{\"city\":\"Paris\"}}", c->id);
    evbuffer_add_printf(out, "],\"stop_reason\":\"%s\",\"stop_sequence\":null,",
                        tool ? "tool_use" : "end_turn");
    usage(c, out, 5);
    MOCK_ADD_LIT(out, "}");
}

static const char *header(struct mock_call *c, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(c->req), name);
}

void mock_anth_respond(struct mock_call *c)
{
    struct mock_ctx *ctx = c->ctx;
    int status = (int)c->k.v[MK_STATUS];
    const char *key = header(c, "x-api-key");
    char msg[64];

    if (c->k.v[MK_DROP]) {
        ctx->stats.dropped++;
        mock_call_drop(c);
    } else if (header(c, "anthropic-version") == NULL) {
        error_reply(c, 400, "anthropic-version: header is required");
    } else if ((c->k.set & (1u << MK_REQUIRE_KEY))
               && (key == NULL || strcmp(key, c->k.require_key) != 0)) {
        error_reply(c, 401, "invalid x-api-key");
    } else if (!c->has_max_tokens) {
        error_reply(c, 400, "max_tokens: Field required");
    } else if (c->k.v[MK_ERROR] == ME_CONTEXT_LENGTH) {
        error_reply(c, 400, "prompt is too long: 210000 tokens > 200000 maximum");
    } else if (status >= 400) {
        snprintf(msg, sizeof(msg), status == 529 ? "Overloaded" : "mock error %d", status);
        error_reply(c, status, msg);
    } else if (c->stream) {
        mock_stream_start(c);
    } else if (c->k.v[MK_MALFORMED] == 1) {    /* a 200 that is no message */
        MOCK_ADD_LIT(ctx->out, "{\"type\":\"message\",\"id\":\"msg_bad\",\"content\":\"oops\"}");
        mock_call_reply(c, status);
    } else {
        message_body(c, ctx->out);
        ctx->stats.prompt_tokens += (unsigned long)c->prompt_tokens;
        ctx->stats.completion_tokens += 5;
        mock_call_reply(c, status);
    }
}

/* One event per HTTP chunk, as Anthropic sends them. */
static void event(struct mock_call *c, const char *name)
{
    evbuffer_add_printf(c->ctx->out, "event: %s\ndata: ", name);
}

static void send_event(struct mock_call *c)
{
    MOCK_ADD_LIT(c->ctx->out, "\n\n");
    evhttp_send_reply_chunk(c->req, c->ctx->out);
}

void mock_anth_stream_open(struct mock_call *c)
{
    struct evbuffer *out = c->ctx->out;

    event(c, "message_start");
    evbuffer_add_printf(out, "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock_%lu\","
                        "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":"
                        "\"%.*s\",\"stop_reason\":null,\"stop_sequence\":null,", c->id,
                        (int)c->model_len, c->model);
    usage(c, out, 1);
    MOCK_ADD_LIT(out, "}}");
    send_event(c);
    event(c, "content_block_start");
    MOCK_ADD_LIT(out, "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                 "{\"type\":\"text\",\"text\":\"\"}}");
    send_event(c);
    event(c, "ping");
    MOCK_ADD_LIT(out, "{\"type\": \"ping\"}");
    send_event(c);
}

void mock_anth_stream_delta(struct mock_call *c)
{
    if (c->k.v[MK_MALFORMED] == 1 && c->sent == 1) {    /* a broken event mid-stream */
        MOCK_ADD_LIT(c->ctx->out, "event: content_block_delta\ndata: {\"type\":");
        send_event(c);
        return;
    }
    event(c, "content_block_delta");
    evbuffer_add_printf(c->ctx->out, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                        "{\"type\":\"text_delta\",\"text\":\"tok%ld \"}}", c->sent);
    send_event(c);
}

void mock_anth_stream_close(struct mock_call *c)
{
    struct evbuffer *out = c->ctx->out;
    int tool = c->k.v[MK_TOOL_CALL] != 0;

    if (c->k.v[MK_MALFORMED] == 2) {    /* as Anthropic ends a stream it cannot finish */
        event(c, "error");
        MOCK_ADD_LIT(out, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                     "\"message\":\"Overloaded\"}}");
        send_event(c);
        return;
    }
    event(c, "content_block_stop");
    MOCK_ADD_LIT(out, "{\"type\":\"content_block_stop\",\"index\":0}");
    send_event(c);
    if (tool) {
        event(c, "content_block_start");
        evbuffer_add_printf(out, "{\"type\":\"content_block_start\",\"index\":1,"
                            "\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_mock_%lu\","
                            "\"name\":\"get_weather\",\"input\":{}}}", c->id);
        send_event(c);
        event(c, "content_block_delta");
        MOCK_ADD_LIT(out, "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
                     "\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}");
        send_event(c);
        event(c, "content_block_delta");
        MOCK_ADD_LIT(out, "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
                     "\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}");
        send_event(c);
        event(c, "content_block_stop");
        MOCK_ADD_LIT(out, "{\"type\":\"content_block_stop\",\"index\":1}");
        send_event(c);
    }
    event(c, "message_delta");
    evbuffer_add_printf(out, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\","
                        "\"stop_sequence\":null},\"usage\":{\"output_tokens\":%ld}}",
                        tool ? "tool_use" : "end_turn", c->sent);
    send_event(c);
    event(c, "message_stop");
    MOCK_ADD_LIT(out, "{\"type\":\"message_stop\"}");
    send_event(c);
}
