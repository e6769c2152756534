/* A strict, single-pass JSON tokenizer (see json.h for why not jsmn's). */
#include "json.h"

#include <event2/buffer.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A parse keeps a big token array only until the next one: a worker that
 * met one huge body does not hold its tokens for the rest of its life. */
#define KEEP_TOKENS 16384

/* What the scanner expects next. */
enum want { W_VALUE, W_VALUE_OR_CLOSE, W_KEY, W_KEY_OR_CLOSE, W_COLON, W_COMMA_OR_CLOSE,
            W_END };

typedef struct scan {
    llmr_json *j;
    const char *s;
    int pos, len, max, depth;
    int open[LLMR_JSON_MAX_DEPTH];      /* the containers being filled */
} scan;

static int fail(scan *sc, const char *why)
{
    sc->j->err = why;
    return -1;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int grow(llmr_json *j, int max)
{
    int cap = j->cap == 0 ? 64 : j->cap > max / 2 ? max : j->cap * 2;
    jsmntok_t *t = realloc(j->toks, sizeof(*t) * (size_t)cap);
    int *n;

    if (t == NULL)
        return -1;
    j->toks = t;
    if ((n = realloc(j->next, sizeof(*n) * (size_t)cap)) == NULL)
        return -1;
    j->next = n;
    j->cap = cap;
    return 0;
}

/* Appends a token; keeps the sizes jsmn would give: an array counts its
 * elements, an object its keys, and a key is of size 1 (its value). */
static int add(scan *sc, jsmntype_t type, int start, int end, int is_key)
{
    llmr_json *j = sc->j;
    int i = j->ntoks;

    if (i >= sc->max)
        return fail(sc, "too many JSON tokens");
    if (i >= j->cap && grow(j, sc->max) < 0)
        return fail(sc, "out of memory");
    j->toks[i] = (jsmntok_t){ .type = type, .start = start, .end = end, .size = 0 };
    j->next[i] = i + 1;
    if (sc->depth > 0) {
        jsmntok_t *parent = &j->toks[sc->open[sc->depth - 1]];
        if (parent->type == JSMN_ARRAY || is_key)
            parent->size++;
        else
            j->toks[i - 1].size = 1;    /* an object's value follows its key */
    }
    j->ntoks++;
    return i;
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

/* A string at s[pos] == '"': escapes must be JSON's, raw control
 * characters are not allowed.  The token spans the inside of the quotes. */
static int string(scan *sc, int is_key)
{
    static const char simple[] = "\"\\/bfnrt";
    const char *s = sc->s;
    int i = sc->pos + 1;
    unsigned cp;

    for (; i < sc->len && s[i] != '"'; i++) {
        if ((unsigned char)s[i] < 0x20)
            return fail(sc, "control character in a string");
        if (s[i] != '\\')
            continue;
        if (++i >= sc->len)
            break;
        if (s[i] == 'u') {
            if (i + 4 >= sc->len || hex4(s + i + 1, &cp) < 0)
                return fail(sc, "bad \\u escape");
            i += 4;
        } else if (s[i] == '\0' || strchr(simple, s[i]) == NULL) {
            return fail(sc, "bad escape");
        }
    }
    if (i >= sc->len)
        return fail(sc, "unterminated string");
    if (add(sc, JSMN_STRING, sc->pos + 1, i, is_key) < 0)
        return -1;
    sc->pos = i + 1;
    return 0;
}

/* The end of a JSON number at p, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?,
 * or NULL.  What follows it is the grammar's business. */
static const char *number_end(const char *p, const char *end)
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
        return NULL;
    if (p < end && *p == '.') {
        for (d = ++p; p < end && *p >= '0' && *p <= '9'; p++)
            ;
        if (p == d)
            return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        for (d = p; p < end && *p >= '0' && *p <= '9'; p++)
            ;
        if (p == d)
            return NULL;
    }
    return p;
}

static int primitive(scan *sc)
{
    static const char *const words[] = { "true", "false", "null" };
    const char *p = sc->s + sc->pos, *end = sc->s + sc->len, *e = NULL;

    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]) && e == NULL; w++) {
        size_t n = strlen(words[w]);
        if ((size_t)(end - p) >= n && memcmp(p, words[w], n) == 0)
            e = p + n;
    }
    if (e == NULL && (e = number_end(p, end)) == NULL)
        return fail(sc, "invalid value");
    if (add(sc, JSMN_PRIMITIVE, sc->pos, (int)(e - sc->s), 0) < 0)
        return -1;
    sc->pos = (int)(e - sc->s);
    return 0;
}

