/* simple-shuffle weighting, avoiding failed deployments, skipping cooling
 * ones, least-busy ties. */
#include "../../worker/router.c"

#include "t.h"

static llmr_shm_segment seg;
static llmr_shm shm = { .seg = &seg };
static llmr_deployment deps[4];
static int idx[4] = { 0, 1, 2, 3 };
static llmr_conf conf;
static llmr_group group = { "g", idx, 4 };

static void setup(int n)
{
    memset(deps, 0, sizeof(deps));
    memset(&seg, 0, sizeof(seg));
    memset(&conf, 0, sizeof(conf));
    for (int i = 0; i < n; i++)
        deps[i].slot = i;
    group.ndeployments = n;
    conf.deployments = deps;
    conf.ndeployments = n;
    conf.groups = &group;
    conf.ngroups = 1;
}

/* Draws n picks and returns each deployment's share. */
static void shares(llmr_worker *w, int n, const int *ex, int nex, double *share)
{
    int count[4] = { 0 };

    for (int i = 0; i < n; i++) {
        llmr_pick_req rq = { .avoid = ex, .navoid = nex };
        llmr_pick pick;
        int p = llmr_router_pick(w, 0, &rq, &pick);
        if (p >= 0)
            count[p]++;
    }
    for (int i = 0; i < 4; i++)
        share[i] = (double)count[i] / n;
}

static void test_weight_wins_and_unset_weight_counts_one(void)
{
    llmr_worker w = { .conf = &conf, .shm = &shm };
    double s[4];

    setup(3);
    deps[0].weight = 1;
    deps[1].weight = 3;
    deps[2].rpm = 1000000;           /* ignored: a weight is set in the group */
    T_EQ_INT(llmr_router_init(&w), 0);
    shares(&w, 100000, NULL, 0, s);
    T_CHECK(s[0] > 0.19 && s[0] < 0.21);
    T_CHECK(s[1] > 0.59 && s[1] < 0.61);
    T_CHECK(s[2] > 0.19 && s[2] < 0.21);
    llmr_router_free(&w);
}

static void test_rpm_then_tpm_then_uniform(void)
{
    llmr_worker w = { .conf = &conf, .shm = &shm };
    double s[4];

    setup(2);
    deps[0].rpm = 100;
    deps[1].rpm = 300;
    T_EQ_INT(llmr_router_init(&w), 0);
    shares(&w, 100000, NULL, 0, s);
    T_CHECK(s[1] > 0.74 && s[1] < 0.76);
    llmr_router_free(&w);

    setup(2);
    deps[0].rpm = 100;              /* not every deployment has rpm: use tpm */
    deps[0].tpm = 900;
    deps[1].tpm = 100;
    T_EQ_INT(llmr_router_init(&w), 0);
    shares(&w, 100000, NULL, 0, s);
    T_CHECK(s[0] > 0.89 && s[0] < 0.91);
    llmr_router_free(&w);

    setup(4);
    deps[2].tpm = 5;                /* partial tpm: uniform */
    T_EQ_INT(llmr_router_init(&w), 0);
    shares(&w, 100000, NULL, 0, s);
    for (int i = 0; i < 4; i++)
        T_CHECK(s[i] > 0.24 && s[i] < 0.26);
    llmr_router_free(&w);
}

static void test_avoid_failed_then_any(void)
{
    llmr_worker w = { .conf = &conf, .shm = &shm };
    int ex[] = { 0, 2 }, all[] = { 0, 1, 2 };
    double s[4];

    setup(3);
    T_EQ_INT(llmr_router_init(&w), 0);
    shares(&w, 1000, ex, 2, s);
    T_CHECK(s[1] == 1.0);
    /* Every deployment failed already: retry on any of them. */
    shares(&w, 3000, all, 3, s);
    T_CHECK(s[0] > 0.2 && s[1] > 0.2 && s[2] > 0.2);
    llmr_router_free(&w);
}

