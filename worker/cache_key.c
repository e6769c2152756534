/* The cache key and the body's `cache` controls.
 *
 * The key is SHA-256 over a canonical text: "llmroute-cache-v1", the call
 * type, the stream flag, the model group (the one an alias routes to), the
 * namespace, then every top-level member of the body that can change the
 * answer, sorted by name (bytewise, after unescaping), each as name NUL
 * value NUL, the value as sent with the whitespace outside strings removed.
 * Left out: model (the group stands for it), stream (the flag), user,
 * metadata, cache, stream_options and llmroute's per-request controls.
 * Nested objects keep their order: {"a":1,"b":2} and {"b":2,"a":1} as the
 * value of a member are different keys (documented in the README). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#include "cache.h"

#define KEY_NAME_MAX 256

static const char *const left_out[] = {
    "model", "stream", "user", "metadata", "cache", "stream_options",
};

typedef struct member {
    const char *name;           /* unescaped, in the arena */
    size_t nlen;
    int val;                    /* its value token */
} member;

typedef void emit_fn(void *arg, const void *p, size_t n);

static int left_out_name(const char *n, size_t len)
{
    for (size_t i = 0; i < sizeof(left_out) / sizeof(left_out[0]); i++)
        if (strlen(left_out[i]) == len && memcmp(left_out[i], n, len) == 0)
            return 1;
    for (int i = 0; i < llmr_ncontrol_keys; i++)
        if (strlen(llmr_control_keys[i]) == len && memcmp(llmr_control_keys[i], n, len) == 0)
            return 1;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    const member *x = a, *y = b;
    size_t n = x->nlen < y->nlen ? x->nlen : y->nlen;
    int c = memcmp(x->name, y->name, n);

    if (c == 0)
        c = (x->nlen > y->nlen) - (x->nlen < y->nlen);
    /* a name sent twice (allowed for members llmroute does not read): in
     * the body's order, so the same bytes always make the same key */
    return c != 0 ? c : (x->val > y->val) - (x->val < y->val);
}

/* The value's bytes without the whitespace outside its strings. */
static void emit_compact(const char *p, size_t n, emit_fn *emit, void *arg)
{
    size_t run = 0;
    int in_str = 0, esc = 0;

    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (in_str) {
            if (esc)
                esc = 0;
            else if (ch == '\\')
                esc = 1;
            else if (ch == '"')
                in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            if (i > run)
                emit(arg, p + run, i - run);
            run = i + 1;
        }
    }
    if (n > run)
        emit(arg, p + run, n - run);
}

/* A member's name, unescaped, with its NUL bytes written as backslash '0'
 * and its backslashes doubled: a name with a "\u0000" in it could
 * otherwise spell the NULs that separate names and values, so that
 * {"a\u00001\u0000b":2} hashed the same text as {"a":1,"b":2}, and one
 * client's answer would be stored under another's key. */
static void emit_name(emit_fn *emit, void *arg, const char *p, size_t n)
{
    size_t run = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\0' && p[i] != '\\')
            continue;
        if (i > run)
            emit(arg, p + run, i - run);
        emit(arg, p[i] == '\0' ? "\\0" : "\\\\", 2);
        run = i + 1;
    }
    if (n > run)
        emit(arg, p + run, n - run);
}

static void emit_str(emit_fn *emit, void *arg, const char *s)
{
    emit(arg, s, strlen(s) + 1);
}

static int canonical(const llmr_json *j, const char *call, int stream, const char *group,
                     const char *ns, emit_fn *emit, void *arg)
{
    int n = j->toks[0].size, m = 0, t = 1;
    member *ms = calloc((size_t)(n > 0 ? n : 1), sizeof(*ms));
    char *arena = malloc(j->len + 1), *a = arena;

    if (ms == NULL || arena == NULL) {
        free(ms);
        free(arena);
        return -1;
    }
    for (int i = 0; i < n; i++, t = llmr_json_skip(j, t)) {
        const char *raw = j->js + j->toks[t].start;
        size_t rlen = (size_t)(j->toks[t].end - j->toks[t].start);
        int len = llmr_json_unescape(a, rlen + 1, raw, rlen);
        if (len < 0) {              /* malformed escape: the bytes as written */
            memcpy(a, raw, rlen);
            len = (int)rlen;
        }
        if (left_out_name(a, (size_t)len))
            continue;
        ms[m].name = a;
        ms[m].nlen = (size_t)len;
        ms[m].val = t + 1;
        a += len;
        m++;
    }
    qsort(ms, (size_t)m, sizeof(*ms), by_name);
    emit_str(emit, arg, "llmroute-cache-v1");
    emit_str(emit, arg, call);
    emit_str(emit, arg, stream ? "1" : "0");
    emit_str(emit, arg, group);
    emit_str(emit, arg, ns != NULL ? ns : "");
    for (int i = 0; i < m; i++) {
        const jsmntok_t *v = &j->toks[ms[i].val];
        emit_name(emit, arg, ms[i].name, ms[i].nlen);
        emit(arg, "", 1);
        emit_compact(j->js + v->start - (v->type == JSMN_STRING),
                     (size_t)(v->end - v->start) + 2 * (v->type == JSMN_STRING), emit, arg);
        emit(arg, "", 1);
    }
    free(ms);
    free(arena);
    return 0;
}

/* The canonical text is emitted in pieces of a few bytes: they are
 * gathered here and hashed in blocks (one EVP_DigestUpdate per piece was
 * ~3,400 instructions a key). */
typedef struct digest {
    EVP_MD_CTX *ctx;
    size_t n;
    int failed;
    unsigned char buf[4096];
} digest;

static void digest_flush(digest *d)
{
    if (d->n > 0 && EVP_DigestUpdate(d->ctx, d->buf, d->n) != 1)
        d->failed = 1;
    d->n = 0;
}

