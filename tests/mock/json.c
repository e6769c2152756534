/* The only file that sees jsmn: it turns request and config bodies into
 * the few facts the mock needs, and escapes text for the stats page. */
#define JSMN_STRICT
#define JSMN_PARENT_LINKS   /* closes a container by walking up, not scanning every token */
#define JSMN_STATIC
#include <jsmn.h>

#include "mock.h"

#include <event2/buffer.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCAL_TOKENS 256

struct doc {
    const char *js;
    jsmntok_t *tok;
    int n;
    jsmntok_t local[LOCAL_TOKENS];
};

/* Most bodies fit the stack array; a big one costs a counting pass and one
 * allocation, never a retry loop. Accepts exactly one JSON object. */
static int doc_parse(struct doc *d, const char *js, size_t len)
{
    jsmn_parser p;
    int r;

    d->js = js;
    d->tok = d->local;
    if (mock_json_valid(js, len) < 0)
        return -1;
    jsmn_init(&p);
    r = jsmn_parse(&p, js, len, d->tok, LOCAL_TOKENS);
    if (r == JSMN_ERROR_NOMEM) {
        jsmn_init(&p);
        r = jsmn_parse(&p, js, len, NULL, 0);
        if (r <= 0)
            return -1;
        d->tok = malloc((size_t)r * sizeof(*d->tok));
        if (d->tok == NULL)
            return -1;
        jsmn_init(&p);
        r = jsmn_parse(&p, js, len, d->tok, (unsigned)r);
    }
    d->n = r;
    return r < 1 || d->tok[0].type != JSMN_OBJECT ? -1 : 0;
}

static void doc_release(struct doc *d)
{
    if (d->tok != d->local)
        free(d->tok);
    d->tok = NULL;
}

/* Tokens come in document order, so a value's subtree is every following
 * token that starts before it ends: iterative, so deep nesting is safe. */
static int skip(const struct doc *d, int i)
{
    int end = d->tok[i].end;

    for (i++; i < d->n && d->tok[i].start < end; i++)
        ;
    return i;
}

static int tok_is(const struct doc *d, int i, const char *s)
{
    size_t n = strlen(s);
    const jsmntok_t *t = &d->tok[i];

    return (size_t)(t->end - t->start) == n && memcmp(d->js + t->start, s, n) == 0;
}

static int tok_true(const struct doc *d, int i)
{
    return d->tok[i].type == JSMN_PRIMITIVE && tok_is(d, i, "true");
}

static int tok_null(const struct doc *d, int i)
{
    return d->tok[i].type == JSMN_PRIMITIVE && tok_is(d, i, "null");
}

/* Loops over the members of the object at obj; key and val are the token
 * indexes of each member's name and value. */
#define FOR_MEMBERS(d, obj, key, val)                                          \
    for (int n_ = (d)->tok[obj].size, key = (obj) + 1, val = key + 1;          \
         n_ > 0 && val < (d)->n; n_--, key = skip(d, val), val = key + 1)

/* A null value: in /__mock/config it removes the runtime override;
 * in a request's x_mock it just means "no override". */
static int knobs_from(const struct doc *d, int obj, struct mock_knobs *k,
                      enum mock_src src, char *err, size_t errlen)
{
    if (d->tok[obj].type != JSMN_OBJECT) {
        snprintf(err, errlen, "mock knobs must be a JSON object");
        return -1;
    }
    FOR_MEMBERS(d, obj, key, val) {
        const jsmntok_t *kt = &d->tok[key], *vt = &d->tok[val];
        int id = mock_knob_lookup(d->js + kt->start, (size_t)(kt->end - kt->start), src);

        if (id < 0) {
            snprintf(err, errlen, "unknown mock knob '%.*s'",
                     kt->end - kt->start > 64 ? 64 : kt->end - kt->start, d->js + kt->start);
            return -1;
        }
        if (tok_null(d, val)) {
            if (src == MS_CONFIG)
                k->set &= ~(1u << id);
            continue;
        }
        if ((vt->type != JSMN_STRING && vt->type != JSMN_PRIMITIVE)
            || mock_knob_set(k, id, d->js + vt->start, (size_t)(vt->end - vt->start)) < 0) {
            snprintf(err, errlen, "invalid value for mock knob '%s'", mock_knob_name(id, src));
            return -1;
        }
    }
    return 0;
}

