/* request: one routed request's life (DESIGN.md §7) as an object with
 * named states.  The request owns three parts that change at different
 * paces: the plan (groups to try, per-group retry state, what to answer
 * with once spent), one attempt (a deployment, its admission, its curl
 * transfer and what the upstream said) and the relay (a committed stream
 * on its way to the client).
 *
 *   ADMITTED --pick+start--> ATTEMPT --first byte--> STREAMING
 *       ^                      |  |                     |
 *       |   (retry at once)    |  +--> BACKOFF --timer--+-> ADMITTED
 *       +----------------------+                        |
 *   any live state --finish()--> REPLYING --> DONE  <---+  (stream end)
 *
 * request.c holds the states and the life, attempt.c one attempt, reply.c
 * what is answered, stream.c the relay, plan.c the order of groups. */
#ifndef LLMR_REQUEST_H
#define LLMR_REQUEST_H

#include <stdint.h>

#include <event2/event_struct.h>

#include "access_log.h"
#include "errors.h"
#include "worker_internal.h"

#define LLMR_RESPONSE_MAX (64L << 20)   /* an upstream body past this is an error */
#define LLMR_PLAN_MAX 32                /* groups one request may walk */
#define LLMR_FAILED_MAX 64              /* deployments remembered as failed */
#define LLMR_STREAM_HIGH_WATER (64 * 1024)  /* client output that pauses upstream */
#define LLMR_USAGE_MAX (1LL << 31)      /* reported tokens past this are clamped */
#define LLMR_FWD_MAX 12                 /* upstream headers passed on to the client */
#define LLMR_FWD_LEN 256                /* "name\0value\0" of one; longer ones are dropped */
#define LLMR_REQUEST_ID_LEN 29          /* "req_" + 24 hex + NUL */

/* Checks of the request's invariants: on in debug and sanitizer builds
 * (the Makefile defines LLMR_CHECKS), free in release builds. */
#ifdef LLMR_CHECKS
#include <stdio.h>
#include <stdlib.h>
#define LLMR_CHECK(cond, what)                                                       \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", __FILE__, __LINE__, \
                    what, #cond);                                                    \
            abort();                                                                 \
        }                                                                            \
    } while (0)
#else
#define LLMR_CHECK(cond, what) ((void)sizeof(!(cond)))
#endif

enum llmr_req_state {
    LLMR_REQ_ADMITTED,          /* taken in, choosing a deployment */
    LLMR_REQ_BACKOFF,           /* waiting for the back-off timer */
    LLMR_REQ_ATTEMPT,           /* an attempt in flight, nothing sent to the client */
    LLMR_REQ_STREAMING,         /* relaying a committed stream */
    LLMR_REQ_REPLYING,          /* finish(): the answer is being handed over */
    LLMR_REQ_DONE,              /* answered (or abandoned); about to be freed */
    LLMR_REQ_NSTATES
};

/* The plan: groups in the order they are tried.  group[0] is the group the
 * client asked for; fallbacks are appended when it is spent. */
typedef struct llmr_plan {
    int group[LLMR_PLAN_MAX];
    int ngroups, pos;
    int fallbacks_added;                /* 0, or which list was appended */
    int failed[LLMR_FAILED_MAX];        /* deployments that failed in this group */
    int nfailed;
    int group_attempts;
    int attempts;
    int backoff_step;
    enum llmr_unavail unavail;          /* why a group had no deployment, last */
    enum llmr_limit limit;              /* which limit, for LLMR_UNAVAIL_LIMIT */
    int64_t unavail_wait_ms;            /* until one becomes available again */
    int final_status;                   /* the last upstream failure, to answer with */
    enum llmr_err final_err;
    CURLcode final_curl;                /* the last attempt's libcurl result */
} llmr_plan;

/* One attempt on one deployment.  `admitted` is the router's reservation
 * (in-flight, rpm, tpm) and is given back exactly once (attempt.c). */
