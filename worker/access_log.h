/* access_log: one JSON line per request (server.access_log).  Lines are
 * built in a per-worker buffer and written by whole lines, one write() per
 * flush (a timer, a size, the worker's exit), to a file opened O_APPEND by
 * every worker: lines of different workers never interleave, and the hot
 * path makes no system call.  SIGUSR1 reopens the file (logrotate). */
#ifndef LLMR_ACCESS_LOG_H
#define LLMR_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

#include <event2/http.h>

#define LLMR_ALOG_ATTEMPTS 8        /* attempts named in a line; more are counted */

struct llmr_worker;
struct llmr_request;

/* What a routed request gathers for its line while it lives. */
typedef struct llmr_alog_rec {
    struct { int dep; signed char outcome, err; } at[LLMR_ALOG_ATTEMPTS];
    int nat, more;                  /* attempts named, attempts past the array */
    int64_t upstream_us;            /* time spent in upstream transfers */
    int64_t backoff_us, backoff_since_us;   /* waits before retries (request.c) */
    int64_t prompt, completion;     /* the successful attempt's usage, or -1 */
    int64_t ttfb_us;                /* a stream's headers sent, since the start */
    int64_t bytes_out;              /* a stream's body bytes sent */
} llmr_alog_rec;

/* Worker start and end: opens the file and arms the timer and SIGUSR1;
 * flushes and closes.  Open returns -1 only for want of memory. */
int llmr_alog_open(struct llmr_worker *w);
void llmr_alog_close(struct llmr_worker *w);
/* http_api.c: the synchronous handling of a request begins and ends (its
 * start time for the lines of requests that are not routed). */
void llmr_alog_handle_begin(struct llmr_worker *w);
void llmr_alog_handle_end(struct llmr_worker *w);
/* request.c: the routed request being answered now (NULL after); a
 * request answered without a reply (the client left) is logged as 499. */
void llmr_alog_bind(struct llmr_worker *w, struct llmr_request *r);
/* attempt.c: an attempt ended (outcome: enum llmr_outcome). */
void llmr_alog_attempt(llmr_alog_rec *rec, int dep, int outcome, int err, int64_t dur_us,
                       int64_t prompt, int64_t completion);
/* http_api.c: a reply handed to evhttp; body_len: its body, or -1 (a
 * stream's: counted by the request). */
void llmr_alog_reply(struct llmr_worker *w, struct evhttp_request *req, int status,
                     int64_t body_len);
/* conn.c: a framing refusal sent on fd before evhttp made a request of it
 * (no method or path known); bytes_out: head and body. */
void llmr_alog_refusal(struct llmr_worker *w, int fd, const char *id, int status,
                       int64_t bytes_out);

#endif
