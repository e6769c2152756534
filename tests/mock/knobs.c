#include "mock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Header names drop the "x-mock-" prefix; JSON names are the same words
 * with underscores, so the two tables cannot drift apart. */
static const char *const knob_header[MK_COUNT] = {
    [MK_LATENCY_MS] = "latency-ms",
    [MK_STATUS] = "status",
    [MK_RETRY_AFTER] = "retry-after",
    [MK_ERROR] = "error",
    [MK_DROP] = "drop",
    [MK_CHUNKS] = "chunks",
    [MK_CHUNK_DELAY_MS] = "chunk-delay-ms",
    [MK_STALL_AFTER] = "stall-after",
    [MK_DROP_AFTER] = "drop-after",
    [MK_USAGE] = "usage",
    [MK_EMBEDDING_DIMS] = "embedding-dims",
    [MK_EMBEDDINGS] = "embeddings",
    [MK_USAGE_TOKENS] = "usage-tokens",
    [MK_UPSTREAM_HEADERS] = "upstream-headers",
    [MK_REQUIRE_KEY] = "require-key",
    [MK_ESCAPED_DELTAS] = "escaped-deltas",
    [MK_TOOL_CALL] = "tool-call",
    [MK_MALFORMED] = "malformed",
    [MK_CHUNK_BURST] = "chunk-burst",
};

static const char *const knob_json[MK_COUNT] = {
    [MK_LATENCY_MS] = "latency_ms",
    [MK_STATUS] = "status",
    [MK_RETRY_AFTER] = "retry_after",
    [MK_ERROR] = "error",
    [MK_DROP] = "drop",
    [MK_CHUNKS] = "chunks",
    [MK_CHUNK_DELAY_MS] = "chunk_delay_ms",
    [MK_STALL_AFTER] = "stall_after",
    [MK_DROP_AFTER] = "drop_after",
    [MK_USAGE] = "usage",
    [MK_EMBEDDING_DIMS] = "embedding_dims",
    [MK_EMBEDDINGS] = "embeddings",
    [MK_USAGE_TOKENS] = "usage_tokens",
    [MK_PAD_BYTES] = "pad_bytes",
    [MK_UPSTREAM_HEADERS] = "upstream_headers",
    [MK_REQUIRE_KEY] = "require_key",
    [MK_ESCAPED_DELTAS] = "escaped_deltas",
    [MK_TOOL_CALL] = "tool_call",
    [MK_MALFORMED] = "malformed",
    [MK_CHUNK_BURST] = "chunk_burst",
};

/* Inclusive bounds; -1 on stall/drop_after means "never". An hour caps the
 * timers so a typo cannot wedge a test run for days. */
static const long knob_min[MK_COUNT] = {
    [MK_LATENCY_MS] = 0, [MK_STATUS] = 200, [MK_DROP] = 0, [MK_CHUNKS] = 0,
    [MK_CHUNK_DELAY_MS] = 0, [MK_STALL_AFTER] = -1, [MK_DROP_AFTER] = -1,
    [MK_USAGE] = 0, [MK_PAD_BYTES] = 0, [MK_UPSTREAM_HEADERS] = 0, [MK_ESCAPED_DELTAS] = 0,
    [MK_EMBEDDING_DIMS] = 1, [MK_EMBEDDINGS] = 1, [MK_TOOL_CALL] = 0, [MK_MALFORMED] = 0,
    [MK_CHUNK_BURST] = 1,
};
static const long knob_max[MK_COUNT] = {
    [MK_LATENCY_MS] = 3600000, [MK_STATUS] = 599, [MK_DROP] = 1,
    [MK_CHUNKS] = 100000, [MK_CHUNK_DELAY_MS] = 3600000,
    [MK_STALL_AFTER] = 100000, [MK_DROP_AFTER] = 100000, [MK_USAGE] = 1,
    [MK_EMBEDDING_DIMS] = 20000000, [MK_EMBEDDINGS] = 100000,
    [MK_PAD_BYTES] = 256L << 20, [MK_UPSTREAM_HEADERS] = 100, [MK_ESCAPED_DELTAS] = 1,
    [MK_TOOL_CALL] = 1, [MK_MALFORMED] = 2,
    [MK_CHUNK_BURST] = 100000,
};

void mock_knobs_defaults(struct mock_knobs *k)
{
    memset(k, 0, sizeof(*k));
    k->set = (1u << MK_COUNT) - 1;
    k->v[MK_STATUS] = 200;
    k->v[MK_ERROR] = ME_NONE;
    k->v[MK_CHUNKS] = 3;
    k->v[MK_STALL_AFTER] = -1;
    k->v[MK_DROP_AFTER] = -1;
    k->v[MK_EMBEDDING_DIMS] = 3;
    k->v[MK_EMBEDDINGS] = 1;
    k->v[MK_CHUNK_BURST] = 1;
    k->set &= ~(1u << MK_RETRY_AFTER);
    k->set &= ~(1u << MK_USAGE_TOKENS);
    k->set &= ~(1u << MK_REQUIRE_KEY);
    k->set &= ~(1u << MK_EMBEDDINGS);   /* unset: one embedding per input */
}

