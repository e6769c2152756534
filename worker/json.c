/* The one translation unit that compiles jsmn's implementation. */
#undef JSMN_HEADER
#define JSMN_STRICT
#include <jsmn.h>

#define JSMN_HEADER
#include "json.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 512

/* The bytes a token spans, quotes included for strings. */
static int tok_begin(const jsmntok_t *t)
{
    return t->type == JSMN_STRING ? t->start - 1 : t->start;
}

static int tok_after(const jsmntok_t *t)
{
    return t->type == JSMN_STRING ? t->end + 1 : t->end;
}

/* js[from..to) holds only white space and exactly one `sep` (none if 0). */
static int gap_ok(const char *js, int from, int to, char sep)
{
    int seen = 0;

    for (int i = from; i < to; i++) {
        char c = js[i];
        if (c == sep && !seen)
            seen = 1;
        else if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return 0;
    }
    return seen == (sep != 0);
}

/* A JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number_ok(const char *p, const char *end)
{
    const char *d;

    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if (p < end && *p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    else
        return 0;
    if (p < end && *p == '.') {
        for (d = ++p; p < end && *p >= '0' && *p <= '9'; p++)
            ;
        if (p == d)
            return 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        for (d = p; p < end && *p >= '0' && *p <= '9'; p++)
            ;
        if (p == d)
            return 0;
    }
    return p == end;
}

/* jsmn's strict mode only looks at a primitive's first character. */
static int primitive_ok(const llmr_json *j, const jsmntok_t *t)
{
    const char *p = j->js + t->start;
    int n = t->end - t->start;

    return (n == 4 && (memcmp(p, "true", 4) == 0 || memcmp(p, "null", 4) == 0))
        || (n == 5 && memcmp(p, "false", 5) == 0) || number_ok(p, p + n);
}

/* jsmn checks tokens, not grammar: it accepts {"a":}, {"a" "b"} and [1,].
 * This walk checks that every object key is a string with exactly one value
 * and that separators stand exactly where JSON puts them.  Returns the
 * index after the value at i, or -1. */
static int check_value(const llmr_json *j, int i, int depth)
{
    const jsmntok_t *t, *e;
    int k, n, pos;

    if (i >= j->ntoks || depth > MAX_DEPTH)
        return -1;
    t = &j->toks[i];
    if (t->type == JSMN_PRIMITIVE && !primitive_ok(j, t))
        return -1;
    if (t->type == JSMN_STRING)
        for (int p = t->start; p < t->end; p++)
            if ((unsigned char)j->js[p] < 0x20)
                return -1;          /* raw control characters are not JSON */
    if (t->type != JSMN_OBJECT && t->type != JSMN_ARRAY)
        return t->size == 0 ? i + 1 : -1;
    k = i + 1;
    pos = t->start + 1;
    for (n = 0; n < t->size; n++) {
        if (k >= j->ntoks)
            return -1;
        e = &j->toks[k];
        if (!gap_ok(j->js, pos, tok_begin(e), n ? ',' : 0))
            return -1;
        if (t->type == JSMN_OBJECT) {
            if (e->type != JSMN_STRING || e->size != 1 || k + 1 >= j->ntoks
                || !gap_ok(j->js, tok_after(e), tok_begin(&j->toks[k + 1]), ':'))
                return -1;
            e = &j->toks[++k];
        }
        if ((k = check_value(j, k, depth + 1)) < 0)
            return -1;
        pos = tok_after(e);
    }
    return gap_ok(j->js, pos, t->end - 1, 0) ? k : -1;
}

int llmr_json_parse(llmr_json *j, const char *js, size_t len, int max_tokens)
{
    jsmn_parser p;
    int r;

    j->js = js;
    j->len = len;
    if (j->cap == 0) {
        j->cap = 64;
        j->toks = malloc(sizeof(jsmntok_t) * (size_t)j->cap);
        if (j->toks == NULL)
            return -1;
    }
    for (;;) {
        jsmn_init(&p);
        r = jsmn_parse(&p, js, len, j->toks, (unsigned)j->cap);
        if (r != JSMN_ERROR_NOMEM)
            break;
        if (j->cap >= max_tokens)
            return -1;
        /* jsmn cannot resume after NOMEM with a moved array; restart. */
        int cap = j->cap * 4 > max_tokens ? max_tokens : j->cap * 4;
        jsmntok_t *t = realloc(j->toks, sizeof(jsmntok_t) * (size_t)cap);
        if (t == NULL)
            return -1;
        j->toks = t;
        j->cap = cap;
    }
    if (r <= 0 || r > max_tokens)
        return -1;
    /* jsmn stops after the first complete value; trailing bytes other than
     * white space mean the body is not one JSON document. */
    for (size_t i = (size_t)j->toks[0].end; i < len; i++)
        if (js[i] != ' ' && js[i] != '\n' && js[i] != '\r' && js[i] != '\t')
            return -1;
    j->ntoks = r;
    if (check_value(j, 0, 0) != r) {
        j->ntoks = 0;
        return -1;
    }
    return 0;
}

