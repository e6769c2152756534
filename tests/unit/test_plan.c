/* Back-off and the fallback plan of one request (worker/plan.c). */
#include "../../worker/plan.c"

#include "t.h"

static llmr_conf conf;
static llmr_worker w = { .conf = &conf, .rng = 42 };
static llmr_group groups[4] = { { "a", NULL, 0 }, { "b", NULL, 0 }, { "c", NULL, 0 },
                                { "big", NULL, 0 } };
static char *a_fb[] = { "b", "c", "a" }, *cw_fb[] = { "big" }, *def_fb[] = { "c" };
static llmr_fallback fb = { "a", a_fb, 3 }, cw = { "a", cw_fb, 1 };

static void setup(void)
{
    memset(&conf, 0, sizeof(conf));
    conf.groups = groups;
    conf.ngroups = 4;
}

static llmr_request *new_call(int group)
{
    static llmr_request c;

    memset(&c, 0, sizeof(c));
    c.w = &w;
    c.plan.group[0] = group;
    c.plan.ngroups = 1;
    return &c;
}

static void test_retry_after_honoured_up_to_60s(void)
{
    llmr_request *c;

    setup();
    c = new_call(0);
    strcpy(c->at.retry_after, "2");
    T_EQ_INT(llmr_retry_after_ms(c), 2000);
    T_EQ_INT(llmr_backoff_ms(c, LLMR_ERR_RATE_LIMIT, 2000, 1), 2000);
    strcpy(c->at.retry_after, "0.5");
    T_EQ_INT(llmr_retry_after_ms(c), 500);
    strcpy(c->at.retry_after, "Wed, 21 Oct 2015 07:28:00 GMT");
    T_EQ_INT(llmr_retry_after_ms(c), -1);
    /* Over 60 s: not honoured, exponential instead (first step 0.5 s +-25%). */
    int64_t b = llmr_backoff_ms(c, LLMR_ERR_RATE_LIMIT, 120000, 1);
    T_CHECK(b >= 375 && b <= 625);
}

static void test_exponential_with_jitter_and_cap(void)
{
    llmr_request *c;
    const int64_t base[] = { 500, 1000, 2000, 4000, 8000, 8000, 8000 };

    setup();
    c = new_call(0);
    for (int i = 0; i < 7; i++) {
        int64_t b = llmr_backoff_ms(c, LLMR_ERR_RATE_LIMIT, -1, 1);
        T_CHECK(b >= base[i] * 3 / 4 && b <= base[i] * 5 / 4);
    }
    /* retry_after is a floor for every retry. */
    conf.retry_after = 1.5;
    c = new_call(0);
    T_EQ_INT(llmr_backoff_ms(c, LLMR_ERR_SERVER, -1, 1), 1500);
    T_EQ_INT(llmr_backoff_ms(c, LLMR_ERR_RATE_LIMIT, 1000, 1), 1500);
}

/* A 5xx, timeout or connection error backs off too (it was retried within
 * a millisecond): 100 ms doubling when only deployments that failed are
 * left, 25 ms doubling when a fresh one is, +-25%, at most 8 s. */
static void test_other_errors_back_off_with_jitter(void)
{
    const enum llmr_err errs[] = { LLMR_ERR_SERVER, LLMR_ERR_TIMEOUT, LLMR_ERR_CONNECTION };
    llmr_request *c;
    int64_t lo = INT64_MAX, hi = 0;

    for (int e = 0; e < 3; e++) {
        setup();
        c = new_call(0);
        for (int i = 0; i < 12; i++) {
            int64_t base = (100LL << i) < 8000 ? 100LL << i : 8000;
            int64_t b = llmr_backoff_ms(c, errs[e], 5000, 0);   /* Retry-After ignored */
            T_CHECK(b >= base * 3 / 4 && b <= base * 5 / 4);
        }
        c = new_call(0);
        for (int i = 0; i < 3; i++) {
            int64_t b = llmr_backoff_ms(c, errs[e], -1, 1);
            T_CHECK(b >= (25LL << i) * 3 / 4 && b <= (25LL << i) * 5 / 4);
        }
    }
    setup();
    for (int i = 0; i < 1000; i++) {    /* the jitter spreads a burst */
        int64_t b = llmr_backoff_ms(new_call(0), LLMR_ERR_SERVER, -1, 0);
        lo = b < lo ? b : lo;
        hi = b > hi ? b : hi;
    }
    T_CHECK(lo < 80 && hi > 120);
}

