/* The local store: one LMDB environment shared by every worker of the host
 * (each opens its own handle after fork, MDB_NOTLS since a worker is one
 * thread but read transactions are short and never cross a loop turn).
 *
 * Why LMDB: copy-on-write B+trees with the commit as one meta-page write,
 * so a worker SIGKILLed in the middle of a write leaves the last committed
 * state, never a torn entry; its writer lock is a robust process-shared
 * mutex on Linux, which the next writer recovers (EOWNERDEAD) instead of
 * waiting for ever; and dead readers' slots are cleared by
 * mdb_reader_check().  Three sub-databases: "e" key -> entry, and two
 * indexes for eviction, "x" (expiry, key) and "c" (creation, key), so that
 * expired-first and then oldest-first eviction walk an index from its
 * start instead of scanning every entry.
 *
 * Size: the map is max_size_mb; before a write that would take the data
 * pages past HIGH of it, expired entries go, then the oldest, until they
 * are under LOW.  MDB_NOSYNC: a cache may lose recent writes to a power
 * failure; a process crash loses nothing (the pages are in the page cache).
 * A store LMDB finds damaged at open is emptied and made again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "cache.h"
#include "log.h"

#define HIGH_PCT 80     /* data pages past this share of the map: evict */
#define LOW_PCT 60      /* ...down to this one */
#define EVICT_MAX 4096  /* entries one write may evict */
#define IDX_LEN (8 + LLMR_CACHE_KEY_LEN)

struct llmr_cache_lmdb {
    MDB_env *env;
    MDB_dbi e, x, c;
    size_t map_bytes, page;
    llmr_cache_stats *stats;
};

static void idx_key(unsigned char *out, int64_t t, const unsigned char *key)
{
    for (int i = 0; i < 8; i++)         /* big-endian: the index sorts by time */
        out[i] = (unsigned char)((uint64_t)t >> (56 - 8 * i));
    memcpy(out + 8, key, LLMR_CACHE_KEY_LEN);
}

static int64_t idx_time(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return (int64_t)v;
}

