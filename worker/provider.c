/* Per-deployment upstream targets, built once per worker: the URL of each
 * operation and the header list with the deployment's credentials. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker_internal.h"

const char *const llmr_op_path[LLMR_OP_COUNT] = {
    [LLMR_OP_CHAT] = "chat/completions",
    [LLMR_OP_COMPLETIONS] = "completions",
    [LLMR_OP_EMBEDDINGS] = "embeddings",
    [LLMR_OP_RESPONSES] = "responses",
};

static int url_of(const llmr_deployment *d, enum llmr_op op, char *buf, size_t cap)
{
    return d->provider == LLMR_PROVIDER_AZURE ? llmr_azure_url(d, op, buf, cap)
                                              : llmr_openai_url(d, op, buf, cap);
}

/* Sized from the deployment, so no length the config loader accepts is
 * cut short here. */
static int target_build(const llmr_deployment *d, llmr_target *t)
{
    for (int op = 0; op < LLMR_OP_COUNT; op++) {
        int n = url_of(d, (enum llmr_op)op, NULL, 0);
        if (n < 0 || (t->url[op] = malloc((size_t)n + 1)) == NULL
            || url_of(d, (enum llmr_op)op, t->url[op], (size_t)n + 1) != n)
            return -1;
    }
    t->headers = d->provider == LLMR_PROVIDER_AZURE ? llmr_azure_headers(d)
                                                    : llmr_openai_headers(d);
    return t->headers == NULL ? -1 : 0;
}

int llmr_targets_build(llmr_worker *w)
{
    const llmr_conf *c = w->conf;

    w->targets = calloc((size_t)c->ndeployments, sizeof(llmr_target));
    if (w->targets == NULL)
        return -1;
    for (int i = 0; i < c->ndeployments; i++) {
        if (target_build(&c->deployments[i], &w->targets[i]) < 0) {
            llmr_error("deployment %s: cannot build its upstream URL", c->deployments[i].id);
            return -1;
        }
    }
    return 0;
}

void llmr_targets_free(llmr_worker *w)
{
    if (w->targets == NULL)
        return;
    for (int i = 0; i < w->conf->ndeployments; i++) {
        for (int op = 0; op < LLMR_OP_COUNT; op++)
            free(w->targets[i].url[op]);
        curl_slist_free_all(w->targets[i].headers);
    }
    free(w->targets);
    w->targets = NULL;
}

/* Headers common to every provider.  "Expect:" stops libcurl from waiting
 * for a 100-continue on large bodies, which would add a round trip. */
struct curl_slist *llmr_provider_headers(struct curl_slist *h, const char *auth_name,
                                         const char *auth_prefix, const char *key)
{
    struct curl_slist *n;

    n = curl_slist_append(h, "Content-Type: application/json");
    if (n != NULL)
        n = curl_slist_append(n, "Expect:");
    if (n != NULL && key != NULL) {
        size_t cap = strlen(auth_name) + strlen(auth_prefix) + strlen(key) + 3;
        char *line = malloc(cap);
        int r = line != NULL ? snprintf(line, cap, "%s: %s%s", auth_name, auth_prefix, key)
                             : -1;
        n = r > 0 && (size_t)r < cap ? curl_slist_append(n, line) : NULL;
        if (line != NULL)
            explicit_bzero(line, cap);      /* the key: no copy left behind */
        free(line);
    }
    if (n == NULL)
        curl_slist_free_all(h);
    return n;
}

/* The body an upstream gets: the client's, with the deployment's model name
 * in place of the group's; every other byte goes upstream untouched. */
char *llmr_body_with_model(const char *body, size_t len, size_t model_start, size_t model_end,
                           const char *model, size_t *out_len)
{
    size_t mlen = strlen(model);
    size_t cap = len - (model_end - model_start) + 2 * mlen + 1;
    char *b = malloc(cap), *p;

    if (b == NULL)
        return NULL;
    memcpy(b, body, model_start);
    p = b + model_start;
    p += llmr_json_escape(p, 2 * mlen + 1, model, mlen);
    memcpy(p, body + model_end, len - model_end);
    p += len - model_end;
    *out_len = (size_t)(p - b);
    return b;
}
