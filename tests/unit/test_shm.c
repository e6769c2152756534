/* The slot table across reloads, and counters under concurrent writers. */
#include "../../shm/shm.c"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "master.h"      /* the slot mapping walks the config: the master's */
#include "t.h"

static char *ids_a[] = { "a", "b", "c" };

/* Keeps the last error or warning line instead of printing it. */
static void capture(enum llmr_log_level level, const char *line, void *arg)
{
    if (level <= LLMR_LOG_WARN)
        snprintf(arg, 256, "%s", line);
}
static const llmr_limits no_limits;

static void admit(llmr_slot *s)
{
    T_EQ_INT(llmr_counters_admit(s, &no_limits, 0, 0, llmr_wall_ms()), LLMR_LIMIT_NONE);
}

static void make_conf(llmr_conf *c, llmr_deployment *d, llmr_group *g, char **ids, int n)
{
    memset(c, 0, sizeof(*c));
    memset(d, 0, sizeof(*d) * (size_t)n);
    g->name = "g";
    for (int i = 0; i < n; i++) {
        snprintf(d[i].id, sizeof(d[i].id), "%s", ids[i]);
        d[i].slot = -1;
    }
    c->deployments = d;
    c->ndeployments = n;
    c->groups = g;
    c->ngroups = 1;
}

static void open_fresh(llmr_shm *shm, const char *name)
{
    shm_unlink(name);
    T_EQ_INT(llmr_shm_create(shm, name), 0);
}

static void test_survivor_keeps_slot_and_counters(void)
{
    llmr_shm shm;
    llmr_conf c1, c2;
    llmr_deployment d1[3], d2[3];
    llmr_group g;
    char name[64];
    char *ids_b[] = { "c", "new", "a" };

    snprintf(name, sizeof(name), "/llmr-unit-%d", (int)getpid());
    open_fresh(&shm, name);
    make_conf(&c1, d1, &g, ids_a, 3);
    T_EQ_INT(llmr_master_map_slots(&shm, &c1, 1, 1), 0);
    T_CHECK(d1[0].slot != d1[1].slot && d1[1].slot != d1[2].slot);
    admit(llmr_shm_slot(&shm, d1[0].slot));
    llmr_counters_add_usage(llmr_shm_slot(&shm, d1[2].slot), 7, 3);

    /* Reload while generation 1 still runs: "b" goes, "new" comes. */
    make_conf(&c2, d2, &g, ids_b, 3);
    T_EQ_INT(llmr_master_map_slots(&shm, &c2, 2, 1), 0);
    T_EQ_INT(d2[0].slot, d1[2].slot);              /* c */
    T_EQ_INT(d2[2].slot, d1[0].slot);              /* a */
    T_CHECK(d2[1].slot != d1[1].slot);             /* b's slot is not reused yet */
    T_EQ_INT(atomic_load(&llmr_shm_slot(&shm, d2[2].slot)->requests), 1);
    T_EQ_INT(atomic_load(&llmr_shm_slot(&shm, d2[0].slot)->prompt_tokens), 7);
    T_EQ_INT(atomic_load(&llmr_shm_slot(&shm, d2[1].slot)->requests), 0);
    llmr_shm_destroy(&shm);
}

static void test_dead_generation_slots_are_reused(void)
{
    llmr_shm shm;
    llmr_conf c;
    llmr_deployment d[3];
    llmr_group g;
    char name[64];
    char *ids[] = { "x" }, *ids2[] = { "y" };

    snprintf(name, sizeof(name), "/llmr-unit2-%d", (int)getpid());
    open_fresh(&shm, name);
    make_conf(&c, d, &g, ids, 1);
    T_EQ_INT(llmr_master_map_slots(&shm, &c, 1, 1), 0);
    int x = d[0].slot;
    admit(llmr_shm_slot(&shm, x));
    make_conf(&c, d, &g, ids2, 1);
    T_EQ_INT(llmr_master_map_slots(&shm, &c, 2, 2), 0);   /* generation 1 is gone */
    T_EQ_INT(d[0].slot, x);
    T_EQ_STR(llmr_shm_slot(&shm, x)->id, "y");
    T_EQ_INT(atomic_load(&llmr_shm_slot(&shm, x)->requests), 0);  /* zeroed */
    llmr_shm_destroy(&shm);
}


