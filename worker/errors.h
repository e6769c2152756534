/* errors: every error llmroute itself answers with, in OpenAI's shape, from
 * one table (errors.c): the HTTP status, the error's type, param and code,
 * and the wording of its message.  http_api.c's validation, conn.c's
 * refusals, the request path's final answers and a stream's SSE error
 * events all take their status, type, code and words from here. */
#ifndef LLMR_ERRORS_H
#define LLMR_ERRORS_H

#include <stdarg.h>
#include <stddef.h>

struct evhttp_request;
struct llmr_worker;

enum llmr_error_kind {
    /* request validation (http_api.c) */
    LLMR_E_NOT_FOUND,
    LLMR_E_METHOD_NOT_ALLOWED,
    LLMR_E_INVALID_API_KEY,
    LLMR_E_BODY_TOO_LARGE,
    LLMR_E_INVALID_JSON,
    LLMR_E_DUPLICATE_KEY,
    LLMR_E_MISSING_MODEL,
    LLMR_E_MISSING_MESSAGES,
    LLMR_E_MISSING_INPUT,
    LLMR_E_MODEL_NOT_FOUND,
    LLMR_E_INVALID_CONTROL,     /* a per-request control (controls.c) */
    LLMR_E_UNKNOWN_GROUP,       /* a control names a group the config lacks */
    /* framing refusals (conn.c) */
    LLMR_E_BAD_REQUEST,
    LLMR_E_FRAMING_TOO_LARGE,
    LLMR_E_REQUEST_TIMEOUT,
    /* the request path */
    LLMR_E_OUT_OF_MEMORY,
    LLMR_E_CONTEXT_EXCEEDED,
    LLMR_E_AT_LIMIT,
    LLMR_E_NO_DEPLOYMENT,
    LLMR_E_UPSTREAM_TIMEOUT,
    LLMR_E_UPSTREAM_UNREACHABLE,
    LLMR_E_UPSTREAM_TLS,
    LLMR_E_QUEUE_TIMEOUT,
    LLMR_E_LOCAL_EXHAUSTED,
    LLMR_E_OVERLOADED,
    LLMR_E_SHUTTING_DOWN,
    /* SSE error events of a committed stream */
    LLMR_E_STREAM_TIMEOUT,
    LLMR_E_STREAM_FAILED,
    /* the Responses API (responses.c) */
    LLMR_E_RESPONSES_UNSUPPORTED,
    LLMR_E_RESPONSE_NOT_FOUND,
    LLMR_E_RESPONSE_FORWARD,
    /* Anthropic's Messages API both ways (anthropic_glue.c) */
    LLMR_E_TRANSLATE_REQUEST,   /* the body cannot be said in the deployment's API */
    LLMR_E_UPSTREAM_MALFORMED,  /* an upstream's answer that cannot be translated */
    LLMR_E_COUNT
};

typedef struct llmr_error_def {
    int status;
    const char *type;
    const char *param;          /* NULL: JSON null */
    const char *code;           /* NULL: JSON null */
    const char *message;        /* printf template of the message */
} llmr_error_def;

const llmr_error_def *llmr_error_def_of(enum llmr_error_kind k);

/* The kind's message from its template and the arguments it takes.
 * Returns the length written (at most cap - 1). */
size_t llmr_error_message(char *out, size_t cap, enum llmr_error_kind k, ...);
size_t llmr_error_vmessage(char *out, size_t cap, enum llmr_error_kind k, va_list ap);

/* The JSON body {"error":{...}} of kind k with message msg; param and code,
 * when not NULL, replace the table's (a duplicate key names itself, a
 * stream's failure its classification).  Always valid JSON, whatever msg
 * holds; returns its length (at most cap - 1; cap >= 256). */
size_t llmr_error_json(char *out, size_t cap, enum llmr_error_kind k, const char *param,
                       const char *code, const char *msg);

/* While set (anthropic_http.c, around code shared with the OpenAI routes),
 * llmr_error_reply* answer in Anthropic's error shape. */
extern int llmr_error_anthropic_shape;
void llmr_anth_reply_error(struct llmr_worker *w, struct evhttp_request *req, int status,
                           const char *msg);

/* Replies to req with kind k: its status, its body with the message built
 * from the template and the arguments that follow. */
void llmr_error_reply(struct llmr_worker *w, struct evhttp_request *req,
                      enum llmr_error_kind k, ...);
/* The same with a param of its own and a message already made. */
void llmr_error_reply_msg(struct llmr_worker *w, struct evhttp_request *req,
                          enum llmr_error_kind k, const char *param, const char *msg);

/* A client's value in a message is cut to LLMR_CLIP_MAX bytes (the escape
 * then makes any bytes valid JSON): the arguments of a "%.*s%s" are
 * LLMR_CLIP(n), the value, LLMR_CLIP_MORE(n) ("..." when it was cut). */
#define LLMR_CLIP_MAX 128
#define LLMR_CLIP(n) ((size_t)(n) > LLMR_CLIP_MAX ? LLMR_CLIP_MAX : (int)(n))
#define LLMR_CLIP_MORE(n) ((size_t)(n) > LLMR_CLIP_MAX ? "..." : "")

#endif
