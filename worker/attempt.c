/* One attempt of a request on one deployment: its admission (the router's
 * reservation of in-flight, rpm and tpm, given back exactly once), the
 * transfer handed to upstream.c, what the upstream's headers and body say,
 * and the usage and failures counted against the deployment. */
#include "request.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "clock.h"
#include "log.h"
#include "stream.h"

/* Admissions of this worker not given back yet: one per attempt between
 * the router's pick and its end; 0 once the worker has let go of all. */
static long open_admissions;

long llmr_attempt_open_admissions(void)
{
    return open_admissions;
}

const llmr_deployment *llmr_attempt_dep(const llmr_request *r)
{
    return &r->w->conf->deployments[r->at.dep];
}

llmr_slot *llmr_attempt_slot(const llmr_request *r)
{
    return llmr_shm_slot(r->w->shm, llmr_attempt_dep(r)->slot);
}

/* The admission leaves the attempt, exactly once, in one report to the
 * router. */
static int64_t let_go(llmr_request *r, llmr_admission_end *e)
{
    LLMR_CHECK(r->at.admitted, "an admission given back twice");
    r->at.admitted = 0;
    open_admissions--;
    if (r->at.easy != NULL) {
        llmr_upstream_abort(r->w, r->at.easy);
        llmr_upstream_release(r->w, r->at.easy);
        r->at.easy = NULL;
    }
    e->tokens_est = r->tokens_est;
    e->t_admit_ms = r->at.t_admit_ms;
    e->dur_us = llmr_clock_us() - r->at.t_start_us;
    e->retry = r->plan.group_attempts > 1;
    e->fallback = r->plan.pos > 0 && r->plan.group_attempts == 1;
    e->overhead_us = r->plan.attempts == 1 ? r->at.t_start_us - r->t_start_us : -1;
    if (!e->unadmit)
        llmr_alog_attempt(&r->log, r->at.dep, (int)e->outcome, (int)e->err, e->dur_us,
                          e->prompt, e->completion);
    return llmr_router_end(r->w, r->at.dep, e);
}

void llmr_attempt_end(llmr_request *r, enum llmr_outcome outcome)
{
    llmr_admission_end e = { .outcome = outcome };

    let_go(r, &e);
}

/* The request never reached the deployment: it is charged with nothing. */
void llmr_attempt_unadmit(llmr_request *r)
{
    llmr_admission_end e = { .unadmit = 1 };

    let_go(r, &e);
    r->plan.attempts--;
    r->at.dep = -1;
}

/* ---- what the upstream sends --------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    llmr_request *r = arg;
    size_t len = size * n;

    if (r->stream && r->at.status >= 200 && r->at.status < 300) {
        if (r->state == LLMR_REQ_ATTEMPT)
            llmr_stream_commit(r);
        return llmr_anth_stream_write(r, data, len);
    }
    if (evbuffer_get_length(r->at.resp) + len > (size_t)LLMR_RESPONSE_MAX)
        return 0;
    if (llmr_request_over_budget(r, len))
        return CURL_WRITEFUNC_PAUSE;
    return evbuffer_add(r->at.resp, data, len) == 0 ? len : 0;
}

static void copy_header_value(char *dst, size_t cap, const char *v, size_t len)
{
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
        len--;
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

/* Keeps what the client needs from the upstream's headers.  A new status
 * line (after a 100 Continue) starts over. */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    llmr_attempt *a = &((llmr_request *)arg)->at;
    size_t len = size * n;

    if (len >= 12 && memcmp(data, "HTTP/", 5) == 0) {
        const char *sp = memchr(data, ' ', len);
        a->status = sp != NULL ? strtol(sp + 1, NULL, 10) : 0;
        a->content_type[0] = '\0';
        a->retry_after[0] = '\0';
        a->nfwd = 0;
    } else if (llmr_reply_keep_header(a, data, len)) {
        /* kept for the client */
    } else if (len > 13 && strncasecmp(data, "content-type:", 13) == 0) {
        copy_header_value(a->content_type, sizeof(a->content_type), data + 13, len - 13);
    } else if (len > 12 && strncasecmp(data, "retry-after:", 12) == 0) {
        copy_header_value(a->retry_after, sizeof(a->retry_after), data + 12, len - 12);
    } else if (len > 15 && strncasecmp(data, "content-length:", 15) == 0
               && !((llmr_request *)arg)->stream) {
        /* A buffered answer of known size lands in one block, which
         * reading its usage then needs no copy of. */
        long long cl = strtoll(data + 15, NULL, 10);
        if (cl > 0 && evbuffer_get_length(a->resp) == 0)
            evbuffer_expand(a->resp, (size_t)(cl < LLMR_RESPONSE_MAX ? cl : LLMR_RESPONSE_MAX));
    }
    return len;
}

/* ---- starting one ------------------------------------------------------ */

/* The client's body with the deployment's model, rebuilt only when the
 * model differs from the last attempt's. */
