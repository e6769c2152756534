/* The Responses API's own parts.  POST /v1/responses is routed like chat
 * (request.c, op LLMR_OP_RESPONSES); what differs lives here:
 *
 * - the id map: a response lives on the deployment that created it, so
 *   GET/DELETE /v1/responses/{id}, GET .../input_items and POST .../cancel
 *   must reach that one.  Each id seen in an answer is recorded in the
 *   shared segment (shm/resp_ids.c) against the deployment's slot, which
 *   every worker and every config generation shares;
 * - those forwards: one transfer to one deployment, no retry (no other
 *   deployment holds the response), the answer relayed as it came;
 * - reading a Responses event stream: usage from response.completed,
 *   output deltas for the estimate and the time to the first token, the
 *   id from response.created. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "clock.h"
#include "conn.h"
#include "errors.h"
#include "log.h"
#include "request.h"

#define RESP_ID_MAX 256             /* longer ids are not ids OpenAI hands out */

/* ---- the id map ---------------------------------------------------------- */

/* FNV-1a: the table needs spread, not secrecy (ids come from upstreams). */
static uint64_t id_hash(const char *id, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)id[i]) * 0x100000001b3ULL;
    return h;
}

void llmr_responses_remember(llmr_worker *w, int dep, const char *id, size_t len)
{
    int slot = w->conf->deployments[dep].slot;

    if (len == 0 || len > RESP_ID_MAX || slot < 0)
        return;
    llmr_shm_resp_put(w->shm, id_hash(id, len), slot);
}

/* The deployment of this config that created `id`, or -1 (unknown, or
 * created by a deployment a reload removed). */
static int creator_of(llmr_worker *w, const char *id, size_t len)
{
    int slot = llmr_shm_resp_get(w->shm, id_hash(id, len));

    for (int i = 0; slot >= 0 && i < w->conf->ndeployments; i++)
        if (w->conf->deployments[i].slot == slot)
            return i;
    return -1;
}

int llmr_responses_group_serves(const llmr_conf *c, int group)
{
    const llmr_group *g = &c->groups[group];

    for (int k = 0; k < g->ndeployments; k++)
        if (!c->deployments[g->deployments[k]].no_responses)
            return 1;
    return 0;
}

int llmr_responses_prefer(llmr_worker *w, const llmr_json *j, int group)
{
    int t = llmr_json_get(j, 0, "previous_response_id"), dep;
    const char *id;
    size_t n;

    if (t < 0 || j->toks[t].type != JSMN_STRING)
        return -1;
    id = j->js + j->toks[t].start;
    n = (size_t)(j->toks[t].end - j->toks[t].start);
    if (n == 0 || n > RESP_ID_MAX || memchr(id, '\\', n) != NULL)
        return -1;
    dep = creator_of(w, id, n);
    return dep >= 0 && w->conf->deployments[dep].group == group ? dep : -1;
}

/* The inside of the string member `key` of the object js[0..len), as
 * written (escapes and all). */
static int string_member(const char *js, size_t len, const char *key, const char **s, size_t *n)
{
    size_t off, vn;

    if (llmr_json_member(js, len, key, &off, &vn) < 0 || vn < 2 || js[off] != '"')
        return -1;
    *s = js + off + 1;
    *n = vn - 2;
    return 0;
}

/* The same for an id: one with an escape is no id OpenAI hands out. */
static int id_member(const char *js, size_t len, const char **s, size_t *n)
{
    return string_member(js, len, "id", s, n) == 0 && memchr(*s, '\\', *n) == NULL ? 0 : -1;
}

void llmr_responses_buffered(llmr_request *r)
{
    size_t len = evbuffer_get_length(r->at.resp);
    const char *body = (const char *)evbuffer_pullup(r->at.resp, -1), *id;
    size_t n;

    if (body != NULL && id_member(body, len, &id, &n) == 0)
        llmr_responses_remember(r->w, r->at.dep, id, n);
}

/* ---- the event stream ---------------------------------------------------- */

static int type_is(const char *t, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(t, want, n) == 0;
}

/* The event's "type" first (it leads every event OpenAI sends), then only
 * what that type carries, each member found in one scan: an event may
 * carry the whole response, output included.  Any *.delta is output (text,
 * refusal, arguments, ...), its string counted as written, escapes and all. */
