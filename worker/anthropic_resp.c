/* Anthropic <-> OpenAI: non-streamed answers, error bodies, and the JSON
 * helpers the other translation files share (see anthropic.h). */
#include "anthropic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#define TOKENS_MAX(len) ((int)((len) / 2) + 64)

/* ---- helpers -------------------------------------------------------------- */

int llmr_anth_parse(llmr_json *j, const char *js, size_t len)
{
    if (js == NULL || len == 0 || len > (64u << 20))
        return -1;
    if (llmr_json_parse(j, js, len, TOKENS_MAX(len)) < 0 || j->toks[0].type != JSMN_OBJECT)
        return -1;
    return 0;
}

void llmr_anth_raw(struct evbuffer *b, const llmr_json *j, int t)
{
    int str = j->toks[t].type == JSMN_STRING;

    evbuffer_add(b, j->js + j->toks[t].start - str,
                 (size_t)(j->toks[t].end - j->toks[t].start + 2 * str));
}

void llmr_anth_inner(struct evbuffer *b, const llmr_json *j, int t)
{
    evbuffer_add(b, j->js + j->toks[t].start, (size_t)(j->toks[t].end - j->toks[t].start));
}

int llmr_anth_is(const llmr_json *j, int t, int type)
{
    return t >= 0 && t < j->ntoks && (int)j->toks[t].type == type;
}

void llmr_anth_args_object(struct evbuffer *b, const llmr_json *j, int t)
{
    size_t n = llmr_anth_is(j, t, JSMN_STRING) ? (size_t)(j->toks[t].end - j->toks[t].start) : 0;
    char *buf = n > 0 ? malloc(n + 1) : NULL;
    llmr_json in = { 0 };
    int len;

    if (buf != NULL && (len = llmr_json_unescape(buf, n + 1, j->js + j->toks[t].start, n)) > 0
        && llmr_anth_parse(&in, buf, (size_t)len) == 0)
        evbuffer_add(b, buf, (size_t)len);
    else
        evbuffer_add(b, "{}", 2);
    llmr_json_free(&in);
    free(buf);
}

void llmr_anth_as_string(struct evbuffer *b, const llmr_json *j, int t)
{
    int str = j->toks[t].type == JSMN_STRING;
    size_t n = (size_t)(j->toks[t].end - j->toks[t].start + 2 * str);
    char *tmp = malloc(n + 1);

    if (tmp == NULL) {
        evbuffer_add(b, "\"{}\"", 4);
        return;
    }
    memcpy(tmp, j->js + j->toks[t].start - str, n);
    tmp[n] = '\0';
    llmr_json_add_str(b, tmp);      /* JSON text has no NUL: strlen is its length */
    free(tmp);
}

static int fail(char *err, size_t cap, const char *why)
{
    snprintf(err, cap, "%s", why);
    return -1;
}

/* ---- stop reasons ------------------------------------------------------- */

const char *llmr_anth_finish_reason(const llmr_json *j, int tok)
{
    if (!llmr_anth_is(j, tok, JSMN_STRING))
        return "stop";
    if (llmr_json_eq(j, tok, "max_tokens") || llmr_json_eq(j, tok, "model_context_window_exceeded"))
        return "length";
    if (llmr_json_eq(j, tok, "tool_use"))
        return "tool_calls";
    if (llmr_json_eq(j, tok, "refusal"))
        return "content_filter";
    return "stop";      /* end_turn, stop_sequence, pause_turn */
}

const char *llmr_anth_stop_reason(const llmr_json *j, int tok)
{
    if (!llmr_anth_is(j, tok, JSMN_STRING))
        return "end_turn";
    if (llmr_json_eq(j, tok, "length"))
        return "max_tokens";
    if (llmr_json_eq(j, tok, "tool_calls") || llmr_json_eq(j, tok, "function_call"))
        return "tool_use";
    if (llmr_json_eq(j, tok, "content_filter"))
        return "refusal";
    return "end_turn";
}

/* ---- Messages answer -> chat.completion --------------------------------- */

static int64_t num(const llmr_json *j, int obj, const char *key)
{
    int64_t v = 0;

    if (obj >= 0)
        llmr_json_int(j, llmr_json_get(j, obj, key), &v);
    return v < 0 ? 0 : v;
}