static void test_full_table_fails(void)
{
    char logged[256] = "";
    llmr_shm shm;
    llmr_conf c;
    int n = LLMR_SHM_SLOTS + 1;
    llmr_deployment *d = calloc((size_t)n, sizeof(*d));
    char **ids = calloc((size_t)n, sizeof(char *));
    llmr_group g;
    char name[64];

    snprintf(name, sizeof(name), "/llmr-unit3-%d", (int)getpid());
    open_fresh(&shm, name);
    for (int i = 0; i < n; i++) {
        ids[i] = malloc(16);
        snprintf(ids[i], 16, "d%d", i);
    }
    make_conf(&c, d, &g, ids, n);
    llmr_log_hook = capture;
    llmr_log_hook_arg = logged;
    T_EQ_INT(llmr_master_map_slots(&shm, &c, 1, 1), -1);
    llmr_log_hook = NULL;
    T_CONTAINS(logged, "no free slot for deployment d1024 (1024 slots)");
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(d);
    llmr_shm_destroy(&shm);
}

static void test_layout_mismatch_recreates(void)
{
    llmr_shm shm;
    char name[64];

    snprintf(name, sizeof(name), "/llmr-unit4-%d", (int)getpid());
    open_fresh(&shm, name);
    atomic_store(&shm.seg->slots[0].requests, 42);
    char logged[256] = "";
    shm.seg->hdr.version = LLMR_SHM_VERSION + 1;
    llmr_shm_detach(&shm);
    llmr_log_hook = capture;
    llmr_log_hook_arg = logged;
    T_EQ_INT(llmr_shm_create(&shm, name), 0);
    llmr_log_hook = NULL;
    T_CONTAINS(logged, "has another layout");
    T_EQ_INT(shm.seg->hdr.version, LLMR_SHM_VERSION);
    T_EQ_INT(atomic_load(&shm.seg->slots[0].requests), 0);
    llmr_shm_detach(&shm);
    llmr_shm reader;
    T_EQ_INT(llmr_shm_attach(&reader, name), 0);
    T_EQ_INT(reader.seg->hdr.magic == LLMR_SHM_MAGIC, 1);
    llmr_shm_detach(&reader);
    shm_unlink(name);
    T_EQ_INT(llmr_shm_attach(&reader, name), -1);
}

static llmr_slot hammered;

static void *hammer(void *arg)
{
    int wslot = (int)(intptr_t)arg;

    for (int i = 0; i < 100000; i++) {
        int64_t now = llmr_wall_ms();
        llmr_counters_admit(&hammered, &no_limits, wslot, 0, now);
        llmr_counters_add_usage(&hammered, 2, 1);
        llmr_counters_attempt_end(&hammered, wslot, i % 4 ? LLMR_OUTCOME_SUCCESS
                                                          : LLMR_OUTCOME_FAILURE, 10);
    }
    return NULL;
}

static void test_counters_exact_under_threads(void)
{
    pthread_t t[4];

    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)i);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    T_EQ_INT(atomic_load(&hammered.requests), 400000);
    T_EQ_INT(atomic_load(&hammered.successes), 300000);
    T_EQ_INT(atomic_load(&hammered.failures), 100000);
    T_EQ_INT(atomic_load(&hammered.inflight), 0);
    T_EQ_INT(atomic_load(&hammered.prompt_tokens), 800000);
    T_EQ_INT(atomic_load(&hammered.latency_us_total), 3000000);
    for (int i = 0; i < 4; i++)
        T_EQ_INT(atomic_load(&hammered.inflight_by_worker[i]), 0);
}

