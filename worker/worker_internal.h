/* worker_internal: what worker/ files share.  A worker is one process
 * serving HTTP with evhttp and calling upstreams with one libcurl multi
 * handle, both on one libevent loop.  Everything a worker owns hangs off
 * one llmr_worker, created after fork.  master/ sees only worker.h. */
#ifndef LLMR_WORKER_INTERNAL_H
#define LLMR_WORKER_INTERNAL_H

#include <stdint.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/http.h>

#include "conf.h"
#include "json.h"
#include "shm.h"
#include "worker.h"

enum llmr_op { LLMR_OP_CHAT, LLMR_OP_COMPLETIONS, LLMR_OP_EMBEDDINGS, LLMR_OP_RESPONSES,
               LLMR_OP_COUNT };

/* What a worker precomputes per deployment so that the request path builds
 * no URL and no header list, and libcurl parses no URL and reads no
 * environment: each URL also parsed (CURLOPT_CURLU), and the proxy the
 * environment names for the deployment's scheme ("" for none). */
typedef struct llmr_target {
    char *url[LLMR_OP_COUNT];
    CURLU *uh[LLMR_OP_COUNT];
    struct curl_slist *headers;
    char *proxy, *noproxy;
} llmr_target;

typedef struct llmr_router {
    double *weight;             /* per deployment, simple-shuffle weight */
    llmr_limits *limits;        /* per deployment: rpm, tpm, max_parallel */
    int *cand;                  /* scratch: candidates of one pick */
} llmr_router;

typedef struct llmr_worker {
    const llmr_conf *conf;
    llmr_shm *shm;
    int index;
    int wslot;                  /* this worker's share in the slots' counters */
    uint32_t generation;

    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket **bound;
    int nbound;
    struct event *sig_quit, *sig_term, *sig_int, *drain_timer;

    CURLM *multi;
    struct event *curl_timer;
    CURL **easy_pool;           /* idle easy handles, reused */
    int npool;
    struct llmr_up *up;         /* upstream.c: the new-connection gate */
    struct llmr_tls *tls;       /* tls.c: trust stores, TLS session share */

    llmr_target *targets;       /* [conf->ndeployments] */
    llmr_router router;
    uint64_t rng;
    char *models_body;          /* GET /v1/models, built once */
    size_t models_len;

    struct llmr_request *requests;  /* live routed requests (request.c) */
    struct llmr_request *req_pool;  /* finished ones kept for reuse (request.c) */
    int req_pool_n;
    int64_t local_fail_log_ms;  /* last log line of a 503 local_resource_exhausted */
    unsigned long local_fails;  /* such 503s since that line */
    size_t resp_bytes;          /* answers being buffered from upstreams, all requests */
    int draining;
    long active;                /* requests whose reply is not yet sent: written
                                 * only by http_api.c (llmr_http_active_*) */
    unsigned long started;      /* requests ever started, for drain */
    unsigned long started_at_tick;
    unsigned drain_ticks;
    int exit_code;
    struct llmr_guard *guard;   /* accept pauses, lingering closes (guard.c) */
    struct llmr_conns *conns;   /* per-connection state (conn.c) */
    int drain_final;            /* drain_timeout passed: streams were ended */
    unsigned drain_final_ticks;
    struct llmr_alog *alog;     /* access_log.c */
    struct llmr_cache *cache;   /* cache.c: the response cache, or NULL when off */
} llmr_worker;

/* http_api.c */
void llmr_http_handle(struct evhttp_request *req, void *arg);
void llmr_http_free(llmr_worker *w);
/* Replies with a JSON body (errors.c's errors go through here). */
void llmr_http_reply_json(llmr_worker *w, struct evhttp_request *req, int status,
                          const char *json, size_t len);
/* The active-request count: a request stops counting once, when its reply
 * is sent, when it is discarded, or when its connection dies first. */
void llmr_http_active_end(llmr_worker *w);
const char *llmr_http_reason(int status);
/* reply.c: the headers of every reply: Date, and an x-request-id of our
 * own where it has none yet. */
