#include "mock.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* A fuzzer or a scan of random paths must not grow the table without
 * bound; past the cap, new paths share one bucket. */
#define MAX_PATHS 4096
#define OTHER_PATH "(other)"

struct mock_path {
    struct mock_path *next;
    unsigned long count;
    size_t len;
    char path[];
};

static unsigned hash(const char *s, size_t n)
{
    unsigned h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static struct mock_path **path_slot(struct mock_stats *s, const char *p, size_t n)
{
    struct mock_path **pp = &s->paths[hash(p, n) % 256];

    for (; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->len == n && memcmp((*pp)->path, p, n) == 0)
            break;
    return pp;
}

static void path_count(struct mock_stats *s, const char *p)
{
    size_t n = strlen(p);
    struct mock_path **pp = path_slot(s, p, n), *e;

    if (*pp == NULL && s->npaths >= MAX_PATHS) {
        p = OTHER_PATH;
        n = strlen(p);
        pp = path_slot(s, p, n);
    }
    if (*pp == NULL) {
        e = malloc(sizeof(*e) + n + 1);
        if (e == NULL)
            return;
        e->next = NULL;
        e->count = 0;
        e->len = n;
        memcpy(e->path, p, n + 1);
        *pp = e;
        s->npaths++;
    }
    (*pp)->count++;
}

static int sbuf_reserve(struct mock_sbuf *b, size_t need)
{
    char *p;
    size_t cap = b->cap ? b->cap : 256;

    if (b->len + need <= b->cap)
        return 0;
    while (cap < b->len + need)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void sbuf_add(struct mock_sbuf *b, const char *s, size_t n)
{
    if (n > 0 && sbuf_reserve(b, n) == 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void sbuf_set(struct mock_sbuf *b, const char *s, size_t n)
{
    b->len = 0;
    sbuf_add(b, s, n);
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "UNKNOWN";
}

/* The last request is kept raw (copies, no escaping) so the hot path pays
 * only memcpy; rendering happens when someone asks for /__mock/stats.
 * Headers are stored as name NUL value NUL pairs. */
static void keep_last(struct mock_stats *s, struct evhttp_request *req,
                      const char *path, const char *query,
                      const char *body, size_t body_len)
{
    struct evkeyval *h;

    s->have_last = 1;
    s->last_method = method_name(evhttp_request_get_command(req));
    sbuf_set(&s->last_path, path, strlen(path));
    sbuf_set(&s->last_query, query, strlen(query));
    sbuf_set(&s->last_body, body, body_len);
    s->last_headers.len = 0;
    TAILQ_FOREACH(h, evhttp_request_get_input_headers(req), next) {
        sbuf_add(&s->last_headers, h->key, strlen(h->key) + 1);
        sbuf_add(&s->last_headers, h->value, strlen(h->value) + 1);
    }
}

void mock_stats_arrival(struct mock_stats *s, struct evhttp_request *req,
                        const char *path, const char *query,
                        const char *body, size_t body_len)
{
    s->requests++;
    if (++s->inflight > s->max_inflight)
        s->max_inflight = s->inflight;
    path_count(s, path);
    keep_last(s, req, path, query, body, body_len);
}

void mock_stats_status(struct mock_stats *s, int status)
{
    if (status >= 0 && status < (int)(sizeof(s->statuses) / sizeof(s->statuses[0])))
        s->statuses[status]++;
}

void mock_stats_done(struct mock_stats *s)
{
    if (s->inflight > 0)
        s->inflight--;
}

static void render_str(struct evbuffer *out, const char *p, size_t n)
{
    MOCK_ADD_LIT(out, "\"");
    mock_json_escape(out, p, n);
    MOCK_ADD_LIT(out, "\"");
}

static void render_headers(const struct mock_sbuf *h, struct evbuffer *out)
{
    const char *p = h->p, *end = h->p != NULL ? h->p + h->len : NULL;
    char name[256];
    int first = 1;

    MOCK_ADD_LIT(out, "{");
    while (p != NULL && p < end) {
        size_t kn = strlen(p), vn = strlen(p + kn + 1);
        size_t i, m = kn < sizeof(name) ? kn : sizeof(name);

        for (i = 0; i < m; i++)
            name[i] = (char)tolower((unsigned char)p[i]);
        evbuffer_add(out, ",", !first);
        render_str(out, name, m);
        MOCK_ADD_LIT(out, ":");
        render_str(out, p + kn + 1, vn);
        p += kn + 1 + vn + 1;
        first = 0;
    }
    MOCK_ADD_LIT(out, "}");
}

static void render_last(const struct mock_stats *s, struct evbuffer *out)
{
    if (!s->have_last) {
        MOCK_ADD_LIT(out, "null");
        return;
    }
    evbuffer_add_printf(out, "{\"method\":\"%s\",\"path\":", s->last_method);
    render_str(out, s->last_path.p, s->last_path.len);
    MOCK_ADD_LIT(out, ",\"query\":");
    render_str(out, s->last_query.p, s->last_query.len);
    MOCK_ADD_LIT(out, ",\"headers\":");
    render_headers(&s->last_headers, out);
    MOCK_ADD_LIT(out, ",\"body\":");
    render_str(out, s->last_body.p, s->last_body.len);
    MOCK_ADD_LIT(out, "}");
}

static void render_paths(const struct mock_stats *s, struct evbuffer *out)
{
    int first = 1;

    MOCK_ADD_LIT(out, "{");
    for (size_t b = 0; b < 256; b++) {
        for (const struct mock_path *e = s->paths[b]; e != NULL; e = e->next) {
            evbuffer_add(out, ",", !first);
            render_str(out, e->path, e->len);
            evbuffer_add_printf(out, ":%lu", e->count);
            first = 0;
        }
    }
    MOCK_ADD_LIT(out, "}");
}

static void render_statuses(const struct mock_stats *s, struct evbuffer *out)
{
    int first = 1;

    MOCK_ADD_LIT(out, "{");
    for (size_t i = 0; i < sizeof(s->statuses) / sizeof(s->statuses[0]); i++) {
        if (s->statuses[i] == 0)
            continue;
        evbuffer_add_printf(out, "%s\"%zu\":%lu", first ? "" : ",", i, s->statuses[i]);
        first = 0;
    }
    MOCK_ADD_LIT(out, "}");
}

void mock_stats_render(const struct mock_stats *s, const char *name,
                       struct evbuffer *out)
{
    MOCK_ADD_LIT(out, "{\"name\":");
    render_str(out, name ? name : "", name ? strlen(name) : 0);
    evbuffer_add_printf(out, ",\"requests\":%lu,\"paths\":", s->requests);
    render_paths(s, out);
    MOCK_ADD_LIT(out, ",\"statuses\":");
    render_statuses(s, out);
    evbuffer_add_printf(out, ",\"inflight\":%lu,\"max_inflight\":%lu,"
                        "\"prompt_tokens\":%lu,\"completion_tokens\":%lu,"
                        "\"stream_client_closed\":%lu,\"client_closed\":%lu,"
                        "\"dropped\":%lu,\"last\":",
                        s->inflight, s->max_inflight, s->prompt_tokens,
                        s->completion_tokens, s->stream_client_closed,
                        s->client_closed, s->dropped);
    render_last(s, out);
    MOCK_ADD_LIT(out, "}");
}

static void paths_free(struct mock_stats *s)
{
    for (size_t b = 0; b < 256; b++) {
        struct mock_path *e = s->paths[b], *next;

        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
        s->paths[b] = NULL;
    }
    s->npaths = 0;
}

/* In-flight requests are still being served: keep their count so they
 * can be subtracted when they finish. */
void mock_stats_reset(struct mock_stats *s)
{
    unsigned long inflight = s->inflight;

    paths_free(s);
    s->requests = s->prompt_tokens = s->completion_tokens = 0;
    s->stream_client_closed = s->client_closed = s->dropped = 0;
    memset(s->statuses, 0, sizeof(s->statuses));
    s->have_last = 0;
    s->inflight = s->max_inflight = inflight;
}

void mock_stats_free(struct mock_stats *s)
{
    paths_free(s);
    free(s->last_path.p);
    s->last_path.p = NULL;
    free(s->last_query.p);
    s->last_query.p = NULL;
    free(s->last_headers.p);
    s->last_headers.p = NULL;
    free(s->last_body.p);
    s->last_body.p = NULL;
}
