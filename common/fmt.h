#ifndef LLMR_FMT_H
#define LLMR_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Integers written by hand where snprintf() was on the request path (600-700
 * instructions a call, most of it glibc's format machinery): the digits of v
 * in decimal (with a '-' when negative) or lower-case hexadecimal into buf,
 * which holds LLMR_FMT_MAX bytes, NUL-terminated; returns their count. */
#define LLMR_FMT_MAX 24

size_t llmr_fmt_int(char *buf, int64_t v);
size_t llmr_fmt_hex(char *buf, uint64_t v);

#endif