void llmr_reply_common(struct evkeyvalq *out);
/* A fresh random request id, "req_" + 24 hex, into buf[29]. */
void llmr_request_id_new(char *buf, size_t cap);
int llmr_http_models_build(llmr_worker *w);
/* Sends the reply and ends the request's life; while draining it asks the
 * client to reconnect elsewhere. */
void llmr_http_reply(llmr_worker *w, struct evhttp_request *req, int status,
                     struct evbuffer *body);
/* A chunked reply: headers now, body with evhttp_send_reply_chunk(). */
void llmr_http_stream_start(llmr_worker *w, struct evhttp_request *req, int status);
void llmr_http_stream_end(llmr_worker *w, struct evhttp_request *req);
/* Whether the request's method is `want`; a GET resource answers HEAD too,
 * as nginx and LiteLLM do (the same status and head, no body:
 * llmr_http_reply drops it).  The Allow header of a 405 for `want`. */
int llmr_http_method_ok(struct evhttp_request *req, enum evhttp_cmd_type want);
const char *llmr_http_allow(enum evhttp_cmd_type want);
/* Ends a request whose client has gone, without a reply. */
void llmr_http_discard(llmr_worker *w, struct evhttp_request *req);
/* Whether the client sent the master_key (Bearer or api-key). */
int llmr_http_authorized(llmr_worker *w, struct evhttp_request *req);
/* Validates a routed call's body and starts it; url_model: the group named
 * by the path, or NULL (the body's model). */
void llmr_http_proxy(llmr_worker *w, struct evhttp_request *req, enum llmr_op op,
                     const char *url_model);

/* ui.c: GET /status.json (authorized by the caller) and GET /ui. */
void llmr_ui_status_json(llmr_worker *w, struct evhttp_request *req);
void llmr_ui_page_reply(llmr_worker *w, struct evhttp_request *req);
/* health.c: GET /health from the segment, and readiness's "groups":{...}
 * (whether any deployment of each group can take a request). */
void llmr_health_reply(llmr_worker *w, struct evhttp_request *req);
void llmr_health_groups_json(llmr_worker *w, struct evbuffer *b);

/* routes.c: the paths that carry a name (Azure's deployment routes,
 * /v1/models/{id}, /v1/responses/{id}...); 1 when path was one of them and
 * has been answered. */
int llmr_routes_handle(llmr_worker *w, struct evhttp_request *req, const char *path);


/* upstream.c */
int llmr_upstream_init(llmr_worker *w);
void llmr_upstream_free(llmr_worker *w);
CURL *llmr_upstream_easy(llmr_worker *w);
void llmr_upstream_release(llmr_worker *w, CURL *easy);
/* Reports the end of a transfer to its owner. */
typedef void llmr_upstream_done_fn(void *arg, CURLcode result);
/* One transfer: whom (dep, op), what (body), for how long, and the owner's
 * callbacks, all given with their `arg`. */
typedef struct llmr_xfer_spec {
    int dep;
    enum llmr_op op;
    const char *body;
    size_t len;
    long timeout_ms;
    curl_write_callback on_body, on_header;
    char *errbuf;               /* CURL_ERROR_SIZE bytes: libcurl's words for a failure */
    llmr_upstream_done_fn *done;
    void *arg;
    const char *url;            /* instead of the op's URL (responses.c), or NULL */
    const char *method;         /* "GET" or "DELETE" without a body, or NULL: POST */
    const struct curl_slist *headers;   /* instead of the deployment's, or NULL */
} llmr_xfer_spec;
int llmr_upstream_start(llmr_worker *w, CURL *easy, const llmr_xfer_spec *spec);
void llmr_upstream_abort(llmr_worker *w, CURL *easy);
/* What the attempt on `easy` met: socket()'s errno when one failed, and how
 * many times libcurl set out to send it (more than 1: a re-send refused). */
void llmr_upstream_facts(llmr_worker *w, CURL *easy, int *sock_errno, int *sends);
/* Whether the attempt on `easy` is still waiting in its origin's
 * new-connection queue, or its deadline passed there: it never reached the
 * deployment. */
int llmr_upstream_never_sent(llmr_worker *w, CURL *easy);

