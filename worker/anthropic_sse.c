/* Anthropic <-> OpenAI: streams, event by event as they arrive (see
 * anthropic.h).  Each translator holds a partial line (bounded) and the
 * little it must remember between events: ids, which content block is a
 * tool call, the usage so far. */
#include "anthropic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#define LINE_MAX_BYTES (1 << 20)    /* a longer SSE line is a malformed stream */
#define BLOCKS_MAX 256              /* content blocks of one message we map */

typedef int line_fn(void *s, const char *p, size_t n, struct evbuffer *out);

/* Splits data into lines, keeping a partial one in held; -1 from a line, or
 * a line past LINE_MAX_BYTES, stops it. */
static int split(struct evbuffer *held, const char *data, size_t len, line_fn *fn, void *s,
                 struct evbuffer *out)
{
    const char *end = data + len, *nl;
    int rc = 0;

    while (rc == 0 && data < end && (nl = memchr(data, '\n', (size_t)(end - data))) != NULL) {
        size_t n = evbuffer_get_length(held);
        if (n == 0) {
            rc = fn(s, data, (size_t)(nl - data), out);
        } else {
            evbuffer_add(held, data, (size_t)(nl - data));
            n = evbuffer_get_length(held);
            rc = fn(s, (const char *)evbuffer_pullup(held, -1), n, out);
            evbuffer_drain(held, n);
        }
        data = nl + 1;
    }
    if (rc == 0 && data < end) {
        if (evbuffer_get_length(held) + (size_t)(end - data) > LINE_MAX_BYTES)
            return -1;
        evbuffer_add(held, data, (size_t)(end - data));
    }
    return rc;
}

/* The JSON of a "data:" line, or NULL (other lines, [DONE] sets *done). */
static const char *data_of(const char *p, size_t *n, int *done)
{
    if (*n > 0 && p[*n - 1] == '\r')
        (*n)--;
    if (*n < 5 || memcmp(p, "data:", 5) != 0)
        return NULL;
    p += 5;
    *n -= 5;
    while (*n > 0 && *p == ' ') {
        p++;
        (*n)--;
    }
    if (*n == 6 && memcmp(p, "[DONE]", 6) == 0)
        *done = 1;
    return *n > 0 && *p == '{' ? p : NULL;
}

/* ---- Anthropic events -> chat chunks ------------------------------------- */

struct llmr_anth_up {
    struct evbuffer *held;
    llmr_json j;
    int include_usage, failed, got_usage, ntools, stopped;
    int64_t created, prompt, completion, content_events;
    char id[128];
    char model[128];
    signed char tool_of[BLOCKS_MAX];    /* content block -> tool call index, -1 */
    char finish[16];
};

llmr_anth_up *llmr_anth_up_new(int include_usage, int64_t created)
{
    llmr_anth_up *s = calloc(1, sizeof(*s));

    if (s == NULL || (s->held = evbuffer_new()) == NULL) {
        free(s);
        return NULL;
    }
    s->include_usage = include_usage;
    s->created = created;
    memset(s->tool_of, -1, sizeof(s->tool_of));
    strcpy(s->id, "chatcmpl-anthropic");
    return s;
}

void llmr_anth_up_free(llmr_anth_up *s)
{
    if (s == NULL)
        return;
    evbuffer_free(s->held);
    llmr_json_free(&s->j);
    free(s);
}

int llmr_anth_up_usage(const llmr_anth_up *s, int64_t *prompt, int64_t *completion)
{
    if (!s->got_usage)
        return 0;
    *prompt = s->prompt;
    *completion = s->completion;
    return 1;
}

int64_t llmr_anth_up_content_events(const llmr_anth_up *s)
{
    return s->content_events;
}

int llmr_anth_up_failed(const llmr_anth_up *s)
{
    return s->failed;
}

/* Copies string token t's inside into dst (as written), cut to fit. */
static void keep(char *dst, size_t cap, const llmr_json *j, int t)
{
    size_t n = llmr_anth_is(j, t, JSMN_STRING) ? (size_t)(j->toks[t].end - j->toks[t].start) : 0;

    if (n >= cap)
        n = 0;      /* an id too long to keep whole is not kept cut */
    memcpy(dst, j->js + (n ? j->toks[t].start : 0), n);
    dst[n] = '\0';
}

