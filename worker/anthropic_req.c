/* Anthropic <-> OpenAI: request bodies (see anthropic.h).  Only the fields
 * each API defines are carried over; llmroute's own controls and anything
 * the other side has no word for are left behind. */
#include "anthropic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

typedef struct xl {
    llmr_json j;
    struct evbuffer *out;
    char *err;
    size_t errcap;
} xl;

static int bad(xl *x, const char *why)
{
    snprintf(x->err, x->errcap, "%s", why);
    return -1;
}

static int get(const xl *x, int obj, const char *key)
{
    return obj >= 0 ? llmr_json_get(&x->j, obj, key) : -1;
}

static int is(const xl *x, int t, int type)
{
    return llmr_anth_is(&x->j, t, type);
}

static int eq(const xl *x, int t, const char *s)
{
    return is(x, t, JSMN_STRING) && llmr_json_eq(&x->j, t, s);
}

static void raw(xl *x, int t)
{
    llmr_anth_raw(x->out, &x->j, t);
}

/* `"key":<value of t>` after a comma, when t exists. */
static void copy_as(xl *x, int t, const char *key)
{
    if (t < 0)
        return;
    evbuffer_add_printf(x->out, ",\"%s\":", key);
    raw(x, t);
}

/* ---- chat -> messages ---------------------------------------------------- */

/* Appends the text of an OpenAI content value (a string, or parts whose
 * text ones count) as the inside of a JSON string. */
static void content_text(xl *x, int c)
{
    if (is(x, c, JSMN_STRING)) {
        llmr_anth_inner(x->out, &x->j, c);
        return;
    }
    if (!is(x, c, JSMN_ARRAY))
        return;
    for (int i = 0, k = c + 1; i < x->j.toks[c].size; i++, k = llmr_json_skip(&x->j, k)) {
        int t = get(x, k, "text");
        if (is(x, t, JSMN_STRING))
            llmr_anth_inner(x->out, &x->j, t);
    }
}

/* An image_url part -> an image block: a data: URL becomes a base64
 * source, any other URL a url source. */
