/* The response cache's parts that need no event loop: the key (what is in
 * it and what is not), the body's cache controls, the entry framing, the
 * LMDB store (round trip, expiry purge, eviction under its bound) and the
 * single-flight table of the segment. */
#include "../../worker/cache_key.c"
#include "../../worker/cache_entry.c"
#include "../../worker/cache_lmdb.c"
#include "../../shm/cache_flight.c"

#include <event2/buffer.h>
#include <sys/wait.h>

#include "t.h"

static llmr_json j;

static int key_of(const char *body, const char *call, int stream, const char *group,
                  const char *ns, unsigned char *key)
{
    if (llmr_json_parse(&j, body, strlen(body), 1 << 16) < 0)
        return -1;
    return llmr_cache_key(&j, call, stream, group, ns, key);
}

static int same_key(const char *a, const char *b)
{
    unsigned char ka[32], kb[32];

    if (key_of(a, "chat", 0, "g", "", ka) < 0 || key_of(b, "chat", 0, "g", "", kb) < 0)
        return -1;
    return memcmp(ka, kb, 32) == 0;
}

static void test_key_ignores_what_does_not_change_the_answer(void)
{
    const char *base = "{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

    T_EQ_INT(same_key(base, "{ \"messages\" : [ {\"role\": \"user\", \"content\": \"hi\"} ],"
                            " \"model\": \"alias\" }"), 1);
    T_EQ_INT(same_key(base, "{\"user\":\"u\",\"metadata\":{\"a\":1},\"cache\":{\"ttl\":5},"
                            "\"stream_options\":{\"include_usage\":true},\"fallbacks\":[],"
                            "\"num_retries\":1,\"timeout\":3,\"context_window_fallbacks\":[],"
                            "\"model\":\"g\",\"messages\":[{\"role\":\"user\","
                            "\"content\":\"hi\"}]}"), 1);
    /* a member sent twice keeps the body's order: same bytes, same key */
    T_EQ_INT(same_key("{\"t\":1,\"messages\":[],\"t\":2}",
                      "{\"t\":1,\"messages\":[],\"t\":2}"), 1);
    T_EQ_INT(same_key("{\"t\":1,\"messages\":[],\"t\":2}",
                      "{\"t\":2,\"messages\":[],\"t\":1}"), 0);
    /* keys compared after unescaping */
    T_EQ_INT(same_key("{\"temperature\":1,\"messages\":[]}",
                      "{\"messages\":[],\"temp\\u0065rature\":1}"), 1);
}

static void test_key_changes_with_what_does(void)
{
    const char *base = "{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    unsigned char k[6][32];

    T_EQ_INT(same_key(base, "{\"model\":\"g\",\"messages\":[{\"role\":\"user\","
                            "\"content\":\"hi \"}]}"), 0);   /* inside a string */
    T_EQ_INT(same_key(base, "{\"model\":\"g\",\"temperature\":0,\"messages\":[{\"role\":"
                            "\"user\",\"content\":\"hi\"}]}"), 0);
    /* nested objects keep their order (documented) */
    T_EQ_INT(same_key("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                      "{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}]}"), 0);
    /* a value moved to another member is another key: the NUL framing */
    T_EQ_INT(same_key("{\"a\":\"bc\",\"messages\":[]}", "{\"ab\":\"c\",\"messages\":[]}"), 0);
    T_EQ_INT(key_of(base, "chat", 0, "g", "", k[0]), 0);
    T_EQ_INT(key_of(base, "chat", 1, "g", "", k[1]), 0);
    T_EQ_INT(key_of(base, "completions", 0, "g", "", k[2]), 0);
    T_EQ_INT(key_of(base, "chat", 0, "h", "", k[3]), 0);
    T_EQ_INT(key_of(base, "chat", 0, "g", "ns", k[4]), 0);
    T_EQ_INT(key_of(base, "chat", 0, "g", NULL, k[5]), 0);
    for (int a = 0; a < 5; a++)
        for (int b = a + 1; b < 5; b++)
            T_CHECK(memcmp(k[a], k[b], 32) != 0);
    T_CHECK(memcmp(k[0], k[5], 32) == 0);
}