static void chunk_head(llmr_anth_up *s, struct evbuffer *out)
{
    evbuffer_add_printf(out, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\","
                        "\"created\":%lld,\"model\":\"%s\",", s->id, (long long)s->created,
                        s->model);
}

static void chunk_delta(llmr_anth_up *s, struct evbuffer *out)
{
    chunk_head(s, out);
    evbuffer_add_printf(out, "\"choices\":[{\"index\":0,\"delta\":{");
}

static void chunk_end(struct evbuffer *out)
{
    evbuffer_add_printf(out, "},\"finish_reason\":null}]}\n\n");
}

static void read_usage(llmr_anth_up *s, const llmr_json *j, int u)
{
    int64_t v;

    if (u < 0 || j->toks[u].type != JSMN_OBJECT)
        return;
    s->got_usage = 1;
    if (llmr_json_int(j, llmr_json_get(j, u, "input_tokens"), &v) == 0) {
        int64_t cw = 0, cr = 0;
        llmr_json_int(j, llmr_json_get(j, u, "cache_creation_input_tokens"), &cw);
        llmr_json_int(j, llmr_json_get(j, u, "cache_read_input_tokens"), &cr);
        s->prompt = v + (cw > 0 ? cw : 0) + (cr > 0 ? cr : 0);
    }
    if (llmr_json_int(j, llmr_json_get(j, u, "output_tokens"), &v) == 0)
        s->completion = v;
}

static void up_block_start(llmr_anth_up *s, const llmr_json *j, struct evbuffer *out)
{
    int64_t idx = -1;
    int cb = llmr_json_get(j, 0, "content_block");
    int id = llmr_json_get(j, cb, "id"), name = llmr_json_get(j, cb, "name");

    llmr_json_int(j, llmr_json_get(j, 0, "index"), &idx);
    if (!llmr_json_eq(j, llmr_json_get(j, cb, "type"), "tool_use") || idx < 0
        || idx >= BLOCKS_MAX || s->ntools >= 127 || !llmr_anth_is(j, id, JSMN_STRING)
        || !llmr_anth_is(j, name, JSMN_STRING))
        return;
    s->tool_of[idx] = (signed char)s->ntools;
    s->content_events++;
    chunk_delta(s, out);
    evbuffer_add_printf(out, "\"tool_calls\":[{\"index\":%d,\"id\":", s->ntools++);
    llmr_anth_raw(out, j, id);
    evbuffer_add_printf(out, ",\"type\":\"function\",\"function\":{\"name\":");
    llmr_anth_raw(out, j, name);
    evbuffer_add_printf(out, ",\"arguments\":\"\"}}]");
    chunk_end(out);
}

static void up_block_delta(llmr_anth_up *s, const llmr_json *j, struct evbuffer *out)
{
    int64_t idx = -1;
    int d = llmr_json_get(j, 0, "delta"), type = llmr_json_get(j, d, "type");
    int text = llmr_json_get(j, d, "text"), pj = llmr_json_get(j, d, "partial_json");

    llmr_json_int(j, llmr_json_get(j, 0, "index"), &idx);
    if (llmr_json_eq(j, type, "text_delta") && llmr_anth_is(j, text, JSMN_STRING)) {
        s->content_events++;
        chunk_delta(s, out);
        evbuffer_add_printf(out, "\"content\":");
        llmr_anth_raw(out, j, text);
        chunk_end(out);
    } else if (llmr_json_eq(j, type, "input_json_delta") && llmr_anth_is(j, pj, JSMN_STRING)
               && idx >= 0 && idx < BLOCKS_MAX && s->tool_of[idx] >= 0) {
        s->content_events++;
        chunk_delta(s, out);
        evbuffer_add_printf(out, "\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":",
                            s->tool_of[idx]);
        llmr_anth_raw(out, j, pj);
        evbuffer_add(out, "}}]", 3);
        chunk_end(out);
    }   /* thinking and signature deltas have no chat equivalent */
}