static int image_block(xl *x, int part)
{
    int iu = get(x, part, "image_url"), u = is(x, iu, JSMN_OBJECT) ? get(x, iu, "url") : iu;
    size_t n;
    char *url, *semi, *comma;
    int len;

    if (!is(x, u, JSMN_STRING))
        return bad(x, "messages: an image_url part needs image_url.url");
    n = (size_t)(x->j.toks[u].end - x->j.toks[u].start);
    if ((url = malloc(n + 1)) == NULL)
        return bad(x, "out of memory");
    len = llmr_json_unescape(url, n + 1, x->j.js + x->j.toks[u].start, n);
    if (len < 0) {
        free(url);
        return bad(x, "messages: image_url.url is not a valid string");
    }
    url[len] = '\0';
    if (strncmp(url, "data:", 5) == 0) {
        semi = strstr(url, ";base64,");
        comma = semi != NULL ? semi + 8 : NULL;
        if (comma == NULL) {
            free(url);
            return bad(x, "messages: an image data: URL must be base64 (data:<type>;base64,...)");
        }
        *semi = '\0';
        evbuffer_add_printf(x->out, "{\"type\":\"image\",\"source\":{\"type\":\"base64\","
                            "\"media_type\":");
        llmr_json_add_str(x->out, url + 5);
        evbuffer_add_printf(x->out, ",\"data\":");
        llmr_json_add_str(x->out, comma);
    } else {
        evbuffer_add_printf(x->out, "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":");
        llmr_json_add_str(x->out, url);
    }
    evbuffer_add(x->out, "}}", 2);
    free(url);
    return 0;
}

/* An OpenAI content value -> Anthropic's content: a string stays one; parts
 * become text and image blocks. */
static int user_content(xl *x, int c)
{
    int n = 0;

    if (is(x, c, JSMN_STRING)) {
        raw(x, c);
        return 0;
    }
    if (!is(x, c, JSMN_ARRAY))
        return bad(x, "messages: content must be a string or an array of parts");
    evbuffer_add(x->out, "[", 1);
    for (int i = 0, k = c + 1; i < x->j.toks[c].size; i++, k = llmr_json_skip(&x->j, k)) {
        int type = get(x, k, "type"), text = get(x, k, "text");
        if (eq(x, type, "text") && is(x, text, JSMN_STRING)) {
            evbuffer_add_printf(x->out, "%s{\"type\":\"text\",\"text\":", n++ ? "," : "");
            raw(x, text);
            evbuffer_add(x->out, "}", 1);
        } else if (eq(x, type, "image_url")) {
            evbuffer_add(x->out, ",", n++ ? 1 : 0);
            if (image_block(x, k) < 0)
                return -1;
        } else {
            return bad(x, "messages: a content part must be of type text or image_url");
        }
    }
    evbuffer_add(x->out, "]", 1);
    return 0;
}

static int assistant_message(xl *x, int m)
{
    int c = get(x, m, "content"), calls = get(x, m, "tool_calls"), n = 0;

    evbuffer_add_printf(x->out, "{\"role\":\"assistant\",\"content\":[");
    if ((is(x, c, JSMN_STRING) && x->j.toks[c].end > x->j.toks[c].start)
        || (is(x, c, JSMN_ARRAY) && x->j.toks[c].size > 0)) {
        evbuffer_add_printf(x->out, "{\"type\":\"text\",\"text\":\"");
        content_text(x, c);
        evbuffer_add(x->out, "\"}", 2);
        n++;
    }
    for (int i = 0, k = calls + 1; is(x, calls, JSMN_ARRAY) && i < x->j.toks[calls].size;
         i++, k = llmr_json_skip(&x->j, k)) {
        int id = get(x, k, "id"), f = get(x, k, "function"), name = get(x, f, "name");
        if (!is(x, id, JSMN_STRING) || !is(x, name, JSMN_STRING))
            return bad(x, "messages: a tool call needs an id and function.name");
        evbuffer_add_printf(x->out, "%s{\"type\":\"tool_use\",\"id\":", n++ ? "," : "");
        raw(x, id);
        evbuffer_add_printf(x->out, ",\"name\":");
        raw(x, name);
        evbuffer_add_printf(x->out, ",\"input\":");
        llmr_anth_args_object(x->out, &x->j, get(x, f, "arguments"));
        evbuffer_add(x->out, "}", 1);
    }
    if (n == 0)     /* Anthropic refuses an empty assistant turn */
        evbuffer_add_printf(x->out, "{\"type\":\"text\",\"text\":\" \"}");
    evbuffer_add(x->out, "]}", 2);
    return 0;
}

/* A tool message -> a user turn with one tool_result (Anthropic merges
 * consecutive user turns itself). */
static int tool_message(xl *x, int m)
{
    int id = get(x, m, "tool_call_id"), c = get(x, m, "content");

    if (!is(x, id, JSMN_STRING))
        return bad(x, "messages: a tool message needs tool_call_id");
    evbuffer_add_printf(x->out, "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                        "\"tool_use_id\":");
    raw(x, id);
    evbuffer_add_printf(x->out, ",\"content\":\"");
    content_text(x, c);
    evbuffer_add(x->out, "\"}]}", 4);
    return 0;
}

/* System and developer messages -> the top-level system string. */
static void system_text(xl *x, int msgs, int rf)
{
    int n = 0;

    for (int i = 0, k = msgs + 1; i < x->j.toks[msgs].size; i++, k = llmr_json_skip(&x->j, k)) {
        int role = get(x, k, "role");
        if (!eq(x, role, "system") && !eq(x, role, "developer"))
            continue;
        evbuffer_add_printf(x->out, n++ ? "\\n\\n" : ",\"system\":\"");
        content_text(x, get(x, k, "content"));
    }
    /* response_format: Anthropic has no JSON mode; it is asked for in words,
     * with the schema when one is given. */
    if (eq(x, get(x, rf, "type"), "json_object") || eq(x, get(x, rf, "type"), "json_schema")) {
        int schema = get(x, get(x, rf, "json_schema"), "schema");
        evbuffer_add_printf(x->out, "%sRespond with one JSON object only, no other text.",
                            n++ ? "\\n\\n" : ",\"system\":\"");
        if (schema >= 0) {
            struct evbuffer *tmp = evbuffer_new();
            if (tmp != NULL) {
                evbuffer_add_printf(x->out, " It must match this JSON schema: ");
                llmr_anth_as_string(tmp, &x->j, schema);
                /* the inside of that string */
                size_t len = evbuffer_get_length(tmp);
                const char *p = (const char *)evbuffer_pullup(tmp, -1);
                evbuffer_add(x->out, p + 1, len - 2);
                evbuffer_free(tmp);
            }
        }
    }
    if (n > 0)
        evbuffer_add(x->out, "\"", 1);
}

static int chat_messages(xl *x, int msgs)
{
    int n = 0;

    evbuffer_add_printf(x->out, ",\"messages\":[");
    for (int i = 0, k = msgs + 1; i < x->j.toks[msgs].size; i++, k = llmr_json_skip(&x->j, k)) {
        int role = get(x, k, "role"), rc = 0;
        if (!is(x, k, JSMN_OBJECT) || !is(x, role, JSMN_STRING))
            return bad(x, "messages: each message must be an object with a role");
        if (eq(x, role, "system") || eq(x, role, "developer"))
            continue;
        evbuffer_add(x->out, ",", n++ ? 1 : 0);
        if (eq(x, role, "user")) {
            evbuffer_add_printf(x->out, "{\"role\":\"user\",\"content\":");
            rc = user_content(x, get(x, k, "content"));
            evbuffer_add(x->out, "}", 1);
        } else if (eq(x, role, "assistant")) {
            rc = assistant_message(x, k);
        } else if (eq(x, role, "tool")) {
            rc = tool_message(x, k);
        } else {
            return bad(x, "messages: role must be system, developer, user, assistant or tool");
        }
        if (rc < 0)
            return -1;
    }
    if (n == 0)
        return bad(x, "messages: at least one user message is required");
    evbuffer_add(x->out, "]", 1);
    return 0;
}

/* The tools Anthropic can call; returns how many were written. */
static int chat_tools(xl *x, int tools)
{
    int n = 0;

    if (!is(x, tools, JSMN_ARRAY) || x->j.toks[tools].size == 0)
        return 0;
    evbuffer_add_printf(x->out, ",\"tools\":[");
    for (int i = 0, k = tools + 1; i < x->j.toks[tools].size; i++, k = llmr_json_skip(&x->j, k)) {
        int f = get(x, k, "function"), name = get(x, f, "name");
        int d = get(x, f, "description"), p = get(x, f, "parameters");
        if (!is(x, name, JSMN_STRING))
            continue;
        evbuffer_add_printf(x->out, "%s{\"name\":", n++ ? "," : "");
        raw(x, name);
        copy_as(x, is(x, d, JSMN_STRING) ? d : -1, "description");
        evbuffer_add_printf(x->out, ",\"input_schema\":");
        if (is(x, p, JSMN_OBJECT))
            raw(x, p);
        else
            evbuffer_add_printf(x->out, "{\"type\":\"object\",\"properties\":{}}");
        evbuffer_add(x->out, "}", 1);
    }
    evbuffer_add(x->out, "]", 1);
    return n;
}

static void chat_tool_choice(xl *x, int tc, int ptc)
{
    int name = get(x, get(x, tc, "function"), "name");
    const char *dis = is(x, ptc, JSMN_PRIMITIVE) && x->j.js[x->j.toks[ptc].start] == 'f'
                      ? ",\"disable_parallel_tool_use\":true" : "";

    if (eq(x, tc, "none"))
        evbuffer_add_printf(x->out, ",\"tool_choice\":{\"type\":\"none\"}");
    else if (eq(x, tc, "required"))
        evbuffer_add_printf(x->out, ",\"tool_choice\":{\"type\":\"any\"%s}", dis);
    else if (is(x, name, JSMN_STRING)) {
        evbuffer_add_printf(x->out, ",\"tool_choice\":{\"type\":\"tool\",\"name\":");
        raw(x, name);
        evbuffer_add_printf(x->out, "%s}", dis);
    } else if (tc >= 0 || *dis)
        evbuffer_add_printf(x->out, ",\"tool_choice\":{\"type\":\"auto\"%s}", dis);
}

static int is_null(const xl *x, int t)
{
    return is(x, t, JSMN_PRIMITIVE) && x->j.js[x->j.toks[t].start] == 'n';
}

/* What the Messages API cannot give is refused, not silently dropped: one
 * choice only (n), no log probabilities.  0, or -1 with the reason. */
static int chat_unsupported(xl *x)
{
    int n = get(x, 0, "n"), lp = get(x, 0, "logprobs"), top = get(x, 0, "top_logprobs");
    int64_t v;

    if (n >= 0 && !is_null(x, n) && (llmr_json_int(&x->j, n, &v) < 0 || v != 1))
        return bad(x, "n: a Claude (anthropic/) deployment gives one choice; "
                   "n must be 1 or absent");
    if (llmr_json_is_true(&x->j, lp) || (top >= 0 && !is_null(x, top)))
        return bad(x, "logprobs: a Claude (anthropic/) deployment gives no log probabilities; "
                   "logprobs and top_logprobs must be false or absent");
    return 0;
}

int llmr_anth_chat_to_messages(const char *js, size_t len, const char *model,
                               struct evbuffer *out, int *include_usage, char *err,
                               size_t errcap)
{
    xl x = { .out = out, .err = err, .errcap = errcap };
    int msgs, mt, stop, rc = -1;

    *include_usage = 0;
    if (llmr_anth_parse(&x.j, js, len) < 0) {
        bad(&x, "the body is not one JSON object");
        goto done;
    }
    msgs = get(&x, 0, "messages");
    if (!is(&x, msgs, JSMN_ARRAY)) {
        bad(&x, "messages must be an array");
        goto done;
    }
    if (chat_unsupported(&x) < 0)
        goto done;
    evbuffer_add_printf(out, "{\"model\":");
    llmr_json_add_str(out, model);
    mt = get(&x, 0, "max_completion_tokens");
    if (!is(&x, mt, JSMN_PRIMITIVE) || x.j.js[x.j.toks[mt].start] == 'n')
        mt = get(&x, 0, "max_tokens");
    if (is(&x, mt, JSMN_PRIMITIVE) && x.j.js[x.j.toks[mt].start] != 'n')
        copy_as(&x, mt, "max_tokens");
    else
        evbuffer_add_printf(out, ",\"max_tokens\":%d", LLMR_ANTH_DEFAULT_MAX_TOKENS);
    system_text(&x, msgs, get(&x, 0, "response_format"));
    if (chat_messages(&x, msgs) < 0)
        goto done;
    stop = get(&x, 0, "stop");
    if (is(&x, stop, JSMN_STRING)) {
        evbuffer_add_printf(out, ",\"stop_sequences\":[");
        raw(&x, stop);
        evbuffer_add(out, "]", 1);
    } else if (is(&x, stop, JSMN_ARRAY)) {
        copy_as(&x, stop, "stop_sequences");
    }
    copy_as(&x, get(&x, 0, "temperature"), "temperature");
    copy_as(&x, get(&x, 0, "top_p"), "top_p");
    copy_as(&x, get(&x, 0, "stream"), "stream");
    /* Anthropic refuses a tool_choice without tools (parallel_tool_calls
     * alone would make one): it goes only with them */
    if (chat_tools(&x, get(&x, 0, "tools")) > 0)
        chat_tool_choice(&x, get(&x, 0, "tool_choice"), get(&x, 0, "parallel_tool_calls"));
    if (is(&x, get(&x, 0, "user"), JSMN_STRING)) {
        evbuffer_add_printf(out, ",\"metadata\":{\"user_id\":");
        raw(&x, get(&x, 0, "user"));
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "}", 1);
    *include_usage = llmr_json_is_true(&x.j, get(&x, get(&x, 0, "stream_options"),
                                                 "include_usage"));
    rc = 0;
done:
    llmr_json_free(&x.j);
    return rc;
}

/* ---- messages -> chat ---------------------------------------------------- */

/* Anthropic's content (a string, or blocks) as OpenAI parts or a string. */
static int blocks_to_parts(xl *x, int c)
{
    int n = 0;

    if (is(x, c, JSMN_STRING)) {
        raw(x, c);
        return 0;
    }
    evbuffer_add(x->out, "[", 1);
    for (int i = 0, k = c + 1; i < x->j.toks[c].size; i++, k = llmr_json_skip(&x->j, k)) {
        int type = get(x, k, "type"), src = get(x, k, "source");
        if (eq(x, type, "text") && is(x, get(x, k, "text"), JSMN_STRING)) {
            evbuffer_add_printf(x->out, "%s{\"type\":\"text\",\"text\":", n++ ? "," : "");
            raw(x, get(x, k, "text"));
            evbuffer_add(x->out, "}", 1);
        } else if (eq(x, type, "image") && eq(x, get(x, src, "type"), "base64")
                   && is(x, get(x, src, "media_type"), JSMN_STRING)
                   && is(x, get(x, src, "data"), JSMN_STRING)) {
            evbuffer_add_printf(x->out, "%s{\"type\":\"image_url\",\"image_url\":{\"url\":"
                                "\"data:", n++ ? "," : "");
            llmr_anth_inner(x->out, &x->j, get(x, src, "media_type"));
            evbuffer_add_printf(x->out, ";base64,");
            llmr_anth_inner(x->out, &x->j, get(x, src, "data"));
            evbuffer_add(x->out, "\"}}", 3);
        } else if (eq(x, type, "image") && is(x, get(x, src, "url"), JSMN_STRING)) {
            evbuffer_add_printf(x->out, "%s{\"type\":\"image_url\",\"image_url\":{\"url\":",
                                n++ ? "," : "");
            raw(x, get(x, src, "url"));
            evbuffer_add(x->out, "}}", 2);
        } else if (!eq(x, type, "tool_result") && !eq(x, type, "tool_use")
                   && !eq(x, type, "thinking") && !eq(x, type, "redacted_thinking")) {
            return bad(x, "messages: a content block must be text, image, tool_use or "
                       "tool_result");
        }
    }
    evbuffer_add(x->out, "]", 1);
    return n;
}

/* The text of Anthropic content (string or text blocks), as a string's inside. */
static void blocks_text(xl *x, int c)
{
    if (is(x, c, JSMN_STRING)) {
        llmr_anth_inner(x->out, &x->j, c);
        return;
    }
    for (int i = 0, k = c + 1; is(x, c, JSMN_ARRAY) && i < x->j.toks[c].size;
         i++, k = llmr_json_skip(&x->j, k))
        if (eq(x, get(x, k, "type"), "text") && is(x, get(x, k, "text"), JSMN_STRING))
            llmr_anth_inner(x->out, &x->j, get(x, k, "text"));
}

/* A user turn: its tool_results first, as tool messages (they answer the
 * assistant turn just before), then the rest as one user message. */
static int user_turn(xl *x, int c, int *n)
{
    int others = is(x, c, JSMN_STRING);

    for (int i = 0, k = c + 1; is(x, c, JSMN_ARRAY) && i < x->j.toks[c].size;
         i++, k = llmr_json_skip(&x->j, k)) {
        int id = get(x, k, "tool_use_id");
        if (!eq(x, get(x, k, "type"), "tool_result")) {
            others++;
            continue;
        }
        if (!is(x, id, JSMN_STRING))
            return bad(x, "messages: a tool_result needs tool_use_id");
        evbuffer_add_printf(x->out, "%s{\"role\":\"tool\",\"tool_call_id\":", (*n)++ ? "," : "");
        raw(x, id);
        evbuffer_add_printf(x->out, ",\"content\":\"");
        blocks_text(x, get(x, k, "content"));
        evbuffer_add(x->out, "\"}", 2);
    }
    if (others == 0)
        return 0;
    evbuffer_add_printf(x->out, "%s{\"role\":\"user\",\"content\":", (*n)++ ? "," : "");
    if (blocks_to_parts(x, c) < 0)
        return -1;
    evbuffer_add(x->out, "}", 1);
    return 0;
}

static int assistant_turn(xl *x, int c, int *n)
{
    int calls = 0;

    evbuffer_add_printf(x->out, "%s{\"role\":\"assistant\",\"content\":\"", (*n)++ ? "," : "");
    blocks_text(x, c);
    evbuffer_add(x->out, "\"", 1);
    for (int i = 0, k = c + 1; is(x, c, JSMN_ARRAY) && i < x->j.toks[c].size;
         i++, k = llmr_json_skip(&x->j, k)) {
        int id = get(x, k, "id"), name = get(x, k, "name"), input = get(x, k, "input");
        if (!eq(x, get(x, k, "type"), "tool_use"))
            continue;
        if (!is(x, id, JSMN_STRING) || !is(x, name, JSMN_STRING))
            return bad(x, "messages: a tool_use block needs id and name");
        evbuffer_add_printf(x->out, "%s{\"id\":", calls++ ? "," : ",\"tool_calls\":[");
        raw(x, id);
        evbuffer_add_printf(x->out, ",\"type\":\"function\",\"function\":{\"name\":");
        raw(x, name);
        evbuffer_add_printf(x->out, ",\"arguments\":");
        if (input >= 0)
            llmr_anth_as_string(x->out, &x->j, input);
        else
            evbuffer_add(x->out, "\"{}\"", 4);
        evbuffer_add(x->out, "}}", 2);
    }
    evbuffer_add(x->out, calls ? "]}" : "}", calls ? 2 : 1);
    return 0;
}

static int anth_messages(xl *x, int msgs, int sys)
{
    int n = 0;

    evbuffer_add_printf(x->out, ",\"messages\":[");
    if (is(x, sys, JSMN_STRING) || is(x, sys, JSMN_ARRAY)) {
        evbuffer_add_printf(x->out, "{\"role\":\"system\",\"content\":\"");
        blocks_text(x, sys);
        evbuffer_add(x->out, "\"}", 2);
        n++;
    }
    for (int i = 0, k = msgs + 1; i < x->j.toks[msgs].size; i++, k = llmr_json_skip(&x->j, k)) {
        int role = get(x, k, "role"), c = get(x, k, "content"), rc;
        if (!is(x, c, JSMN_STRING) && !is(x, c, JSMN_ARRAY))
            return bad(x, "messages: each message needs content, a string or an array");
        if (eq(x, role, "user"))
            rc = user_turn(x, c, &n);
        else if (eq(x, role, "assistant"))
            rc = assistant_turn(x, c, &n);
        else
            return bad(x, "messages: role must be user or assistant");
        if (rc < 0)
            return -1;
    }
    evbuffer_add(x->out, "]", 1);
    return 0;
}

static void anth_tools(xl *x, int tools, int tc)
{
    int n = 0, name = get(x, tc, "name"), dis = get(x, tc, "disable_parallel_tool_use");

    for (int i = 0, k = tools + 1; is(x, tools, JSMN_ARRAY) && i < x->j.toks[tools].size;
         i++, k = llmr_json_skip(&x->j, k)) {
        int nm = get(x, k, "name"), type = get(x, k, "type"), sch = get(x, k, "input_schema");
        /* Anthropic's server tools (web search, ...) have no chat equivalent */
        if (!is(x, nm, JSMN_STRING) || (type >= 0 && !eq(x, type, "custom")))
            continue;
        evbuffer_add_printf(x->out, "%s{\"type\":\"function\",\"function\":{\"name\":",
                            n++ ? "," : ",\"tools\":[");
        raw(x, nm);
        copy_as(x, is(x, get(x, k, "description"), JSMN_STRING) ? get(x, k, "description")
                                                                  : -1, "description");
        if (is(x, sch, JSMN_OBJECT))
            copy_as(x, sch, "parameters");
        evbuffer_add(x->out, "}}", 2);
    }
    if (n > 0)
        evbuffer_add(x->out, "]", 1);
    if (n > 0 && eq(x, get(x, tc, "type"), "any"))
        evbuffer_add_printf(x->out, ",\"tool_choice\":\"required\"");
    else if (n > 0 && eq(x, get(x, tc, "type"), "none"))
        evbuffer_add_printf(x->out, ",\"tool_choice\":\"none\"");
    else if (n > 0 && eq(x, get(x, tc, "type"), "tool") && is(x, name, JSMN_STRING)) {
        evbuffer_add_printf(x->out, ",\"tool_choice\":{\"type\":\"function\",\"function\":"
                            "{\"name\":");
        raw(x, name);
        evbuffer_add(x->out, "}}", 2);
    }
    if (n > 0 && llmr_json_is_true(&x->j, dis))
        evbuffer_add_printf(x->out, ",\"parallel_tool_calls\":false");
}

int llmr_anth_messages_to_chat(const char *js, size_t len, const char *model,
                               struct evbuffer *out, char *err, size_t errcap)
{
    xl x = { .out = out, .err = err, .errcap = errcap };
    int msgs, rc = -1, stream, user;

    if (llmr_anth_parse(&x.j, js, len) < 0) {
        bad(&x, "the body is not one JSON object");
        goto done;
    }
    msgs = get(&x, 0, "messages");
    if (!is(&x, msgs, JSMN_ARRAY)) {
        bad(&x, "messages: Field required (an array)");
        goto done;
    }
    evbuffer_add_printf(out, "{\"model\":");
    llmr_json_add_str(out, model);
    if (anth_messages(&x, msgs, get(&x, 0, "system")) < 0)
        goto done;
    copy_as(&x, get(&x, 0, "max_tokens"), "max_tokens");
    copy_as(&x, get(&x, 0, "stop_sequences"), "stop");
    copy_as(&x, get(&x, 0, "temperature"), "temperature");
    copy_as(&x, get(&x, 0, "top_p"), "top_p");
    stream = get(&x, 0, "stream");
    if (llmr_json_is_true(&x.j, stream))
        evbuffer_add_printf(out, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    anth_tools(&x, get(&x, 0, "tools"), get(&x, 0, "tool_choice"));
    user = get(&x, get(&x, 0, "metadata"), "user_id");
    copy_as(&x, is(&x, user, JSMN_STRING) ? user : -1, "user");
    evbuffer_add(out, "}", 1);
    rc = 0;
done:
    llmr_json_free(&x.j);
    return rc;
}

/* ---- count_tokens ----------------------------------------------------------- */

int64_t llmr_anth_estimate(const char *js, size_t len)
{
    static const char *const fields[] = { "system", "messages", "tools" };
    llmr_json j = { 0 };
    int64_t bytes = 0, messages = 0;

    if (llmr_anth_parse(&j, js, len) < 0) {
        llmr_json_free(&j);
        return -1;
    }
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
        int v = llmr_json_get(&j, 0, fields[f]), end;
        if (v < 0)
            continue;
        if (f == 1 && j.toks[v].type == JSMN_ARRAY)
            messages = j.toks[v].size;
        end = llmr_json_skip(&j, v);
        for (int k = v; k < end; k++)
            if (j.toks[k].type == JSMN_STRING && j.toks[k].size == 0)
                bytes += j.toks[k].end - j.toks[k].start;
    }
    llmr_json_free(&j);
    return (bytes + 3) / 4 + 4 * messages + 3;
}
