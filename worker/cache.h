/* cache: the response cache (README "Response cache").  One store for every
 * worker of the host (LMDB, cache_lmdb.c) or for several hosts (Redis,
 * cache_redis.c); single-flight across workers through the shared segment
 * (shm/cache_flight.c).  cache_key.c makes the key and reads the body's
 * `cache` controls, cache_entry.c frames a stored answer, cache.c runs a
 * request through all of it. */
#ifndef LLMR_CACHE_H
#define LLMR_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "request.h"

#define LLMR_CACHE_KEY_LEN 32           /* SHA-256 */
#define LLMR_CACHE_NS_MAX 128
#define LLMR_CACHE_CT_MAX 96            /* a stored Content-Type, NUL included */

/* The body's `cache` object, as LiteLLM spells it. */
typedef struct llmr_cache_ctl {
    int no_cache;               /* do not read */
    int no_store;               /* do not write */
    double ttl;                 /* seconds; 0: cache.ttl */
    double s_maxage;            /* only an entry younger than this; < 0: any */
    int has_ns;
    char ns[LLMR_CACHE_NS_MAX + 1];
} llmr_cache_ctl;

/* cache_key.c */
/* Reads j's top-level `cache` member into c; 0, or -1 with a message for
 * the client's 400 in err. */
int llmr_cache_ctl_read(const llmr_json *j, llmr_cache_ctl *c, char *err, size_t errlen);
/* The key of the request j (see README "Response cache" for the exact
 * definition): 0, or -1 without memory. */
int llmr_cache_key(const llmr_json *j, const char *call, int stream, const char *group,
                   const char *ns, unsigned char key[LLMR_CACHE_KEY_LEN]);
void llmr_cache_key_hex(const unsigned char key[LLMR_CACHE_KEY_LEN], char hex[65]);
/* The digest state llmr_cache_key() keeps between keys (worker exit). */
void llmr_cache_key_free(void);
/* The canonical bytes the key hashes, appended to out (tests, fuzzing). */
int llmr_cache_canonical(const llmr_json *j, const char *call, int stream, const char *group,
                         const char *ns, struct evbuffer *out);

/* cache_entry.c: a stored answer is a fixed header, then the body. */
#define LLMR_CACHE_HDR_LEN (4 + 8 + 8 + 4 + 4 + LLMR_CACHE_CT_MAX)
typedef struct llmr_cache_entry {
    int64_t created_ms, expires_ms;     /* CLOCK_REALTIME */
    int status;
    int stream;                         /* the body is an SSE stream as relayed */
    char content_type[LLMR_CACHE_CT_MAX];
    const char *body;
    size_t len;
} llmr_cache_entry;
/* Writes e's header into hdr[LLMR_CACHE_HDR_LEN]. */
void llmr_cache_entry_pack(const llmr_cache_entry *e, unsigned char *hdr);
/* Reads a stored value; -1 when it is not one (another version, torn). */
int llmr_cache_entry_unpack(const void *val, size_t len, llmr_cache_entry *e);

/* cache_lmdb.c: the local store */
typedef struct llmr_cache_lmdb llmr_cache_lmdb;
typedef void llmr_cache_got_fn(void *arg, const void *val, size_t len);
int llmr_cache_lmdb_open(llmr_cache_lmdb **out, const char *dir, long max_mb,
                         llmr_cache_stats *stats, char *err, size_t errlen);
void llmr_cache_lmdb_close(llmr_cache_lmdb *db);
/* Calls got with the value (NULL when absent) inside a read transaction:
 * the value lives only as long as the call. */
void llmr_cache_lmdb_get(llmr_cache_lmdb *db, const unsigned char *key, llmr_cache_got_fn *got,
                         void *arg);
/* Stores hdr + body under key, evicting expired then oldest entries for
 * room; 0, or -1 (too big, or no room). */
int llmr_cache_lmdb_put(llmr_cache_lmdb *db, const unsigned char *key, const unsigned char *hdr,
                        const void *body, size_t len, int64_t created_ms, int64_t expires_ms,
                        int64_t now_ms);
/* Removes up to `max` expired entries; the number removed, or -1. */
int llmr_cache_lmdb_purge(llmr_cache_lmdb *db, int64_t now_ms, int max);
/* The largest value the store takes (a share of its size). */
size_t llmr_cache_lmdb_entry_max(const llmr_cache_lmdb *db);

/* cache.c: the request path's hooks */
struct llmr_request;
struct llmr_reply;
int llmr_cache_init(llmr_worker *w);
void llmr_cache_free(llmr_worker *w);
/* drain_timeout passed: requests still waiting for an identical one in
 * flight are answered 503, like the ones not yet answered upstream. */
void llmr_cache_drain_deadline(llmr_worker *w);
/* Whether the cache takes requests of op. */
int llmr_cache_on(const llmr_worker *w, enum llmr_op op);
/* Takes a validated request over: answers it from the cache, waits for an
 * identical one in flight, or starts it (llmr_request_start_ctl) with a
 * ticket that stores its answer. */
void llmr_cache_begin(llmr_worker *w, struct evhttp_request *req, enum llmr_op op, int group,
                      const llmr_json *j, const llmr_controls *ctl);
/* request.c: the request is being answered with rep (store a success). */
void llmr_cache_request_done(struct llmr_request *r, const struct llmr_reply *rep);
/* request.c: a ticket whose request could not be made (out of memory). */
void llmr_cache_ticket_drop(struct llmr_cache_ticket *t);
/* request.c: the request is freed (a leader that stored nothing lets go). */
void llmr_cache_request_free(struct llmr_request *r);
/* reply.c: the x-llmroute-cache headers, into the reply's header block. */
struct llmr_hblock;
void llmr_cache_headers(struct llmr_request *r, struct llmr_hblock *b);
/* stream.c: bytes relayed to the client, kept to be stored at the end. */
void llmr_cache_tee(struct llmr_request *r, const char *data, size_t len);

#endif
