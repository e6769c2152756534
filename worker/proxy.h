/* One routed request's life: pick a deployment, call it, answer. */
#ifndef LLMR_PROXY_H
#define LLMR_PROXY_H

#include <stdint.h>

#include "worker.h"

#define LLMR_RESPONSE_MAX (64L << 20)   /* an upstream body past this is an error */

typedef struct llmr_call {
    llmr_worker *w;
    struct llmr_call *prev, *next;      /* the worker's live calls */
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *client_gone;          /* EV_CLOSED on the client socket */
    enum llmr_op op;
    int group;

    const char *body;                   /* the client's body, owned by req */
    size_t len;
    size_t model_start, model_end;      /* the "model" string's inside */
    char *up_body;                      /* body with the deployment's model */
    size_t up_len;

    int dep;                            /* deployment of the attempt, or -1 */
    int attempts;
    CURL *easy;
    struct evbuffer *resp;
    long status;
    char content_type[128];
    char retry_after[16];
    int64_t t_start_us, t_attempt_us, deadline_us;
} llmr_call;

/* Worker shutdown: drops every live call without answering. */
void llmr_proxy_abort_all(llmr_worker *w);
int64_t llmr_now_us(void);

#endif