/* tls.c */
int llmr_tls_init(llmr_worker *w);
void llmr_tls_free(llmr_worker *w);
void llmr_tls_easy_init(llmr_worker *w, CURL *easy);
void llmr_tls_attempt(llmr_worker *w, CURL *easy, int dep);

/* provider.c, provider_openai.c, provider_azure.c */
int llmr_targets_build(llmr_worker *w);
void llmr_targets_free(llmr_worker *w);
/* Like snprintf: the URL of op on d, with `rest` after the op's path and
 * the query (without "?"; NULL or "" for none); its length, written into
 * buf when cap is enough. */
int llmr_openai_url(const llmr_deployment *d, enum llmr_op op, const char *rest,
                    const char *query, char *buf, size_t cap);
int llmr_azure_url(const llmr_deployment *d, enum llmr_op op, const char *rest,
                   const char *query, char *buf, size_t cap);
/* The same, for d's provider, in a buffer of its own (free()), or NULL. */
char *llmr_provider_url(const llmr_deployment *d, enum llmr_op op, const char *rest,
                        const char *query);
struct curl_slist *llmr_openai_headers(const llmr_deployment *d);
struct curl_slist *llmr_azure_headers(const llmr_deployment *d);
int llmr_anthropic_url(const llmr_deployment *d, enum llmr_op op, const char *rest,
                       const char *query, char *buf, size_t cap);
struct curl_slist *llmr_anthropic_headers(const llmr_deployment *d);
extern const char *const llmr_op_path[LLMR_OP_COUNT];
/* The body [0, len) as an upstream gets it: `e` says where the model goes
 * (replacing the inside of the "model" string, JSON-escaped, or inserted as
 * the first member when the client sent none) and which byte ranges
 * (top-level members with their separator) are left out.  Every byte
 * outside those edits is kept.  A new buffer (free()), its length in
 * *out_len; NULL without memory. */
#define LLMR_DROP_MAX 8
typedef struct llmr_span {
    size_t start, end;
} llmr_span;
typedef struct llmr_body_edit {
    size_t model_start, model_end;  /* the model's inside, or the insertion point */
    int model_insert;               /* 0 replace; 1 insert, then ','; 2 insert alone */
    llmr_span drop[LLMR_DROP_MAX];  /* sorted, disjoint */
    int ndrop;
} llmr_body_edit;
char *llmr_body_rewrite(const char *body, size_t len, const llmr_body_edit *e,
                        const char *model, size_t *out_len);
/* Plans the edit of the object j (token 0): its members named in `names`
 * dropped, its model replaced or inserted.  -1: too many runs to drop. */
int llmr_body_plan(const llmr_json *j, const char *const *names, int nnames,
                   llmr_body_edit *e);
/* Content-Type, Expect and "<auth_name>: <auth_prefix><key>" when a key is set. */
struct curl_slist *llmr_provider_headers(struct curl_slist *h, const char *auth_name,
                                         const char *auth_prefix, const char *key);

/* classify.c: what an upstream failure means for routing */
enum llmr_err {
    LLMR_ERR_NONE, LLMR_ERR_RATE_LIMIT, LLMR_ERR_CONTEXT_WINDOW, LLMR_ERR_CONTENT_POLICY,
    LLMR_ERR_AUTH, LLMR_ERR_NOT_FOUND, LLMR_ERR_BAD_REQUEST, LLMR_ERR_TIMEOUT,
    LLMR_ERR_SERVER, LLMR_ERR_CONNECTION, LLMR_ERR_OTHER
};
enum llmr_err llmr_classify(const llmr_deployment *d, CURLcode result, long status,
                            const char *body, size_t len);
/* Worth another attempt in the same group; these also count towards a
 * deployment's cooldown (429, 408, 5xx, timeouts, connection errors). */
int llmr_err_retryable(enum llmr_err e);
const char *llmr_err_name(enum llmr_err e);