static void test_key_canonical_text(void)
{
    const char *body = "{\"z\": [1, 2], \"model\":\"x\", \"a\" : \"s p\"}";
    struct evbuffer *b = evbuffer_new();
    const char want[] = "llmroute-cache-v1\0chat\0" "0\0g\0\0a\0\"s p\"\0z\0[1,2]";
    unsigned char key[32], sha[32];
    char hex[65];

    T_EQ_INT(llmr_json_parse(&j, body, strlen(body), 64), 0);
    T_EQ_INT(llmr_cache_canonical(&j, "chat", 0, "g", "", b), 0);
    T_EQ_INT(evbuffer_get_length(b), sizeof(want));
    T_CHECK(memcmp(evbuffer_pullup(b, -1), want, sizeof(want)) == 0);
    /* the key is SHA-256 of exactly that text */
    T_EQ_INT(llmr_cache_key(&j, "chat", 0, "g", "", key), 0);
    EVP_Digest(want, sizeof(want), sha, NULL, EVP_sha256(), NULL);
    T_CHECK(memcmp(key, sha, 32) == 0);
    llmr_cache_key_hex(key, hex);
    T_EQ_INT(strlen(hex), 64);
    evbuffer_free(b);
}

/* Bodies whose canonical text is gathered into blocks, and flushed at every
 * offset around the 4 KiB block (members of many sizes, one bigger than a
 * block): the key is still SHA-256 of the whole text, on every call of the
 * one context reused. */
static void test_key_of_long_bodies(void)
{
    static char body[40000];
    unsigned char key[32], sha[32];
    int ok = 1;

    for (int k = 0; k < 60; k++) {
        size_t n = (size_t)snprintf(body, sizeof(body), "{\"model\":\"x\"");
        for (int m = 0; m < 3 + k % 5; m++) {
            size_t len = (size_t)(k * 97 + m * 1031) % 5000 + (m == 2 && k % 7 == 0 ? 9000 : 1);
            n += (size_t)snprintf(body + n, sizeof(body) - n, ",\"f%d\":\"", m);
            memset(body + n, 'a' + (char)(m + k) % 26, len);
            n += len;
            body[n++] = '"';
        }
        body[n++] = '}';
        struct evbuffer *b = evbuffer_new();
        ok &= llmr_json_parse(&j, body, n, 256) == 0
           && llmr_cache_canonical(&j, "chat", k & 1, "g", "ns", b) == 0
           && llmr_cache_key(&j, "chat", k & 1, "g", "ns", key) == 0
           && EVP_Digest(evbuffer_pullup(b, -1), evbuffer_get_length(b), sha, NULL,
                         EVP_sha256(), NULL) == 1
           && memcmp(key, sha, 32) == 0;
        evbuffer_free(b);
    }
    T_CHECK(ok);
    llmr_cache_key_free();
}

/* A name with NULs in it (\u0000) cannot spell the separators of the text
 * the key hashes: these two bodies made the same text, and so the same key,
 * before names had their NULs and backslashes escaped. */
static void test_key_names_cannot_forge_separators(void)
{
    static const char *const pairs[][2] = {
        { "{\"a\":1,\"b\":2}", "{\"a\\u00001\\u0000b\":2}" },
        { "{\"a\\u0000\":1}", "{\"a\\\\0\":1}" },      /* NUL vs backslash-0 */
        { "{\"x\":\"v\"}", "{\"x\\u0000\\\"v\\\"\":0}" },
    };
    unsigned char k1[32], k2[32];
    struct evbuffer *b = evbuffer_new();
    const char want[] = "llmroute-cache-v1\0chat\0" "0\0g\0\0a\\01\\0b\0" "2";

    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        T_CHECK(key_of(pairs[i][0], "chat", 0, "g", "", k1) == 0
                && key_of(pairs[i][1], "chat", 0, "g", "", k2) == 0
                && memcmp(k1, k2, 32) != 0);
    /* and the text spells the name's NULs as backslash '0' */
    T_EQ_INT(llmr_json_parse(&j, pairs[0][1], strlen(pairs[0][1]), 64), 0);
    T_EQ_INT(llmr_cache_canonical(&j, "chat", 0, "g", "", b), 0);
    T_EQ_INT(evbuffer_get_length(b), sizeof(want));
    T_CHECK(memcmp(evbuffer_pullup(b, -1), want, sizeof(want)) == 0);
    evbuffer_free(b);
}

