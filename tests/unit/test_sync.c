/* Multi-host sync: the lease arithmetic (master/sync_lease.c), admission
 * spending a host's grants (shm/counters.c) and router_settings.redis_*
 * (conf/conf_sync.c). */
#include "conf_test.h"
#include "shm.h"
#include "sync.h"

static llmr_lease_view view(long limit, uint32_t granted, uint32_t used, uint32_t back,
                            double rate, int hosts)
{
    llmr_lease_view v = { limit, granted, used, back, rate, hosts, 100 };
    return v;
}

/* Redis's side: a claim never lets all hosts together pass the limit. */
static void test_grant_never_passes_limit(void)
{
    /* empty minute: the whole want */
    T_EQ_INT(llmr_lease_grant(60, 0, 0, 0, 20, 0), 20);
    /* others hold 50: only 10 left */
    T_EQ_INT(llmr_lease_grant(60, 50, 0, 0, 20, 0), 10);
    /* our own claim of 10 counts as ours, not the others' */
    T_EQ_INT(llmr_lease_grant(60, 60, 10, 10, 30, 0), 10);
    T_EQ_INT(llmr_lease_grant(60, 50, 10, 10, 30, 0), 20);
    /* a floor is kept even past the limit (spent while Redis was away) */
    T_EQ_INT(llmr_lease_grant(60, 60, 0, 25, 40, 0), 25);
    /* a hand-back: want == floor below the old claim */
    T_EQ_INT(llmr_lease_grant(60, 60, 40, 20, 20, 1), 20);
    /* anything else never lowers a claim (a lost answer, two sync
     * processes overlapping at a reload): Redis keeps counting 40 */
    T_EQ_INT(llmr_lease_grant(60, 60, 40, 20, 25, 0), 40);
    T_EQ_INT(llmr_lease_grant(60, 50, 40, 20, 45, 0), 45);
    /* exhaustive: for every split, the sum stays within the limit */
    for (long others = 0; others <= 60; others += 3)
        for (long want = 0; want <= 80; want += 7) {
            long c = llmr_lease_grant(60, others, 0, 0, want, 0);
            T_CHECK(c >= 0 && c <= want && others + c <= 60);
        }
}

static void test_share(void)
{
    T_EQ_INT(llmr_lease_share(60, 3), 20);
    T_EQ_INT(llmr_lease_share(61, 3), 20);       /* rounded down */
    T_EQ_INT(llmr_lease_share(2, 3), 1);         /* at least 1 */
    T_EQ_INT(llmr_lease_share(60, 0), 60);
    T_EQ_INT(llmr_lease_share(0, 3), 0);         /* no limit */
}

static void test_plan_first_lease_is_the_share(void)
{
    llmr_lease_view v = view(60, 0, 0, 0, 0, 3);
    llmr_lease_ask a;

    T_EQ_INT(llmr_lease_plan(&v, &a), 1);
    T_EQ_INT(a.floor, 0);
    T_EQ_INT(a.want, 20);
    T_EQ_INT(a.give_back, 0);
}

static void test_plan_refills_before_running_out(void)
{
    llmr_lease_ask a;
    /* 20 granted, 19 used, spending 5/s: refill asks for use + 2 s */
    llmr_lease_view v = view(60, 20, 19, 0, 5, 3);

    T_EQ_INT(llmr_lease_plan(&v, &a), 1);
    T_EQ_INT(a.floor, 20);
    T_EQ_INT(a.want, 29);
    /* plenty left at that rate: nothing to do */
    v = view(60, 20, 5, 0, 5, 3);
    T_EQ_INT(llmr_lease_plan(&v, &a), 0);
}

static void test_plan_hands_back_when_hosts_grow(void)
{
    llmr_lease_ask a;
    /* held all 60 alone; now 3 hosts, 4 used, idle: back to the share */
    llmr_lease_view v = view(60, 60, 4, 0, 0, 3);

    T_EQ_INT(llmr_lease_plan(&v, &a), 1);
    T_EQ_INT(a.give_back, 40);
    T_EQ_INT(a.floor, 20);
    T_EQ_INT(a.want, 20);
    /* after it: the units taken out are counted in used and back */
    v = view(60, 60, 44, 40, 0, 3);
    T_EQ_INT(llmr_lease_claim(&v), 20);
    T_EQ_INT(llmr_lease_plan(&v, &a), 0);
    T_EQ_INT(llmr_lease_grant_of(20, 40), 60);   /* the grant word is unchanged */
}

static void test_plan_tops_up_below_share(void)
{
    llmr_lease_ask a;
    llmr_lease_view v = view(60, 10, 0, 0, 0, 3);

    T_EQ_INT(llmr_lease_plan(&v, &a), 2);
    T_EQ_INT(a.floor, 10);
    T_EQ_INT(a.want, 20);
}

static void test_claim_covers_tokens_past_the_grant(void)
{
    /* tpm: the reported usage exceeded the estimate, used > granted */
    llmr_lease_view v = view(1000, 300, 340, 0, 0, 3);
    llmr_lease_ask a;

    T_EQ_INT(llmr_lease_claim(&v), 340);
    llmr_lease_plan(&v, &a);
    T_CHECK(a.floor >= 340);
}