typedef struct llmr_attempt {
    int dep;                            /* the deployment, or -1 */
    int pos;                            /* its group's place in the plan */
    int admitted;
    CURL *easy;
    int sock_errno;                     /* why a socket() of the attempt failed */
    int sends;                          /* times libcurl set out to send it */
    struct evbuffer *resp;              /* buffered body (non-streams, errors) */
    long status;
    char content_type[128];
    char retry_after[16];
    char fwd[LLMR_FWD_MAX][LLMR_FWD_LEN];   /* x-request-id, x-ratelimit-*, ... */
    char errbuf[CURL_ERROR_SIZE];       /* libcurl's words for the failure */
    int nfwd;
    int64_t t_start_us;
    int64_t t_admit_ms;                 /* wall clock of the admission (tpm window) */
    char *up_body;                      /* the body with the deployment's model */
    size_t up_len;
    const char *up_model;               /* the model up_body was built for */
} llmr_attempt;

/* Usage of a stream, from its final usage chunk or estimated. */
typedef struct llmr_sse {
    struct evbuffer *line;              /* a data line split across reads */
    int64_t prompt, completion;         /* from a usage chunk, when sent */
    int64_t content_bytes, content_events;
    int got_usage;
    /* A Responses stream (responses.c reads its events): */
    int responses;
    int resp_id_new;                    /* resp_id just read, not yet remembered */
    int64_t first_token_us;             /* the first output delta, for the ttft */
    int ttft_done;
    char resp_id[128];
} llmr_sse;

/* The relay of a committed stream. */
typedef struct llmr_relay {
    int chunked;                        /* evhttp frames the reply in chunks */
    int paused;                         /* upstream paused for a slow client */
    struct evbuffer *chunk;
    struct event idle;                  /* stream_idle_timeout */
    int64_t last_data_us;               /* the upstream's last bytes */
    llmr_sse sse;
    struct event flush;                 /* sends `held`, once per loop iteration */
    char *held;                         /* this iteration's bytes, kept between streams' */
    size_t nheld, held_cap;             /* reads (stream.c) */
} llmr_relay;

/* What the client may set for its own request (controls.c), and how its
 * body is edited on the way upstream (the model, the controls left out). */
typedef struct llmr_controls {
    int fallbacks[LLMR_PLAN_MAX];       /* replace router_settings.fallbacks */
    int nfallbacks, has_fallbacks;
    int cw_fallbacks[LLMR_PLAN_MAX];    /* replace context_window_fallbacks */
    int ncw_fallbacks, has_cw_fallbacks;
    int num_retries;                    /* -1: router_settings.num_retries */
    double timeout;                     /* seconds; 0: router_settings.timeout */
    llmr_body_edit edit;
    int anthropic_in;                   /* came in on /v1/messages (anthropic_glue.c) */
    struct llmr_cache_ticket *cache;    /* the response cache's (cache.c), owned; or NULL */
} llmr_controls;

/* controls.c: reads the request's controls from its body and headers into
 * c; 0, or -1 after answering the client's mistake with a 400. */
int llmr_controls_read(llmr_worker *w, struct evhttp_request *req, const llmr_json *j,
                       llmr_controls *c);
/* The body's top-level members that are controls, never sent upstream. */
extern const char *const llmr_control_keys[];
extern const int llmr_ncontrol_keys;

typedef struct llmr_request {
    llmr_worker *w;
    struct llmr_request *prev, *next;   /* the worker's live requests */
    enum llmr_req_state state;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event backoff;               /* the wait before a retry */
    struct event first_byte;            /* stream_timeout for a stream's first byte */
    struct event over_budget;           /* max_buffered_bytes passed: answer from the loop */
    enum llmr_op op;
    int stream;                         /* the client asked for stream: true */
    const char *body;                   /* the client's body, owned by req */
    size_t len;
    llmr_controls ctl;                  /* the client's controls, the body's edit */
    int64_t tokens_est;                 /* prompt tokens, estimated at the start */
    int prefer_dep;                     /* tried first when available, or -1 */
    int64_t t_start_us, deadline_us;
    char id[LLMR_REQUEST_ID_LEN];       /* ours, made on first use (llmr_request_id) */

    llmr_plan plan;
    llmr_attempt at;
    llmr_relay relay;
    llmr_alog_rec log;                  /* what its access log line says */
    struct llmr_anth_state *anth;       /* Anthropic translation state, or NULL */
} llmr_request;