static void test_cooling_deployments_skipped(void)
{
    llmr_worker w = { .conf = &conf, .shm = &shm };
    int64_t wait = -1, now = llmr_wall_ms();
    double s[4];

    setup(3);
    T_EQ_INT(llmr_router_init(&w), 0);
    atomic_store(&seg.slots[1].cooldown_until_ms, now + 60000);
    shares(&w, 2000, NULL, 0, s);
    T_CHECK(s[1] == 0.0 && s[0] > 0.4 && s[2] > 0.4);
    /* A cooling deployment is skipped even when the others failed. */
    int avoid[] = { 0, 2 };
    shares(&w, 1000, avoid, 2, s);
    T_CHECK(s[1] == 0.0);
    atomic_store(&seg.slots[0].cooldown_until_ms, now + 5000);
    atomic_store(&seg.slots[2].cooldown_until_ms, now + 30000);
    llmr_pick_req rq = { 0 };
    llmr_pick pick;
    T_EQ_INT(llmr_router_pick(&w, 0, &rq, &pick), -1);
    T_EQ_INT(pick.why, LLMR_UNAVAIL_COOLING);
    wait = pick.wait_ms;
    T_CHECK(wait > 4000 && wait <= 5000);       /* the soonest cooldown end */
    atomic_store(&seg.slots[0].cooldown_until_ms, now - 1);   /* expired */
    T_EQ_INT(llmr_router_pick(&w, 0, &rq, &pick), 0);
    llmr_router_free(&w);
}

/* A cooldown left in the segment by an older config (11.6 days from a
 * Retry-After: 999999) ends by the new max_cooldown_time once a worker
 * starts; a shorter one is kept. */
static void test_router_init_caps_old_cooldowns(void)
{
    llmr_worker w = { .conf = &conf, .shm = &shm };
    int64_t now = llmr_wall_ms();

    setup(3);
    conf.cooldown_time = 5;
    conf.max_cooldown_time = 300;
    atomic_store(&seg.slots[0].cooldown_until_ms, now + 999999000LL);
    atomic_store(&seg.slots[1].cooldown_until_ms, now + 10000);
    T_EQ_INT(llmr_router_init(&w), 0);
    T_CHECK(llmr_cooldown_left_ms(&seg.slots[0], now) <= 300000 + 1000);
    T_CHECK(llmr_cooldown_left_ms(&seg.slots[0], now) >= 299000);
    T_EQ_INT(llmr_cooldown_left_ms(&seg.slots[1], now), 10000);
    T_EQ_INT(llmr_cooldown_left_ms(&seg.slots[2], now), 0);
    llmr_router_free(&w);
    conf.cooldown_time = 0;                     /* cooldowns now off: they end */
    T_EQ_INT(llmr_router_init(&w), 0);
    T_EQ_INT(llmr_cooldown_left_ms(&seg.slots[1], llmr_wall_ms()), 0);
    llmr_router_free(&w);
}

static void test_least_busy(void)
{
    llmr_worker w = { .conf = &conf, .shm = &shm };
    double s[4];

    setup(3);
    conf.routing_strategy = LLMR_STRATEGY_LEAST_BUSY;
    T_EQ_INT(llmr_router_init(&w), 0);
    atomic_store(&seg.slots[0].inflight, 5);
    atomic_store(&seg.slots[1].inflight, 2);
    atomic_store(&seg.slots[2].inflight, 2);
    shares(&w, 10000, NULL, 0, s);
    T_CHECK(s[0] == 0.0);
    T_CHECK(s[1] > 0.45 && s[2] > 0.45);   /* ties broken at random */
    int ex[] = { 1, 2 };
    llmr_pick_req rq = { .avoid = ex, .navoid = 2 };
    llmr_pick pick;
    T_EQ_INT(llmr_router_pick(&w, 0, &rq, &pick), 0);
    llmr_router_free(&w);
}