static void up_error(llmr_anth_up *s, const llmr_json *j, struct evbuffer *out)
{
    int e = llmr_json_get(j, 0, "error"), type = llmr_json_get(j, e, "type");
    int msg = llmr_json_get(j, e, "message");

    evbuffer_add_printf(out, "data: {\"error\":{\"message\":");
    if (llmr_anth_is(j, msg, JSMN_STRING))
        llmr_anth_raw(out, j, msg);
    else
        evbuffer_add_printf(out, "\"the Anthropic upstream sent an error event\"");
    evbuffer_add_printf(out, ",\"type\":");
    if (llmr_anth_is(j, type, JSMN_STRING))
        llmr_anth_raw(out, j, type);
    else
        evbuffer_add_printf(out, "\"api_error\"");
    evbuffer_add_printf(out, ",\"param\":null,\"code\":null}}\n\n");
    s->failed = 1;
}

static int up_event(llmr_anth_up *s, const char *js, size_t n, struct evbuffer *out)
{
    llmr_json *j = &s->j;
    int type;

    if (llmr_anth_parse(j, js, n) < 0)
        return -1;
    type = llmr_json_get(j, 0, "type");
    if (llmr_json_eq(j, type, "message_start")) {
        int m = llmr_json_get(j, 0, "message");
        keep(s->id, sizeof(s->id), j, llmr_json_get(j, m, "id"));
        keep(s->model, sizeof(s->model), j, llmr_json_get(j, m, "model"));
        read_usage(s, j, llmr_json_get(j, m, "usage"));
        chunk_delta(s, out);
        evbuffer_add_printf(out, "\"role\":\"assistant\",\"content\":\"\"");
        chunk_end(out);
    } else if (llmr_json_eq(j, type, "content_block_start")) {
        up_block_start(s, j, out);
    } else if (llmr_json_eq(j, type, "content_block_delta")) {
        up_block_delta(s, j, out);
    } else if (llmr_json_eq(j, type, "message_delta")) {
        int d = llmr_json_get(j, 0, "delta");
        read_usage(s, j, llmr_json_get(j, 0, "usage"));
        snprintf(s->finish, sizeof(s->finish), "%s",
                 llmr_anth_finish_reason(j, llmr_json_get(j, d, "stop_reason")));
        chunk_head(s, out);
        evbuffer_add_printf(out, "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
                            "\"%s\"}]}\n\n", s->finish);
    } else if (llmr_json_eq(j, type, "message_stop")) {
        if (s->include_usage) {
            chunk_head(s, out);
            evbuffer_add_printf(out, "\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,"
                                "\"completion_tokens\":%lld,\"total_tokens\":%lld}}\n\n",
                                (long long)s->prompt, (long long)s->completion,
                                (long long)(s->prompt + s->completion));
        }
        evbuffer_add_printf(out, "data: [DONE]\n\n");
        s->stopped = 1;
    } else if (llmr_json_eq(j, type, "error")) {
        up_error(s, j, out);
    }   /* ping, content_block_stop, and event types to come: nothing to say */
    return 0;
}

static int up_line(void *arg, const char *p, size_t n, struct evbuffer *out)
{
    int done = 0;
    const char *js = data_of(p, &n, &done);

    return js != NULL ? up_event(arg, js, n, out) : 0;
}

int llmr_anth_up_feed(llmr_anth_up *s, const char *data, size_t len, struct evbuffer *out)
{
    if (s->failed)
        return -1;
    if (split(s->held, data, len, up_line, s, out) < 0 && !s->failed) {
        s->failed = 1;
        evbuffer_add_printf(out, "data: {\"error\":{\"message\":\"the Anthropic upstream "
                            "sent a malformed event\",\"type\":\"api_error\",\"param\":null,"
                            "\"code\":\"upstream_bad_response\"}}\n\n");
    }
    return s->failed ? -1 : 0;
}

/* ---- chat chunks -> Anthropic events ------------------------------------- */

struct llmr_anth_down {
    struct evbuffer *held;
    llmr_json j;
    int started, done, block, open;     /* block: next index; open: a block is open */
    int open_tool;                      /* the tool call index the open block holds, or -1 */
    int64_t input_est, prompt, completion;
    char model[128];
    char stop[16];
};