/* How a request is answered: the one argument of finish(). */
enum llmr_reply_how {
    LLMR_REPLY_UPSTREAM,        /* the attempt's buffered answer, its status */
    LLMR_REPLY_ERROR,           /* our own error (errors.c) */
    LLMR_REPLY_STREAM_END,      /* end a committed stream; an error event first when kind set */
    LLMR_REPLY_GONE,            /* the client is gone: nothing to send */
    LLMR_REPLY_NONE             /* the worker stops: nothing is sent */
};

typedef struct llmr_reply {
    enum llmr_reply_how how;
    int status;                         /* LLMR_REPLY_UPSTREAM */
    int headers;                        /* add the x-llmroute-* headers */
    int has_kind;                       /* STREAM_END: with an error event */
    enum llmr_error_kind kind;
    const char *code;                   /* replaces the kind's code (a stream's failure) */
    char retry_after[24];               /* a Retry-After of ours, or empty */
    char msg[512];
} llmr_reply;

/* request.c */
/* Starts a routed request with the client's controls (llmr_controls_read). */
/* Frees the request objects kept for reuse (the worker's exit). */
void llmr_request_pool_free(llmr_worker *w);
void llmr_request_start_ctl(llmr_worker *w, struct evhttp_request *req, enum llmr_op op,
                            int group, const llmr_json *body, const llmr_controls *ctl);
/* The one change of state; aborts (checked builds) on an illegal one. */
void llmr_request_set_state(llmr_request *r, enum llmr_req_state to);
/* Answers as `rep` says, THEN frees r: the one end of every request. */
void llmr_request_finish(llmr_request *r, const llmr_reply *rep);
/* Worker shutdown: drops every live request without answering. */
void llmr_request_abort_all(llmr_worker *w);
/* drain_timeout passed: end every stream with an error event, answer the
 * rest 503. */
void llmr_request_drain_deadline(llmr_worker *w);
/* A committed stream silent for stream_idle_timeout (stream.c's timer). */
void llmr_request_stalled(llmr_request *r);
/* Whether buffering `len` more bytes passes max_buffered_bytes; if so the
 * request is answered 503 from the loop. */
int llmr_request_over_budget(llmr_request *r, size_t len);

/* attempt.c */
/* Starts an attempt on r->at.dep (admitted by the router): -1 when none
 * could be made for want of memory or descriptors. */
int llmr_attempt_start(llmr_request *r, llmr_upstream_done_fn *done);
/* Gives the router's reservation back: ended (failure, cancel), or never
 * used (unadmit, the request did not reach the deployment). */
void llmr_attempt_end(llmr_request *r, enum llmr_outcome outcome);
void llmr_attempt_unadmit(llmr_request *r);
/* A successful attempt: counters, latency and usage, reservation given back. */
void llmr_attempt_succeeded(llmr_request *r);
/* A failed attempt counted against its deployment (cooldown window). */
void llmr_attempt_failed(llmr_request *r, enum llmr_err err, int64_t ra);
/* Why an attempt failed for want of something of ours, or NULL. */
const char *llmr_attempt_local_failure(const llmr_request *r, CURLcode result);
const llmr_deployment *llmr_attempt_dep(const llmr_request *r);
llmr_slot *llmr_attempt_slot(const llmr_request *r);
/* Admissions not yet given back in this worker (checked builds). */
long llmr_attempt_open_admissions(void);