static void test_window_rolls_over_at_the_minute(void)
{
    _Atomic uint64_t w = 0;

    T_EQ_INT(llmr_window_add(&w, 100, 5), 5);
    T_EQ_INT(llmr_window_add(&w, 100, 2), 7);
    T_EQ_INT(llmr_window_count(&w, 100), 7);
    T_EQ_INT(llmr_window_count(&w, 101), 0);     /* read in the next minute */
    T_EQ_INT(llmr_window_add(&w, 101, 1), 1);    /* the first add rolls it over */
    T_EQ_INT(llmr_window_count(&w, 100), 0);
    T_EQ_INT(llmr_window_count(&w, 101), 1);
}

static void test_rpm_limit_at_the_minute_boundary(void)
{
    llmr_slot s;
    llmr_limits l = { .rpm = 3 };
    int64_t t = 60000LL * 1000 + 59990;          /* 10 ms before a minute ends */

    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 3; i++)
        T_EQ_INT(llmr_counters_admit(&s, &l, 0, 0, t), LLMR_LIMIT_NONE);
    T_EQ_INT(llmr_counters_admit(&s, &l, 0, 0, t), LLMR_LIMIT_RPM);
    T_EQ_INT(llmr_counters_check(&s, &l, 0, t), LLMR_LIMIT_RPM);
    T_EQ_INT(llmr_counters_admit(&s, &l, 0, 0, t + 10), LLMR_LIMIT_NONE);  /* next minute */
    T_EQ_INT(atomic_load(&s.inflight), 4);   /* a refusal takes nothing */
    T_EQ_INT(atomic_load(&s.requests), 4);
}

static void test_tpm_admission_and_correction(void)
{
    llmr_slot s;
    llmr_limits l = { .tpm = 1000 };
    int64_t t = 60000LL * 2000;

    memset(&s, 0, sizeof(s));
    T_EQ_INT(llmr_counters_admit(&s, &l, 0, 600, t), LLMR_LIMIT_NONE);
    T_EQ_INT(llmr_counters_admit(&s, &l, 0, 600, t), LLMR_LIMIT_TPM);   /* 1200 > 1000 */
    T_EQ_INT(llmr_counters_check(&s, &l, 400, t), LLMR_LIMIT_NONE);
    /* The upstream reported 100 tokens, not 600: room for 900 more. */
    llmr_counters_tokens_used(&s, 600, 100, t, t + 5);
    T_EQ_INT(llmr_window_count(&s.tpm_window, 2000), 100);
    T_EQ_INT(llmr_counters_admit(&s, &l, 0, 900, t + 6), LLMR_LIMIT_NONE);
    /* Usage reported after the minute rolled over counts in the new one. */
    llmr_counters_tokens_used(&s, 900, 50, t + 6, t + 60000);
    T_EQ_INT(llmr_window_count(&s.tpm_window, 2001), 50);
    /* Refused on tpm: the rpm window and the in-flight place are given back. */
    llmr_limits both = { .rpm = 10, .tpm = 10 };
    llmr_slot z;
    memset(&z, 0, sizeof(z));
    T_EQ_INT(llmr_counters_admit(&z, &both, 0, 11, t), LLMR_LIMIT_TPM);
    T_EQ_INT(llmr_window_count(&z.rpm_window, 2000), 0);
    T_EQ_INT(atomic_load(&z.inflight), 0);
}

static void test_unadmit_gives_everything_back(void)
{
    llmr_slot s;
    llmr_limits l = { .rpm = 1, .tpm = 100, .max_parallel = 1 };
    int64_t t = 60000LL * 3000;

    memset(&s, 0, sizeof(s));
    T_EQ_INT(llmr_counters_admit(&s, &l, 7, 50, t), LLMR_LIMIT_NONE);
    T_EQ_INT(llmr_counters_admit(&s, &l, 7, 50, t), LLMR_LIMIT_PARALLEL);
    llmr_counters_unadmit(&s, 7, 50, t);
    T_EQ_INT(atomic_load(&s.inflight), 0);
    T_EQ_INT(atomic_load(&s.inflight_by_worker[7]), 0);
    T_EQ_INT(atomic_load(&s.requests), 0);
    T_EQ_INT(llmr_counters_admit(&s, &l, 7, 50, t), LLMR_LIMIT_NONE);
}