void llmr_responses_sse(llmr_sse *sse, const char *js, size_t len)
{
    const char *t, *s;
    size_t tn, off, rn, n;

    if (string_member(js, len, "type", &t, &tn) < 0)
        return;
    if (tn > 6 && memcmp(t + tn - 6, ".delta", 6) == 0) {
        if (string_member(js, len, "delta", &s, &n) == 0 && n > 0) {
            sse->content_bytes += (int64_t)n;
            sse->content_events++;
            if (sse->first_token_us == 0)
                sse->first_token_us = llmr_clock_us();
        }
        return;
    }
    if (!type_is(t, tn, "response.created") && !type_is(t, tn, "response.completed")
        && !type_is(t, tn, "response.incomplete") && !type_is(t, tn, "response.failed"))
        return;
    if (llmr_json_member(js, len, "response", &off, &rn) < 0 || js[off] != '{')
        return;
    if (sse->resp_id[0] == '\0' && id_member(js + off, rn, &s, &n) == 0
        && n < sizeof(sse->resp_id)) {
        memcpy(sse->resp_id, s, n);
        sse->resp_id[n] = '\0';
        sse->resp_id_new = 1;
    }
    if (llmr_usage_read(js + off, rn, &sse->prompt, &sse->completion) == 0)
        sse->got_usage = 1;
}

/* ---- forwards to the creating deployment -------------------------------- */

typedef struct fwd {
    llmr_worker *w;
    struct fwd *prev, *next;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    CURL *easy;
    int dep;
    long status;
    char content_type[128];
    struct evbuffer *resp;
    char *url;
    char id[RESP_ID_MAX + 1];
} fwd;

static fwd *forwards;               /* this worker's, for its exit */

static void fwd_free(fwd *f)
{
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        forwards = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
    if (f->easy != NULL)
        llmr_upstream_release(f->w, f->easy);
    if (f->resp != NULL)
        evbuffer_free(f->resp);
    free(f->url);
    free(f);
}

static size_t fwd_body(char *data, size_t size, size_t n, void *arg)
{
    fwd *f = arg;
    size_t len = size * n;

    if (evbuffer_get_length(f->resp) + len > (size_t)LLMR_RESPONSE_MAX)
        return 0;
    return evbuffer_add(f->resp, data, len) == 0 ? len : 0;
}

static size_t fwd_header(char *data, size_t size, size_t n, void *arg)
{
    fwd *f = arg;
    size_t len = size * n, k;

    if (len >= 12 && memcmp(data, "HTTP/", 5) == 0) {
        const char *sp = memchr(data, ' ', len);
        f->status = sp != NULL ? strtol(sp + 1, NULL, 10) : 0;
        f->content_type[0] = '\0';
    } else if (len > 13 && strncasecmp(data, "content-type:", 13) == 0) {
        data += 13;
        len -= 13;
        while (len > 0 && (*data == ' ' || *data == '\t')) {
            data++;
            len--;
        }
        while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n'))
            len--;
        k = len < sizeof(f->content_type) ? len : sizeof(f->content_type) - 1;
        memcpy(f->content_type, data, k);
        f->content_type[k] = '\0';
    }
    return size * n;
}

static void fwd_done(void *arg, CURLcode result)
{
    fwd *f = arg;
    llmr_worker *w = f->w;
    const llmr_deployment *d = &w->conf->deployments[f->dep];
    struct evkeyvalq *out = evhttp_request_get_output_headers(f->req);
    size_t idlen = strlen(f->id);

    llmr_conn_set_closecb(w, f->evcon, NULL, NULL);
    llmr_upstream_release(w, f->easy);
    f->easy = NULL;
    evhttp_add_header(out, "x-llmroute-deployment", d->id);
    if (result != CURLE_OK || f->status < 100) {
        llmr_warn("response %s: deployment %s failed: %s", f->id, d->id,
                  curl_easy_strerror(result));
        llmr_error_reply(w, f->req, LLMR_E_RESPONSE_FORWARD, LLMR_CLIP(idlen), f->id,
                         LLMR_CLIP_MORE(idlen), d->id, curl_easy_strerror(result));
    } else {
        evhttp_add_header(out, "Content-Type",
                          f->content_type[0] ? f->content_type : "application/json");
        llmr_http_reply(w, f->req, (int)f->status, f->resp);
    }
    fwd_free(f);
}

/* The client left: the transfer is abandoned and the request freed. */
static void fwd_client_close(struct evhttp_connection *evcon, void *arg)
{
    fwd *f = arg;

    (void)evcon;
    if (evhttp_request_get_connection(f->req) == NULL)
        llmr_http_discard(f->w, f->req);
    else
        llmr_http_active_end(f->w);
    fwd_free(f);
}

void llmr_responses_abort_all(llmr_worker *w)
{
    while (forwards != NULL) {
        llmr_conn_set_closecb(w, forwards->evcon, NULL, NULL);
        llmr_http_active_end(w);
        fwd_free(forwards);
    }
}

