/* What a routed request answers: the x-llmroute-* headers of every
 * answer, the answer each ending makes (upstream's, our error, the end of
 * a stream) and sending it.  The words and codes come from errors.c; only
 * llmr_request_finish() sends, before it frees the request. */
#include "request.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "clock.h"
#include "fmt.h"
#include "log.h"
#include "stream.h"
#include "cache.h"
#include "hblock.h"

const char *llmr_request_group_name(const llmr_request *r, int pos)
{
    return r->w->conf->groups[r->plan.group[pos]].name;
}

/* ---- request ids and the upstream's headers ---------------------------- */

/* Request ids come from a per-worker xorshift generator seeded from
 * getrandom(): unpredictable enough to tell requests apart, derived from
 * nothing secret.  Seeded once by each worker as it starts (after fork),
 * so no two workers share a sequence and no id costs a system call. */
static uint64_t id_state;

void llmr_request_ids_seed(void)
{
    if (getrandom(&id_state, sizeof(id_state), GRND_NONBLOCK) != sizeof(id_state))
        id_state = (uint64_t)llmr_clock_us() ^ ((uint64_t)getpid() << 40);
    id_state |= 1;
}

static uint64_t id_next(void)
{
    uint64_t x;

    if (id_state == 0)          /* a process that never seeded (unit tests) */
        llmr_request_ids_seed();
    x = id_state;               /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    id_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

void llmr_request_id_new(char *buf, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = id_next(), b = id_next() >> 32;
    char id[LLMR_REQUEST_ID_LEN] = "req_";

    /* By hand: snprintf's two %llx were 1,500 instructions per request. */
    for (int i = 0; i < 16; i++)
        id[4 + i] = hex[(a >> (60 - 4 * i)) & 15];
    for (int i = 0; i < 8; i++)
        id[20 + i] = hex[(b >> (28 - 4 * i)) & 15];
    id[28] = '\0';
    if (cap == 0)
        return;
    cap = cap < sizeof(id) ? cap : sizeof(id);
    memcpy(buf, id, cap - 1);
    buf[cap - 1] = '\0';
}

const char *llmr_request_id(llmr_request *r)
{
    if (r->id[0] == '\0')
        llmr_request_id_new(r->id, sizeof(r->id));
    return r->id;
}

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

/* The Date header's value (RFC 9110's IMF-fixdate), formatted once a
 * second: evhttp would format it with snprintf for every reply (~3,000
 * instructions, 2% of a proxied request). */
static const char *date_now(void)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static char buf[sizeof("Thu, 01 Jan 1970 00:00:00 GMT")];
    static time_t at = -1;
    time_t now = time(NULL);
    struct tm tm;

    if (now == at || gmtime_r(&now, &tm) == NULL)
        return buf;
    at = now;
    memcpy(buf, days + 3 * tm.tm_wday, 3);
    memcpy(buf + 3, ", ", 2);
    put2(buf + 5, tm.tm_mday);
    buf[7] = ' ';
    memcpy(buf + 8, months + 3 * tm.tm_mon, 3);
    buf[11] = ' ';
    put2(buf + 12, (tm.tm_year + 1900) / 100);
    put2(buf + 14, tm.tm_year + 1900);
    buf[16] = ' ';
    put2(buf + 17, tm.tm_hour);
    buf[19] = ':';
    put2(buf + 20, tm.tm_min);
    buf[22] = ':';
    put2(buf + 23, tm.tm_sec);
    memcpy(buf + 25, " GMT", 5);
    return buf;
}

void llmr_reply_common(struct evkeyvalq *out)
{
    char id[LLMR_REQUEST_ID_LEN];

    evhttp_add_header(out, "Date", date_now());
    if (evhttp_find_header(out, "x-request-id") != NULL)
        return;
    llmr_request_id_new(id, sizeof(id));
    evhttp_add_header(out, "x-request-id", id);
}

/* The upstream headers a client gets too: ids to quote to the provider's
 * support, and the rate-limit state it may pace itself by. */
