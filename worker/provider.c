/* Per-deployment upstream targets, built once per worker: the URL of each
 * operation and the header list with the deployment's credentials. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "worker_internal.h"

const char *const llmr_op_path[LLMR_OP_COUNT] = {
    [LLMR_OP_CHAT] = "chat/completions",
    [LLMR_OP_COMPLETIONS] = "completions",
    [LLMR_OP_EMBEDDINGS] = "embeddings",
    [LLMR_OP_RESPONSES] = "responses",
};

char *llmr_provider_url(const llmr_deployment *d, enum llmr_op op, const char *rest,
                        const char *query)
{
    int azure = d->provider == LLMR_PROVIDER_AZURE;
    int anth = d->provider == LLMR_PROVIDER_ANTHROPIC;
    int n = azure ? llmr_azure_url(d, op, rest, query, NULL, 0)
          : anth ? llmr_anthropic_url(d, op, rest, query, NULL, 0)
                  : llmr_openai_url(d, op, rest, query, NULL, 0);
    char *buf;

    if (n < 0 || (buf = malloc((size_t)n + 1)) == NULL)
        return NULL;
    if (azure)
        llmr_azure_url(d, op, rest, query, buf, (size_t)n + 1);
    else if (anth)
        llmr_anthropic_url(d, op, rest, query, buf, (size_t)n + 1);
    else
        llmr_openai_url(d, op, rest, query, buf, (size_t)n + 1);
    return buf;
}

/* The first of `names` set to something in the environment, or "". */
static char *env_first(const char *const *names)
{
    for (; *names != NULL; names++) {
        const char *v = getenv(*names);
        if (v != NULL && *v != '\0')
            return strdup(v);
    }
    return strdup("");
}

/* The proxy libcurl would look up in the environment for a URL, on every
 * transfer (five getenv() and a strdup, ~1% of a request): <scheme>_proxy,
 * its upper case except HTTP_PROXY (httpoxy), then all_proxy, ALL_PROXY; an
 * empty variable counts as unset.  Read once per worker instead: a running
 * worker's environment does not change.  "" (set as CURLOPT_PROXY) is no
 * proxy, and keeps libcurl from looking again. */
static char *env_proxy(const char *url)
{
    static const char *const http[] = {"http_proxy", "all_proxy", "ALL_PROXY", NULL};
    static const char *const https[] = {"https_proxy", "HTTPS_PROXY", "all_proxy",
                                        "ALL_PROXY", NULL};

    return env_first(strncasecmp(url, "https:", 6) == 0 ? https : http);
}

/* no_proxy, then NO_PROXY, as libcurl reads them. */
static char *env_noproxy(void)
{
    static const char *const names[] = {"no_proxy", "NO_PROXY", NULL};

    return env_first(names);
}

/* Each URL is also handed to libcurl parsed (CURLOPT_CURLU): given a string,
 * it parses it and prints it back with its own printf, a byte at a time, on
 * every transfer (~12,000 instructions, 8% of a request).  With the flags
 * it parses CURLOPT_URL with, so that both read a URL alike; a URL it
 * rejects stays a string, for the transfer to fail as it would have. */
static CURLU *url_parsed(const char *url)
{
    CURLU *uh = curl_url();

    if (uh != NULL
        && curl_url_set(uh, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME)
               != CURLUE_OK) {
        curl_url_cleanup(uh);
        uh = NULL;
    }
    return uh;
}