/* The upstream URL of `id` + `suffix` on deployment d, with the client's
 * query (input_items' limit, order, after; include[]). */
static char *fwd_url(const llmr_deployment *d, const char *id, const char *suffix,
                     const char *query)
{
    char rest[RESP_ID_MAX + 32];

    snprintf(rest, sizeof(rest), "/%s%s", id, suffix);
    return llmr_provider_url(d, LLMR_OP_RESPONSES, rest, query);
}

static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || c == '_' || c == '-' || c == '.';
}

/* Splits "{id}[/input_items|/cancel]"; returns the suffix ("" for the
 * response itself), or NULL when `rest` is no such path. */
static const char *split_id(const char *rest, size_t *idlen)
{
    size_t n = 0;

    while (rest[n] != '\0' && rest[n] != '/')
        if (!id_char(rest[n++]))
            return NULL;
    *idlen = n;
    if (n == 0 || n > RESP_ID_MAX)
        return NULL;
    if (rest[n] == '\0' || strcmp(rest + n, "/input_items") == 0
        || strcmp(rest + n, "/cancel") == 0)
        return rest + n;
    return NULL;
}

static int method_ok(enum evhttp_cmd_type m, const char *suffix, const char **name)
{
    *name = m == EVHTTP_REQ_GET ? "GET" : m == EVHTTP_REQ_DELETE ? "DELETE" : NULL;
    if (strcmp(suffix, "/cancel") == 0)
        return m == EVHTTP_REQ_POST;
    if (*suffix != '\0')
        return m == EVHTTP_REQ_GET;
    return m == EVHTTP_REQ_GET || m == EVHTTP_REQ_DELETE;
}

static int fwd_start(fwd *f, const char *method)
{
    llmr_worker *w = f->w;
    const llmr_deployment *d = &w->conf->deployments[f->dep];
    double t = d->timeout > 0 && d->timeout < w->conf->timeout ? d->timeout : w->conf->timeout;
    llmr_xfer_spec spec = { .dep = f->dep, .op = LLMR_OP_RESPONSES, .body = "", .len = 0,
                            .timeout_ms = (long)(t * 1000), .on_body = fwd_body,
                            .on_header = fwd_header, .done = fwd_done, .arg = f,
                            .url = f->url, .method = method };

    if ((f->easy = llmr_upstream_easy(w)) == NULL)
        return -1;
    return llmr_upstream_start(w, f->easy, &spec);
}

void llmr_responses_forward(llmr_worker *w, struct evhttp_request *req, const char *rest)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    const char *suffix, *method;
    size_t idlen = 0;
    int dep;
    fwd *f;

    suffix = split_id(rest, &idlen);
    if (suffix == NULL) {
        llmr_error_reply(w, req, LLMR_E_NOT_FOUND, LLMR_CLIP(strlen(rest)), rest,
                         LLMR_CLIP_MORE(strlen(rest)));
        return;
    }
    if (!method_ok(evhttp_request_get_command(req), suffix, &method)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          *suffix == '\0' ? "GET, DELETE" : *(suffix + 1) == 'c' ? "POST"
                                                                               : "GET");
        llmr_error_reply(w, req, LLMR_E_METHOD_NOT_ALLOWED, "/v1/responses/{id}");
        return;
    }
    if ((dep = creator_of(w, rest, idlen)) < 0) {
        llmr_error_reply(w, req, LLMR_E_RESPONSE_NOT_FOUND, LLMR_CLIP(idlen), rest,
                         LLMR_CLIP_MORE(idlen));
        return;
    }
    if ((f = calloc(1, sizeof(*f))) == NULL || (f->resp = evbuffer_new()) == NULL) {
        free(f);
        llmr_error_reply(w, req, LLMR_E_OUT_OF_MEMORY);
        return;
    }
    f->w = w;
    f->req = req;
    f->evcon = evhttp_request_get_connection(req);
    f->dep = dep;
    memcpy(f->id, rest, idlen);
    f->next = forwards;
    if (forwards != NULL)
        forwards->prev = f;
    forwards = f;
    f->url = fwd_url(&w->conf->deployments[dep], f->id, suffix,
                     query != NULL && *query ? query : NULL);
    if (f->url == NULL || fwd_start(f, method) < 0) {
        fwd_free(f);
        llmr_error_reply(w, req, LLMR_E_OUT_OF_MEMORY);
        return;
    }
    llmr_conn_set_closecb(w, f->evcon, fwd_client_close, f);
}
