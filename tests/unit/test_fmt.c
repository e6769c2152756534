/* Integers formatted by hand (common/fmt.c) are what snprintf writes. */
#include "../../common/fmt.c"

#include <inttypes.h>
#include <stdio.h>

#include "t.h"

static int same_int(int64_t v)
{
    char a[LLMR_FMT_MAX], b[LLMR_FMT_MAX];
    size_t n = llmr_fmt_int(a, v);
    int m = snprintf(b, sizeof(b), "%" PRId64, v);

    return (int)n == m && strcmp(a, b) == 0;
}

static int same_hex(uint64_t v)
{
    char a[LLMR_FMT_MAX], b[LLMR_FMT_MAX];
    size_t n = llmr_fmt_hex(a, v);
    int m = snprintf(b, sizeof(b), "%" PRIx64, v);

    return (int)n == m && strcmp(a, b) == 0;
}

static void test_edges(void)
{
    T_CHECK(same_int(0) && same_int(-1) && same_int(9) && same_int(10) && same_int(-10));
    T_CHECK(same_int(INT64_MAX) && same_int(INT64_MIN) && same_int(INT64_MIN + 1));
    T_CHECK(same_hex(0) && same_hex(15) && same_hex(16) && same_hex(0x1f) && same_hex(UINT64_MAX));
}

/* Every power of two and its neighbours, and a million values of every
 * width from a fixed-seed generator. */
static void test_many(void)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int bad = 0;

    for (int s = 0; s < 64; s++)
        for (int d = -1; d <= 1; d++) {
            uint64_t v = (UINT64_C(1) << s) + (uint64_t)(int64_t)d;
            bad += !same_hex(v) + !same_int((int64_t)v) + !same_int(-(int64_t)(v >> 1));
        }
    for (int i = 0; i < 1000000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = x >> (x & 63);
        bad += !same_hex(v) + !same_int((int64_t)v);
    }
    T_EQ_INT(bad, 0);
}

int main(void)
{
    T_RUN(test_edges);
    T_RUN(test_many);
    return T_DONE();
}
