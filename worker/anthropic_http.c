/* POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API
 * in front of any model group.  The body is checked here, with every error
 * in Anthropic's shape, and then routed like a chat request (the request
 * carries ctl.anthropic_in; anthropic_glue.c translates per deployment). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "anthropic.h"
#include "errors.h"
#include "request.h"
#include "worker_internal.h"

/* The tokenizer of these bodies, reused from one to the next. */
static llmr_json body_json;

void llmr_anth_http_free(void)
{
    llmr_json_free(&body_json);
}

void llmr_anth_reply_error(llmr_worker *w, struct evhttp_request *req, int status,
                           const char *msg)
{
    struct evbuffer *b = evbuffer_new();

    if (b != NULL)
        llmr_anth_error_json(b, status, msg);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    llmr_http_reply(w, req, status, b);
    if (b != NULL)
        evbuffer_free(b);
}

static void reply(llmr_worker *w, struct evhttp_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply(llmr_worker *w, struct evhttp_request *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    llmr_anth_reply_error(w, req, status, msg);
}

/* The fields llmroute reads: each once (see http_api.c's `interpreted`). */
static const char *const interpreted[] = { "model", "stream", "messages", "system", "tools" };

static int is_false_or_null(const llmr_json *j, int t)
{
    return j->toks[t].type == JSMN_PRIMITIVE && (j->js[j->toks[t].start] == 'f'
                                                 || j->js[j->toks[t].start] == 'n');
}

/* Checks what Anthropic itself checks before routing; 0, or -1 answered:
 * the fields llmroute reads must have Anthropic's types, or a translated
 * request would differ from what Anthropic would have refused. */
static int check_body(llmr_worker *w, struct evhttp_request *req, const llmr_json *j,
                      int count_tokens)
{
    int dup = llmr_json_dup_key(j, 0, interpreted,
                                (int)(sizeof(interpreted) / sizeof(interpreted[0])));
    int model = llmr_json_get(j, 0, "model"), msgs = llmr_json_get(j, 0, "messages");
    int mt = llmr_json_get(j, 0, "max_tokens"), stream = llmr_json_get(j, 0, "stream");
    int sys = llmr_json_get(j, 0, "system"), tools = llmr_json_get(j, 0, "tools");
    int64_t v;

    if (dup >= 0) {
        reply(w, req, 400, "%s: appears more than once", interpreted[dup]);
        return -1;
    }
    if (model < 0 || j->toks[model].type != JSMN_STRING) {
        reply(w, req, 400, "model: Field required (a string)");
        return -1;
    }
    if (msgs < 0 || j->toks[msgs].type != JSMN_ARRAY) {
        reply(w, req, 400, "messages: Field required (an array)");
        return -1;
    }
    if (j->toks[msgs].size == 0) {      /* as Anthropic answers it */
        reply(w, req, 400, "messages: at least one message is required");
        return -1;
    }
    if (stream >= 0 && !llmr_json_is_true(j, stream) && !is_false_or_null(j, stream)) {
        reply(w, req, 400, "stream: Input should be a valid boolean");
        return -1;
    }
    if (sys >= 0 && j->toks[sys].type != JSMN_STRING && j->toks[sys].type != JSMN_ARRAY) {
        reply(w, req, 400, "system: Input should be a string or a list of text blocks");
        return -1;
    }
    if (tools >= 0 && j->toks[tools].type != JSMN_ARRAY) {
        reply(w, req, 400, "tools: Input should be a valid list");
        return -1;
    }
    if (!count_tokens && (mt < 0 || llmr_json_int(j, mt, &v) < 0 || v < 1)) {
        reply(w, req, 400, "max_tokens: Field required (an integer >= 1)");
        return -1;
    }
    return 0;
}

static void count(llmr_worker *w, struct evhttp_request *req, const char *body, size_t len)
{
    char json[64];
    int n = snprintf(json, sizeof(json), "{\"input_tokens\":%lld}",
                     (long long)llmr_anth_estimate(body, len));

    llmr_http_reply_json(w, req, 200, json, (size_t)n);
}

void llmr_anth_handle(llmr_worker *w, struct evhttp_request *req, int count_tokens)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in), name_len;
    llmr_json *j = &body_json;
    const char *body, *name;
    char buf[256], err[256];
    struct evbuffer *scratch;
    llmr_controls ctl;
    int group, rc;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        reply(w, req, 405, "Method not allowed: use POST");
        return;
    }
    if (!llmr_http_authorized(w, req)) {
        reply(w, req, 401, "invalid x-api-key");
        return;
    }
    if ((long)len > w->conf->max_body_bytes) {
        reply(w, req, 413, "request body of %zu bytes is over max_body_bytes (%ld)", len,
              w->conf->max_body_bytes);
        return;
    }
    body = (const char *)evbuffer_pullup(in, -1);
    if (len == 0 || body == NULL || llmr_json_parse(j, body, len, (int)(len / 2) + 64) < 0
        || j->toks[0].type != JSMN_OBJECT) {
        reply(w, req, 400, "the body is not one JSON object (%s)",
              len == 0 || body == NULL ? "empty body" : j->ntoks == 0 ? j->err : "not an object");
        return;
    }
    if (check_body(w, req, j, count_tokens) < 0)
        return;
    name = llmr_json_str(j, llmr_json_get(j, 0, "model"), buf, sizeof(buf), &name_len);
    group = llmr_conf_route_group(w->conf, name, name_len);
    if (group < 0) {
        reply(w, req, 404, "model: %.*s%s", LLMR_CLIP(name_len), name, LLMR_CLIP_MORE(name_len));
        return;
    }
    if (count_tokens) {
        count(w, req, body, len);
        return;
    }
    /* What no deployment could translate is the client's mistake, said now. */
    if ((scratch = evbuffer_new()) == NULL) {
        reply(w, req, 500, "out of memory");
        return;
    }
    rc = llmr_anth_messages_to_chat(body, len, "m", scratch, err, sizeof(err));
    evbuffer_free(scratch);
    if (rc < 0) {
        reply(w, req, 400, "%s", err);
        return;
    }
    llmr_error_anthropic_shape = 1;     /* controls.c's refusals, in our shape */
    rc = llmr_controls_read(w, req, j, &ctl);
    llmr_error_anthropic_shape = 0;
    if (rc < 0)
        return;
    ctl.anthropic_in = 1;
    llmr_request_start_ctl(w, req, LLMR_OP_CHAT, group, j, &ctl);
}