llmr_anth_down *llmr_anth_down_new(const char *model, int64_t input_est)
{
    llmr_anth_down *s = calloc(1, sizeof(*s));

    if (s == NULL || (s->held = evbuffer_new()) == NULL) {
        free(s);
        return NULL;
    }
    snprintf(s->model, sizeof(s->model), "%s", model);
    s->input_est = input_est;
    s->prompt = -1;
    s->open_tool = -1;
    strcpy(s->stop, "end_turn");
    return s;
}

void llmr_anth_down_free(llmr_anth_down *s)
{
    if (s == NULL)
        return;
    evbuffer_free(s->held);
    llmr_json_free(&s->j);
    free(s);
}

int llmr_anth_down_done(const llmr_anth_down *s)
{
    return s->done;
}

int llmr_anth_down_usage(const llmr_anth_down *s, int64_t *prompt, int64_t *completion)
{
    if (s->prompt < 0)
        return 0;
    *prompt = s->prompt;
    *completion = s->completion;
    return 1;
}

static void ev(struct evbuffer *out, const char *name)
{
    evbuffer_add_printf(out, "event: %s\ndata: {\"type\":\"%s\"", name, name);
}

static void down_start(llmr_anth_down *s, const llmr_json *j, struct evbuffer *out)
{
    int id = llmr_json_get(j, 0, "id");

    if (s->started)
        return;
    s->started = 1;
    ev(out, "message_start");
    evbuffer_add_printf(out, ",\"message\":{\"id\":\"msg_");
    if (llmr_anth_is(j, id, JSMN_STRING) && j->toks[id].end - j->toks[id].start < 200)
        llmr_anth_inner(out, j, id);
    evbuffer_add_printf(out, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    llmr_json_add_str(out, s->model);
    evbuffer_add_printf(out, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                        "\"usage\":{\"input_tokens\":%lld,\"output_tokens\":0}}}\n\n",
                        (long long)s->input_est);
}

static void down_close(llmr_anth_down *s, struct evbuffer *out)
{
    if (!s->open)
        return;
    ev(out, "content_block_stop");
    evbuffer_add_printf(out, ",\"index\":%d}\n\n", s->block - 1);
    s->open = 0;
    s->open_tool = -1;
}

static void down_text(llmr_anth_down *s, const llmr_json *j, int c, struct evbuffer *out)
{
    if (!s->open || s->open_tool >= 0) {
        down_close(s, out);
        ev(out, "content_block_start");
        evbuffer_add_printf(out, ",\"index\":%d,\"content_block\":{\"type\":\"text\","
                            "\"text\":\"\"}}\n\n", s->block++);
        s->open = 1;
    }
    ev(out, "content_block_delta");
    evbuffer_add_printf(out, ",\"index\":%d,\"delta\":{\"type\":\"text_delta\",\"text\":",
                        s->block - 1);
    llmr_anth_raw(out, j, c);
    evbuffer_add(out, "}}\n\n", 4);
}

static void down_tools(llmr_anth_down *s, const llmr_json *j, int calls, struct evbuffer *out)
{
    for (int i = 0, k = calls + 1; i < j->toks[calls].size; i++, k = llmr_json_skip(j, k)) {
        int64_t idx = i;
        int f = llmr_json_get(j, k, "function"), id = llmr_json_get(j, k, "id");
        int name = llmr_json_get(j, f, "name"), args = llmr_json_get(j, f, "arguments");
        llmr_json_int(j, llmr_json_get(j, k, "index"), &idx);
        if (llmr_anth_is(j, name, JSMN_STRING) && (!s->open || s->open_tool != (int)idx)) {
            down_close(s, out);
            ev(out, "content_block_start");
            evbuffer_add_printf(out, ",\"index\":%d,\"content_block\":{\"type\":\"tool_use\","
                                "\"id\":", s->block++);
            if (llmr_anth_is(j, id, JSMN_STRING))
                llmr_anth_raw(out, j, id);
            else
                evbuffer_add_printf(out, "\"toolu_%lld\"", (long long)idx);
            evbuffer_add_printf(out, ",\"name\":");
            llmr_anth_raw(out, j, name);
            evbuffer_add_printf(out, ",\"input\":{}}}\n\n");
            s->open = 1;
            s->open_tool = (int)idx;
        }
        if (s->open && s->open_tool == (int)idx && llmr_anth_is(j, args, JSMN_STRING)
            && j->toks[args].end > j->toks[args].start) {
            ev(out, "content_block_delta");
            evbuffer_add_printf(out, ",\"index\":%d,\"delta\":{\"type\":\"input_json_delta\","
                                "\"partial_json\":", s->block - 1);
            llmr_anth_raw(out, j, args);
            evbuffer_add(out, "}}\n\n", 4);
        }
    }
}

static void down_end(llmr_anth_down *s, struct evbuffer *out)
{
    if (s->done)
        return;
    s->done = 1;
    if (!s->started) {
        llmr_json none = { 0 };
        down_start(s, &none, out);
    }
    down_close(s, out);
    ev(out, "message_delta");
    evbuffer_add_printf(out, ",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":null},"
                        "\"usage\":{\"input_tokens\":%lld,\"output_tokens\":%lld}}\n\n", s->stop,
                        (long long)(s->prompt >= 0 ? s->prompt : s->input_est),
                        (long long)s->completion);
    ev(out, "message_stop");
    evbuffer_add_printf(out, "}\n\n");
}