/* OpenAI's usage with Anthropic's counts: the prompt is every input token
 * (cached reads and cache writes included), the cached ones also in
 * prompt_tokens_details, and Anthropic's own two fields kept as they are. */
static void chat_usage(struct evbuffer *b, const llmr_json *j, int u)
{
    int64_t in = num(j, u, "input_tokens"), out = num(j, u, "output_tokens");
    int64_t cw = num(j, u, "cache_creation_input_tokens");
    int64_t cr = num(j, u, "cache_read_input_tokens");

    evbuffer_add_printf(b, "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                        "\"total_tokens\":%lld,\"prompt_tokens_details\":{\"cached_tokens\":%lld},"
                        "\"cache_creation_input_tokens\":%lld,\"cache_read_input_tokens\":%lld}",
                        (long long)(in + cw + cr), (long long)out,
                        (long long)(in + cw + cr + out), (long long)cr, (long long)cw,
                        (long long)cr);
}

static void tool_calls(struct evbuffer *b, const llmr_json *j, int content)
{
    int k = content + 1, n = 0;

    for (int i = 0; i < j->toks[content].size; i++, k = llmr_json_skip(j, k)) {
        int type = llmr_json_get(j, k, "type"), id = llmr_json_get(j, k, "id");
        int name = llmr_json_get(j, k, "name"), input = llmr_json_get(j, k, "input");
        if (!llmr_json_eq(j, type, "tool_use") || !llmr_anth_is(j, id, JSMN_STRING)
            || !llmr_anth_is(j, name, JSMN_STRING))
            continue;
        evbuffer_add_printf(b, "%s{\"id\":", n++ ? "," : ",\"tool_calls\":[");
        llmr_anth_raw(b, j, id);
        evbuffer_add_printf(b, ",\"type\":\"function\",\"function\":{\"name\":");
        llmr_anth_raw(b, j, name);
        evbuffer_add_printf(b, ",\"arguments\":");
        if (input >= 0)
            llmr_anth_as_string(b, j, input);
        else
            evbuffer_add(b, "\"{}\"", 4);
        evbuffer_add(b, "}}", 2);
    }
    if (n > 0)
        evbuffer_add(b, "]", 1);
}

int llmr_anth_message_to_chat(const char *js, size_t len, int64_t created,
                              struct evbuffer *out, char *err, size_t errcap)
{
    llmr_json j = { 0 };
    int id, model, content, k, texts = 0, rc = -1;

    if (llmr_anth_parse(&j, js, len) < 0) {
        fail(err, errcap, "the Anthropic answer is not one JSON object");
        goto done;
    }
    id = llmr_json_get(&j, 0, "id");
    model = llmr_json_get(&j, 0, "model");
    content = llmr_json_get(&j, 0, "content");
    if (!llmr_json_eq(&j, llmr_json_get(&j, 0, "type"), "message")
        || !llmr_anth_is(&j, content, JSMN_ARRAY) || !llmr_anth_is(&j, id, JSMN_STRING)) {
        fail(err, errcap, "the Anthropic answer is not a message (type, id or content missing)");
        goto done;
    }
    evbuffer_add_printf(out, "{\"id\":");
    llmr_anth_raw(out, &j, id);
    evbuffer_add_printf(out, ",\"object\":\"chat.completion\",\"created\":%lld,\"model\":",
                        (long long)created);
    if (llmr_anth_is(&j, model, JSMN_STRING))
        llmr_anth_raw(out, &j, model);
    else
        evbuffer_add(out, "\"\"", 2);
    evbuffer_add_printf(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                        "\"content\":");
    k = content + 1;
    for (int i = 0; i < j.toks[content].size; i++, k = llmr_json_skip(&j, k)) {
        int text = llmr_json_get(&j, k, "text");
        if (llmr_json_eq(&j, llmr_json_get(&j, k, "type"), "text")
            && llmr_anth_is(&j, text, JSMN_STRING)) {
            if (texts++ == 0)
                evbuffer_add(out, "\"", 1);
            llmr_anth_inner(out, &j, text);
        }
    }
    evbuffer_add_printf(out, texts ? "\"" : "null");
    tool_calls(out, &j, content);
    evbuffer_add_printf(out, "},\"finish_reason\":\"%s\",\"logprobs\":null}],",
                        llmr_anth_finish_reason(&j, llmr_json_get(&j, 0, "stop_reason")));
    chat_usage(out, &j, llmr_json_get(&j, 0, "usage"));
    evbuffer_add(out, "}", 1);
    rc = 0;
done:
    llmr_json_free(&j);
    return rc;
}