const char *mock_knob_name(int id, enum mock_src src)
{
    return src == MS_HEADER ? knob_header[id] : knob_json[id];
}

int mock_knob_lookup(const char *name, size_t len, enum mock_src src)
{
    for (int i = 0; i < MK_COUNT; i++) {
        const char *k = mock_knob_name(i, src);
        if (strlen(k) == len && strncasecmp(k, name, len) == 0)
            return i;
    }
    return -1;
}

static int parse_error_kind(const char *s, size_t n, long *out)
{
    static const struct { const char *name; enum mock_error e; } kinds[] = {
        { "", ME_NONE }, { "none", ME_NONE },
        { "context_length", ME_CONTEXT_LENGTH },
        { "context_length_exceeded", ME_CONTEXT_LENGTH },
        { "content_policy", ME_CONTENT_POLICY },
        { "content_filter", ME_CONTENT_POLICY },
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strlen(kinds[i].name) == n && strncasecmp(kinds[i].name, s, n) == 0) {
            *out = kinds[i].e;
            return 0;
        }
    }
    return -1;
}

static int parse_long(const char *s, size_t n, long *out)
{
    char buf[32], *end;

    if (n == 4 && strncmp(s, "true", 4) == 0) {
        *out = 1;
        return 0;
    }
    if (n == 5 && strncmp(s, "false", 5) == 0) {
        *out = 0;
        return 0;
    }
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    *out = strtol(buf, &end, 10);
    return errno != 0 || *end != '\0' ? -1 : 0;
}

/* The value ends up in a response header: refuse anything that could split
 * it (CR, LF) rather than trusting the test to send clean text. */
static int set_retry_after(struct mock_knobs *k, const char *s, size_t n)
{
    if (n == 0 || n >= sizeof(k->retry_after))
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return -1;
    memcpy(k->retry_after, s, n);
    k->retry_after[n] = '\0';
    return 0;
}

/* Any integer, however large (the point is to send numbers a proxy must
 * not trust), kept as text: an optional '-' and digits. */
static int set_usage_tokens(struct mock_knobs *k, const char *s, size_t n)
{
    size_t i = n > 0 && s[0] == '-';

    if (n == i || n >= sizeof(k->usage_tokens))
        return -1;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    memcpy(k->usage_tokens, s, n);
    k->usage_tokens[n] = '\0';
    return 0;
}

/* A key as a client sends it: printable ASCII, no spaces. */
static int set_require_key(struct mock_knobs *k, const char *s, size_t n)
{
    if (n == 0 || n >= sizeof(k->require_key))
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return -1;
    memcpy(k->require_key, s, n);
    k->require_key[n] = '\0';
    return 0;
}

int mock_knob_set(struct mock_knobs *k, int id, const char *val, size_t len)
{
    long v;

    if (id < 0 || id >= MK_COUNT)
        return -1;
    if (id == MK_RETRY_AFTER) {
        if (set_retry_after(k, val, len) < 0)
            return -1;
    } else if (id == MK_USAGE_TOKENS) {
        if (set_usage_tokens(k, val, len) < 0)
            return -1;
    } else if (id == MK_REQUIRE_KEY) {
        if (set_require_key(k, val, len) < 0)
            return -1;
    } else if (id == MK_ERROR) {
        if (parse_error_kind(val, len, &v) < 0)
            return -1;
        k->v[id] = v;
    } else {
        if (parse_long(val, len, &v) < 0 || v < knob_min[id] || v > knob_max[id])
            return -1;
        k->v[id] = v;
    }
    k->set |= 1u << id;
    return 0;
}

void mock_knobs_merge(struct mock_knobs *dst, const struct mock_knobs *src)
{
    if (src->set == 0)
        return;
    for (int i = 0; i < MK_COUNT; i++)
        if (src->set & (1u << i))
            dst->v[i] = src->v[i];
    if (src->set & (1u << MK_RETRY_AFTER))
        memcpy(dst->retry_after, src->retry_after, sizeof(dst->retry_after));
    if (src->set & (1u << MK_USAGE_TOKENS))
        memcpy(dst->usage_tokens, src->usage_tokens, sizeof(dst->usage_tokens));
    if (src->set & (1u << MK_REQUIRE_KEY))
        memcpy(dst->require_key, src->require_key, sizeof(dst->require_key));
    dst->set |= src->set;
}