static int down_event(llmr_anth_down *s, const char *js, size_t n, struct evbuffer *out)
{
    llmr_json *j = &s->j;
    int ch, d, c, calls, u, fr, e;

    if (llmr_anth_parse(j, js, n) < 0)
        return -1;
    if ((e = llmr_json_get(j, 0, "error")) >= 0) {
        struct evbuffer *tmp = evbuffer_new();
        if (tmp == NULL)
            return -1;
        llmr_anth_error_from_openai(js, n, 500, tmp);
        evbuffer_add_printf(out, "event: error\ndata: ");
        evbuffer_add_buffer(out, tmp);
        evbuffer_add(out, "\n\n", 2);
        evbuffer_free(tmp);
        s->done = 1;
        return 0;
    }
    down_start(s, j, out);
    if ((u = llmr_json_get(j, 0, "usage")) >= 0 && j->toks[u].type == JSMN_OBJECT) {
        llmr_json_int(j, llmr_json_get(j, u, "prompt_tokens"), &s->prompt);
        llmr_json_int(j, llmr_json_get(j, u, "completion_tokens"), &s->completion);
    }
    ch = llmr_json_get(j, 0, "choices");
    if (!llmr_anth_is(j, ch, JSMN_ARRAY) || j->toks[ch].size == 0)
        return 0;
    d = llmr_json_get(j, ch + 1, "delta");
    c = llmr_json_get(j, d, "content");
    if (llmr_anth_is(j, c, JSMN_STRING) && j->toks[c].end > j->toks[c].start)
        down_text(s, j, c, out);
    calls = llmr_json_get(j, d, "tool_calls");
    if (llmr_anth_is(j, calls, JSMN_ARRAY))
        down_tools(s, j, calls, out);
    fr = llmr_json_get(j, ch + 1, "finish_reason");
    if (llmr_anth_is(j, fr, JSMN_STRING))
        snprintf(s->stop, sizeof(s->stop), "%s", llmr_anth_stop_reason(j, fr));
    return 0;
}

static int down_line(void *arg, const char *p, size_t n, struct evbuffer *out)
{
    llmr_anth_down *s = arg;
    int done = 0;
    const char *js = data_of(p, &n, &done);

    if (s->done)
        return 0;
    if (done) {
        down_end(s, out);
        return 0;
    }
    return js != NULL ? down_event(s, js, n, out) : 0;
}

int llmr_anth_down_feed(llmr_anth_down *s, const char *data, size_t len, struct evbuffer *out)
{
    if (split(s->held, data, len, down_line, s, out) < 0) {
        if (!s->done)
            evbuffer_add_printf(out, "event: error\ndata: {\"type\":\"error\",\"error\":"
                                "{\"type\":\"api_error\",\"message\":\"the upstream sent a "
                                "malformed chat stream\"}}\n\n");
        s->done = 1;
        return -1;
    }
    return 0;
}

void llmr_anth_down_finish(llmr_anth_down *s, struct evbuffer *out)
{
    down_end(s, out);
}