void llmr_json_free(llmr_json *j)
{
    free(j->toks);
    j->toks = NULL;
    j->cap = j->ntoks = 0;
}

int llmr_json_skip(const llmr_json *j, int i)
{
    int pending = 1;

    /* Each token's `size` counts its direct children; walk until every
     * opened child has been visited. */
    while (pending > 0 && i < j->ntoks) {
        pending += j->toks[i].size - 1;
        i++;
    }
    return i;
}

int llmr_json_eq(const llmr_json *j, int i, const char *s)
{
    const jsmntok_t *t = &j->toks[i];
    size_t n = strlen(s);

    return t->type == JSMN_STRING && (size_t)(t->end - t->start) == n
        && memcmp(j->js + t->start, s, n) == 0;
}

int llmr_json_get(const llmr_json *j, int obj, const char *key)
{
    int i, n;

    if (obj < 0 || obj >= j->ntoks || j->toks[obj].type != JSMN_OBJECT)
        return -1;
    n = j->toks[obj].size;
    i = obj + 1;
    for (int k = 0; k < n && i + 1 < j->ntoks; k++) {
        if (llmr_json_eq(j, i, key))
            return i + 1;
        i = llmr_json_skip(j, i + 1);
    }
    return -1;
}

int llmr_json_int(const llmr_json *j, int i, int64_t *out)
{
    const jsmntok_t *t;
    int64_t v = 0;

    if (i < 0 || i >= j->ntoks)
        return -1;
    t = &j->toks[i];
    if (t->type != JSMN_PRIMITIVE || t->end <= t->start)
        return -1;
    for (int k = t->start; k < t->end; k++) {
        char c = j->js[k];
        if (c < '0' || c > '9' || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return 0;
}

int llmr_json_is_true(const llmr_json *j, int i)
{
    const jsmntok_t *t;

    if (i < 0 || i >= j->ntoks)
        return 0;
    t = &j->toks[i];
    return t->type == JSMN_PRIMITIVE && t->end - t->start == 4
        && memcmp(j->js + t->start, "true", 4) == 0;
}

size_t llmr_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (cap == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t n = 0;

        if (c == '"' || c == '\\') {
            esc[n++] = '\\';
            esc[n++] = (char)c;
        } else if (c == '\n') {
            esc[n++] = '\\';
            esc[n++] = 'n';
        } else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        } else {
            esc[n++] = (char)c;
        }
        if (o + n >= cap)
            break;
        memcpy(out + o, esc, n);
        o += n;
    }
    out[o] = '\0';
    return o;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8_put(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* One escape at s[i] (s[i] == '\\'): appends its bytes, returns its length. */
static int unescape_one(const char *s, size_t i, size_t len, char *o, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k;
    unsigned cp, lo;

    if (i + 1 >= len)
        return -1;
    if (s[i + 1] != 'u') {
        if ((k = strchr(from, s[i + 1])) == NULL || s[i + 1] == '\0')
            return -1;
        o[0] = to[k - from];
        *n = 1;
        return 2;
    }
    if (i + 6 > len || hex4(s + i + 2, &cp) < 0)
        return -1;
    if (cp >= 0xd800 && cp < 0xdc00) {
        if (i + 12 > len || s[i + 6] != '\\' || s[i + 7] != 'u'
            || hex4(s + i + 8, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
            return -1;
        *n = utf8_put(o, 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00));
        return 12;
    }
    *n = utf8_put(o, cp);
    return 6;
}

int llmr_json_unescape(char *out, size_t cap, const char *s, size_t len)
{
    size_t o = 0, i = 0;

    while (i < len) {
        char tmp[4];
        size_t n = 1;
        int used = 1;

        if (s[i] == '\\') {
            if ((used = unescape_one(s, i, len, tmp, &n)) < 0)
                return -1;
        } else {
            tmp[0] = s[i];
        }
        if (o + n >= cap)
            return -1;
        memcpy(out + o, tmp, n);
        o += n;
        i += (size_t)used;
    }
    out[o] = '\0';
    return (int)o;
}