static int forwarded_name(const char *name, size_t n)
{
    static const char *const exact[] = {
        "x-request-id", "openai-processing-ms", "apim-request-id", "openai-version",
    };

    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (n == strlen(exact[i]) && strncasecmp(name, exact[i], n) == 0)
            return 1;
    return n > 12 && strncasecmp(name, "x-ratelimit-", 12) == 0;
}

int llmr_reply_keep_header(llmr_attempt *a, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    size_t n, vlen;
    const char *v;

    if (colon == NULL || !forwarded_name(line, n = (size_t)(colon - line)))
        return 0;
    v = colon + 1;
    vlen = len - n - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    /* Bounded: past LLMR_FWD_MAX headers, or a long one, is dropped, never cut. */
    if (a->nfwd >= LLMR_FWD_MAX || n + vlen + 2 > LLMR_FWD_LEN)
        return 1;
    for (size_t i = 0; i < vlen; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            return 1;
    memcpy(a->fwd[a->nfwd], line, n);
    a->fwd[a->nfwd][n] = '\0';
    memcpy(a->fwd[a->nfwd] + n + 1, v, vlen);
    a->fwd[a->nfwd][n + 1 + vlen] = '\0';
    a->nfwd++;
    return 1;
}

const char *llmr_attempt_upstream_id(const llmr_attempt *a)
{
    for (int i = 0; i < a->nfwd; i++)
        if (strcasecmp(a->fwd[i], "x-request-id") == 0)
            return a->fwd[i] + strlen(a->fwd[i]) + 1;
    return "";
}

/* The upstream's kept headers when the answer is its (its x-request-id as
 * an entry of its own: it is looked up), then our own id when it sent none. */
static void id_headers(llmr_request *r, int upstream, struct evkeyvalq *out, llmr_hblock *b)
{
    for (int i = 0; upstream && i < r->at.nfwd; i++) {
        const char *name = r->at.fwd[i], *value = name + strlen(name) + 1;
        if (strcasecmp(name, "x-request-id") == 0)
            evhttp_add_header(out, name, value);
        else
            llmr_hblock_add(b, name, value);
    }
    if (evhttp_find_header(out, "x-request-id") == NULL)
        evhttp_add_header(out, "x-request-id", llmr_request_id(r));
}

/* The x-llmroute-* headers of every routed response.  `upstream`: the
 * answer is the last attempt's (passed on, or a stream it committed to),
 * so its ids, rate-limit headers and Retry-After go with it, and the
 * fallback named is that attempt's group; our own errors get none of the
 * upstream's headers and name the group the plan reached.  All but
 * x-request-id go to evhttp as one entry (hblock.h). */
void llmr_reply_headers(llmr_request *r, int upstream)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);
    int pos = upstream ? r->at.pos : r->plan.pos;
    char n[LLMR_FMT_MAX];
    llmr_hblock b;

    llmr_hblock_init(&b);
    id_headers(r, upstream, out, &b);
    if (upstream && r->at.retry_after[0])
        llmr_hblock_add(&b, "Retry-After", r->at.retry_after);
    if (r->at.dep >= 0)
        llmr_hblock_add(&b, "x-llmroute-deployment", llmr_attempt_dep(r)->id);
    llmr_fmt_int(n, r->plan.attempts);
    llmr_hblock_add(&b, "x-llmroute-attempts", n);
    llmr_hblock_add(&b, "x-llmroute-model-group", llmr_request_group_name(r, 0));
    llmr_cache_headers(r, &b);
    if (pos > 0)
        llmr_hblock_add(&b, "x-llmroute-fallback", llmr_request_group_name(r, pos));
    llmr_hblock_attach(&b, out);
}

void llmr_reply_error(llmr_reply *rep, enum llmr_error_kind k, ...)
{
    va_list ap;

    memset(rep, 0, sizeof(*rep));
    rep->how = LLMR_REPLY_ERROR;
    rep->kind = k;
    va_start(ap, k);
    llmr_error_vmessage(rep->msg, sizeof(rep->msg), k, ap);
    va_end(ap);
}

