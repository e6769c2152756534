/* The response cache in Redis (see cache_redis.h).  Keys are
 * "<router_settings.redis_prefix>:cache:<hex key>" ("llmroute:cache:..." by
 * default); values are cache_entry.c's framing, the same
 * bytes as the local store's, with Redis's own expiry (PX) set to the
 * entry's TTL so that Redis drops it, not us. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cache_redis.h"
#include "log.h"
#include "redis.h"

/* Room for the key: the prefix (conf_sync.c bounds it), ":cache:", 64 hex
 * digits and the NUL. */
#define KEY_MAX 192

struct llmr_cache_redis {
    llmr_worker *w;
    llmr_redis *conn;
    llmr_cache_stats *stats;
    char prefix[KEY_MAX - 65];      /* "<redis_prefix>:cache:" */
};

typedef struct pending_get {
    llmr_cache_got_fn *got;
    void *arg;
} pending_get;

typedef struct pending_set {
    llmr_cache_redis *rc;
    int flight;
    uint32_t tag;
} pending_set;

static void on_state(llmr_redis *r, int up, const char *why, void *arg)
{
    llmr_cache_redis *rc = arg;

    (void)r;
    if (up)
        llmr_info("worker %d: cache: redis connected", rc->w->index);
    else
        llmr_warn("worker %d: cache: redis unavailable (%s): requests go upstream as misses "
                  "until it is back", rc->w->index, why != NULL ? why : "connection lost");
}

/* The cache section's own Redis when it names one, else the one of
 * router_settings.redis_* (LiteLLM's cache falls back to redis_host too). */
static int opts_from_conf(const llmr_conf *conf, llmr_redis_opts *o, char *err, size_t errlen)
{
    const llmr_cache_conf *c = &conf->cache;
    int own = c->url != NULL || c->host != NULL || c->port > 0 || c->password != NULL;
    const char *url = own ? c->url : conf->redis_url;
    const char *host = own ? c->host : conf->redis_host;
    const char *password = own ? c->password : conf->redis_password;
    int port = own ? c->port : conf->redis_port;

    llmr_redis_opts_init(o);
    if (url != NULL)
        return llmr_redis_parse_url(url, o, err, errlen);
    if (host != NULL)
        snprintf(o->host, sizeof(o->host), "%s", host);
    if (port > 0)
        o->port = port;
    if (password != NULL)
        snprintf(o->password, sizeof(o->password), "%s", password);
    return 0;
}

llmr_cache_redis *llmr_cache_redis_new(llmr_worker *w, llmr_cache_stats *stats, char *err,
                                       size_t errlen)
{
    llmr_cache_redis *rc = calloc(1, sizeof(*rc));
    llmr_redis_opts o;

    if (rc == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rc->w = w;
    rc->stats = stats;
    snprintf(rc->prefix, sizeof(rc->prefix), "%s:cache:",
             w->conf->redis_prefix != NULL ? w->conf->redis_prefix : "llmroute");
    if (opts_from_conf(w->conf, &o, err, errlen) < 0
        || (rc->conn = llmr_redis_new(w->base, &o, on_state, NULL, rc, err, errlen)) == NULL) {
        explicit_bzero(&o, sizeof(o));
        free(rc);
        return NULL;
    }
    explicit_bzero(&o, sizeof(o));
    return rc;
}

void llmr_cache_redis_free(llmr_cache_redis *rc)
{
    if (rc == NULL)
        return;
    llmr_redis_free(rc->conn);
    free(rc);
}

static void key_of(const llmr_cache_redis *rc, const unsigned char *key, char *out)
{
    size_t n = strlen(rc->prefix);

    memcpy(out, rc->prefix, n);
    llmr_cache_key_hex(key, out + n);
}

static void on_get(llmr_redis *r, redisReply *reply, void *arg)
{
    pending_get p = *(pending_get *)arg;

    (void)r;
    free(arg);
    if (reply != NULL && reply->type == REDIS_REPLY_STRING)
        p.got(p.arg, reply->str, reply->len);
    else
        p.got(p.arg, NULL, 0);
}

int llmr_cache_redis_get(llmr_cache_redis *rc, const unsigned char *key, llmr_cache_got_fn *got,
                         void *arg)
{
    char k[KEY_MAX];
    pending_get *p = malloc(sizeof(*p));

    if (p == NULL)
        return -1;
    p->got = got;
    p->arg = arg;
    key_of(rc, key, k);
    if (llmr_redis_cmd(rc->conn, on_get, p, "GET %s", k) < 0) {
        free(p);
        return -1;
    }
    return 0;
}

static void on_set(llmr_redis *r, redisReply *reply, void *arg)
{
    pending_set *p = arg;

    (void)r;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        atomic_fetch_add_explicit(&p->rc->stats->errors, 1, memory_order_relaxed);
    if (p->flight >= 0)
        llmr_cache_flight_release(p->rc->w->shm, p->flight, p->tag, (int32_t)getpid());
    free(p);
}

int llmr_cache_redis_set(llmr_cache_redis *rc, const unsigned char *key, const unsigned char *hdr,
                         const void *body, size_t len, int64_t ttl_ms, int flight, uint32_t tag)
{
    char k[KEY_MAX], ttl[24];
    pending_set *p;
    unsigned char *val;
    const char *argv[5];
    size_t argl[5];
    int rc2;

    if (len > LLMR_CACHE_REDIS_MAX || (p = malloc(sizeof(*p))) == NULL)
        return -1;
    if ((val = malloc(LLMR_CACHE_HDR_LEN + len)) == NULL) {
        free(p);
        return -1;
    }
    memcpy(val, hdr, LLMR_CACHE_HDR_LEN);
    memcpy(val + LLMR_CACHE_HDR_LEN, body, len);
    key_of(rc, key, k);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(ttl_ms > 0 ? ttl_ms : 1));
    argv[0] = "SET", argl[0] = 3;
    argv[1] = k, argl[1] = strlen(k);
    argv[2] = (const char *)val, argl[2] = LLMR_CACHE_HDR_LEN + len;
    argv[3] = "PX", argl[3] = 2;
    argv[4] = ttl, argl[4] = strlen(ttl);
    p->rc = rc;
    p->flight = flight;
    p->tag = tag;
    rc2 = llmr_redis_cmd_argv(rc->conn, on_set, p, 5, argv, argl);
    free(val);
    if (rc2 < 0)
        free(p);
    return rc2;
}