static int target_build(const llmr_deployment *d, llmr_target *t)
{
    for (int op = 0; op < LLMR_OP_COUNT; op++) {
        if ((t->url[op] = llmr_provider_url(d, (enum llmr_op)op, "", NULL)) == NULL)
            return -1;
        t->uh[op] = url_parsed(t->url[op]);
    }
    t->proxy = env_proxy(d->api_base);
    t->noproxy = env_noproxy();
    if (t->proxy == NULL || t->noproxy == NULL)
        return -1;
    t->headers = d->provider == LLMR_PROVIDER_AZURE ? llmr_azure_headers(d)
               : d->provider == LLMR_PROVIDER_ANTHROPIC ? llmr_anthropic_headers(d)
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
        llmr_target *t = &w->targets[i];

        for (int op = 0; op < LLMR_OP_COUNT; op++) {
            free(t->url[op]);
            curl_url_cleanup(t->uh[op]);
        }
        curl_slist_free_all(t->headers);
        free(t->proxy);
        free(t->noproxy);
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
 * in place of the group's (or inserted where the client sent none) and
 * llmroute's own controls taken out; every other byte goes upstream
 * untouched.  Edits are applied in the order of their offsets. */
char *llmr_body_rewrite(const char *body, size_t len, const llmr_body_edit *e,
                        const char *model, size_t *out_len)
{
    size_t mlen = strlen(model), pos = 0;
    size_t cap = len + 2 * mlen + sizeof("\"model\":\"\",");
    char *b = malloc(cap), *p = b;
    int di = 0, model_done = 0;

    if (b == NULL)
        return NULL;
    for (;;) {
        size_t nd = di < e->ndrop ? e->drop[di].start : SIZE_MAX;
        size_t nm = model_done ? SIZE_MAX : e->model_start;
        size_t next = nd < nm ? nd : nm;

        if (next == SIZE_MAX)
            break;
        memcpy(p, body + pos, next - pos);
        p += next - pos;
        if (nm <= nd) {
            if (e->model_insert)
                p += sprintf(p, "\"model\":\"");
            p += llmr_json_escape(p, 2 * mlen + 1, model, mlen);
            if (e->model_insert)
                p += sprintf(p, e->model_insert == 1 ? "\"," : "\"");
            pos = e->model_insert ? e->model_start : e->model_end;
            model_done = 1;
        } else {
            pos = e->drop[di++].end;
        }
    }
    memcpy(p, body + pos, len - pos);
    p += len - pos;
    *out_len = (size_t)(p - b);
    return b;
}

static size_t member_end(const llmr_json *j, int val)
{
    return (size_t)j->toks[val].end + (j->toks[val].type == JSMN_STRING);
}

static int add_drop(llmr_body_edit *e, size_t start, size_t end)
{
    if (e->ndrop >= LLMR_DROP_MAX)
        return -1;
    e->drop[e->ndrop].start = start;
    e->drop[e->ndrop++].end = end;
    return 0;
}

/* A run of dropped members goes with the separator after it when a kept
 * member follows, else with the one before it, so that what is left is
 * still one well-formed object with the client's own spacing. */
int llmr_body_plan(const llmr_json *j, const char *const *names, int nnames,
                   llmr_body_edit *e)
{
    int nmem = j->toks[0].size, k = 1, kept = 0, run = 0, model = -1;
    size_t run_start = 0, run_prev_end = 0, prev_end = 0, last_end = 0;

    e->ndrop = 0;
    for (int m = 0; m < nmem; m++, k = llmr_json_skip(j, k + 1)) {
        size_t start = (size_t)j->toks[k].start - 1, end = member_end(j, k + 1);
        int drop = 0;

        for (int n = 0; n < nnames && !drop; n++)
            drop = llmr_json_eq(j, k, names[n]);
        if (llmr_json_eq(j, k, "model"))
            model = k + 1;
        if (drop && !run) {
            run = 1;
            run_start = start;
            run_prev_end = kept ? prev_end : 0;
        } else if (!drop) {
            if (run && add_drop(e, run_start, start) < 0)
                return -1;
            run = 0;
            kept++;
            prev_end = end;
        }
        last_end = end;
    }
    if (run && add_drop(e, run_prev_end ? run_prev_end : run_start, last_end) < 0)
        return -1;
    if (model >= 0) {
        e->model_start = (size_t)j->toks[model].start;
        e->model_end = (size_t)j->toks[model].end;
        e->model_insert = 0;
    } else {
        e->model_start = e->model_end = (size_t)j->toks[0].start + 1;
        e->model_insert = kept ? 1 : 2;
    }
    return 0;
}
