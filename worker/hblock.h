/* llmroute's own headers of a reply, handed to evhttp as one entry.
 *
 * evhttp prints every header of a reply with its own vsnprintf (about 1,300
 * instructions each) and keeps each in three allocations, freed with the
 * request.  The headers it never looks up itself (x-llmroute-*, the
 * upstream's x-ratelimit-* and ids, Retry-After) are joined here into one
 * "name: value" text whose lines after the first ride in the value of a
 * single entry: evhttp prints "key: value\r\n", so the bytes on the wire are
 * the same as one entry each.  Headers that evhttp or llmroute look up
 * (Date, Content-Length, Content-Type, Connection, Transfer-Encoding,
 * x-request-id) are never put in a block. */
#ifndef LLMR_HBLOCK_H
#define LLMR_HBLOCK_H

#include <stddef.h>

struct evkeyvalq;

/* Whether c may be part of a header name (RFC 9110's tchar). */
int llmr_http_tchar(unsigned char c);

#define LLMR_HBLOCK_MAX 6144            /* 12 upstream headers of 256 and ours */

typedef struct llmr_hblock {
    size_t n;                           /* bytes of text */
    size_t klen;                        /* the first header's name */
    char text[LLMR_HBLOCK_MAX];
} llmr_hblock;

void llmr_hblock_init(llmr_hblock *b);
/* Appends "name: value".  Dropped, as evhttp_add_header() drops it, when the
 * name is not an HTTP token or the value holds a control character other
 * than HTAB (so a line can never end early); also when it does not fit.
 * Returns 0, or -1 when dropped. */
int llmr_hblock_add(llmr_hblock *b, const char *name, const char *value);
/* Adds the block to out as one entry (nothing when empty); 0, or -1 when
 * out of memory (the headers are then lost, the reply still goes). */
int llmr_hblock_attach(const llmr_hblock *b, struct evkeyvalq *out);

#endif
