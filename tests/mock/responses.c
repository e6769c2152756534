/* The Responses API of the mock: POST …/responses answers a Responses
 * object (id resp_<pid>_<n>, usage input_tokens/output_tokens) or, with
 * "stream": true, the event stream (response.created, output text deltas,
 * response.completed with usage); GET/DELETE …/responses/{id} and GET
 * …/responses/{id}/input_items answer for the ids this mock created and 404
 * otherwise, so a test sees whether a call reached the creating upstream. */
#include "mock.h"

#include <event2/buffer.h>
#include <event2/http.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { R_NONE, R_CREATED, R_DELETED };

static unsigned char *state;        /* [call id]: R_* */
static size_t nstate;

static void mark(unsigned long id, unsigned char s)
{
    if (id >= nstate) {
        size_t n = (id + 1) * 2;
        unsigned char *p = realloc(state, n);
        if (p == NULL)
            return;
        memset(p + nstate, 0, n - nstate);
        state = p;
        nstate = n;
    }
    state[id] = s;
}

void mock_responses_free(void)
{
    free(state);
    state = NULL;
    nstate = 0;
}

static void response_json(const struct mock_call *c, struct evbuffer *out, int done, long n)
{
    long p = c->prompt_tokens;

    evbuffer_add_printf(out, "{\"id\":\"resp_%d_%lu\",\"object\":\"response\",\"created_at\":%ld,"
        "\"status\":\"%s\",\"error\":null,\"incomplete_details\":null,\"instructions\":null,"
        "\"model\":\"%.*s\",\"output\":[", (int)getpid(), c->id, c->created,
        done ? "completed" : "in_progress", (int)c->model_len, c->model);
    if (done) {
        evbuffer_add_printf(out, "{\"type\":\"message\",\"id\":\"msg_%lu\",\"status\":"
            "\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
            "\"text\":\"", c->id);
        if (c->stream)
            for (long i = 0; i < n; i++)
                evbuffer_add_printf(out, "tok%ld ", i);
        else
            MOCK_ADD_LIT(out, "mock reply");
        MOCK_ADD_LIT(out, "\",\"annotations\":[]}]}");
    }
    MOCK_ADD_LIT(out, "],\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",\"tools\":[],");
    if (done)
        evbuffer_add_printf(out, "\"usage\":{\"input_tokens\":%ld,\"output_tokens\":%ld,"
                            "\"total_tokens\":%ld}}", p, n, p + n);
    else
        MOCK_ADD_LIT(out, "\"usage\":null}");
}

void mock_responses_body(struct mock_call *c, struct evbuffer *out)
{
    response_json(c, out, 1, 5);
    mark(c->id, R_CREATED);
}

/* Ends one SSE event (head() wrote its event: line and starts its data: line). */
static void event(struct mock_call *c)
{
    struct evbuffer *out = c->ctx->out;

    MOCK_ADD_LIT(out, "\n\n");
    evhttp_send_reply_chunk(c->req, out);
}

static void head(struct evbuffer *out, const char *type)
{
    evbuffer_add_printf(out, "event: %s\ndata: {\"type\":\"%s\",", type, type);
}

void mock_responses_created(struct mock_call *c)
{
    struct evbuffer *out = c->ctx->out;

    head(out, "response.created");
    MOCK_ADD_LIT(out, "\"sequence_number\":0,\"response\":");
    response_json(c, out, 0, 0);
    MOCK_ADD_LIT(out, "}");
    event(c);
    mark(c->id, R_CREATED);
}

void mock_responses_delta(struct mock_call *c)
{
    struct evbuffer *out = c->ctx->out;

    head(out, "response.output_text.delta");
    evbuffer_add_printf(out, "\"item_id\":\"msg_%lu\",\"output_index\":0,\"content_index\":0,"
                        "\"delta\":\"tok%ld%s\",\"sequence_number\":%ld}", c->id, c->sent,
                        c->k.v[MK_ESCAPED_DELTAS] ? "\\n\\\"\\u00e9 " : " ", c->sent + 1);
    event(c);
}

void mock_responses_completed(struct mock_call *c)
{
    struct evbuffer *out = c->ctx->out;

    head(out, "response.completed");
    evbuffer_add_printf(out, "\"sequence_number\":%ld,\"response\":", c->sent + 1);
    response_json(c, out, 1, c->sent);
    MOCK_ADD_LIT(out, "}");
    event(c);
}

/* resp_<our pid>_<n> with n one of our calls, or 0. */
static unsigned long our_id(const char *id, size_t n)
{
    char want[32];
    int k = snprintf(want, sizeof(want), "resp_%d_", (int)getpid());
    unsigned long v = 0;

    if (n <= (size_t)k || memcmp(id, want, (size_t)k) != 0)
        return 0;
    for (size_t i = (size_t)k; i < n; i++) {
        if (id[i] < '0' || id[i] > '9' || v > 1000000000UL)
            return 0;
        v = v * 10 + (unsigned long)(id[i] - '0');
    }
    return v;
}

static void reply(struct mock_ctx *ctx, struct evhttp_request *req, int status)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    if (ctx->name != NULL)
        evhttp_add_header(evhttp_request_get_output_headers(req), "x-mock-name", ctx->name);
    evhttp_send_reply(req, status, NULL, ctx->out);
    mock_stats_status(&ctx->stats, status);
    mock_stats_done(&ctx->stats);
}

int mock_responses_by_id(struct mock_ctx *ctx, struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const char *at = strstr(path, "/responses/"), *id, *slash;
    size_t n;
    unsigned long seq;
    int items;

    if (at == NULL)
        return 0;
    id = at + 11;
    slash = strchr(id, '/');
    n = slash != NULL ? (size_t)(slash - id) : strlen(id);
    items = slash != NULL && strcmp(slash, "/input_items") == 0;
    if ((slash != NULL && !items) || (m != EVHTTP_REQ_GET && (m != EVHTTP_REQ_DELETE || items)))
        return 0;
    seq = our_id(id, n);
    if (seq == 0 || seq >= nstate || state[seq] != R_CREATED) {
        evbuffer_add_printf(ctx->out, "{\"error\":{\"message\":\"Response with id '%.*s' not "
                            "found.\",\"type\":\"invalid_request_error\",\"param\":null,"
                            "\"code\":null}}", (int)(n > 64 ? 64 : n), id);
        reply(ctx, req, 404);
        return 1;
    }
    if (m == EVHTTP_REQ_DELETE) {
        mark(seq, R_DELETED);
        evbuffer_add_printf(ctx->out, "{\"id\":\"%.*s\",\"object\":\"response\",\"deleted\":"
                            "true}", (int)n, id);
    } else if (items) {
        evbuffer_add_printf(ctx->out, "{\"object\":\"list\",\"data\":[{\"type\":\"message\","
                            "\"id\":\"msg_in_%lu\",\"status\":\"completed\",\"role\":\"user\","
                            "\"content\":[{\"type\":\"input_text\",\"text\":\"hello\"}]}],"
                            "\"first_id\":\"msg_in_%lu\",\"last_id\":\"msg_in_%lu\","
                            "\"has_more\":false}", seq, seq, seq);
    } else {
        struct mock_call c = { .id = seq, .model = "mock-model", .model_len = 10 };
        response_json(&c, ctx->out, 1, 5);
    }
    reply(ctx, req, 200);
    return 1;
}