static int ctl(const char *body, llmr_cache_ctl *c, char *err)
{
    if (llmr_json_parse(&j, body, strlen(body), 256) < 0)
        return -2;
    return llmr_cache_ctl_read(&j, c, err, 256);
}

static void test_controls(void)
{
    llmr_cache_ctl c;
    char err[256];

    T_EQ_INT(ctl("{}", &c, err), 0);
    T_CHECK(!c.no_cache && !c.no_store && c.ttl == 0 && c.s_maxage < 0 && !c.has_ns);
    T_EQ_INT(ctl("{\"cache\":{\"no-cache\":true,\"no-store\":false,\"ttl\":60,"
                 "\"s-maxage\":0,\"namespace\":\"t\\u00e9\",\"other\":1}}", &c, err), 0);
    T_CHECK(c.no_cache && !c.no_store && c.ttl == 60 && c.s_maxage == 0);
    T_EQ_STR(c.ns, "t\xc3\xa9");
    T_EQ_INT(ctl("{\"cache\":[]}", &c, err), -1);
    T_CONTAINS(err, "cache must be an object");
    T_EQ_INT(ctl("{\"cache\":{\"no-cache\":1}}", &c, err), -1);
    T_CONTAINS(err, "no-cache must be true or false");
    T_EQ_INT(ctl("{\"cache\":{\"no-store\":\"true\"}}", &c, err), -1);
    T_EQ_INT(ctl("{\"cache\":{\"ttl\":0}}", &c, err), -1);
    T_CONTAINS(err, "ttl");
    T_EQ_INT(ctl("{\"cache\":{\"ttl\":1e999}}", &c, err), -1);
    T_EQ_INT(ctl("{\"cache\":{\"s-maxage\":-1}}", &c, err), -1);
    T_EQ_INT(ctl("{\"cache\":{\"namespace\":\"a\\u0000b\"}}", &c, err), -1);
    char big[400];
    snprintf(big, sizeof(big), "{\"cache\":{\"namespace\":\"%0200d\"}}", 0);
    T_EQ_INT(ctl(big, &c, err), -1);
    T_CONTAINS(err, "at most 128 bytes");
}

static void test_entry_framing(void)
{
    llmr_cache_entry e = { .created_ms = 1700000000123, .expires_ms = 1700003600123,
                           .status = 200, .stream = 1 }, back;
    unsigned char v[LLMR_CACHE_HDR_LEN + 5];

    strcpy(e.content_type, "text/event-stream");
    llmr_cache_entry_pack(&e, v);
    memcpy(v + LLMR_CACHE_HDR_LEN, "data:", 5);
    T_EQ_INT(llmr_cache_entry_unpack(v, sizeof(v), &back), 0);
    T_EQ_INT(back.created_ms, e.created_ms);
    T_EQ_INT(back.expires_ms, e.expires_ms);
    T_EQ_INT(back.status, 200);
    T_EQ_INT(back.stream, 1);
    T_EQ_STR(back.content_type, "text/event-stream");
    T_EQ_INT(back.len, 5);
    T_CHECK(memcmp(back.body, "data:", 5) == 0);
    T_EQ_INT(llmr_cache_entry_unpack(v, LLMR_CACHE_HDR_LEN - 1, &back), -1);   /* short */
    v[0] ^= 1;
    T_EQ_INT(llmr_cache_entry_unpack(v, sizeof(v), &back), -1);                /* magic */
    v[0] ^= 1;
    v[28] = '\n';
    T_EQ_INT(llmr_cache_entry_unpack(v, sizeof(v), &back), -1);     /* header injection */
}

/* ---- the LMDB store ------------------------------------------------------ */

static llmr_cache_stats stats;
static char dir[64];

