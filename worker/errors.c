/* The one table of llmroute's own errors (errors.h).  The wording is part
 * of the interface: clients and the tests read the codes, operators the
 * messages, so an entry changes only on purpose. */
#include "errors.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "worker_internal.h"

#define IRE "invalid_request_error"

static const llmr_error_def table[LLMR_E_COUNT] = {
    [LLMR_E_NOT_FOUND] = { 404, IRE, NULL, "not_found", "Unknown path: %.*s%s" },
    [LLMR_E_METHOD_NOT_ALLOWED] = { 405, IRE, NULL, "method_not_allowed",
                                    "Method not allowed on %s" },
    [LLMR_E_INVALID_API_KEY] = { 401, IRE, NULL, "invalid_api_key",
                                 "Missing or invalid API key: send Authorization: Bearer <key>" },
    [LLMR_E_BODY_TOO_LARGE] = { 413, IRE, NULL, "request_too_large",
                                "request body of %zu bytes exceeds max_body_bytes (%ld)" },
    [LLMR_E_INVALID_JSON] = { 400, IRE, NULL, "invalid_json",
                              "We could not parse the JSON body of your request (%s): "
                              "expected one JSON object" },
    [LLMR_E_DUPLICATE_KEY] = { 400, IRE, NULL, "duplicate_key",
                               "the field `%s` appears more than once in the request body" },
    [LLMR_E_MISSING_MODEL] = { 400, IRE, "model", "missing_model", "%s" },
    [LLMR_E_MISSING_MESSAGES] = { 400, IRE, "messages", "missing_messages", "%s" },
    [LLMR_E_MISSING_INPUT] = { 400, IRE, "input", "missing_input", "input is required" },
    [LLMR_E_MODEL_NOT_FOUND] = { 404, IRE, "model", "model_not_found",
                                 "The model `%.*s%s` does not exist" },
    [LLMR_E_INVALID_CONTROL] = { 400, IRE, NULL, "invalid_value", "%s" },
    [LLMR_E_UNKNOWN_GROUP] = { 400, IRE, NULL, "model_not_found",
                               "%s names the model group `%.*s%s`, which does not exist" },
    [LLMR_E_BAD_REQUEST] = { 400, IRE, NULL, "bad_request", "%s" },
    [LLMR_E_FRAMING_TOO_LARGE] = { 413, IRE, NULL, "request_too_large", "%s" },
    [LLMR_E_REQUEST_TIMEOUT] = { 408, IRE, NULL, "request_timeout", "%s" },
    [LLMR_E_OUT_OF_MEMORY] = { 500, "server_error", NULL, NULL, "out of memory" },
    [LLMR_E_CONTEXT_EXCEEDED] = { 400, IRE, "messages", "context_length_exceeded",
                                  "This model's maximum context length is %lld tokens. "
                                  "However, your messages resulted in %lld tokens. Please "
                                  "reduce the length of the messages. (llmroute: model group "
                                  "%s, the prompt's estimate is longer than every "
                                  "deployment's max_input_tokens)" },
    [LLMR_E_AT_LIMIT] = { 429, "rate_limit_error", NULL, "rate_limit_exceeded",
                          "model group %s: every deployment is at its %s limit" },
    [LLMR_E_NO_DEPLOYMENT] = { 429, "rate_limit_error", NULL, "no_deployment_available",
                               "no deployment of model group %s is available: every "
                               "deployment is cooling down after failures" },
    [LLMR_E_UPSTREAM_TIMEOUT] = { 504, "timeout", NULL, "timeout",
                                  "model group %s: upstream timed out after %d attempt(s)%s%s" },
    [LLMR_E_UPSTREAM_UNREACHABLE] = { 502, "api_connection_error", NULL, "upstream_unreachable",
                                      "model group %s: upstream unreachable after %d "
                                      "attempt(s)%s%s" },
    [LLMR_E_UPSTREAM_TLS] = { 502, "api_connection_error", NULL, "upstream_tls_error",
                              "model group %s: TLS with the upstream failed after %d "
                              "attempt(s)%s%s: %s (is the certificate signed by a CA of "
                              "ssl_verify's bundle?)" },
    [LLMR_E_QUEUE_TIMEOUT] = { 504, "timeout", NULL, "timeout",
                               "model group %s: timed out waiting for a new connection to "
                               "deployment %s (server.upstream_max_connecting); the request "
                               "never reached it, so no deployment is at fault" },
    [LLMR_E_LOCAL_EXHAUSTED] = { 503, "server_error", NULL, "local_resource_exhausted",
                                 "llmroute could not call an upstream of model group %s: %s "
                                 "(no deployment is at fault; retry shortly)" },
    [LLMR_E_OVERLOADED] = { 503, "api_error", NULL, "server_overloaded",
                            "the server holds too many buffered answers (max_buffered_bytes); "
                            "retry shortly or use stream: true" },
    [LLMR_E_SHUTTING_DOWN] = { 503, "api_error", NULL, "server_shutting_down",
                               "the server is reloading or shutting down (drain_timeout "
                               "passed); retry the request" },
    [LLMR_E_STREAM_TIMEOUT] = { 504, "timeout", NULL, "timeout", "%s" },
    [LLMR_E_STREAM_FAILED] = { 502, "api_error", NULL, "error", "%s" },
    [LLMR_E_RESPONSES_UNSUPPORTED] = { 400, IRE, "model", "responses_not_supported",
                                       "model group %s has no deployment that serves the "
                                       "Responses API (every one has model_info."
                                       "supports_responses = false); use /v1/chat/completions" },
    [LLMR_E_RESPONSE_NOT_FOUND] = { 404, IRE, NULL, NULL,
                                    "Response with id '%.*s%s' not found." },
    [LLMR_E_RESPONSE_FORWARD] = { 502, "api_connection_error", NULL, "upstream_unreachable",
                                  "response %.*s%s: deployment %s that created it could not "
                                  "be reached (%s)" },
    [LLMR_E_TRANSLATE_REQUEST] = { 400, IRE, "messages", "invalid_request",
                                   "%s" },
    [LLMR_E_UPSTREAM_MALFORMED] = { 502, "api_error", NULL, "upstream_bad_response",
                                    "deployment %s sent an answer that cannot be read: %s" },
};

