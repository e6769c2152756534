/* One routed request's life: pick a deployment, call it, retry or fall back
 * on failure, answer (streams chunk by chunk). */
#ifndef LLMR_PROXY_H
#define LLMR_PROXY_H

#include <stdint.h>

#include "worker.h"

#define LLMR_RESPONSE_MAX (64L << 20)   /* an upstream body past this is an error */
#define LLMR_PLAN_MAX 32                /* groups one request may walk */
#define LLMR_FAILED_MAX 64              /* deployments remembered as failed */
#define LLMR_STREAM_HIGH_WATER (64 * 1024)  /* client output that pauses upstream */
#define LLMR_USAGE_MAX (1LL << 31)      /* reported tokens past this are clamped */

/* Usage of a stream, from its final usage chunk or estimated. */
typedef struct llmr_sse {
    struct evbuffer *line;              /* a data line split across reads */
    int64_t prompt, completion;         /* from a usage chunk, when sent */
    int64_t content_bytes, content_events;
    int got_usage;
} llmr_sse;

typedef struct llmr_call {
    llmr_worker *w;
    struct llmr_call *prev, *next;      /* the worker's live calls */
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *client_gone;          /* EV_CLOSED on the client socket */
    struct event *timer;                /* back-off wait, or first-byte deadline */
    enum llmr_op op;
    int stream;                         /* the client asked for stream: true */

    const char *body;                   /* the client's body, owned by req */
    size_t len;
    size_t model_start, model_end;      /* the "model" string's inside */
    char *up_body;                      /* body with the deployment's model */
    size_t up_len;
    const char *up_model;               /* the model up_body was built for */

    /* The plan: groups in the order they are tried.  plan[0] is the group
     * the client asked for; fallbacks are appended when it is spent. */
    int plan[LLMR_PLAN_MAX];
    int nplan, pos;
    int fallbacks_added;                /* 0, or which list was appended */
    int failed[LLMR_FAILED_MAX];        /* deployments that failed in this group */
    int nfailed;
    int group_attempts;
    int attempts;
    int backoff_step;

    int dep;                            /* deployment of the attempt, or -1 */
    CURL *easy;
    int sock_errno;                     /* why a socket() of the attempt failed */
    int sends;                          /* times libcurl set out to send it */
    struct evbuffer *resp;              /* buffered body (non-streams, errors) */
    long status;
    char content_type[128];
    char retry_after[16];
    int64_t t_start_us, t_attempt_us, deadline_us;
    int64_t tokens_est;                 /* prompt tokens, estimated at the start */
    int64_t t_admit_ms;                 /* when the attempt was admitted */
    enum llmr_unavail unavail;          /* why a group had no deployment, last */
    enum llmr_limit limit;              /* which limit, for LLMR_UNAVAIL_LIMIT */
    int64_t unavail_wait_ms;            /* until one becomes available again */

    int committed;                      /* the client has the first byte */
    int chunked;                        /* evhttp frames the reply in chunks */
    int paused;                         /* upstream paused for a slow client */
    struct evbuffer *chunk;
    llmr_sse sse;

    int64_t last_data_us;               /* a stream's last upstream bytes */

    int final_status;                   /* the last failure, to answer with */
    enum llmr_err final_err;
} llmr_call;

/* plan.c */
/* Moves to the next group of the plan (appending the fallbacks of the group
 * asked for the first time); returns 0 when the plan is spent. */
int llmr_plan_next(llmr_call *c);
/* Replaces the rest of the plan with `list`'s fallbacks of the current
 * group (else of the one asked for) and moves to the first; 0 if none. */
int llmr_plan_switch(llmr_call *c, const llmr_fallback_list *list);
/* Milliseconds to wait before retrying after `err`; fresh: a deployment
 * that has not failed this request is left (see plan.c). */
int64_t llmr_backoff_ms(llmr_call *c, enum llmr_err err, int64_t ra, int fresh);
/* Milliseconds a failure past allowed_fails cools its deployment, given a
 * 429's Retry-After (or -1) and whether it is the group's last usable one;
 * 0 when cooldowns are off. */
int64_t llmr_cooldown_ms(const llmr_conf *conf, int64_t ra, int last);
/* The attempt's Retry-After in milliseconds, or -1. */
int64_t llmr_retry_after_ms(const llmr_call *c);

/* Bounds (end of proxy.c).  Whether buffering `len` more bytes of c's
 * answer passes max_buffered_bytes; if so c is answered 503 from the loop. */
int llmr_proxy_over_budget(llmr_call *c, size_t len);
/* A stream silent for stream_idle_timeout: error event, end. */
void llmr_proxy_stream_stalled(llmr_call *c);
/* drain_timeout passed: end every stream with an error event, answer the
 * rest 503. */
void llmr_proxy_drain_deadline(llmr_worker *w);

/* Worker shutdown: drops every live call without answering. */
void llmr_proxy_abort_all(llmr_worker *w);
int64_t llmr_now_us(void);

/* stream.c */
/* Starts the chunked reply with the upstream's status and headers. */
void llmr_stream_commit(llmr_call *c);
/* Relays upstream bytes; returns len, or CURL_WRITEFUNC_PAUSE when the
 * client is too far behind. */
size_t llmr_stream_write(llmr_call *c, const char *data, size_t len);
/* Ends a committed stream; with err set, an SSE error event first. */
void llmr_stream_end(llmr_call *c, enum llmr_err err, const char *message);
/* Usage of the stream: reported, or estimated from its content. */
void llmr_stream_usage(llmr_call *c, int64_t *prompt, int64_t *completion);
void llmr_sse_free(llmr_sse *s);
/* Ends a committed stream with an error event of our own (`code`). */
void llmr_stream_abort(llmr_call *c, const char *code, const char *message);

#endif