/* ---- chat.completion -> Messages answer --------------------------------- */

static void message_tool_uses(struct evbuffer *b, const llmr_json *j, int calls, int *blocks)
{
    int k = calls + 1;

    for (int i = 0; i < j->toks[calls].size; i++, k = llmr_json_skip(j, k)) {
        int id = llmr_json_get(j, k, "id"), f = llmr_json_get(j, k, "function");
        int name = f >= 0 ? llmr_json_get(j, f, "name") : -1;
        if (!llmr_anth_is(j, name, JSMN_STRING))
            continue;
        evbuffer_add_printf(b, "%s{\"type\":\"tool_use\",\"id\":", (*blocks)++ ? "," : "");
        if (llmr_anth_is(j, id, JSMN_STRING))
            llmr_anth_raw(b, j, id);
        else
            evbuffer_add_printf(b, "\"toolu_%d\"", i);
        evbuffer_add_printf(b, ",\"name\":");
        llmr_anth_raw(b, j, name);
        evbuffer_add_printf(b, ",\"input\":");
        llmr_anth_args_object(b, j, llmr_json_get(j, f, "arguments"));
        evbuffer_add(b, "}", 1);
    }
}

int llmr_anth_chat_to_message(const char *js, size_t len, struct evbuffer *out, char *err,
                              size_t errcap)
{
    llmr_json j = { 0 };
    int id, model, choices, msg, content, calls, usage, blocks = 0, rc = -1;
    int64_t cached = 0;

    if (llmr_anth_parse(&j, js, len) < 0) {
        fail(err, errcap, "the upstream's chat answer is not one JSON object");
        goto done;
    }
    id = llmr_json_get(&j, 0, "id");
    model = llmr_json_get(&j, 0, "model");
    choices = llmr_json_get(&j, 0, "choices");
    if (!llmr_anth_is(&j, choices, JSMN_ARRAY) || j.toks[choices].size < 1
        || !llmr_anth_is(&j, msg = llmr_json_get(&j, choices + 1, "message"), JSMN_OBJECT)) {
        fail(err, errcap, "the upstream's chat answer has no choices[0].message");
        goto done;
    }
    evbuffer_add_printf(out, "{\"id\":\"msg_");
    if (llmr_anth_is(&j, id, JSMN_STRING))
        llmr_anth_inner(out, &j, id);
    evbuffer_add_printf(out, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    if (llmr_anth_is(&j, model, JSMN_STRING))
        llmr_anth_raw(out, &j, model);
    else
        evbuffer_add(out, "\"\"", 2);
    evbuffer_add_printf(out, ",\"content\":[");
    content = llmr_json_get(&j, msg, "content");
    if (llmr_anth_is(&j, content, JSMN_STRING) && j.toks[content].end > j.toks[content].start) {
        evbuffer_add_printf(out, "{\"type\":\"text\",\"text\":");
        llmr_anth_raw(out, &j, content);
        evbuffer_add(out, "}", 1);
        blocks++;
    }
    calls = llmr_json_get(&j, msg, "tool_calls");
    if (llmr_anth_is(&j, calls, JSMN_ARRAY))
        message_tool_uses(out, &j, calls, &blocks);
    usage = llmr_json_get(&j, 0, "usage");
    if (usage >= 0) {
        int d = llmr_json_get(&j, usage, "prompt_tokens_details");
        cached = num(&j, d, "cached_tokens");
    }
    if (cached > num(&j, usage, "prompt_tokens"))   /* an upstream's nonsense: no negative */
        cached = num(&j, usage, "prompt_tokens");
    evbuffer_add_printf(out, "],\"stop_reason\":\"%s\",\"stop_sequence\":null,\"usage\":"
                        "{\"input_tokens\":%lld,\"output_tokens\":%lld,"
                        "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":%lld}}",
                        llmr_anth_stop_reason(&j, llmr_json_get(&j, choices + 1,
                                                                "finish_reason")),
                        (long long)(num(&j, usage, "prompt_tokens") - cached),
                        (long long)num(&j, usage, "completion_tokens"), (long long)cached);
    rc = 0;