/* cooldown_time, or a longer Retry-After, never past max_cooldown_time;
 * the group's last usable deployment never longer than its Retry-After. */
static void test_cooldown_length_capped(void)
{
    setup();
    conf.cooldown_time = 5;
    conf.max_cooldown_time = 300;
    T_EQ_INT(llmr_cooldown_ms(&conf, -1, 0), 5000);
    T_EQ_INT(llmr_cooldown_ms(&conf, 2000, 0), 5000);
    T_EQ_INT(llmr_cooldown_ms(&conf, 30000, 0), 30000);
    T_EQ_INT(llmr_cooldown_ms(&conf, 999999000LL, 0), 300000);     /* 11.6 days asked */
    T_EQ_INT(llmr_cooldown_ms(&conf, -1, 1), 5000);
    T_EQ_INT(llmr_cooldown_ms(&conf, 2000, 1), 2000);
    T_EQ_INT(llmr_cooldown_ms(&conf, 0, 1), 0);
    T_EQ_INT(llmr_cooldown_ms(&conf, 999999000LL, 1), 300000);
    conf.cooldown_time = 0;             /* cooldowns off, whatever Retry-After says */
    T_EQ_INT(llmr_cooldown_ms(&conf, 30000, 0), 0);
    T_EQ_INT(llmr_cooldown_ms(&conf, 30000, 1), 0);
}

static void test_fallbacks_in_order_each_group_once(void)
{
    llmr_request *c;

    setup();
    conf.fallbacks.items = &fb;
    conf.fallbacks.n = 1;
    c = new_call(0);
    T_EQ_INT(llmr_plan_next(c), 1);
    T_EQ_INT(c->plan.group[c->plan.pos], 1);           /* b */
    T_EQ_INT(llmr_plan_next(c), 1);
    T_EQ_INT(c->plan.group[c->plan.pos], 2);           /* c; "a" itself is not added again */
    T_EQ_INT(llmr_plan_next(c), 0);
    T_EQ_INT(c->plan.pos, 2);                    /* stays on the last group tried */
    T_EQ_INT(c->plan.ngroups, 3);
}

static void test_default_fallbacks_and_context_window_switch(void)
{
    llmr_request *c;

    setup();
    conf.default_fallbacks = def_fb;
    conf.ndefault_fallbacks = 1;
    c = new_call(1);                        /* b: no entry, so default_fallbacks */
    T_EQ_INT(llmr_plan_next(c), 1);
    T_EQ_INT(c->plan.group[c->plan.pos], 2);

    conf.fallbacks.items = &fb;
    conf.fallbacks.n = 1;
    conf.context_window_fallbacks.items = &cw;
    conf.context_window_fallbacks.n = 1;
    c = new_call(0);
    T_EQ_INT(llmr_plan_switch(c, &conf.context_window_fallbacks), 1);
    T_EQ_INT(c->plan.group[c->plan.pos], 3);           /* big, and the general fallbacks are gone */
    T_EQ_INT(llmr_plan_next(c), 0);
    c = new_call(2);                        /* c has no context-window entry */
    T_EQ_INT(llmr_plan_switch(c, &conf.context_window_fallbacks), 0);
}

int main(void)
{
    T_RUN(test_retry_after_honoured_up_to_60s);
    T_RUN(test_exponential_with_jitter_and_cap);
    T_RUN(test_other_errors_back_off_with_jitter);
    T_RUN(test_cooldown_length_capped);
    T_RUN(test_fallbacks_in_order_each_group_once);
    T_RUN(test_default_fallbacks_and_context_window_switch);
    return T_DONE();
}
