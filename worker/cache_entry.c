/* The framing of a stored answer: a versioned fixed header in little-endian
 * bytes (the same on every host that shares a Redis), then the body as it
 * was relayed.  A value that does not parse is a miss, never an answer. */
#include <string.h>

#include "cache.h"

#define ENTRY_MAGIC 0x3143524cu     /* "LRC1" */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;

    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void llmr_cache_entry_pack(const llmr_cache_entry *e, unsigned char *hdr)
{
    put32(hdr, ENTRY_MAGIC);
    put64(hdr + 4, (uint64_t)e->created_ms);
    put64(hdr + 12, (uint64_t)e->expires_ms);
    put32(hdr + 20, (uint32_t)e->status);
    put32(hdr + 24, (uint32_t)e->stream);
    memset(hdr + 28, 0, LLMR_CACHE_CT_MAX);
    memcpy(hdr + 28, e->content_type, strnlen(e->content_type, LLMR_CACHE_CT_MAX - 1));
}

int llmr_cache_entry_unpack(const void *val, size_t len, llmr_cache_entry *e)
{
    const unsigned char *p = val;

    if (val == NULL || len < LLMR_CACHE_HDR_LEN || get32(p) != ENTRY_MAGIC
        || p[28 + LLMR_CACHE_CT_MAX - 1] != '\0')
        return -1;
    e->created_ms = (int64_t)get64(p + 4);
    e->expires_ms = (int64_t)get64(p + 12);
    e->status = (int)get32(p + 20);
    e->stream = (int)get32(p + 24);
    memcpy(e->content_type, p + 28, LLMR_CACHE_CT_MAX);
    for (size_t i = 0; e->content_type[i] != '\0'; i++)
        if ((unsigned char)e->content_type[i] < 0x20 || (unsigned char)e->content_type[i] > 0x7e)
            return -1;
    e->body = (const char *)p + LLMR_CACHE_HDR_LEN;
    e->len = len - LLMR_CACHE_HDR_LEN;
    return e->status >= 200 && e->status < 300 && (e->stream == 0 || e->stream == 1) ? 0 : -1;
}