/* The error event that ends a committed stream whose upstream failed. */
void llmr_reply_stream_error(llmr_reply *rep, enum llmr_err err, const char *msg)
{
    llmr_reply_error(rep, err == LLMR_ERR_TIMEOUT ? LLMR_E_STREAM_TIMEOUT : LLMR_E_STREAM_FAILED,
                     msg);
    rep->how = LLMR_REPLY_STREAM_END;
    rep->has_kind = 1;
    rep->code = llmr_err_name(err);
}

static const char *const limit_names[] = {
    [LLMR_LIMIT_NONE] = "", [LLMR_LIMIT_PARALLEL] = "max_parallel_requests",
    [LLMR_LIMIT_RPM] = "rpm", [LLMR_LIMIT_TPM] = "tpm",
};

/* The most tokens any deployment of the groups tried so far takes (OpenAI's
 * "maximum context length" in the 400 that client libraries recognise). */
static long long largest_window(const llmr_request *r)
{
    const llmr_conf *c = r->w->conf;
    long long most = 0;

    for (int p = 0; p <= r->plan.pos && p < r->plan.ngroups; p++) {
        const llmr_group *g = &c->groups[r->plan.group[p]];
        for (int k = 0; k < g->ndeployments; k++)
            if (c->deployments[g->deployments[k]].max_input_tokens > most)
                most = c->deployments[g->deployments[k]].max_input_tokens;
    }
    return most;
}

/* No deployment could take the request: every one is cooling down or at a
 * limit (429 with Retry-After), or too small for the prompt (400). */
static void unavailable(llmr_request *r, llmr_reply *rep)
{
    const llmr_plan *p = &r->plan;
    const char *group = llmr_request_group_name(r, 0);

    if (p->unavail == LLMR_UNAVAIL_CONTEXT) {
        llmr_reply_error(rep, LLMR_E_CONTEXT_EXCEEDED, largest_window(r),
                         (long long)r->tokens_est, group);
    } else {
        if (p->unavail == LLMR_UNAVAIL_LIMIT)
            llmr_reply_error(rep, LLMR_E_AT_LIMIT, group, limit_names[p->limit]);
        else
            llmr_reply_error(rep, LLMR_E_NO_DEPLOYMENT, group);
        snprintf(rep->retry_after, sizeof(rep->retry_after), "%lld",
                 (long long)((p->unavail_wait_ms + 999) / 1000));
    }
}

/* libcurl's results that mean the TLS handshake with the upstream failed:
 * its certificate not trusted, or no protocol or cipher in common. */
static int tls_failure(CURLcode c)
{
    switch (c) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
        return 1;
    default:
        return 0;
    }
}

/* Everything is spent: the last upstream answer if there was one, else our
 * own error for what went wrong. */
void llmr_reply_final(llmr_request *r, llmr_reply *rep)
{
    const llmr_plan *p = &r->plan;
    int timeout = p->final_err == LLMR_ERR_TIMEOUT;

    if (p->final_status >= 400) {       /* an upstream answered: pass it on */
        memset(rep, 0, sizeof(*rep));
        rep->how = LLMR_REPLY_UPSTREAM;
        rep->status = p->final_status;
        rep->headers = 1;
        return;
    }
    if (p->final_err == LLMR_ERR_NONE)  /* no attempt could be made */
        unavailable(r, rep);
    else if (tls_failure(p->final_curl))
        llmr_reply_error(rep, LLMR_E_UPSTREAM_TLS, llmr_request_group_name(r, 0), p->attempts,
                         r->at.dep >= 0 ? ", last on deployment " : "",
                         r->at.dep >= 0 ? llmr_attempt_dep(r)->id : "",
                         r->at.errbuf[0] ? r->at.errbuf : curl_easy_strerror(p->final_curl));
    else
        llmr_reply_error(rep, timeout ? LLMR_E_UPSTREAM_TIMEOUT : LLMR_E_UPSTREAM_UNREACHABLE,
                         llmr_request_group_name(r, 0), p->attempts,
                         r->at.dep >= 0 ? ", last on deployment " : "",
                         r->at.dep >= 0 ? llmr_attempt_dep(r)->id : "");
    rep->headers = 1;
}

