/* Decimal and hexadecimal integers without snprintf (see fmt.h). */
#include <string.h>

#include "fmt.h"

/* Writes the digits from the end of a scratch buffer, then moves them. */
static size_t digits(char *buf, uint64_t u, unsigned base, int neg)
{
    static const char xdigit[] = "0123456789abcdef";
    char d[LLMR_FMT_MAX];
    size_t i = sizeof(d) - 1;

    d[i] = '\0';
    do {
        d[--i] = xdigit[u % base];
        u /= base;
    } while (u != 0);
    if (neg)
        d[--i] = '-';
    memcpy(buf, d + i, sizeof(d) - i);
    return sizeof(d) - 1 - i;
}

size_t llmr_fmt_int(char *buf, int64_t v)
{
    return digits(buf, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, 10, v < 0);
}

size_t llmr_fmt_hex(char *buf, uint64_t v)
{
    return digits(buf, v, 16, 0);
}