static void emit_digest(void *arg, const void *p, size_t n)
{
    digest *d = arg;

    if (n > sizeof(d->buf) - d->n) {
        digest_flush(d);
        if (n >= sizeof(d->buf)) {
            if (EVP_DigestUpdate(d->ctx, p, n) != 1)
                d->failed = 1;
            return;
        }
    }
    memcpy(d->buf + d->n, p, n);
    d->n += n;
}

/* SHA-256 fetched from its provider once per process, and one context
 * reused: EVP_sha256() makes OpenSSL 3 look the algorithm up again for
 * every EVP_DigestInit_ex() (~3,500 instructions a key), and a context
 * is an allocation. */
static EVP_MD *sha256;
static EVP_MD_CTX *sha_ctx;

void llmr_cache_key_free(void)
{
    EVP_MD_CTX_free(sha_ctx);
    sha_ctx = NULL;
    EVP_MD_free(sha256);
    sha256 = NULL;
}

static void emit_buffer(void *arg, const void *p, size_t n)
{
    evbuffer_add(arg, p, n);
}

int llmr_cache_key(const llmr_json *j, const char *call, int stream, const char *group,
                   const char *ns, unsigned char key[LLMR_CACHE_KEY_LEN])
{
    static digest d;
    unsigned int len = 0;

    if (sha256 == NULL && (sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
        return -1;
    if (sha_ctx == NULL && (sha_ctx = EVP_MD_CTX_new()) == NULL)
        return -1;
    d.ctx = sha_ctx;
    d.n = 0;
    d.failed = 0;
    if (EVP_DigestInit_ex(sha_ctx, sha256, NULL) != 1
        || canonical(j, call, stream, group, ns, emit_digest, &d) < 0)
        return -1;
    digest_flush(&d);
    return !d.failed && EVP_DigestFinal_ex(sha_ctx, key, &len) == 1
           && len == LLMR_CACHE_KEY_LEN ? 0 : -1;
}

int llmr_cache_canonical(const llmr_json *j, const char *call, int stream, const char *group,
                         const char *ns, struct evbuffer *out)
{
    return canonical(j, call, stream, group, ns, emit_buffer, out);
}

void llmr_cache_key_hex(const unsigned char key[LLMR_CACHE_KEY_LEN], char hex[65])
{
    static const char digits[] = "0123456789abcdef";

    for (int i = 0; i < LLMR_CACHE_KEY_LEN; i++) {
        hex[2 * i] = digits[key[i] >> 4];
        hex[2 * i + 1] = digits[key[i] & 15];
    }
    hex[64] = '\0';
}

/* ---- the body's `cache` object ------------------------------------------ */

static int number(const llmr_json *j, int t, double *out)
{
    char buf[64], *end;
    size_t n;

    if (j->toks[t].type != JSMN_PRIMITIVE)
        return -1;
    n = (size_t)(j->toks[t].end - j->toks[t].start);
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, j->js + j->toks[t].start, n);
    buf[n] = '\0';
    *out = strtod(buf, &end);
    return *end == '\0' && isfinite(*out) ? 0 : -1;
}

static int boolean(const llmr_json *j, int t, int *out)
{
    if (j->toks[t].type != JSMN_PRIMITIVE)
        return -1;
    *out = llmr_json_is_true(j, t);
    return *out || (j->toks[t].end - j->toks[t].start == 5
                    && memcmp(j->js + j->toks[t].start, "false", 5) == 0) ? 0 : -1;
}

int llmr_cache_ctl_read(const llmr_json *j, llmr_cache_ctl *c, char *err, size_t errlen)
{
    int o = llmr_json_get(j, 0, "cache"), t;

    memset(c, 0, sizeof(*c));
    c->s_maxage = -1;
    if (o < 0)
        return 0;
    if (j->toks[o].type != JSMN_OBJECT) {
        snprintf(err, errlen, "cache must be an object (no-cache, no-store, ttl, s-maxage, "
                 "namespace)");
        return -1;
    }
    if ((t = llmr_json_get(j, o, "no-cache")) >= 0 && boolean(j, t, &c->no_cache) < 0) {
        snprintf(err, errlen, "cache.no-cache must be true or false");
        return -1;
    }
    if ((t = llmr_json_get(j, o, "no-store")) >= 0 && boolean(j, t, &c->no_store) < 0) {
        snprintf(err, errlen, "cache.no-store must be true or false");
        return -1;
    }
    if ((t = llmr_json_get(j, o, "ttl")) >= 0
        && (number(j, t, &c->ttl) < 0 || c->ttl <= 0 || c->ttl > 1e9)) {
        snprintf(err, errlen, "cache.ttl must be a number of seconds > 0");
        return -1;
    }
    if ((t = llmr_json_get(j, o, "s-maxage")) >= 0
        && (number(j, t, &c->s_maxage) < 0 || c->s_maxage < 0 || c->s_maxage > 1e9)) {
        snprintf(err, errlen, "cache.s-maxage must be a number of seconds >= 0");
        return -1;
    }
    if ((t = llmr_json_get(j, o, "namespace")) >= 0) {
        int n = j->toks[t].type == JSMN_STRING
                ? llmr_json_unescape(c->ns, sizeof(c->ns), j->js + j->toks[t].start,
                                     (size_t)(j->toks[t].end - j->toks[t].start)) : -1;
        if (n < 0 || memchr(c->ns, '\0', (size_t)n) != NULL) {
            snprintf(err, errlen, "cache.namespace must be a string of at most %d bytes",
                     LLMR_CACHE_NS_MAX);
            return -1;
        }
        c->ns[n] = '\0';
        c->has_ns = 1;
    }
    return 0;
}
