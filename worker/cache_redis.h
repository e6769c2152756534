/* cache_redis: the response cache in a Redis server, shared by several
 * llmroute hosts: one connection per worker (common/redis.c, never
 * blocking the loop), GET and SET ... PX with a per-command timeout.
 * Redis down is a miss and one log line, never a failed request. */
#ifndef LLMR_CACHE_REDIS_H
#define LLMR_CACHE_REDIS_H

#include "cache.h"

#define LLMR_CACHE_REDIS_MAX (16u << 20)    /* the largest value written */

typedef struct llmr_cache_redis llmr_cache_redis;

llmr_cache_redis *llmr_cache_redis_new(llmr_worker *w, llmr_cache_stats *stats, char *err,
                                       size_t errlen);
/* Every read in flight is answered NULL first. */
void llmr_cache_redis_free(llmr_cache_redis *rc);
/* got is called later with the value, or NULL (absent, Redis down or slow);
 * -1 when the read was not sent (got is not called). */
int llmr_cache_redis_get(llmr_cache_redis *rc, const unsigned char *key, llmr_cache_got_fn *got,
                         void *arg);
/* Writes hdr + body under key for ttl_ms; the single-flight entry `flight`
 * (or -1) of `tag` is let go when Redis answered.  -1 when not sent. */
int llmr_cache_redis_set(llmr_cache_redis *rc, const unsigned char *key, const unsigned char *hdr,
                         const void *body, size_t len, int64_t ttl_ms, int flight, uint32_t tag);

#endif