static llmr_cache_lmdb *open_store(long mb)
{
    llmr_cache_lmdb *db = NULL;
    char err[256];

    snprintf(dir, sizeof(dir), "/tmp/llmr-test-cache-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return NULL;
    memset(&stats, 0, sizeof(stats));
    if (llmr_cache_lmdb_open(&db, dir, mb, &stats, err, sizeof(err)) < 0)
        fprintf(stderr, "open: %s\n", err);
    return db;
}

static void close_store(llmr_cache_lmdb *db)
{
    char p[128];

    llmr_cache_lmdb_close(db);
    snprintf(p, sizeof(p), "rm -rf %s", dir);
    T_EQ_INT(system(p), 0);
}

static unsigned char got_val[1 << 16];
static size_t got_len;
static int got_any;

static void got(void *arg, const void *val, size_t len)
{
    (void)arg;
    got_any = val != NULL;
    got_len = len < sizeof(got_val) ? len : sizeof(got_val);
    if (val != NULL)
        memcpy(got_val, val, got_len);
}

static int put(llmr_cache_lmdb *db, int i, size_t len, int64_t created, int64_t expires,
               int64_t now)
{
    unsigned char key[32] = { 0 }, hdr[LLMR_CACHE_HDR_LEN];
    static char body[1 << 20];
    llmr_cache_entry e = { .created_ms = created, .expires_ms = expires, .status = 200 };

    memcpy(key, &i, sizeof(i));
    memset(body, 'a' + i % 26, len);
    llmr_cache_entry_pack(&e, hdr);
    return llmr_cache_lmdb_put(db, key, hdr, body, len, created, expires, now);
}

static int has(llmr_cache_lmdb *db, int i)
{
    unsigned char key[32] = { 0 };

    memcpy(key, &i, sizeof(i));
    llmr_cache_lmdb_get(db, key, got, NULL);
    return got_any;
}

static void test_store_round_trip_and_purge(void)
{
    llmr_cache_lmdb *db = open_store(4);
    llmr_cache_entry e;

    if (!T_CHECK(db != NULL))
        return;
    T_EQ_INT(put(db, 1, 100, 1000, 5000, 1000), 0);
    T_EQ_INT(put(db, 2, 100, 1000, 9000, 1000), 0);
    T_EQ_INT(has(db, 1), 1);
    T_EQ_INT(llmr_cache_entry_unpack(got_val, got_len, &e), 0);
    T_EQ_INT(e.len, 100);
    T_CHECK(e.body[0] == 'b');
    T_EQ_INT(has(db, 3), 0);
    /* the same key again replaces it, its index rows too */
    T_EQ_INT(put(db, 1, 50, 2000, 6000, 2000), 0);
    T_EQ_INT(stats.entries, 2);
    T_EQ_INT(llmr_cache_lmdb_purge(db, 7000, 100), 1);     /* 1 expired at 6000 */
    T_EQ_INT(has(db, 1), 0);
    T_EQ_INT(has(db, 2), 1);
    T_EQ_INT(stats.expired, 1);
    T_EQ_INT(stats.entries, 1);
    T_EQ_INT(llmr_cache_lmdb_purge(db, 7000, 100), 0);
    /* too big for the store: refused, nothing evicted for it */
    T_EQ_INT(put(db, 9, (4 << 20) / 8 + 1, 3000, 9000, 3000), -1);
    T_EQ_INT(has(db, 2), 1);
    close_store(db);
}

static void test_store_bound_evicts_expired_then_oldest(void)
{
    llmr_cache_lmdb *db = open_store(1);
    int i, n = 200, kept = 0;

    if (!T_CHECK(db != NULL))
        return;
    /* 200 x 20 KB into 1 MB: entries 0-9 expire early, the rest late */
    for (i = 0; i < n; i++)
        if (!T_EQ_INT(put(db, i, 20000, 1000 + i, i < 10 ? 2000 : 1000000, 1000 + i + 2000), 0))
            break;
    T_CHECK(stats.evictions > 0);
    T_CHECK(stats.bytes <= 1 << 20);
    for (i = 0; i < n; i++)
        kept += has(db, i);
    T_CHECK(kept > 10 && kept < n);
    /* the newest are there, the oldest and the expired are not */
    T_EQ_INT(has(db, n - 1), 1);
    T_EQ_INT(has(db, 0), 0);
    T_EQ_INT(has(db, 10), 0);
    close_store(db);
}

/* A writer killed in the middle of a write transaction: the next open and
 * write recover the robust lock, the last commit reads back whole. */
static void test_store_writer_killed_mid_transaction(void)
{
    llmr_cache_lmdb *db = open_store(8);
    MDB_txn *txn;
    pid_t pid;
    int st;

    if (!T_CHECK(db != NULL))
        return;
    T_EQ_INT(put(db, 1, 1000, 1000, 1000000, 1000), 0);
    llmr_cache_lmdb_close(db);
    pid = fork();
    if (pid == 0) {
        llmr_cache_lmdb *child = NULL;
        char err[256];
        if (llmr_cache_lmdb_open(&child, dir, 8, &stats, err, sizeof(err)) < 0)
            _exit(2);
        put(child, 7, 1000, 1000, 1000000, 1000);          /* committed */
        if (mdb_txn_begin(child->env, NULL, 0, &txn) != 0)  /* held: killed inside it */
            _exit(3);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    T_CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFSIGNALED(st));
    db = NULL;
    {
        char err[256];
        T_EQ_INT(llmr_cache_lmdb_open(&db, dir, 8, &stats, err, sizeof(err)), 0);
    }
    if (!T_CHECK(db != NULL))
        return;
    T_EQ_INT(has(db, 1), 1);
    T_EQ_INT(put(db, 2, 1000, 1000, 1000000, 1000), 0);  /* the lock was recovered */
    T_EQ_INT(has(db, 2), 1);
    close_store(db);
}

/* ---- single-flight -------------------------------------------------------- */

static void test_flight_table(void)
{
    llmr_shm shm = { 0 };
    int a = -1, b = -1, c = -1;
    int32_t me = (int32_t)getpid();
    pid_t dead;

    shm.seg = calloc(1, sizeof(*shm.seg));
    if (!T_CHECK(shm.seg != NULL))
        return;
    T_EQ_INT(llmr_cache_flight_join(&shm, 0x10001, me, 5000, 1000, &a), 1);   /* leads */
    T_EQ_INT(llmr_cache_flight_join(&shm, 0x10001, me, 5000, 1000, &b), 0);   /* waits */
    T_EQ_INT(a, b);
    T_EQ_INT(llmr_cache_flight_held(&shm, a, 0x10001, 1000), 1);
    T_EQ_INT(llmr_cache_flight_held(&shm, a, 0x10001, 6000), 0);       /* past its deadline */
    llmr_cache_flight_release(&shm, a, 0x10001, me);
    T_EQ_INT(llmr_cache_flight_held(&shm, a, 0x10001, 1000), 0);
    /* a dead leader's entry is taken over */
    dead = fork();
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    T_EQ_INT(llmr_cache_flight_join(&shm, 0x20001, (int32_t)dead, 5000, 1000, &a), 1);
    T_EQ_INT(llmr_cache_flight_join(&shm, 0x20001, me, 5000, 1000, &c), 1);
    T_EQ_INT(a, c);
    /* a full run of entries: no coalescing */
    for (uint32_t i = 0; i < LLMR_CACHE_PROBE; i++)
        T_EQ_INT(llmr_cache_flight_join(&shm, 0x30001 + i, me,
                                        5000, 1000, &a), 1);
    T_EQ_INT(llmr_cache_flight_join(&shm, 0x30001 + 65536, me, 5000, 1000, &a), -1);
    free(shm.seg);
}

int main(void)
{
    T_RUN(test_key_ignores_what_does_not_change_the_answer);
    T_RUN(test_key_changes_with_what_does);
    T_RUN(test_key_canonical_text);
    T_RUN(test_key_of_long_bodies);
    T_RUN(test_key_names_cannot_forge_separators);
    T_RUN(test_controls);
    T_RUN(test_entry_framing);
    T_RUN(test_store_round_trip_and_purge);
    T_RUN(test_store_bound_evicts_expired_then_oldest);
    T_RUN(test_store_writer_killed_mid_transaction);
    T_RUN(test_flight_table);
    llmr_json_free(&j);
    return T_DONE();
}