static void test_limits_order_and_context(void)
{
    llmr_worker w = { .conf = &conf, .shm = &shm, .wslot = 0 };
    llmr_pick_req rq = { .reserve = 1 };
    llmr_pick pick;
    double s[4];

    setup(3);
    deps[0].order = 1;
    deps[1].order = 2;              /* deps[2]: no order, used last */
    deps[0].rpm = 2;
    T_EQ_INT(llmr_router_init(&w), 0);
    /* order 1 until its rpm is spent, then order 2, never the unordered. */
    T_EQ_INT(llmr_router_pick(&w, 0, &rq, &pick), 0);
    T_EQ_INT(llmr_router_pick(&w, 0, &rq, &pick), 0);
    T_EQ_INT(llmr_router_pick(&w, 0, &rq, &pick), 1);
    T_EQ_INT(atomic_load(&seg.slots[0].requests), 2);
    /* max_input_tokens: a long prompt skips the small deployment. */
    deps[1].max_input_tokens = 100;
    rq.tokens = 500;
    T_EQ_INT(llmr_router_pick(&w, 0, &rq, &pick), 2);
    deps[2].max_input_tokens = 100;
    T_EQ_INT(llmr_router_pick(&w, 0, &rq, &pick), -1);
    T_EQ_INT(pick.why, LLMR_UNAVAIL_LIMIT);     /* deps[0] is at its rpm: wait, not 400 */
    T_EQ_INT(pick.limit, LLMR_LIMIT_RPM);
    T_CHECK(pick.wait_ms > 0 && pick.wait_ms <= 60000);
    deps[0].max_input_tokens = 100;
    T_EQ_INT(llmr_router_pick(&w, 0, &rq, &pick), -1);
    T_EQ_INT(pick.why, LLMR_UNAVAIL_CONTEXT);   /* too long for all of them */
    llmr_router_free(&w);
    (void)s;
}

static void test_usage_based_and_latency_based(void)
{
    llmr_worker w = { .conf = &conf, .shm = &shm };
    uint32_t minute = llmr_minute_of(llmr_wall_ms());
    double s[4];

    setup(3);
    conf.routing_strategy = LLMR_STRATEGY_USAGE_BASED;
    T_EQ_INT(llmr_router_init(&w), 0);
    llmr_window_add(&seg.slots[0].tpm_window, minute, 500);
    llmr_window_add(&seg.slots[1].tpm_window, minute, 100);
    llmr_window_add(&seg.slots[2].tpm_window, minute, 900);
    shares(&w, 1000, NULL, 0, s);
    T_CHECK(s[1] == 1.0);                       /* fewest tokens this minute */
    llmr_router_free(&w);

    setup(3);
    conf.routing_strategy = LLMR_STRATEGY_LATENCY_BASED;
    T_EQ_INT(llmr_router_init(&w), 0);
    atomic_store(&seg.slots[0].latency_ewma_us, 10000);
    atomic_store(&seg.slots[1].latency_ewma_us, 100000);
    shares(&w, 1000, NULL, 0, s);
    T_CHECK(s[2] == 1.0);                       /* unmeasured first */
    atomic_store(&seg.slots[2].latency_ewma_us, 11000);
    shares(&w, 4000, NULL, 0, s);
    T_CHECK(s[0] == 1.0);                       /* buffer 0: the lowest only */
    conf.lowest_latency_buffer = 0.2;           /* within 20%: 10 ms and 11 ms */
    shares(&w, 4000, NULL, 0, s);
    T_CHECK(s[0] > 0.4 && s[2] > 0.4 && s[1] == 0.0);
    llmr_router_free(&w);
}

int main(void)
{
    T_RUN(test_limits_order_and_context);
    T_RUN(test_usage_based_and_latency_based);
    T_RUN(test_weight_wins_and_unset_weight_counts_one);
    T_RUN(test_rpm_then_tpm_then_uniform);
    T_RUN(test_avoid_failed_then_any);
    T_RUN(test_cooling_deployments_skipped);
    T_RUN(test_router_init_caps_old_cooldowns);
    T_RUN(test_least_busy);
    return T_DONE();
}
