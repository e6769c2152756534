#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

int llmr_log_level = LLMR_LOG_INFO;
void (*llmr_log_hook)(enum llmr_log_level level, const char *line, void *arg);
void *llmr_log_hook_arg;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

/* One write(2) per line: lines from several processes sharing stderr never
 * interleave mid-line. */
void llmr_log(enum llmr_log_level level, const char *fmt, ...)
{
    char line[2048];
    int64_t now_ms;
    time_t sec;
    struct tm tm;
    size_t n;
    va_list ap;
    int r;

    if ((int)level > llmr_log_level)
        return;
    now_ms = llmr_wall_ms();
    sec = (time_t)(now_ms / 1000);
    gmtime_r(&sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03ldZ [%s] %d: ",
                 (long)(now_ms % 1000), level_names[level], (int)getpid());
    if (r > 0)
        n += (size_t)r;
    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (r > 0)
        n += (size_t)r < sizeof(line) - n - 1 ? (size_t)r : sizeof(line) - n - 2;
    if (llmr_log_hook != NULL) {
        line[n] = '\0';
        llmr_log_hook(level, line, llmr_log_hook_arg);
        return;
    }
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report a failed log write */
    }
}