const llmr_error_def *llmr_error_def_of(enum llmr_error_kind k)
{
    return &table[(unsigned)k < LLMR_E_COUNT ? k : LLMR_E_OUT_OF_MEMORY];
}

size_t llmr_error_vmessage(char *out, size_t cap, enum llmr_error_kind k, va_list ap)
{
    /* The templates are this file's constants, checked by the unit test
     * against the arguments each caller passes. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    int n = vsnprintf(out, cap, llmr_error_def_of(k)->message, ap);
#pragma GCC diagnostic pop

    if (n < 0) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t llmr_error_message(char *out, size_t cap, enum llmr_error_kind k, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, k);
    n = llmr_error_vmessage(out, cap, k, ap);
    va_end(ap);
    return n;
}

/* "null" or the quoted name (names are ours, or a field name from a fixed
 * list: nothing to escape). */
static void json_name(char *out, size_t cap, const char *s)
{
    if (s == NULL)
        snprintf(out, cap, "null");
    else
        snprintf(out, cap, "\"%s\"", s);
}

size_t llmr_error_json(char *out, size_t cap, enum llmr_error_kind k, const char *param,
                       const char *code, const char *msg)
{
    const llmr_error_def *d = llmr_error_def_of(k);
    char esc[2048], p[72], c[72];
    size_t room = cap > 200 ? cap - 200 : 1;
    int n;

    llmr_json_escape(esc, room < sizeof(esc) ? room : sizeof(esc), msg, strlen(msg));
    json_name(p, sizeof(p), param != NULL ? param : d->param);
    json_name(c, sizeof(c), code != NULL ? code : d->code);
    n = snprintf(out, cap, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":%s,"
                 "\"code\":%s}}", esc, d->type, p, c);
    if (n < 0 || (size_t)n >= cap)
        n = snprintf(out, cap, "{\"error\":{\"message\":\"error\",\"type\":\"%s\","
                     "\"param\":null,\"code\":null}}", d->type);
    return n < 0 ? 0 : (size_t)n;
}

int llmr_error_anthropic_shape;

void llmr_error_reply_msg(llmr_worker *w, struct evhttp_request *req, enum llmr_error_kind k,
                          const char *param, const char *msg)
{
    char json[3072];
    size_t n;

    if (llmr_error_anthropic_shape) {   /* answering a /v1/messages client */
        llmr_anth_reply_error(w, req, llmr_error_def_of(k)->status, msg);
        return;
    }
    n = llmr_error_json(json, sizeof(json), k, param, NULL, msg);

    llmr_http_reply_json(w, req, llmr_error_def_of(k)->status, json, n);
}

void llmr_error_reply(llmr_worker *w, struct evhttp_request *req, enum llmr_error_kind k, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, k);
    llmr_error_vmessage(msg, sizeof(msg), k, ap);
    va_end(ap);
    llmr_error_reply_msg(w, req, k, NULL, msg);
}