static void test_fallback_share(void)
{
    llmr_lease_view v = view(3000, 0, 0, 0, 0, 3);

    T_EQ_INT(llmr_lease_fallback(&v), 1000);
    v = view(3000, 1500, 10, 0, 0, 3);           /* a larger lease is kept */
    T_EQ_INT(llmr_lease_fallback(&v), 1500);
    v = view(3000, 1000, 700, 600, 0, 3);        /* handed-back units stay out */
    T_EQ_INT(llmr_lease_fallback(&v), 1600);
}

/* Workers: with sync on they spend the grant, nothing without one. */
static void test_admission_spends_grant(void)
{
    static llmr_slot s;
    llmr_limits l = { .rpm = 60, .sync = 1 };
    int64_t now = 1796000000000LL;
    uint32_t m = llmr_minute_of(now);

    memset(&s, 0, sizeof(s));
    T_EQ_INT(llmr_counters_admit(&s, &l, -1, 1, now), LLMR_LIMIT_RPM);   /* no grant */
    T_EQ_INT(llmr_counters_check(&s, &l, 1, now), LLMR_LIMIT_RPM);
    llmr_sync_word_set(&s.rpm_grant[m & 1], m, 2);
    T_EQ_INT(llmr_counters_admit(&s, &l, -1, 1, now), LLMR_LIMIT_NONE);
    T_EQ_INT(llmr_counters_admit(&s, &l, -1, 1, now), LLMR_LIMIT_NONE);
    T_EQ_INT(llmr_counters_admit(&s, &l, -1, 1, now), LLMR_LIMIT_RPM);
    /* last minute's grant does not count */
    llmr_sync_word_set(&s.rpm_grant[(m + 1) & 1], m - 1, 50);
    T_EQ_INT(llmr_counters_admit(&s, &l, -1, 1, now), LLMR_LIMIT_RPM);
    /* the hand-back CAS fails once the workers spent the grant */
    T_EQ_INT(llmr_window_try_add(&s.rpm_window, m, 1, 2), -1);
    /* max_parallel: the host's share */
    l = (llmr_limits){ .max_parallel = 9, .sync = 1 };
    memset(&s, 0, sizeof(s));
    T_EQ_INT(llmr_counters_admit(&s, &l, -1, 1, now), LLMR_LIMIT_PARALLEL);
    atomic_store(&s.par_grant, 1);
    T_EQ_INT(llmr_counters_admit(&s, &l, -1, 1, now), LLMR_LIMIT_NONE);
    T_EQ_INT(llmr_counters_admit(&s, &l, -1, 1, now), LLMR_LIMIT_PARALLEL);
    /* sync off: the grants are not read */
    l = (llmr_limits){ .rpm = 1 };
    memset(&s, 0, sizeof(s));
    T_EQ_INT(llmr_counters_admit(&s, &l, -1, 1, now), LLMR_LIMIT_NONE);
}

static void test_conf_keys(void)
{
    llmr_conf *c = LOAD_OK(ML "router_settings = { redis_host = \"10.0.0.5\"; redis_port = 6380;"
                           " redis_prefix = \"team-a\"; redis_sync_interval_ms = 50; };\n");

    if (c != NULL) {
        T_EQ_INT(c->sync, 1);
        T_EQ_STR(c->redis_host, "10.0.0.5");
        T_EQ_INT(c->redis_port, 6380);
        T_EQ_STR(c->redis_prefix, "team-a");
        T_EQ_INT(c->redis_sync_interval_ms, 50);
        llmr_conf_free(c);
    }
    c = LOAD_OK(ML);
    if (c != NULL) {
        T_EQ_INT(c->sync, 0);
        T_EQ_STR(c->redis_prefix, "llmroute");
        T_EQ_INT(c->redis_sync_interval_ms, 100);
        llmr_conf_free(c);
    }
    c = LOAD_OK(ML "router_settings = { redis_url = \"rediss://:pw@cache:6390/2\"; };\n");
    if (c != NULL) {
        T_EQ_INT(c->sync, 1);
        llmr_conf_free(c);
    }
}

static void test_conf_errors(void)
{
    EXPECT_ERR(ML "router_settings = {\n redis_port = 0; };\n", 3,
               "router_settings.redis_port", "");
    EXPECT_ERR(ML "router_settings = {\n redis_url = \"http://x\"; };\n", 3,
               "router_settings.redis_url", "must start with redis:// or rediss://");
    EXPECT_ERR(ML "router_settings = {\n redis_prefix = \"a b\"; };\n", 3,
               "router_settings.redis_prefix", "printable");
    EXPECT_ERR(ML "router_settings = {\n redis_sync_interval_ms = 5; };\n", 3,
               "router_settings.redis_sync_interval_ms", "");
    EXPECT_ERR(ML "router_settings = {\n redis_host = \"\"; };\n", 3,
               "router_settings.redis_host", "host name");
    EXPECT_ERR(ML "router_settings = {\n redis_password = \"os.environ/LLMR_NO_SUCH_VAR\"; };\n",
               3, "router_settings.redis_password", "is not set");
}

int main(void)
{
    T_RUN(test_grant_never_passes_limit);
    T_RUN(test_share);
    T_RUN(test_plan_first_lease_is_the_share);
    T_RUN(test_plan_refills_before_running_out);
    T_RUN(test_plan_hands_back_when_hosts_grow);
    T_RUN(test_plan_tops_up_below_share);
    T_RUN(test_claim_covers_tokens_past_the_grant);
    T_RUN(test_fallback_share);
    T_RUN(test_admission_spends_grant);
    T_RUN(test_conf_keys);
    T_RUN(test_conf_errors);
    return T_DONE();
}
