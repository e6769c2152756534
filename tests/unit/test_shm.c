/* The slot table across reloads, and counters under concurrent writers. */
#include "../../shm/shm.c"

#include <pthread.h>
#include <stdlib.h>

#include "t.h"

static char *ids_a[] = { "a", "b", "c" };

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
    T_EQ_INT(llmr_shm_map_slots(&shm, &c1, 1, 1), 0);
    T_CHECK(d1[0].slot != d1[1].slot && d1[1].slot != d1[2].slot);
    llmr_counters_attempt_start(llmr_shm_slot(&shm, d1[0].slot));
    llmr_counters_add_usage(llmr_shm_slot(&shm, d1[2].slot), 7, 3);

    /* Reload while generation 1 still runs: "b" goes, "new" comes. */
    make_conf(&c2, d2, &g, ids_b, 3);
    T_EQ_INT(llmr_shm_map_slots(&shm, &c2, 2, 1), 0);
    T_EQ_INT(d2[0].slot, d1[2].slot);              /* c */
    T_EQ_INT(d2[2].slot, d1[0].slot);              /* a */
    T_CHECK(d2[1].slot != d1[1].slot);             /* b's slot is not reused yet */
    T_EQ_INT(atomic_load(&llmr_shm_slot(&shm, d2[2].slot)->requests), 1);
    T_EQ_INT(atomic_load(&llmr_shm_slot(&shm, d2[0].slot)->prompt_tokens), 7);
    T_EQ_INT(atomic_load(&llmr_shm_slot(&shm, d2[1].slot)->requests), 0);
    T_EQ_INT(atomic_load(&shm.seg->hdr.generation), 2);
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
    T_EQ_INT(llmr_shm_map_slots(&shm, &c, 1, 1), 0);
    int x = d[0].slot;
    llmr_counters_attempt_start(llmr_shm_slot(&shm, x));
    make_conf(&c, d, &g, ids2, 1);
    T_EQ_INT(llmr_shm_map_slots(&shm, &c, 2, 2), 0);   /* generation 1 is gone */
    T_EQ_INT(d[0].slot, x);
    T_EQ_STR(llmr_shm_slot(&shm, x)->id, "y");
    T_EQ_INT(atomic_load(&llmr_shm_slot(&shm, x)->requests), 0);  /* zeroed */
    llmr_shm_destroy(&shm);
}

static void test_full_table_fails(void)
{
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
    T_EQ_INT(llmr_shm_map_slots(&shm, &c, 1, 1), -1);
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
    shm.seg->hdr.version = LLMR_SHM_VERSION + 1;
    llmr_shm_detach(&shm);
    T_EQ_INT(llmr_shm_create(&shm, name), 0);
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
    (void)arg;
    for (int i = 0; i < 100000; i++) {
        llmr_counters_attempt_start(&hammered);
        llmr_counters_add_usage(&hammered, 2, 1);
        llmr_counters_attempt_end(&hammered, i % 4 ? LLMR_OUTCOME_SUCCESS
                                                   : LLMR_OUTCOME_FAILURE, 10);
    }
    return NULL;
}

static void test_counters_exact_under_threads(void)
{
    pthread_t t[4];

    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    T_EQ_INT(atomic_load(&hammered.requests), 400000);
    T_EQ_INT(atomic_load(&hammered.successes), 300000);
    T_EQ_INT(atomic_load(&hammered.failures), 100000);
    T_EQ_INT(atomic_load(&hammered.inflight), 0);
    T_EQ_INT(atomic_load(&hammered.prompt_tokens), 800000);
    T_EQ_INT(atomic_load(&hammered.latency_us_total), 3000000);
}

int main(void)
{
    T_CHECK(sizeof(llmr_slot) % LLMR_CACHE_LINE == 0);
    T_RUN(test_survivor_keeps_slot_and_counters);
    T_RUN(test_dead_generation_slots_are_reused);
    T_RUN(test_full_table_fails);
    T_RUN(test_layout_mismatch_recreates);
    T_RUN(test_counters_exact_under_threads);
    return T_DONE();
}