/* '{' or '[': the depth bound is checked here, before anything deeper is
 * read. */
static int open_container(scan *sc, jsmntype_t type)
{
    int i;

    if (sc->depth >= LLMR_JSON_MAX_DEPTH)
        return fail(sc, "nested too deeply");
    if ((i = add(sc, type, sc->pos, -1, 0)) < 0)
        return -1;
    sc->open[sc->depth++] = i;
    sc->pos++;
    return 0;
}

static int close_container(scan *sc, jsmntype_t type)
{
    llmr_json *j = sc->j;
    int i = sc->open[--sc->depth];

    if (j->toks[i].type != type)
        return fail(sc, "mismatched bracket");
    j->toks[i].end = ++sc->pos;
    j->next[i] = j->ntoks;
    return 0;
}

static enum want after_value(const scan *sc)
{
    return sc->depth == 0 ? W_END : W_COMMA_OR_CLOSE;
}

/* A value starting at s[pos]; sets what comes after it. */
static int value(scan *sc, enum want *w)
{
    char c = sc->s[sc->pos];

    if (c == '{' || c == '[') {
        *w = c == '{' ? W_KEY_OR_CLOSE : W_VALUE_OR_CLOSE;
        return open_container(sc, c == '{' ? JSMN_OBJECT : JSMN_ARRAY);
    }
    if ((c == '"' ? string(sc, 0) : primitive(sc)) < 0)
        return -1;
    *w = after_value(sc);
    return 0;
}

static int key(scan *sc, char c, enum want *w)
{
    if (c != '"')
        return fail(sc, "expected a string key");
    *w = W_COLON;
    return string(sc, 1);
}

/* One step of the grammar at the non-blank byte s[pos]. */
static int step(scan *sc, enum want *w)
{
    char c = sc->s[sc->pos];
    int in_object = sc->depth > 0 && sc->j->toks[sc->open[sc->depth - 1]].type == JSMN_OBJECT;

    if ((c == ']' || c == '}')
        && (*w == W_VALUE_OR_CLOSE || *w == W_KEY_OR_CLOSE || *w == W_COMMA_OR_CLOSE)) {
        if (close_container(sc, c == '}' ? JSMN_OBJECT : JSMN_ARRAY) < 0)
            return -1;
        *w = after_value(sc);
        return 0;
    }
    switch (*w) {
    case W_COMMA_OR_CLOSE:
        if (c != ',')
            return fail(sc, "expected ',' or a closing bracket");
        sc->pos++;
        *w = in_object ? W_KEY : W_VALUE;
        return 0;
    case W_KEY_OR_CLOSE:
    case W_KEY:
        return key(sc, c, w);
    case W_COLON:
        if (c != ':')
            return fail(sc, "expected ':'");
        sc->pos++;
        *w = W_VALUE;
        return 0;
    case W_VALUE_OR_CLOSE:
    case W_VALUE:
        return value(sc, w);
    case W_END:
        break;
    }
    return fail(sc, "text after the JSON value");
}

