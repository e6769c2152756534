/* The one translation unit that compiles jsmn's implementation. */
#undef JSMN_HEADER
#define JSMN_STRICT
#include <jsmn.h>

#define JSMN_HEADER
#include "json.h"

#include <stdlib.h>
#include <string.h>

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
    if (r <= 0)
        return -1;
    /* jsmn stops after the first complete value; trailing bytes other than
     * white space mean the body is not one JSON document. */
    for (size_t i = (size_t)j->toks[0].end; i < len; i++)
        if (js[i] != ' ' && js[i] != '\n' && js[i] != '\r' && js[i] != '\t')
            return -1;
    j->ntoks = r;
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