/* OpenAI's input: a string or a list of token ints is one input; a list of
 * strings or of token lists is one input per element. */
static long count_inputs(const struct doc *d, int val)
{
    const jsmntok_t *vt = &d->tok[val];

    if (vt->type == JSMN_STRING)
        return 1;
    if (vt->type != JSMN_ARRAY || vt->size == 0)
        return 0;
    return d->tok[val + 1].type == JSMN_PRIMITIVE ? 1 : vt->size;
}

static void body_member(const struct doc *d, int key, int val, struct mock_body *out)
{
    const jsmntok_t *vt = &d->tok[val];

    if (tok_is(d, key, "model")) {
        if (vt->type == JSMN_STRING) {
            out->model = d->js + vt->start;
            out->model_len = (size_t)(vt->end - vt->start);
        }
    } else if (tok_is(d, key, "stream")) {
        out->stream = tok_true(d, val);
    } else if (tok_is(d, key, "input")) {
        out->inputs = count_inputs(d, val);
    } else if (tok_is(d, key, "encoding_format")) {
        out->base64 = vt->type == JSMN_STRING && tok_is(d, val, "base64");
    } else if (tok_is(d, key, "stream_options") && vt->type == JSMN_OBJECT) {
        FOR_MEMBERS(d, val, k2, v2)
            if (tok_is(d, k2, "include_usage"))
                out->include_usage = tok_true(d, v2);
    }
}

int mock_json_parse_body(const char *js, size_t len, struct mock_body *out,
                         char *err, size_t errlen)
{
    struct doc d;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (doc_parse(&d, js, len) < 0) {
        snprintf(err, errlen, "We could not parse the JSON body of your request. "
                 "(HINT: This likely means you aren't using your HTTP library correctly. "
                 "The OpenAI API expects a JSON payload.)");
        doc_release(&d);
        return -1;
    }
    FOR_MEMBERS(&d, 0, key, val) {
        if (tok_is(&d, key, "x_mock")) {
            rc = knobs_from(&d, val, &out->knobs, MS_BODY, err, errlen);
            if (rc < 0)
                break;
        } else {
            body_member(&d, key, val, out);
        }
    }
    doc_release(&d);
    return rc;
}

int mock_json_parse_config(const char *js, size_t len, struct mock_knobs *k,
                           char *err, size_t errlen)
{
    struct doc d;
    int rc;

    if (doc_parse(&d, js, len) < 0) {
        snprintf(err, errlen, "mock config must be a JSON object");
        doc_release(&d);
        return -1;
    }
    rc = knobs_from(&d, 0, k, MS_CONFIG, err, errlen);
    doc_release(&d);
    return rc;
}

/* Length of the valid UTF-8 sequence at s, or 0: the stats page must stay
 * valid JSON whatever bytes a test (or fuzzer) sent. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xbf;   /* second byte: no overlongs, no surrogates */
    size_t len;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        lo = s[0] == 0xe0 ? 0xa0 : lo;
        hi = s[0] == 0xed ? 0x9f : hi;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        lo = s[0] == 0xf0 ? 0x90 : lo;
        hi = s[0] == 0xf4 ? 0x8f : hi;
    } else {
        return 0;
    }
    if (len > n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

void mock_json_escape(struct evbuffer *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0, i = 0;

    if (n == 0)
        return;
    while (i < n) {
        size_t l = u[i] < 0x80 ? 1 : utf8_len(u + i, n - i);

        if (l > 0 && u[i] >= 0x20 && u[i] != '"' && u[i] != '\\') {
            i += l;
            continue;
        }
        evbuffer_add(out, s + run, i - run);
        if (u[i] == '"' || u[i] == '\\')
            evbuffer_add_printf(out, "\\%c", u[i]);
        else if (u[i] == '\n')
            MOCK_ADD_LIT(out, "\\n");
        else
            evbuffer_add_printf(out, "\\u%04x", u[i]);
        run = ++i;
    }
    evbuffer_add(out, s + run, n - run);
}
