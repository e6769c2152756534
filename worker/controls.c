/* Per-request controls, as LiteLLM's proxy accepts them: the body's
 * `fallbacks`, `context_window_fallbacks`, `num_retries` and `timeout`, and
 * the headers x-llmroute-timeout and x-llmroute-num-retries.  They are
 * llmroute's, not the upstream's: the body's are left out of what goes
 * upstream (provider.c's rewrite), and no client header ever goes there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/keyvalq_struct.h>

#include "request.h"

#define NUM_RETRIES_MAX 10
#define TIMEOUT_MAX 1e6             /* seconds; the config's is shorter anyway */

const char *const llmr_control_keys[] = {
    "fallbacks", "context_window_fallbacks", "num_retries", "timeout", "cache",
};
const int llmr_ncontrol_keys = (int)(sizeof(llmr_control_keys) / sizeof(llmr_control_keys[0]));

static int bad(llmr_worker *w, struct evhttp_request *req, const char *param, const char *msg)
{
    llmr_error_reply_msg(w, req, LLMR_E_INVALID_CONTROL, param, msg);
    return -1;
}

/* A list of group names (aliases resolve to their group), each once. */
static int read_groups(llmr_worker *w, struct evhttp_request *req, const llmr_json *j,
                       const char *key, int *out, int *n, int *has)
{
    int v = llmr_json_get(j, 0, key), e;
    char msg[256], buf[256];

    if (v < 0)
        return 0;
    if (j->toks[v].type != JSMN_ARRAY || j->toks[v].size >= LLMR_PLAN_MAX) {
        snprintf(msg, sizeof(msg), "%s must be a list of at most %d model group names", key,
                 LLMR_PLAN_MAX - 1);
        return bad(w, req, key, msg);
    }
    *has = 1;
    e = v + 1;
    for (int i = 0; i < j->toks[v].size; i++, e = llmr_json_skip(j, e)) {
        const char *name;
        size_t len;
        int g;

        if (j->toks[e].type != JSMN_STRING) {
            snprintf(msg, sizeof(msg), "%s[%d] must be a model group name (a string)", key, i);
            return bad(w, req, key, msg);
        }
        name = llmr_json_str(j, e, buf, sizeof(buf), &len);
        if ((g = llmr_conf_route_group(w->conf, name, len)) < 0) {
            llmr_error_message(msg, sizeof(msg), LLMR_E_UNKNOWN_GROUP, key,
                               LLMR_CLIP(len), name, LLMR_CLIP_MORE(len));
            llmr_error_reply_msg(w, req, LLMR_E_UNKNOWN_GROUP, key, msg);
            return -1;
        }
        out[(*n)++] = g;
    }
    return 0;
}

/* A number of seconds > 0, as text (a JSON number or a header's value). */
static int seconds(const char *s, size_t len, double *out)
{
    char buf[64], *end;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    *out = strtod(buf, &end);
    return *end == '\0' && isfinite(*out) && *out > 0 && *out <= TIMEOUT_MAX ? 0 : -1;
}

static int retries(const char *s, size_t len, int *out)
{
    long v = 0;

    if (len == 0 || len > 2)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = (int)v;
    return v <= NUM_RETRIES_MAX ? 0 : -1;
}

/* The headers first; the body's values, when sent, replace them. */
static int read_headers(llmr_worker *w, struct evhttp_request *req, llmr_controls *c)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *t = evhttp_find_header(in, "x-llmroute-timeout");
    const char *n = evhttp_find_header(in, "x-llmroute-num-retries");
    char msg[160];

    if (t != NULL && seconds(t, strlen(t), &c->timeout) < 0) {
        snprintf(msg, sizeof(msg), "x-llmroute-timeout must be a number of seconds > 0 "
                 "(at most %g)", TIMEOUT_MAX);
        return bad(w, req, "x-llmroute-timeout", msg);
    }
    if (n != NULL && retries(n, strlen(n), &c->num_retries) < 0) {
        snprintf(msg, sizeof(msg), "x-llmroute-num-retries must be an integer from 0 to %d",
                 NUM_RETRIES_MAX);
        return bad(w, req, "x-llmroute-num-retries", msg);
    }
    return 0;
}

static int read_body_numbers(llmr_worker *w, struct evhttp_request *req, const llmr_json *j,
                             llmr_controls *c)
{
    int t = llmr_json_get(j, 0, "timeout"), n = llmr_json_get(j, 0, "num_retries");
    char msg[160];

    if (t >= 0 && (j->toks[t].type != JSMN_PRIMITIVE
                   || seconds(j->js + j->toks[t].start,
                              (size_t)(j->toks[t].end - j->toks[t].start), &c->timeout) < 0)) {
        snprintf(msg, sizeof(msg), "timeout must be a number of seconds > 0 (at most %g)",
                 TIMEOUT_MAX);
        return bad(w, req, "timeout", msg);
    }
    if (n >= 0 && (j->toks[n].type != JSMN_PRIMITIVE
                   || retries(j->js + j->toks[n].start,
                              (size_t)(j->toks[n].end - j->toks[n].start),
                              &c->num_retries) < 0)) {
        snprintf(msg, sizeof(msg), "num_retries must be an integer from 0 to %d",
                 NUM_RETRIES_MAX);
        return bad(w, req, "num_retries", msg);
    }
    return 0;
}

int llmr_controls_read(llmr_worker *w, struct evhttp_request *req, const llmr_json *j,
                       llmr_controls *c)
{
    memset(c, 0, sizeof(*c));
    c->num_retries = -1;
    if (read_headers(w, req, c) < 0 || read_body_numbers(w, req, j, c) < 0
        || read_groups(w, req, j, "fallbacks", c->fallbacks, &c->nfallbacks,
                       &c->has_fallbacks) < 0
        || read_groups(w, req, j, "context_window_fallbacks", c->cw_fallbacks,
                       &c->ncw_fallbacks, &c->has_cw_fallbacks) < 0)
        return -1;
    if (llmr_body_plan(j, llmr_control_keys, llmr_ncontrol_keys, &c->edit) < 0) {
        llmr_error_reply(w, req, LLMR_E_OUT_OF_MEMORY);
        return -1;
    }
    return 0;
}
