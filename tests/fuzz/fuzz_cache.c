/* libFuzzer target: what the response cache reads from outside.  A client's
 * body: its `cache` controls and the canonical text its key hashes; a value
 * read back from the store (a shared Redis may hold anything): the entry
 * framing.  Invariants beyond crashes: the key is SHA-256 of the canonical
 * text; the canonical text names no member that is left out of the key; a
 * control read either fails with a message or yields values in range; an
 * entry that unpacks has a printable Content-Type and its body inside the
 * value. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#include "cache.h"

/* controls.c's list (that file needs the whole worker): the same names. */
const char *const llmr_control_keys[] = {
    "fallbacks", "context_window_fallbacks", "num_retries", "timeout", "cache",
};
const int llmr_ncontrol_keys = 5;

static void check_controls(const llmr_json *j)
{
    llmr_cache_ctl c;
    char err[256] = "";

    if (llmr_cache_ctl_read(j, &c, err, sizeof(err)) < 0) {
        if (err[0] == '\0')
            abort();
        return;
    }
    if (!(c.ttl >= 0 && c.ttl <= 1e9) || !(c.s_maxage == -1 || (c.s_maxage >= 0
                                                                 && c.s_maxage <= 1e9))
        || strlen(c.ns) > LLMR_CACHE_NS_MAX)
        abort();
}

static void check_key(const llmr_json *j)
{
    struct evbuffer *b = evbuffer_new();
    unsigned char key[LLMR_CACHE_KEY_LEN], sha[32];
    const unsigned char *p;
    size_t n;

    if (b == NULL || llmr_cache_canonical(j, "chat", 1, "g", "ns", b) < 0
        || llmr_cache_key(j, "chat", 1, "g", "ns", key) < 0) {
        evbuffer_free(b);
        return;
    }
    n = evbuffer_get_length(b);
    p = evbuffer_pullup(b, -1);
    EVP_Digest(p, n, sha, NULL, EVP_sha256(), NULL);
    if (memcmp(sha, key, sizeof(sha)) != 0)
        abort();
    /* members follow the five header fields as name NUL value NUL */
    size_t off = 0;
    for (int f = 0; f < 5 && off < n; f++)
        off += strnlen((const char *)p + off, n - off) + 1;
    while (off < n) {
        const char *name = (const char *)p + off;
        size_t len = strnlen(name, n - off);
        if (len == 5 && memcmp(name, "model", 5) == 0)
            abort();
        if (len == 5 && memcmp(name, "cache", 5) == 0)
            abort();
        off += len + 1;
        /* the value: JSON without NUL, so up to the next NUL */
        off += strnlen((const char *)p + off, n - off) + 1;
    }
    evbuffer_free(b);
}

static void check_entry(const uint8_t *data, size_t size)
{
    llmr_cache_entry e;

    if (llmr_cache_entry_unpack(data, size, &e) < 0)
        return;
    for (const char *c = e.content_type; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
            abort();
    if (e.body != (const char *)data + LLMR_CACHE_HDR_LEN || e.len != size - LLMR_CACHE_HDR_LEN)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static llmr_json j;

    check_entry(data, size);
    if (llmr_json_parse(&j, (const char *)data, size, (int)(size / 2) + 64) == 0
        && j.toks[0].type == JSMN_OBJECT) {
        check_controls(&j);
        check_key(&j);
    }
    return 0;
}
