/* One asynchronous Redis connection on a libevent loop, never blocking it.
 *
 * The protocol is hiredis's (its reply reader and command formatter); the
 * transport is a libevent bufferevent, plain or OpenSSL.  Why not hiredis's
 * own async context and libevent adapter: Debian 12 ships hiredis 0.14,
 * which has neither TLS (rediss://) nor command timeouts in its async API,
 * and both are required (a slow Redis must never hold a request).
 *
 * Behaviour:
 *  - connects in the background (async DNS), sends AUTH and SELECT first,
 *    then reports up through the state callback;
 *  - commands issued while down fail at once (llmr_redis_cmd returns -1);
 *    nothing is queued for later;
 *  - a command without a reply after command_timeout_ms drops the
 *    connection (replies are ordered, so the rest can never be matched):
 *    every pending callback gets reply == NULL, the state callback reports
 *    down once, and it reconnects with exponential back-off;
 *  - at most LLMR_REDIS_MAX_PENDING commands in flight; past that a command
 *    is refused (-1), so a stalled Redis cannot grow memory without bound;
 *  - pub/sub: with a push callback, "message"/"pmessage" arrays go to it
 *    (subscribe on a connection of its own; re-subscribe when up again).
 */
#ifndef LLMR_REDIS_H
#define LLMR_REDIS_H

#include <stddef.h>

struct event_base;
struct redisReply;

#define LLMR_REDIS_MAX_PENDING 4096

typedef struct llmr_redis llmr_redis;

/* reply is NULL when the command failed without an answer (timeout,
 * connection lost, client freed); a Redis error is a REDIS_REPLY_ERROR.
 * The reply is freed after the callback returns. */
typedef void (*llmr_redis_reply_cb)(llmr_redis *r, struct redisReply *reply, void *arg);
/* up = 1 once connected and authenticated, 0 when lost or a connect failed
 * (called once per transition; why says what happened). */
typedef void (*llmr_redis_state_cb)(llmr_redis *r, int up, const char *why, void *arg);
/* A pushed pub/sub message: channel and payload (not NUL-terminated). */
typedef void (*llmr_redis_push_cb)(llmr_redis *r, const char *channel, size_t clen,
                                   const char *msg, size_t mlen, void *arg);

typedef struct {
    char host[256];
    int port;                   /* 6379 */
    char username[128];         /* ACL user; empty: AUTH with the password only */
    char password[256];         /* empty: no AUTH */
    int db;                     /* SELECT when > 0 */
    int tls;                    /* rediss:// */
    char tls_ca[512];           /* CA file; empty: the system's store */
    int connect_timeout_ms;     /* 1000 */
    int command_timeout_ms;     /* 500 */
    int reconnect_min_ms;       /* 100 */
    int reconnect_max_ms;       /* 5000 */
} llmr_redis_opts;

/* Defaults for every field (host 127.0.0.1). */
void llmr_redis_opts_init(llmr_redis_opts *o);
/* redis://[[user]:password@]host[:port][/db] or rediss://...; fills o
 * (fields not in the URL keep their values).  0, or -1 with err set. */
int llmr_redis_parse_url(const char *url, llmr_redis_opts *o, char *err, size_t errlen);

/* Starts connecting at once.  NULL only when out of memory or TLS cannot
 * be set up (err says why). */
llmr_redis *llmr_redis_new(struct event_base *base, const llmr_redis_opts *o,
                           llmr_redis_state_cb on_state, llmr_redis_push_cb on_push,
                           void *arg, char *err, size_t errlen);
/* Every pending callback is called with NULL first; no state callback. */
void llmr_redis_free(llmr_redis *r);

int llmr_redis_up(const llmr_redis *r);
/* Commands in flight (sent, not yet answered). */
int llmr_redis_pending(const llmr_redis *r);

/* printf-like as hiredis's redisCommand (%s, %b with pointer and length,
 * %d...).  0 when sent; -1 when down or too many in flight (cb not called). */
int llmr_redis_cmd(llmr_redis *r, llmr_redis_reply_cb cb, void *arg, const char *fmt, ...);
int llmr_redis_cmd_argv(llmr_redis *r, llmr_redis_reply_cb cb, void *arg, int argc,
                        const char **argv, const size_t *argvlen);

#endif