/* Out of descriptors, every request fails the same way: one line a second
 * at most, with the count. */
static void log_local(llmr_worker *w, const char *group, const char *why)
{
    int64_t now = llmr_wall_ms();

    w->local_fails++;
    if (now - w->local_fail_log_ms < 1000)
        return;
    llmr_error("%s: no upstream call could be made: %s (%lu request(s) answered 503 "
               "local_resource_exhausted since the last report)", group, why, w->local_fails);
    w->local_fail_log_ms = now;
    w->local_fails = 0;
}

/* The attempt could not be made for want of something of ours (descriptors,
 * memory): the request never reached the deployment (its admission is
 * already given back), and the client gets 503 and may come back shortly. */
void llmr_reply_local(llmr_request *r, llmr_reply *rep, const char *why)
{
    const char *group = llmr_request_group_name(r, r->plan.pos);

    log_local(r->w, group, why);
    llmr_reply_error(rep, LLMR_E_LOCAL_EXHAUSTED, group, why);
    rep->headers = 1;
    strcpy(rep->retry_after, "1");
}

/* Some OpenAI-compatible servers echo the key they got in a 401's message
 * ("Incorrect API key provided: sk-..."): the deployment's key never goes
 * to the client, whatever API the error is then said in. */
static void blank_echoed_key(llmr_request *r, const llmr_reply *rep)
{
    const char *key = r->at.dep >= 0 ? llmr_attempt_dep(r)->api_key : NULL;
    size_t klen = key != NULL ? strlen(key) : 0, n = evbuffer_get_length(r->at.resp);
    char *body, *hit;

    if (rep->how != LLMR_REPLY_UPSTREAM || rep->status < 400 || klen < 4 || n < klen)
        return;
    if ((body = (char *)evbuffer_pullup(r->at.resp, -1)) == NULL)
        return;
    for (char *from = body; (hit = memmem(from, n - (size_t)(from - body), key, klen)) != NULL;
         from = hit + klen)
        memset(hit, '*', klen);
}

void llmr_reply_send(llmr_request *r, const llmr_reply *rep)
{
    llmr_worker *w = r->w;
    struct evhttp_request *req = r->req;
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);

    blank_echoed_key(r, rep);
    if (llmr_anth_reply(r, rep))    /* an answer in the client's other API */
        return;
    switch (rep->how) {
    case LLMR_REPLY_UPSTREAM:
        llmr_reply_headers(r, 1);
        evhttp_add_header(out, "Content-Type",
                          r->at.content_type[0] ? r->at.content_type : "application/json");
        llmr_http_reply(w, req, rep->status, r->at.resp);
        break;
    case LLMR_REPLY_ERROR:
        if (rep->headers)
            llmr_reply_headers(r, 0);
        else
            evhttp_add_header(out, "x-request-id", llmr_request_id(r));
        if (rep->retry_after[0])
            evhttp_add_header(out, "Retry-After", rep->retry_after);
        llmr_error_reply_msg(w, req, rep->kind, NULL, rep->msg);
        break;
    case LLMR_REPLY_STREAM_END:
        llmr_stream_end(r, rep);
        break;
    case LLMR_REPLY_GONE:
        /* A detached request is ours to free; one still attached belongs to
         * a connection that evhttp is freeing itself. */
        if (evhttp_request_get_connection(req) == NULL)
            llmr_http_discard(w, req);
        else
            llmr_http_active_end(w);
        break;
    case LLMR_REPLY_NONE:
        llmr_http_active_end(w);
        break;
    }
}