/* reply.c: what each ending answers (builds the llmr_reply), and sending it */
/* The request's own id ("req_" + 24 hex), for its x-request-id and logs. */
/* Seeds this process's request ids: each worker once, after fork. */
void llmr_request_ids_seed(void);
const char *llmr_request_id(llmr_request *r);
/* Keeps an upstream header line the client gets too (x-request-id,
 * x-ratelimit-*, ...); returns whether it was one of those. */
int llmr_reply_keep_header(llmr_attempt *a, const char *line, size_t len);
/* The upstream's x-request-id of the attempt, or "". */
const char *llmr_attempt_upstream_id(const llmr_attempt *a);
void llmr_reply_headers(llmr_request *r, int upstream);
void llmr_reply_send(llmr_request *r, const llmr_reply *rep);
void llmr_reply_final(llmr_request *r, llmr_reply *rep);
void llmr_reply_local(llmr_request *r, llmr_reply *rep, const char *why);
void llmr_reply_error(llmr_reply *rep, enum llmr_error_kind k, ...);
void llmr_reply_stream_error(llmr_reply *rep, enum llmr_err err, const char *msg);
const char *llmr_request_group_name(const llmr_request *r, int pos);

/* anthropic_glue.c: where the request path meets worker/anthropic*.c.  Each
 * returns what the hook point should do; none is needed (0) when neither
 * the client nor the deployment speaks Anthropic's API. */
/* The attempt's upstream body when it must be translated: 1 (a->up_body
 * set), 0 not to translate, -1 without memory, -2 the client's body cannot
 * be translated (llmr_anth_bad_request answers it). */
int llmr_anth_up_body(llmr_request *r, const llmr_deployment *d);
void llmr_anth_bad_request(llmr_request *r, llmr_reply *rep);
/* The headers of an attempt that differ from the deployment's (a
 * /v1/messages client's anthropic-beta to an anthropic/ deployment), or NULL. */
const struct curl_slist *llmr_anth_headers(llmr_request *r, const llmr_deployment *d);
/* Sends rep itself when the answer needs translating: 1, else 0. */
int llmr_anth_reply(llmr_request *r, const llmr_reply *rep);
/* libcurl's write callback of a committed stream (on_body). */
size_t llmr_anth_stream_write(llmr_request *r, const char *data, size_t len);
/* At the stream's commit: 1 when the time to first token waits for the
 * first content event. */
int llmr_anth_stream_begin(llmr_request *r);
/* At the stream's end: 1 when it has ended the reply itself. */
int llmr_anth_stream_end(llmr_request *r, const llmr_reply *rep);
void llmr_anth_free(llmr_request *r);
/* POST /v1/messages and /v1/messages/count_tokens. */
void llmr_anth_handle(llmr_worker *w, struct evhttp_request *req, int count_tokens);
void llmr_anth_http_free(void);

/* plan.c */
/* Moves to the next group of the plan (appending the fallbacks of the group
 * asked for the first time); returns 0 when the plan is spent. */
int llmr_plan_next(llmr_request *r);
/* Replaces the rest of the plan with `list`'s fallbacks of the current
 * group (else of the one asked for) and moves to the first; 0 if none. */
int llmr_plan_switch(llmr_request *r, const llmr_fallback_list *list);
/* Milliseconds to wait before retrying after `err`; fresh: a deployment
 * that has not failed this request is left (see plan.c). */
int64_t llmr_backoff_ms(llmr_request *r, enum llmr_err err, int64_t ra, int fresh);
/* The attempt's Retry-After in milliseconds, or -1. */
int64_t llmr_retry_after_ms(const llmr_request *r);
/* Whether the current group has a deployment that could take a retry:
 * -1 none, 1 one that has not failed this request, 0 only failed ones. */
int llmr_plan_group_room(llmr_request *r);
/* Remembers why a group had no deployment, for the answer if nothing else
 * serves. */
void llmr_plan_note_unavailable(llmr_plan *p, const llmr_pick *pick);

#endif