static int open_env(llmr_cache_lmdb *db, const char *dir, long max_mb)
{
    MDB_txn *txn;
    int rc;

    if ((rc = mdb_env_create(&db->env)) != 0)
        return rc;
    if ((rc = mdb_env_set_mapsize(db->env, (size_t)max_mb << 20)) != 0
        || (rc = mdb_env_set_maxdbs(db->env, 4)) != 0
        || (rc = mdb_env_set_maxreaders(db->env, 1024)) != 0
        || (rc = mdb_env_open(db->env, dir, MDB_NOTLS | MDB_NOSYNC | MDB_NORDAHEAD, 0600)) != 0)
        return rc;
    if ((rc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0)
        return rc;
    if ((rc = mdb_dbi_open(txn, "e", MDB_CREATE, &db->e)) != 0
        || (rc = mdb_dbi_open(txn, "x", MDB_CREATE, &db->x)) != 0
        || (rc = mdb_dbi_open(txn, "c", MDB_CREATE, &db->c)) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

static void remove_files(const char *dir)
{
    char p[4096];

    snprintf(p, sizeof(p), "%s/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/lock.mdb", dir);
    unlink(p);
}

int llmr_cache_lmdb_open(llmr_cache_lmdb **out, const char *dir, long max_mb,
                         llmr_cache_stats *stats, char *err, size_t errlen)
{
    llmr_cache_lmdb *db = calloc(1, sizeof(*db));
    MDB_envinfo info;
    MDB_stat st;
    int rc, dead;

    *out = NULL;
    if (db == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cache.path %s: %s", dir, strerror(errno));
        free(db);
        return -1;
    }
    rc = open_env(db, dir, max_mb);
    if (rc == MDB_CORRUPTED || rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH
        || rc == MDB_PAGE_NOTFOUND) {
        llmr_warn("cache.path %s: %s: the store is emptied and made again", dir,
                  mdb_strerror(rc));
        mdb_env_close(db->env);
        remove_files(dir);
        rc = open_env(db, dir, max_mb);
    }
    if (rc != 0) {
        snprintf(err, errlen, "cache.path %s: %s", dir, mdb_strerror(rc));
        if (db->env != NULL)
            mdb_env_close(db->env);
        free(db);
        return -1;
    }
    mdb_reader_check(db->env, &dead);      /* readers a SIGKILL left behind */
    mdb_env_info(db->env, &info);
    mdb_env_stat(db->env, &st);
    db->map_bytes = info.me_mapsize;
    db->page = st.ms_psize;
    db->stats = stats;
    *out = db;
    return 0;
}

void llmr_cache_lmdb_close(llmr_cache_lmdb *db)
{
    if (db == NULL)
        return;
    mdb_env_close(db->env);
    free(db);
}

size_t llmr_cache_lmdb_entry_max(const llmr_cache_lmdb *db)
{
    return db->map_bytes / 8;
}

void llmr_cache_lmdb_get(llmr_cache_lmdb *db, const unsigned char *key, llmr_cache_got_fn *got,
                         void *arg)
{
    MDB_val k = { LLMR_CACHE_KEY_LEN, (void *)key }, v;
    MDB_txn *txn;

    if (mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn) != 0) {
        atomic_fetch_add_explicit(&db->stats->errors, 1, memory_order_relaxed);
        got(arg, NULL, 0);
        return;
    }
    /* A miss starts the request upstream: not from inside the snapshot. */
    if (mdb_get(txn, db->e, &k, &v) != 0) {
        mdb_txn_abort(txn);
        got(arg, NULL, 0);
        return;
    }
    got(arg, v.mv_data, v.mv_size);
    mdb_txn_abort(txn);
}

/* Data pages of the three databases, in bytes. */
static size_t used_bytes(llmr_cache_lmdb *db, MDB_txn *txn, size_t *entries)
{
    MDB_dbi dbis[3] = { db->e, db->x, db->c };
    size_t pages = 0;
    MDB_stat st;

    *entries = 0;
    for (int i = 0; i < 3; i++)
        if (mdb_stat(txn, dbis[i], &st) == 0) {
            pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
            if (i == 0)
                *entries = st.ms_entries;
        }
    return pages * db->page;
}

/* Deletes the entry `key` and its index rows; 0, or an LMDB error. */
static int del_entry(llmr_cache_lmdb *db, MDB_txn *txn, const unsigned char *key)
{
    MDB_val k = { LLMR_CACHE_KEY_LEN, (void *)key }, v, ik;
    unsigned char idx[IDX_LEN];
    llmr_cache_entry e;
    int rc;

    if ((rc = mdb_get(txn, db->e, &k, &v)) != 0)
        return rc;
    if (llmr_cache_entry_unpack(v.mv_data, v.mv_size, &e) == 0) {
        ik.mv_size = IDX_LEN;
        ik.mv_data = idx;
        idx_key(idx, e.expires_ms, key);
        mdb_del(txn, db->x, &ik, NULL);
        idx_key(idx, e.created_ms, key);
        mdb_del(txn, db->c, &ik, NULL);
    }
    return mdb_del(txn, db->e, &k, NULL);
}

/* Walks index dbi from its start, deleting entries while their time is
 * before `until` (INT64_MAX: any) and the data is over `target` bytes
 * (0: regardless), at most `max`; the number deleted. */
static int evict_walk(llmr_cache_lmdb *db, MDB_txn *txn, MDB_dbi dbi, int64_t until,
                      size_t target, int max)
{
    unsigned char key[LLMR_CACHE_KEY_LEN];
    MDB_cursor *cur;
    MDB_val k, v;
    size_t entries;
    int n = 0;

    while (n < max) {
        if (mdb_cursor_open(txn, dbi, &cur) != 0)
            break;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        mdb_cursor_close(cur);
        if (rc != 0 || k.mv_size != IDX_LEN || idx_time(k.mv_data) >= until)
            break;
        if (target > 0 && used_bytes(db, txn, &entries) <= target)
            break;
        memcpy(key, (unsigned char *)k.mv_data + 8, LLMR_CACHE_KEY_LEN);
        if (del_entry(db, txn, key) != 0 && mdb_del(txn, dbi, &k, NULL) != 0)
            break;          /* an index row without its entry: drop the row */
        n++;
    }
    return n;
}

static void note_size(llmr_cache_lmdb *db, MDB_txn *txn)
{
    size_t entries, bytes = used_bytes(db, txn, &entries);

    atomic_store_explicit(&db->stats->entries, (int64_t)entries, memory_order_relaxed);
    atomic_store_explicit(&db->stats->bytes, (int64_t)bytes, memory_order_relaxed);
}

/* Makes room for `need` more bytes: expired entries first, then oldest. */
static int make_room(llmr_cache_lmdb *db, MDB_txn *txn, size_t need, int64_t now_ms, int hard)
{
    size_t high = db->map_bytes / 100 * HIGH_PCT, low = db->map_bytes / 100 * LOW_PCT;
    size_t entries;
    int n;

    if (hard)
        high = low = db->map_bytes / 100 * (LOW_PCT / 2);
    if (used_bytes(db, txn, &entries) + need <= high)
        return 0;
    n = evict_walk(db, txn, db->x, now_ms, 0, EVICT_MAX);
    if (used_bytes(db, txn, &entries) + need > low)
        n += evict_walk(db, txn, db->c, INT64_MAX, low > need ? low - need : 1, EVICT_MAX - n);
    return n;
}

static int put_once(llmr_cache_lmdb *db, const unsigned char *key, const unsigned char *hdr,
                    const void *body, size_t len, int64_t created_ms, int64_t expires_ms,
                    int64_t now_ms, int hard)
{
    MDB_val k = { LLMR_CACHE_KEY_LEN, (void *)key }, v = { LLMR_CACHE_HDR_LEN + len, NULL };
    MDB_val ik = { IDX_LEN, NULL }, empty = { 0, (void *)"" };
    unsigned char idx[IDX_LEN];
    MDB_txn *txn;
    int rc, evicted;

    if ((rc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0)
        return rc;
    del_entry(db, txn, key);
    evicted = make_room(db, txn, v.mv_size + 2 * IDX_LEN + 64, now_ms, hard);
    ik.mv_data = idx;
    if ((rc = mdb_put(txn, db->e, &k, &v, MDB_RESERVE)) == 0) {
        memcpy(v.mv_data, hdr, LLMR_CACHE_HDR_LEN);
        memcpy((char *)v.mv_data + LLMR_CACHE_HDR_LEN, body, len);
        idx_key(idx, expires_ms, key);
        rc = mdb_put(txn, db->x, &ik, &empty, 0);
    }
    if (rc == 0) {
        idx_key(idx, created_ms, key);
        rc = mdb_put(txn, db->c, &ik, &empty, 0);
    }
    if (rc == 0)
        note_size(db, txn);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    if ((rc = mdb_txn_commit(txn)) == 0 && evicted > 0)
        atomic_fetch_add_explicit(&db->stats->evictions, evicted, memory_order_relaxed);
    return rc;
}

int llmr_cache_lmdb_put(llmr_cache_lmdb *db, const unsigned char *key, const unsigned char *hdr,
                        const void *body, size_t len, int64_t created_ms, int64_t expires_ms,
                        int64_t now_ms)
{
    int rc;

    if (len > llmr_cache_lmdb_entry_max(db))
        return -1;
    rc = put_once(db, key, hdr, body, len, created_ms, expires_ms, now_ms, 0);
    if (rc == MDB_MAP_FULL)     /* pages a reader still holds: evict harder, once */
        rc = put_once(db, key, hdr, body, len, created_ms, expires_ms, now_ms, 1);
    if (rc != 0) {
        llmr_debug("cache: store failed: %s", mdb_strerror(rc));
        return -1;
    }
    return 0;
}

int llmr_cache_lmdb_purge(llmr_cache_lmdb *db, int64_t now_ms, int max)
{
    MDB_txn *txn;
    int dead, n;

    mdb_reader_check(db->env, &dead);
    if (mdb_txn_begin(db->env, NULL, 0, &txn) != 0)
        return -1;
    n = evict_walk(db, txn, db->x, now_ms, 0, max);
    note_size(db, txn);
    if (mdb_txn_commit(txn) != 0)
        return -1;
    if (n > 0)
        atomic_fetch_add_explicit(&db->stats->expired, n, memory_order_relaxed);
    return n;
}