done:
    llmr_json_free(&j);
    return rc;
}

/* ---- errors ---------------------------------------------------------------- */

const char *llmr_anth_error_type(int status)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    case 504: return "timeout_error";
    default:  return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

void llmr_anth_error_json(struct evbuffer *out, int status, const char *msg)
{
    evbuffer_add_printf(out, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":",
                        llmr_anth_error_type(status));
    llmr_json_add_str(out, msg);
    evbuffer_add(out, "}}", 2);
}

size_t llmr_anth_error_buf(char *out, size_t cap, int status, const char *msg)
{
    char esc[384];
    int n;

    llmr_json_escape(esc, sizeof(esc), msg, strlen(msg));
    n = snprintf(out, cap, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s\"}}",
                 llmr_anth_error_type(status), esc);
    if (n < 0 || (size_t)n >= cap)
        n = snprintf(out, cap, "{\"type\":\"error\",\"error\":{\"type\":\"%s\","
                     "\"message\":\"error\"}}", llmr_anth_error_type(status));
    return n < 0 ? 0 : (size_t)n;
}

/* The member `key` of the object at `obj` when it is a string, else -1. */
static int str_member(const llmr_json *j, int obj, const char *key)
{
    int t = obj >= 0 ? llmr_json_get(j, obj, key) : -1;

    return llmr_anth_is(j, t, JSMN_STRING) ? t : -1;
}

void llmr_anth_error_to_openai(const char *js, size_t len, int status, struct evbuffer *out)
{
    llmr_json j = { 0 };
    int e = -1, type = -1, msg = -1;
    const char *code = NULL;

    if (llmr_anth_parse(&j, js, len) == 0 && (e = llmr_json_get(&j, 0, "error")) >= 0
        && j.toks[e].type == JSMN_OBJECT) {
        type = str_member(&j, e, "type");
        msg = str_member(&j, e, "message");
    }
    evbuffer_add_printf(out, "{\"error\":{\"message\":");
    if (msg >= 0)
        llmr_anth_raw(out, &j, msg);
    else
        evbuffer_add_printf(out, "\"the Anthropic upstream answered HTTP %d\"", status);
    evbuffer_add_printf(out, ",\"type\":");
    if (type >= 0)
        llmr_anth_raw(out, &j, type);
    else
        evbuffer_add_printf(out, "\"%s\"", llmr_anth_error_type(status));
    /* The words OpenAI's clients and the context-window fallbacks key on. */
    if (msg >= 0 && status == 400) {
        char m[64];
        size_t n = (size_t)(j.toks[msg].end - j.toks[msg].start);
        snprintf(m, sizeof(m), "%.*s", (int)(n < 40 ? n : 40), j.js + j.toks[msg].start);
        if (strncmp(m, "prompt is too long", 18) == 0 || strstr(m, "context window") != NULL)
            code = "context_length_exceeded";
    }
    if (code == NULL && status == 529)
        code = "overloaded";
    evbuffer_add_printf(out, ",\"param\":null,\"code\":");
    if (code != NULL)
        evbuffer_add_printf(out, "\"%s\"", code);
    else if (type >= 0)
        llmr_anth_raw(out, &j, type);
    else
        evbuffer_add(out, "null", 4);
    evbuffer_add(out, "}}", 2);
    llmr_json_free(&j);
}

void llmr_anth_error_from_openai(const char *js, size_t len, int status, struct evbuffer *out)
{
    llmr_json j = { 0 };
    int e = -1, msg = -1;

    if (llmr_anth_parse(&j, js, len) == 0 && (e = llmr_json_get(&j, 0, "error")) >= 0) {
        msg = j.toks[e].type == JSMN_OBJECT ? str_member(&j, e, "message")
            : llmr_anth_is(&j, e, JSMN_STRING) ? e : -1;
    }
    evbuffer_add_printf(out, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":",
                        llmr_anth_error_type(status));
    if (msg >= 0)
        llmr_anth_raw(out, &j, msg);
    else
        evbuffer_add_printf(out, "\"the upstream answered HTTP %d\"", status);
    evbuffer_add(out, "}}", 2);
    llmr_json_free(&j);
}