/* router.c */
int llmr_router_init(llmr_worker *w);
void llmr_router_free(llmr_worker *w);
typedef struct llmr_pick_req {
    const int *avoid;           /* deployments that failed this request */
    int navoid;
    int64_t tokens;             /* estimated prompt tokens */
    int stream;
    int reserve;                /* admit the pick (else only look) */
    enum llmr_op op;            /* LLMR_OP_RESPONSES skips deployments that do not serve it */
    int prefer;                 /* deployment + 1 taken before the strategy when a
                                 * candidate (previous_response_id's creator); 0 none */
} llmr_pick_req;

enum llmr_unavail { LLMR_UNAVAIL_NONE, LLMR_UNAVAIL_COOLING, LLMR_UNAVAIL_LIMIT,
                    LLMR_UNAVAIL_CONTEXT };

typedef struct llmr_pick {
    int dep;                    /* the deployment, admitted when reserve; or -1 */
    enum llmr_unavail why;      /* when -1 */
    enum llmr_limit limit;      /* the limit that refused, for LLMR_UNAVAIL_LIMIT */
    int64_t wait_ms;            /* until a cooldown ends or the window rolls over */
} llmr_pick;

/* A deployment of `group` for this request (see router.c), or -1. */
int llmr_router_pick(llmr_worker *w, int group, const llmr_pick_req *rq, llmr_pick *out);

/* How an admitted attempt ended: the one report of it to the router. */
typedef struct llmr_admission_end {
    int unadmit;                /* it never reached the deployment: nothing is charged */
    enum llmr_outcome outcome;
    enum llmr_err err;          /* LLMR_OUTCOME_FAILURE: what failed */
    int64_t retry_after_ms;     /* a 429's Retry-After, or -1 */
    int64_t dur_us;             /* since the transfer started */
    int latency;                /* a buffered success: dur_us into the latency average */
    int64_t tokens_est;         /* admitted against tpm */
    int64_t prompt, completion; /* reported usage (success) */
    int64_t t_admit_ms;
    int retry;                  /* not the first attempt in its group (GET /metrics) */
    int fallback;               /* the first attempt in a fallback group */
    int64_t overhead_us;        /* the request's first attempt: our time before it; else -1 */
} llmr_admission_end;
/* Ends an admission on dep: its counters, the tpm window corrected by the
 * usage and, after a retryable failure, the failure window that may cool
 * dep down for every worker.  Returns the cooldown started (ms), or 0. */
int64_t llmr_router_end(llmr_worker *w, int dep, const llmr_admission_end *e);

/* metrics.c: GET /metrics (README "Metrics") */
void llmr_metrics_handle(llmr_worker *w, struct evhttp_request *req);
/* The histograms and per-class counters of an attempt that ended. */
void llmr_metrics_attempt_end(llmr_slot *s, const llmr_admission_end *e);
/* plan.c: milliseconds a failure past allowed_fails cools its deployment,
 * given a 429's Retry-After (or -1) and whether it is the group's last
 * usable one; 0 when cooldowns are off. */
int64_t llmr_cooldown_ms(const llmr_conf *conf, int64_t ra, int last);
uint64_t llmr_rand(llmr_worker *w);

/* responses.c: the Responses API's own parts (README "Responses API") */
struct llmr_request;
struct llmr_sse;
/* Whether some deployment of `group` serves /v1/responses. */
int llmr_responses_group_serves(const llmr_conf *c, int group);
/* GET/DELETE /v1/responses/{id}[/input_items], POST .../{id}/cancel:
 * forwarded to the deployment that created the response. */
void llmr_responses_forward(llmr_worker *w, struct evhttp_request *req, const char *rest);
/* Remembers, for every worker, that deployment dep created response `id`. */
void llmr_responses_remember(llmr_worker *w, int dep, const char *id, size_t len);
/* The deployment of `group` that created the body's previous_response_id
 * (it holds the conversation), or -1. */
int llmr_responses_prefer(llmr_worker *w, const llmr_json *j, int group);
/* A buffered Responses answer succeeded: remembers its id. */
void llmr_responses_buffered(struct llmr_request *r);
/* One "data:" line of a Responses stream: usage, output deltas, the id. */
void llmr_responses_sse(struct llmr_sse *sse, const char *js, size_t len);
/* Worker exit: ends the forwards still running without an answer. */
void llmr_responses_abort_all(llmr_worker *w);

#endif