/* max_parallel and rpm under threads racing for the last places: never
 * more admitted than the limit. */
static llmr_slot raced;
static const llmr_limits race_limits = { .rpm = 5000, .max_parallel = 3 };
static _Atomic int64_t race_admitted, race_peak;

static void *race(void *arg)
{
    int64_t t = 60000LL * 4000;

    (void)arg;
    for (int i = 0; i < 20000; i++) {
        if (llmr_counters_admit(&raced, &race_limits, 0, 0, t) != LLMR_LIMIT_NONE)
            continue;
        int64_t now = atomic_load(&raced.inflight), peak = atomic_load(&race_peak);
        while (now > peak && !atomic_compare_exchange_weak(&race_peak, &peak, now))
            ;
        atomic_fetch_add(&race_admitted, 1);
        llmr_counters_attempt_end(&raced, -1, LLMR_OUTCOME_SUCCESS, 1);
    }
    return NULL;
}

static void test_limits_exact_under_threads(void)
{
    pthread_t t[4];

    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, race, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    T_EQ_INT(atomic_load(&race_admitted), 5000);  /* exactly rpm this minute */
    T_EQ_INT(llmr_window_count(&raced.rpm_window, 4000), 5000);
    T_CHECK(atomic_load(&race_peak) <= 3);
    T_EQ_INT(atomic_load(&raced.inflight), 0);
}

static void test_reaping_a_worker_takes_back_its_inflight(void)
{
    llmr_shm shm;
    char name[64];

    snprintf(name, sizeof(name), "/llmr-unit5-%d", (int)getpid());
    open_fresh(&shm, name);
    llmr_slot *a = &shm.seg->slots[0], *b = &shm.seg->slots[5];
    for (int i = 0; i < 3; i++)
        llmr_counters_admit(a, &no_limits, 2, 0, llmr_wall_ms());   /* worker 2 dies */
    llmr_counters_admit(a, &no_limits, 1, 0, llmr_wall_ms());       /* worker 1 lives */
    llmr_counters_admit(b, &no_limits, 2, 0, llmr_wall_ms());
    llmr_counters_reap_worker(&shm, 2);
    T_EQ_INT(atomic_load(&a->inflight), 1);
    T_EQ_INT(atomic_load(&b->inflight), 0);
    T_EQ_INT(atomic_load(&a->inflight_by_worker[2]), 0);
    T_EQ_INT(atomic_load(&a->inflight_by_worker[1]), 1);
    llmr_shm_destroy(&shm);
}

/* A master restarted after a crash: shares of dead workers are taken back,
 * and each slot's total is counted again from the shares left, which also
 * drops an increment a killed worker made without its share. */
static void test_recount_after_crash(void)
{
    llmr_shm shm;
    char name[64];

    snprintf(name, sizeof(name), "/llmr-unit6-%d", (int)getpid());
    open_fresh(&shm, name);
    llmr_slot *a = &shm.seg->slots[3];
    for (int i = 0; i < 4; i++)
        llmr_counters_admit(a, &no_limits, 7, 0, llmr_wall_ms());   /* dead worker 7 */
    llmr_counters_admit(a, &no_limits, 9, 0, llmr_wall_ms());       /* live worker 9 */
    atomic_fetch_add(&a->inflight, 1);      /* killed between the two words */
    T_EQ_INT(atomic_load(&a->inflight), 6);
    llmr_counters_reap_worker(&shm, 7);
    llmr_shm_recount_inflight(&shm);
    T_EQ_INT(atomic_load(&a->inflight), 1);
    T_EQ_INT(atomic_load(&a->inflight_by_worker[9]), 1);
    llmr_shm_destroy(&shm);
}

