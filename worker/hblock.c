/* One evhttp header entry for many headers: see hblock.h. */
#include "hblock.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

void llmr_hblock_init(llmr_hblock *b)
{
    b->n = b->klen = 0;
}

/* Bit c of the pair is set for each tchar c: ! # $ % & ' * + - . ^ _ ` | ~,
 * digits and letters (tests/unit/test_hblock.c checks it against the list). */
int llmr_http_tchar(unsigned char c)
{
    static const uint64_t map[2] = { 0x03ff6cfa00000000ull, 0x57ffffffc7fffffeull };

    return c < 128 && (map[c >> 6] >> (c & 63) & 1);
}

static int name_ok(const char *s, size_t *len)
{
    size_t i = 0;

    while (s[i] != '\0' && llmr_http_tchar((unsigned char)s[i]))
        i++;
    *len = i;
    return i > 0 && s[i] == '\0';
}

static int value_ok(const char *s, size_t *len)
{
    size_t i = 0;

    for (; s[i] != '\0'; i++)
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || (unsigned char)s[i] == 0x7f)
            return 0;
    *len = i;
    return 1;
}

int llmr_hblock_add(llmr_hblock *b, const char *name, const char *value)
{
    size_t nl, vl, need;

    if (!name_ok(name, &nl) || !value_ok(value, &vl))
        return -1;
    need = (b->n > 0 ? 2 : 0) + nl + 2 + vl;
    if (need >= sizeof(b->text) - b->n)         /* room for the NUL too */
        return -1;
    if (b->n > 0) {
        memcpy(b->text + b->n, "\r\n", 2);
        b->n += 2;
    } else {
        b->klen = nl;
    }
    memcpy(b->text + b->n, name, nl);
    memcpy(b->text + b->n + nl, ": ", 2);
    memcpy(b->text + b->n + nl + 2, value, vl);
    b->n += nl + 2 + vl;
    return 0;
}

/* The entry is allocated as evhttp_add_header() allocates one, so that
 * evhttp frees it with the request like any other (libevent's allocator is
 * malloc/free: common/alloc.c). */
int llmr_hblock_attach(const llmr_hblock *b, struct evkeyvalq *out)
{
    struct evkeyval *h;
    size_t vlen;

    if (b->n == 0)
        return 0;
    vlen = b->n - b->klen - 2;
    if ((h = calloc(1, sizeof(*h))) == NULL || (h->key = malloc(b->klen + 1)) == NULL
        || (h->value = malloc(vlen + 1)) == NULL) {
        if (h != NULL)
            free(h->key);
        free(h);
        return -1;
    }
    memcpy(h->key, b->text, b->klen);
    h->key[b->klen] = '\0';
    memcpy(h->value, b->text + b->klen + 2, vlen);
    h->value[vlen] = '\0';
    TAILQ_INSERT_TAIL(out, h, next);
    return 0;
}
