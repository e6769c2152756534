/* Logging shared by every process: one line per event on stderr, prefixed
 * with time, pid and level, so the interleaved output of master and workers
 * stays readable. Never pass an upstream API key to these functions. */
#ifndef LLMR_LOG_H
#define LLMR_LOG_H

#include <stdarg.h>

enum llmr_log_level { LLMR_LOG_ERROR, LLMR_LOG_WARN, LLMR_LOG_INFO, LLMR_LOG_DEBUG };

extern int llmr_log_level;

/* When set, each formatted line goes here instead of stderr: unit tests
 * capture the errors they expect (and check them) instead of printing
 * "[error]" lines in a passing run. */
extern void (*llmr_log_hook)(enum llmr_log_level level, const char *line, void *arg);
extern void *llmr_log_hook_arg;

void llmr_log(enum llmr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define llmr_error(...) llmr_log(LLMR_LOG_ERROR, __VA_ARGS__)
#define llmr_warn(...)  llmr_log(LLMR_LOG_WARN, __VA_ARGS__)
#define llmr_info(...)  llmr_log(LLMR_LOG_INFO, __VA_ARGS__)
#define llmr_debug(...) \
    do { if (llmr_log_level >= LLMR_LOG_DEBUG) llmr_log(LLMR_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