static int rewrite_body(llmr_request *r, const llmr_deployment *d)
{
    llmr_attempt *a = &r->at;
    char *b;
    int t = llmr_anth_up_body(r, d);    /* a body in the other API */

    if (t != 0)
        return t > 0 ? 0 : t;
    if (a->up_model != NULL && strcmp(a->up_model, d->upstream_model) == 0)
        return 0;
    b = llmr_body_rewrite(r->body, r->len, &r->ctl.edit, d->upstream_model, &a->up_len);
    if (b == NULL)
        return -1;
    free(a->up_body);
    a->up_body = b;
    a->up_model = d->upstream_model;
    return 0;
}

/* The attempt's time: the request's, and the deployment's own timeout. */
static long attempt_timeout_ms(const llmr_request *r, const llmr_deployment *d)
{
    int64_t left = r->deadline_us - llmr_clock_us();
    int64_t per = d->timeout > 0 ? (int64_t)(d->timeout * 1e6) : left;

    if (per < left)
        left = per;
    return left < 1000 ? 1 : (long)(left / 1000);
}

int llmr_attempt_start(llmr_request *r, llmr_upstream_done_fn *done)
{
    llmr_attempt *a = &r->at;
    const llmr_deployment *d = llmr_attempt_dep(r);
    llmr_xfer_spec spec = { .dep = a->dep, .op = r->op, .timeout_ms = attempt_timeout_ms(r, d),
                            .on_body = on_body, .on_header = on_header, .done = done,
                            .errbuf = r->at.errbuf,
                            .arg = r };
    int rc;

    LLMR_CHECK(!a->admitted, "a new admission while one is held");
    a->admitted = 1;
    open_admissions++;
    a->t_admit_ms = llmr_wall_ms();
    r->plan.attempts++;
    r->plan.group_attempts++;
    a->status = 0;
    a->content_type[0] = a->retry_after[0] = '\0';
    a->nfwd = 0;
    evbuffer_drain(a->resp, evbuffer_get_length(a->resp));
    rc = rewrite_body(r, d);
    if (rc < 0 || (a->easy = llmr_upstream_easy(r->w)) == NULL)
        return rc < 0 ? rc : -1;    /* the caller gives the admission back */
    spec.body = a->up_body;
    spec.len = a->up_len;
    spec.headers = llmr_anth_headers(r, d);     /* a client's anthropic-beta, or NULL */
    a->t_start_us = llmr_clock_us();
    if (llmr_upstream_start(r->w, a->easy, &spec) < 0) {
        llmr_upstream_release(r->w, a->easy);
        a->easy = NULL;
        return -1;
    }
    return 0;
}

/* ---- how it ended ------------------------------------------------------ */

/* An upstream may report any number: keep usage where the sums below and
 * the counters cannot overflow. */
static int64_t clamp_usage(int64_t v)
{
    return v < 0 ? 0 : v > LLMR_USAGE_MAX ? LLMR_USAGE_MAX : v;
}

/* Usage of a buffered answer, or the estimate when it reports none. */
static void buffered_usage(llmr_request *r, int64_t *prompt, int64_t *completion)
{
    size_t len = evbuffer_get_length(r->at.resp);

    if (llmr_usage_read((const char *)evbuffer_pullup(r->at.resp, -1), len, prompt,
                        completion) < 0)
        *prompt = r->tokens_est;        /* no usage reported: keep the estimate */
}

void llmr_attempt_succeeded(llmr_request *r)
{
    int streaming = r->state == LLMR_REQ_STREAMING;
    llmr_admission_end e = { .outcome = LLMR_OUTCOME_SUCCESS, .latency = !streaming };

    if (streaming)
        llmr_stream_usage(r, &e.prompt, &e.completion);
    else
        buffered_usage(r, &e.prompt, &e.completion);
    if (r->op == LLMR_OP_RESPONSES && !streaming)
        llmr_responses_buffered(r);
    e.prompt = clamp_usage(e.prompt);
    e.completion = clamp_usage(e.completion);
    let_go(r, &e);
}

/* A failure, counted against the deployment: its counters, and the window
 * that may cool it down for every worker. */
void llmr_attempt_failed(llmr_request *r, enum llmr_err err, int64_t ra)
{
    llmr_admission_end e = { .outcome = LLMR_OUTCOME_FAILURE, .err = err, .retry_after_ms = ra };
    const llmr_conf *conf = r->w->conf;
    int64_t cool = let_go(r, &e);

    if (cool > 0)
        llmr_warn("deployment %s cools down for %.1f s after %s (more than %d failures this "
                  "minute)", llmr_attempt_dep(r)->id, (double)cool / 1000, llmr_err_name(err),
                  conf->allowed_fails);
}

/* Why an attempt failed for want of something of ours, or NULL: a socket()
 * out of descriptors or buffers, or libcurl out of memory. */
const char *llmr_attempt_local_failure(const llmr_request *r, CURLcode result)
{
    int e = r->at.sock_errno;

    if (result == CURLE_OK)
        return NULL;
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
        return strerror(e);
    return result == CURLE_OUT_OF_MEMORY ? "out of memory" : NULL;
}