/* The seqlock a reload's outcome travels in. */
static void test_reload_outcome(void)
{
    llmr_shm shm;
    char name[64], msg[64];
    uint32_t seq;

    snprintf(name, sizeof(name), "/llmr-unit7-%d", (int)getpid());
    open_fresh(&shm, name);
    seq = llmr_shm_reload_seq(&shm);
    llmr_shm_reload_outcome(&shm, 0, "reload failed: x");
    T_EQ_INT(llmr_shm_reload_seq(&shm), seq + 2);
    T_EQ_INT(llmr_shm_reload_read(&shm, seq + 2, msg, sizeof(msg)), 0);
    T_EQ_STR(msg, "reload failed: x");
    T_EQ_INT(llmr_shm_reload_read(&shm, seq + 1, msg, sizeof(msg)), -1);   /* writing */
    llmr_shm_reload_outcome(&shm, 1, "reloaded");
    T_EQ_INT(llmr_shm_reload_read(&shm, seq + 2, msg, sizeof(msg)), -1);   /* replaced */
    T_EQ_INT(llmr_shm_reload_read(&shm, seq + 4, msg, sizeof(msg)), 1);
    T_EQ_STR(msg, "reloaded");
    llmr_shm_destroy(&shm);
}

/* The Responses id table: an id finds its slot, a rewrite moves it, ids
 * that share every entry of their probe window push the oldest out and
 * never answer with another id's slot. */
static void test_response_ids(void)
{
    llmr_shm shm;
    char name[64];
    int wrong = 0, found = 0;

    snprintf(name, sizeof(name), "/llmr-unit-resp-%d", (int)getpid());
    open_fresh(&shm, name);
    T_EQ_INT(llmr_shm_resp_get(&shm, 0x1234567890abcdefULL), -1);
    llmr_shm_resp_put(&shm, 0x1234567890abcdefULL, 7);
    T_EQ_INT(llmr_shm_resp_get(&shm, 0x1234567890abcdefULL), 7);
    llmr_shm_resp_put(&shm, 0x1234567890abcdefULL, 0);
    T_EQ_INT(llmr_shm_resp_get(&shm, 0x1234567890abcdefULL), 0);
    T_EQ_INT(llmr_shm_resp_get(&shm, 0x1234567890ab0000ULL), -1);  /* another tag */
    /* 40 ids on the same 16 entries: the newest are found, none wrongly. */
    for (uint64_t k = 1; k <= 40; k++)
        llmr_shm_resp_put(&shm, (k << 32) | 5, (int)(k % 1000));
    for (uint64_t k = 1; k <= 40; k++) {
        int got = llmr_shm_resp_get(&shm, (k << 32) | 5);
        wrong += got != -1 && got != (int)(k % 1000);
        found += got != -1;
    }
    T_EQ_INT(wrong, 0);
    T_CHECK(found >= LLMR_RESP_PROBE / 2 && found <= LLMR_RESP_PROBE);
    T_EQ_INT(llmr_shm_resp_get(&shm, ((uint64_t)40 << 32) | 5), 40);  /* the newest */
    llmr_shm_destroy(&shm);
}

int main(void)
{
    T_RUN(test_response_ids);
    T_RUN(test_survivor_keeps_slot_and_counters);
    T_RUN(test_dead_generation_slots_are_reused);
    T_RUN(test_full_table_fails);
    T_RUN(test_recount_after_crash);
    T_RUN(test_reload_outcome);
    T_RUN(test_layout_mismatch_recreates);
    T_RUN(test_counters_exact_under_threads);
    T_RUN(test_window_rolls_over_at_the_minute);
    T_RUN(test_rpm_limit_at_the_minute_boundary);
    T_RUN(test_tpm_admission_and_correction);
    T_RUN(test_unadmit_gives_everything_back);
    T_RUN(test_limits_exact_under_threads);
    T_RUN(test_reaping_a_worker_takes_back_its_inflight);
    return T_DONE();
}
