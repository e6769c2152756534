/* llmroute-mock: a fake OpenAI/Azure upstream with fault modes, for the
 * integration tests and the benchmark. One process, one thread, one
 * event loop; see README.md in this folder for the knobs. */
#ifndef LLMR_MOCK_H
#define LLMR_MOCK_H

#include <stddef.h>

/* Appends a string literal without counting its bytes by hand. */
#define MOCK_ADD_LIT(buf, lit) evbuffer_add((buf), (lit), sizeof(lit) - 1)

struct event;
struct event_base;
struct evbuffer;
struct evhttp;
struct evhttp_request;

/* Behaviour knobs. A request's effective knobs are layered, lowest first:
 * CLI defaults, POST /__mock/config, the body's "x_mock", x-mock-* headers. */
enum mock_knob {
    MK_LATENCY_MS,
    MK_STATUS,
    MK_RETRY_AFTER,
    MK_ERROR,
    MK_DROP,
    MK_CHUNKS,
    MK_CHUNK_DELAY_MS,
    MK_STALL_AFTER,
    MK_DROP_AFTER,
    MK_USAGE,
    MK_EMBEDDING_DIMS,
    MK_EMBEDDINGS,
    MK_USAGE_TOKENS,
    MK_PAD_BYTES,
    MK_UPSTREAM_HEADERS,
    MK_REQUIRE_KEY,
    MK_ESCAPED_DELTAS,
    MK_TOOL_CALL,
    MK_MALFORMED,
    MK_CHUNK_BURST,
    MK_COUNT
};

enum mock_error { ME_NONE, ME_CONTEXT_LENGTH, ME_CONTENT_POLICY };

struct mock_knobs {
    unsigned set;                  /* bit (1u << enum mock_knob) per knob given */
    long v[MK_COUNT];              /* MK_ERROR holds an enum mock_error */
    char retry_after[32];          /* MK_RETRY_AFTER is text, sent as is */
    char usage_tokens[32];         /* MK_USAGE_TOKENS: an integer's text, as is */
    char require_key[8192];        /* MK_REQUIRE_KEY: the only key answered */
};

enum mock_src { MS_CLI, MS_CONFIG, MS_BODY, MS_HEADER };

void mock_knobs_defaults(struct mock_knobs *k);
int mock_knob_lookup(const char *name, size_t len, enum mock_src src);
int mock_knob_set(struct mock_knobs *k, int id, const char *val, size_t len);
void mock_knobs_merge(struct mock_knobs *dst, const struct mock_knobs *src);
const char *mock_knob_name(int id, enum mock_src src);

/* What the mock reads from a routed request's JSON body. model points into
 * the body, which outlives the call only while evhttp owns the request. */
struct mock_body {
    const char *model;
    size_t model_len;
    int stream;
    int include_usage;
    long inputs;                   /* embeddings: inputs in "input", 0 if none */
    int base64;                    /* encoding_format: "base64" */
    struct mock_knobs knobs;
};

int mock_json_valid(const char *s, size_t n);
int mock_json_parse_body(const char *js, size_t len, struct mock_body *out,
                         char *err, size_t errlen);
int mock_json_parse_config(const char *js, size_t len, struct mock_knobs *k,
                           char *err, size_t errlen);
void mock_json_escape(struct evbuffer *out, const char *s, size_t n);

/* Counters for GET /__mock/stats. */
struct mock_path;
struct mock_stats {
    unsigned long requests;
    unsigned long inflight;
    unsigned long max_inflight;
    unsigned long prompt_tokens;
    unsigned long completion_tokens;
    unsigned long stream_client_closed;
    unsigned long client_closed;   /* any phase, streams included */
    unsigned long dropped;
    unsigned long statuses[600];
    struct mock_path *paths[256];
    size_t npaths;
    int have_last;
    const char *last_method;
    struct mock_sbuf { char *p; size_t len, cap; } last_path, last_query,
        last_headers, last_body;
};

void mock_stats_arrival(struct mock_stats *s, struct evhttp_request *req,
                        const char *path, const char *query,
                        const char *body, size_t body_len);
void mock_stats_status(struct mock_stats *s, int status);
void mock_stats_done(struct mock_stats *s);
void mock_stats_render(const struct mock_stats *s, const char *name,
                       struct evbuffer *out);
void mock_stats_reset(struct mock_stats *s);
void mock_stats_free(struct mock_stats *s);

/* One routed request that outlives its evhttp callback (latency, stream). */
enum mock_endpoint { EP_NONE, EP_CHAT, EP_COMPLETIONS, EP_EMBEDDINGS, EP_MODELS,
                     EP_RESPONSES, EP_MESSAGES };
enum mock_phase { PH_NEW, PH_LATENCY, PH_STREAM, PH_STALLED, PH_DROPPING };

struct mock_ctx;
struct mock_call {
    struct mock_ctx *ctx;
    struct evhttp_request *req;
    struct event *timer;           /* NULL while the call lives on the stack */
    struct event *watch;           /* peer-close watch during the latency wait */
    struct mock_call *prev, *next; /* ctx->calls, so shutdown can free us */
    enum mock_endpoint ep;
    enum mock_phase phase;
    struct mock_knobs k;           /* effective knobs */
    unsigned long id;
    long created;
    long prompt_tokens;
    long sent;                     /* content chunks sent so far */
    int stream;
    int include_usage;
    long inputs;                   /* embeddings: one per input */
    int base64;                    /* embeddings as base64 float32 */
    const char *model;
    size_t model_len;
    int has_max_tokens;            /* EP_MESSAGES: the body names max_tokens */
    char model_copy[];             /* heap calls own their model */
};

struct mock_ctx {
    struct event_base *base;
    struct evhttp *http;
    struct event *sig_term, *sig_int;
    struct evbuffer *out;          /* reused for every response body */
    struct mock_knobs cli, runtime;
    struct mock_stats stats;
    struct mock_call *calls;
    unsigned long seq;
    const char *name;
    int verbose;
};

void mock_handle(struct evhttp_request *req, void *arg);
void mock_calls_free(struct mock_ctx *ctx);

/* serve.c, for stream.c */
void mock_call_finish(struct mock_call *c);
void mock_call_arm(struct mock_call *c, long ms);
void mock_call_drop(struct mock_call *c);
void mock_reply_headers(struct mock_call *c, const char *content_type);

/* serve.c: `"usage":{...}` with prompt and, when completion >= 0,
 * completion tokens, or every count the usage_tokens knob when set. */
void mock_usage_json(const struct mock_call *c, struct evbuffer *out, long prompt,
                     long completion);

/* responses.c: the Responses API (README.md) */
void mock_responses_body(struct mock_call *c, struct evbuffer *out);
void mock_responses_created(struct mock_call *c);
void mock_responses_delta(struct mock_call *c);
void mock_responses_completed(struct mock_call *c);
/* GET/DELETE …/responses/{id}[/input_items]: answered (1), or not such a path (0). */
int mock_responses_by_id(struct mock_ctx *ctx, struct evhttp_request *req, const char *path);
void mock_responses_free(void);

/* serve.c: sends ctx->out as the call's answer with `status`. */
void mock_call_reply(struct mock_call *c, int status);

/* anthropic.c: the Messages API (README.md) */
void mock_anth_respond(struct mock_call *c);
void mock_anth_stream_open(struct mock_call *c);
void mock_anth_stream_delta(struct mock_call *c);
void mock_anth_stream_close(struct mock_call *c);

/* stream.c */
void mock_stream_start(struct mock_call *c);
void mock_stream_step(struct mock_call *c);

#endif