int llmr_json_parse(llmr_json *j, const char *js, size_t len, int max_tokens)
{
    scan sc = { .j = j, .s = js, .max = max_tokens };
    enum want w = W_VALUE;
    int rc = 0;

    j->js = js;
    j->len = len;
    j->ntoks = 0;
    j->err = "invalid JSON";
    if (j->cap > KEEP_TOKENS)
        llmr_json_free(j);
    if (len > INT_MAX || max_tokens < 1)
        return -1;
    sc.len = (int)len;
    while (rc == 0) {
        while (sc.pos < sc.len && is_ws(js[sc.pos]))
            sc.pos++;
        if (sc.pos >= sc.len)
            break;
        rc = step(&sc, &w);
    }
    if (rc == 0 && w != W_END) {
        j->err = len == 0 ? "empty body" : "truncated JSON";
        rc = -1;
    }
    if (rc < 0)
        j->ntoks = 0;
    return rc;
}

void llmr_json_free(llmr_json *j)
{
    free(j->toks);
    j->toks = NULL;
    free(j->next);
    j->next = NULL;
    j->cap = j->ntoks = 0;
}

int llmr_json_skip(const llmr_json *j, int i)
{
    if (i < 0 || i >= j->ntoks)
        return i;
    if (j->toks[i].type == JSMN_STRING && j->toks[i].size == 1 && i + 1 < j->ntoks)
        return j->next[i + 1];          /* a key: its value goes with it */
    return j->next[i];
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

/* Whether the inside of a JSON string raw[0..rn), longer than s[0..n) (the
 * rest key_eq() settles), decodes to s.  An escape is at most 6 bytes for 1
 * decoded byte, so a raw text over 6n cannot match and costs nothing to
 * rule out: a lookup never reads more than 6n bytes of a key, however long
 * the key is. */
static int text_eq(const char *raw, size_t rn, const char *s, size_t n)
{
    size_t i = 0, o = 0;

    if (rn > 6 * n)                     /* each byte at most a 6-byte escape */
        return 0;
    while (i < rn) {
        char tmp[4];
        size_t k = 1;
        int used = 1;

        if (raw[i] == '\\') {
            if ((used = unescape_one(raw, i, rn, tmp, &k)) < 0)
                return 0;
        } else {
            tmp[0] = raw[i];
        }
        if (o + k > n || memcmp(s + o, tmp, k) != 0)
            return 0;
        o += k;
        i += (size_t)used;
    }
    return o == n;
}

/* The raw key raw[0..rn) is the name s (n bytes), text_eq() after the
 * checks that settle most keys without a call: a key shorter than the
 * name, one of its length (no room for an escape), or a longer one whose
 * first byte is neither the name's nor an escape. */
static inline int key_eq(const char *raw, size_t rn, const char *s, size_t n)
{
    if (rn <= n)
        return rn == n && memcmp(raw, s, n) == 0;
    return (raw[0] == s[0] || raw[0] == '\\') && text_eq(raw, rn, s, n);
}

/* Token i is the string s (n bytes). */
static int tok_eq(const llmr_json *j, int i, const char *s, size_t n)
{
    const jsmntok_t *t = &j->toks[i];

    return t->type == JSMN_STRING
        && key_eq(j->js + t->start, (size_t)(t->end - t->start), s, n);
}

int llmr_json_eq(const llmr_json *j, int i, const char *s)
{
    return i >= 0 && i < j->ntoks && tok_eq(j, i, s, strlen(s));
}

int llmr_json_get(const llmr_json *j, int obj, const char *key)
{
    size_t klen = strlen(key);
    int i, n;

    if (obj < 0 || obj >= j->ntoks || j->toks[obj].type != JSMN_OBJECT)
        return -1;
    n = j->toks[obj].size;
    i = obj + 1;
    for (int k = 0; k < n && i + 1 < j->ntoks; k++) {
        if (tok_eq(j, i, key, klen))
            return i + 1;
        i = j->next[i + 1];
    }
    return -1;
}

int llmr_json_dup_key(const llmr_json *j, int obj, const char *const *names, int n)
{
    uint32_t seen = 0;
    size_t len[32];
    int i, keys;

    if (obj < 0 || obj >= j->ntoks || j->toks[obj].type != JSMN_OBJECT || n > 32)
        return -1;
    for (int f = 0; f < n; f++)
        len[f] = strlen(names[f]);
    keys = j->toks[obj].size;
    i = obj + 1;
    for (int k = 0; k < keys && i + 1 < j->ntoks; k++, i = j->next[i + 1]) {
        for (int f = 0; f < n; f++) {
            if (!tok_eq(j, i, names[f], len[f]))
                continue;
            if (seen & (UINT32_C(1) << f))
                return f;
            seen |= UINT32_C(1) << f;
            break;
        }
    }
    return -1;
}

int llmr_json_int_text(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;

    if (n == 0)
        return -1;
    for (size_t k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9' || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (s[k] - '0');
    }
    *out = v;
    return 0;
}

int llmr_json_int(const llmr_json *j, int i, int64_t *out)
{
    const jsmntok_t *t;

    if (i < 0 || i >= j->ntoks)
        return -1;
    t = &j->toks[i];
    if (t->type != JSMN_PRIMITIVE || t->end <= t->start)
        return -1;
    return llmr_json_int_text(j->js + t->start, (size_t)(t->end - t->start), out);
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

/* ---- a member of a big document, without tokens ---- */

static size_t skip_ws(const char *s, size_t i, size_t len)
{
    while (i < len && is_ws(s[i]))
        i++;
    return i;
}

/* The index after the string opening at s[i] == '"', or 0.  A quote ends
 * it unless an odd run of backslashes precedes it; memchr() finds the
 * quotes (an answer's text is most of its bytes, ~10 instructions a byte
 * one at a time). */
static size_t string_end(const char *s, size_t i, size_t len)
{
    const char *start = s + i + 1, *p = start, *end = s + len, *q;

    while (p < end && (q = memchr(p, '"', (size_t)(end - p))) != NULL) {
        const char *b = q;

        while (b > start && b[-1] == '\\')
            b--;
        if ((q - b) % 2 == 0)
            return (size_t)(q - s) + 1;
        p = q + 1;
    }
    return 0;
}

/* The index after the value at s[i], or 0: brackets are counted and
 * strings stepped over, nothing else is checked. */
static size_t value_end(const char *s, size_t i, size_t len)
{
    size_t depth = 0;

    if (i >= len)
        return 0;
    if (s[i] == '"')
        return string_end(s, i, len);
    if (s[i] != '{' && s[i] != '[') {
        while (i < len && !is_ws(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']')
            i++;
        return i;
    }
    while (i < len) {
        char c = s[i];
        if (c == '"') {
            if ((i = string_end(s, i, len)) == 0)
                return 0;
            continue;
        }
        i++;
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0)
            return i;
    }
    return 0;
}

int llmr_json_members(const char *s, size_t len, const char *const *keys, int nkeys,
                      size_t *off, size_t *n)
{
    size_t i = skip_ws(s, 0, len), e, klen[LLMR_JSON_MEMBERS_MAX];
    int found = 0;

    if (nkeys < 1 || nkeys > LLMR_JSON_MEMBERS_MAX || i >= len || s[i] != '{')
        return -1;
    for (int k = 0; k < nkeys; k++) {
        klen[k] = strlen(keys[k]);
        n[k] = 0;
    }
    i = skip_ws(s, i + 1, len);
    if (i < len && s[i] == '}')
        return 0;
    for (; i < len && s[i] == '"'; i = skip_ws(s, i + 1, len)) {
        size_t k0 = i;
        int which = -1;

        if ((e = string_end(s, i, len)) == 0)
            return -1;
        for (int k = 0; k < nkeys && which < 0; k++)
            if (n[k] == 0 && key_eq(s + k0 + 1, e - k0 - 2, keys[k], klen[k]))
                which = k;
        i = skip_ws(s, e, len);
        if (i >= len || s[i] != ':')
            return -1;
        i = skip_ws(s, i + 1, len);
        if ((e = value_end(s, i, len)) <= i)
            return -1;
        if (which >= 0) {
            off[which] = i;
            n[which] = e - i;
            if (++found == nkeys)
                return found;
        }
        i = skip_ws(s, e, len);
        if (i < len && s[i] == '}')
            return found;
        if (i >= len || s[i] != ',')
            return -1;
    }
    return -1;
}

int llmr_json_member(const char *s, size_t len, const char *key, size_t *off, size_t *n)
{
    return llmr_json_members(s, len, &key, 1, off, n) == 1 ? 0 : -1;
}

int llmr_json_first(const char *s, size_t len, size_t *off, size_t *n)
{
    size_t i, e;

    if (len == 0 || s[0] != '[')
        return -1;
    i = skip_ws(s, 1, len);
    if (i >= len || s[i] == ']' || (e = value_end(s, i, len)) <= i)
        return -1;
    *off = i;
    *n = e - i;
    return 0;
}

/* ---- escaping ---- */

/* The length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no
 * overlong form, no surrogate, nothing past U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t i, size_t len)
{
    unsigned c = s[i], lo = 0x80, hi = 0xbf;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;              /* U+D800..DFFF are not characters */
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (i + n > len || s[i + 1] < lo || s[i + 1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if ((s[i + k] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* The escaped form of the character at s[i] into esc; returns the input
 * bytes it used and sets *n to the output bytes. */
static size_t escape_one(const unsigned char *s, size_t i, size_t len, char *esc, size_t *n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = s[i];
    size_t k;

    if (c == '"' || c == '\\' || c == '\n') {
        esc[0] = '\\';
        esc[1] = c == '\n' ? 'n' : (char)c;
        *n = 2;
        return 1;
    }
    if (c < 0x20) {
        memcpy(esc, "\\u00", 4);
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        *n = 6;
        return 1;
    }
    if ((k = utf8_seq(s, i, len)) == 0) {
        memcpy(esc, "\xef\xbf\xbd", 3);     /* U+FFFD for a byte that is not UTF-8 */
        *n = 3;
        return 1;
    }
    memcpy(esc, s + i, k);
    *n = k;
    return k;
}

size_t llmr_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i = 0;

    if (cap == 0)
        return 0;
    while (i < len) {
        char esc[6];
        size_t n, used = escape_one(u, i, len, esc, &n);

        if (o + n >= cap)
            break;
        memcpy(out + o, esc, n);
        o += n;
        i += used;
    }
    out[o] = '\0';
    return o;
}

void llmr_json_add_str(struct evbuffer *b, const char *s)
{
    const unsigned char *u = (const unsigned char *)(s != NULL ? s : "");
    size_t len = strlen((const char *)u), i = 0, from = 0;

    evbuffer_add(b, "\"", 1);
    while (i < len) {
        char esc[6];
        size_t n, used = escape_one(u, i, len, esc, &n);

        if (n != used || memcmp(esc, u + i, n) != 0) {
            evbuffer_add(b, u + from, i - from);
            evbuffer_add(b, esc, n);
            from = i + used;
        }
        i += used;
    }
    evbuffer_add(b, u + from, len - from);
    evbuffer_add(b, "\"", 1);
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

const char *llmr_json_str(const llmr_json *j, int tok, char *buf, size_t cap, size_t *len)
{
    const char *s = j->js + j->toks[tok].start;
    int n;

    *len = (size_t)(j->toks[tok].end - j->toks[tok].start);
    if (memchr(s, '\\', *len) == NULL || (n = llmr_json_unescape(buf, cap, s, *len)) < 0)
        return s;
    *len = (size_t)n;
    return buf;
}
