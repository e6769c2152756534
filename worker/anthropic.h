/* anthropic: translations between OpenAI's chat API and Anthropic's
 * Messages API, both ways, as pure functions from bytes to bytes
 * (anthropic_req.c: requests, anthropic_resp.c: answers and errors,
 * anthropic_sse.c: streams).  Nothing here knows about requests, routing
 * or sockets; anthropic_glue.c hooks them into the request path.
 *
 * Every function reads untrusted bytes (a client's body, an upstream's
 * answer): malformed input is refused with a reason in err, never a crash,
 * and the output is always valid JSON (strings are copied as the input
 * escaped them, which the strict parser has checked, or escaped anew). */
#ifndef LLMR_ANTHROPIC_H
#define LLMR_ANTHROPIC_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

struct evbuffer;

#define LLMR_ANTH_VERSION "2023-06-01"      /* the anthropic-version header sent */
#define LLMR_ANTH_BASE "https://api.anthropic.com"
/* Anthropic requires max_tokens; a chat request without one gets this. */
#define LLMR_ANTH_DEFAULT_MAX_TOKENS 4096

/* ---- requests (anthropic_req.c) ---------------------------------------- */

/* An OpenAI chat request -> a Messages request for `model`.  *include_usage:
 * whether the client asked for stream_options.include_usage.  0, or -1
 * with err set (the client's mistake: answer 400). */
int llmr_anth_chat_to_messages(const char *js, size_t len, const char *model,
                               struct evbuffer *out, int *include_usage, char *err,
                               size_t errcap);
/* A Messages request -> an OpenAI chat request for `model` (streams ask for
 * the usage chunk).  0, or -1 with err set. */
int llmr_anth_messages_to_chat(const char *js, size_t len, const char *model,
                               struct evbuffer *out, char *err, size_t errcap);
/* Estimated input tokens of a Messages request (count_tokens): the bytes of
 * every string of system, messages and tools / 4, plus 4 a message, plus 3;
 * -1 when js is not an object. */
int64_t llmr_anth_estimate(const char *js, size_t len);

/* ---- answers and errors (anthropic_resp.c) ------------------------------ */

/* A Messages answer -> a chat.completion.  0, or -1 with err set (the
 * upstream's answer is malformed: 502). */
int llmr_anth_message_to_chat(const char *js, size_t len, int64_t created,
                              struct evbuffer *out, char *err, size_t errcap);
/* A chat.completion -> a Messages answer.  0, or -1 with err set. */
int llmr_anth_chat_to_message(const char *js, size_t len, struct evbuffer *out, char *err,
                              size_t errcap);
/* An Anthropic error body -> OpenAI's {"error":{message,type,param,code}};
 * a prompt too long gets code context_length_exceeded.  Any bytes work. */
void llmr_anth_error_to_openai(const char *js, size_t len, int status, struct evbuffer *out);
/* An OpenAI error body -> Anthropic's {"type":"error","error":{type,message}}. */
void llmr_anth_error_from_openai(const char *js, size_t len, int status,
                                 struct evbuffer *out);
/* Anthropic's error body for status with message msg (NUL-terminated). */
void llmr_anth_error_json(struct evbuffer *out, int status, const char *msg);
/* Anthropic's error type for an HTTP status. */
const char *llmr_anth_error_type(int status);
/* Anthropic's error body for status and msg into out (cap >= 128), NUL
 * terminated, msg cut to fit; returns its length. */
size_t llmr_anth_error_buf(char *out, size_t cap, int status, const char *msg);
/* OpenAI's finish_reason for a stop_reason token, and back. */
const char *llmr_anth_finish_reason(const llmr_json *j, int tok);
const char *llmr_anth_stop_reason(const llmr_json *j, int tok);

/* ---- streams (anthropic_sse.c) ----------------------------------------- */

/* Anthropic's events -> chat.completion.chunk events, one for one as they
 * come (message_start: the role; text and tool-argument deltas; the
 * finish_reason; the usage chunk when asked; [DONE] at message_stop). */
typedef struct llmr_anth_up llmr_anth_up;
llmr_anth_up *llmr_anth_up_new(int include_usage, int64_t created);
/* Feeds bytes as they arrive; what they complete is appended to out
 * (nothing for a ping or a partial line).  0, or -1 once the stream is
 * malformed (an error chunk has been appended). */
int llmr_anth_up_feed(llmr_anth_up *s, const char *data, size_t len, struct evbuffer *out);
/* Usage seen so far: 1 when message_start or message_delta carried it. */
int llmr_anth_up_usage(const llmr_anth_up *s, int64_t *prompt, int64_t *completion);
/* Content or tool-call deltas seen (the first one times the first token). */
int64_t llmr_anth_up_content_events(const llmr_anth_up *s);
/* Whether the events seen said an error (an error event, a malformed one):
 * the client was told, in a chunk of its own, and needs no second one. */
int llmr_anth_up_failed(const llmr_anth_up *s);
void llmr_anth_up_free(llmr_anth_up *s);

/* chat.completion.chunk events -> Anthropic's events (message_start,
 * content_block_start/delta/stop for text and tool_use, message_delta with
 * the stop_reason and usage, message_stop). */
typedef struct llmr_anth_down llmr_anth_down;
llmr_anth_down *llmr_anth_down_new(const char *model, int64_t input_est);
int llmr_anth_down_feed(llmr_anth_down *s, const char *data, size_t len,
                        struct evbuffer *out);
/* The stream ended: closes the message if [DONE] never came. */
void llmr_anth_down_finish(llmr_anth_down *s, struct evbuffer *out);
int llmr_anth_down_done(const llmr_anth_down *s);
/* The usage chunk's counts: 1 when one came. */
int llmr_anth_down_usage(const llmr_anth_down *s, int64_t *prompt, int64_t *completion);
void llmr_anth_down_free(llmr_anth_down *s);

/* ---- shared helpers (anthropic_resp.c) ---------------------------------- */

/* Parses js as one JSON object into j: 0, or -1. */
int llmr_anth_parse(llmr_json *j, const char *js, size_t len);
/* Appends token t's JSON text (a string with its quotes). */
void llmr_anth_raw(struct evbuffer *b, const llmr_json *j, int t);
/* Appends the inside of string token t as written (escapes kept). */
void llmr_anth_inner(struct evbuffer *b, const llmr_json *j, int t);
/* Whether token t exists and has type `type`. */
int llmr_anth_is(const llmr_json *j, int t, int type);
/* Token t (a string holding JSON) decoded and checked to be an object,
 * appended as JSON; "{}" when it is not one. */
void llmr_anth_args_object(struct evbuffer *b, const llmr_json *j, int t);
/* Token t's JSON text appended as one JSON string (tool arguments). */
void llmr_anth_as_string(struct evbuffer *b, const llmr_json *j, int t);

#endif
