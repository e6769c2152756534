/* Picking a deployment inside a model group (DESIGN.md §7).
 *
 * First the candidates: deployments that are not cooling down, whose
 * max_input_tokens fits the prompt and whose limits (rpm, tpm,
 * max_parallel_requests, read from the shared windows) admit one more
 * request; of those, the ones that have not failed this request when there
 * is any, and of those the lowest `order`.  Then the strategy picks one, and
 * the pick is admitted atomically against every worker; a deployment that
 * another worker filled in the meantime is dropped and the strategy picks
 * again. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "worker_internal.h"

/* splitmix64: tiny, fast, and good enough to spread load. */
uint64_t llmr_rand(llmr_worker *w)
{
    uint64_t z = (w->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rand_unit(llmr_worker *w)
{
    return (double)(llmr_rand(w) >> 11) * 0x1.0p-53;
}

static void group_weights(const llmr_conf *c, const llmr_group *g, double *weight)
{
    int any_weight = 0, all_rpm = 1, all_tpm = 1;

    for (int k = 0; k < g->ndeployments; k++) {
        const llmr_deployment *d = &c->deployments[g->deployments[k]];
        any_weight |= d->weight > 0;
        all_rpm &= d->rpm > 0;
        all_tpm &= d->tpm > 0;
    }
    for (int k = 0; k < g->ndeployments; k++) {
        int i = g->deployments[k];
        const llmr_deployment *d = &c->deployments[i];
        if (any_weight)
            weight[i] = d->weight > 0 ? d->weight : 1.0;
        else if (all_rpm)
            weight[i] = (double)d->rpm;
        else if (all_tpm)
            weight[i] = (double)d->tpm;
        else
            weight[i] = 1.0;
    }
}

/* Cooldowns survive a reload in the segment: one set before it (by an
 * older cap, or none) ends no later than this config's max_cooldown_time,
 * and at once when this config disables cooldowns. */
static void cap_cooldowns(llmr_worker *w)
{
    const llmr_conf *c = w->conf;
    int64_t until = llmr_wall_ms()
                  + (c->cooldown_time > 0 ? (int64_t)(c->max_cooldown_time * 1000) : 0);

    for (int i = 0; i < c->ndeployments; i++)
        if (c->deployments[i].slot >= 0)
            llmr_cooldown_clamp(llmr_shm_slot(w->shm, c->deployments[i].slot), until);
}

int llmr_router_init(llmr_worker *w)
{
    const llmr_conf *c = w->conf;

    w->rng = ((uint64_t)getpid() << 32) ^ (uint64_t)llmr_clock_us() ^ (uint64_t)w->index;
    w->router.weight = calloc((size_t)c->ndeployments, sizeof(double));
    w->router.cand = calloc((size_t)c->ndeployments, sizeof(int));
    w->router.limits = calloc((size_t)c->ndeployments, sizeof(llmr_limits));
    if (w->router.weight == NULL || w->router.cand == NULL || w->router.limits == NULL)
        return -1;
    for (int g = 0; g < c->ngroups; g++)
        group_weights(c, &c->groups[g], w->router.weight);
    cap_cooldowns(w);
    for (int i = 0; i < c->ndeployments; i++) {
        w->router.limits[i].rpm = c->deployments[i].rpm;
        w->router.limits[i].tpm = c->deployments[i].tpm;
        w->router.limits[i].max_parallel = c->deployments[i].max_parallel_requests;
        w->router.limits[i].sync = c->sync;
    }
    return 0;
}

void llmr_router_free(llmr_worker *w)
{
    free(w->router.weight);
    w->router.weight = NULL;
    free(w->router.cand);
    w->router.cand = NULL;
    free(w->router.limits);
    w->router.limits = NULL;
}

static llmr_slot *slot_of(llmr_worker *w, int i)
{
    return llmr_shm_slot(w->shm, w->conf->deployments[i].slot);
}

static int listed(int i, const int *list, int n)
{
    for (int k = 0; k < n; k++)
        if (list[k] == i)
            return 1;
    return 0;
}

static int pick_shuffle(llmr_worker *w, const int *cand, int n)
{
    double total = 0, r;

    for (int k = 0; k < n; k++)
        total += w->router.weight[cand[k]];
    if (total <= 0)
        return (int)(llmr_rand(w) % (uint64_t)n);
    r = rand_unit(w) * total;
    for (int k = 0; k < n; k++) {
        r -= w->router.weight[cand[k]];
        if (r < 0)
            return k;
    }
    return n - 1;           /* rounding left r just above zero */
}

/* The candidate with the lowest metric, ties broken at random so that equal
 * deployments share the load. */
static int pick_lowest(llmr_worker *w, const int64_t *metric, int n)
{
    int best = 0, ties = 1;

    for (int k = 1; k < n; k++) {
        if (metric[k] < metric[best]) {
            best = k;
            ties = 1;
        } else if (metric[k] == metric[best] && llmr_rand(w) % (uint64_t)++ties == 0) {
            best = k;
        }
    }
    return best;
}

/* latency-based-routing: unmeasured deployments first (so every one gets
 * measured), else at random among those within lowest_latency_buffer (a
 * fraction) of the lowest EWMA: time to first token for streams, the whole
 * response otherwise. */
static int pick_latency(llmr_worker *w, const int64_t *metric, int n)
{
    int64_t best = -1;
    int within = 0, chosen = 0;
    double limit;

    for (int k = 0; k < n; k++)
        if (metric[k] == 0)
            return pick_lowest(w, metric, n);
    for (int k = 0; k < n; k++)
        best = best < 0 || metric[k] < best ? metric[k] : best;
    limit = (double)best * (1.0 + w->conf->lowest_latency_buffer);
    for (int k = 0; k < n; k++)
        if ((double)metric[k] <= limit && llmr_rand(w) % (uint64_t)++within == 0)
            chosen = k;
    return chosen;
}

/* Index into cand[0..n) chosen by the configured strategy. */
static int strategy_pick(llmr_worker *w, const int *cand, int n, int stream)
{
    int64_t metric[64], *m = metric;
    uint32_t minute = llmr_minute_of(llmr_wall_ms());
    int k, r;

    if (w->conf->routing_strategy == LLMR_STRATEGY_SIMPLE_SHUFFLE)
        return pick_shuffle(w, cand, n);
    if (n > 64 && (m = malloc(sizeof(int64_t) * (size_t)n)) == NULL)
        return pick_shuffle(w, cand, n);
    for (k = 0; k < n; k++) {
        llmr_slot *s = slot_of(w, cand[k]);
        switch (w->conf->routing_strategy) {
        case LLMR_STRATEGY_LEAST_BUSY:
            m[k] = atomic_load_explicit(&s->inflight, memory_order_relaxed);
            if (w->conf->sync)      /* plus the other hosts', as last merged */
                m[k] += atomic_load_explicit(&s->fleet_inflight, memory_order_relaxed);
            break;
        case LLMR_STRATEGY_USAGE_BASED:
            m[k] = llmr_window_count(&s->tpm_window, minute);
            if (w->conf->sync)      /* the whole fleet's, merged by master/sync.c */
                m[k] = llmr_sync_fleet_count(&s->fleet_tpm, minute, m[k]);
            break;
        default:
            m[k] = atomic_load_explicit(stream ? &s->ttft_ewma_us : &s->latency_ewma_us,
                                        memory_order_relaxed);
            if (w->conf->sync)
                m[k] = llmr_sync_fleet_latency(stream ? &s->fleet_ttft_ewma_us
                                                      : &s->fleet_latency_ewma_us, m[k]);
        }
    }
    r = w->conf->routing_strategy == LLMR_STRATEGY_LATENCY_BASED ? pick_latency(w, m, n)
                                                                 : pick_lowest(w, m, n);
    if (m != metric)
        free(m);
    return r;
}

/* With enable_health_check_routing, deployments the prober found
 * unhealthy are no candidates, unless every one of the group is: then the
 * group routes to all, as LiteLLM does. */
static int skip_unhealthy(llmr_worker *w, const llmr_group *g)
{
    if (!w->conf->enable_health_check_routing || !w->conf->background_health_checks)
        return 0;
    for (int k = 0; k < g->ndeployments; k++)
        if (!llmr_health_bad(slot_of(w, g->deployments[k])))
            return 1;
    return 0;
}

/* Fills w->router.cand with the candidates (see the top of this file);
 * returns their number, and on 0 why none in *out. */
static int candidates(llmr_worker *w, const llmr_group *g, const llmr_pick_req *rq,
                      llmr_pick *out)
{
    int64_t now = llmr_wall_ms();
    int n = 0, fresh = 0, context = 0, limited = 0, cooling = 0, best_order = INT_MAX;
    int unhealthy = skip_unhealthy(w, g);

    out->wait_ms = 0;
    for (int k = 0; k < g->ndeployments; k++) {
        int i = g->deployments[k];
        const llmr_deployment *d = &w->conf->deployments[i];
        int64_t left = llmr_cooldown_left_ms(slot_of(w, i), now);
        enum llmr_limit lim;

        if (left > 0) {
            cooling++;
            out->wait_ms = out->wait_ms == 0 || left < out->wait_ms ? left : out->wait_ms;
            continue;
        }
        if (rq->op == LLMR_OP_RESPONSES && d->no_responses)
            continue;               /* model_info.supports_responses = false */
        if (unhealthy && llmr_health_bad(slot_of(w, i)))
            continue;
        if (d->max_input_tokens > 0 && rq->tokens > d->max_input_tokens) {
            context++;
            continue;
        }
        if ((lim = llmr_counters_check(slot_of(w, i), &w->router.limits[i], rq->tokens, now))) {
            limited++;
            out->limit = lim;
            continue;
        }
        if (!listed(i, rq->avoid, rq->navoid)) {    /* fresh ones first */
            w->router.cand[n++] = w->router.cand[fresh];
            w->router.cand[fresh++] = i;
        } else {
            w->router.cand[n++] = i;
        }
    }
    if (fresh > 0)
        n = fresh;
    /* Lowest order wins; an unset order (0) comes after every set one. */
    for (int k = 0; k < n; k++) {
        int o = w->conf->deployments[w->router.cand[k]].order;
        best_order = o > 0 && o < best_order ? o : best_order;
    }
    if (best_order != INT_MAX) {
        int kept = 0;
        for (int k = 0; k < n; k++)
            if (w->conf->deployments[w->router.cand[k]].order == best_order)
                w->router.cand[kept++] = w->router.cand[k];
        n = kept;
    }
    if (n == 0) {
        out->why = limited ? LLMR_UNAVAIL_LIMIT : cooling ? LLMR_UNAVAIL_COOLING
                 : context ? LLMR_UNAVAIL_CONTEXT : LLMR_UNAVAIL_COOLING;
        if (out->why == LLMR_UNAVAIL_LIMIT)     /* until the minute rolls over */
            out->wait_ms = out->limit == LLMR_LIMIT_PARALLEL ? 1000 : 60000 - now % 60000;
    }
    return n;
}

/* The index of rq->prefer among the candidates, or -1. */
static int preferred(llmr_worker *w, const llmr_pick_req *rq, int n)
{
    for (int k = 0; rq->prefer > 0 && k < n; k++)
        if (w->router.cand[k] == rq->prefer - 1)
            return k;
    return -1;
}

int llmr_router_pick(llmr_worker *w, int group, const llmr_pick_req *rq, llmr_pick *out)
{
    int n;

    memset(out, 0, sizeof(*out));
    out->dep = -1;
    n = candidates(w, &w->conf->groups[group], rq, out);
    while (n > 0) {
        int k = preferred(w, rq, n), i;

        if (k < 0)
            k = strategy_pick(w, w->router.cand, n, rq->stream);
        i = w->router.cand[k];
        enum llmr_limit lim;

        if (!rq->reserve) {
            out->dep = i;
            return i;
        }
        lim = llmr_counters_admit(slot_of(w, i), &w->router.limits[i], w->wslot, rq->tokens,
                                  llmr_wall_ms());
        if (lim == LLMR_LIMIT_NONE) {
            out->dep = i;
            return i;
        }
        /* Another worker took the last place: drop it, pick again. */
        w->router.cand[k] = w->router.cand[--n];
        out->limit = lim;
    }
    if (out->dep < 0 && n == 0 && out->why == LLMR_UNAVAIL_NONE) {
        out->why = LLMR_UNAVAIL_LIMIT;
        out->wait_ms = out->limit == LLMR_LIMIT_PARALLEL ? 1000 : 60000 - llmr_wall_ms() % 60000;
    }
    return -1;
}

/* Whether every other deployment of dep's group is cooling down. */
static int last_usable(llmr_worker *w, int dep, int64_t now)
{
    const llmr_group *g = &w->conf->groups[w->conf->deployments[dep].group];

    for (int k = 0; k < g->ndeployments; k++) {
        int i = g->deployments[k];
        if (i != dep && llmr_cooldown_left_ms(slot_of(w, i), now) == 0)
            return 0;
    }
    return 1;
}

/* The one call by which an admission ends (see worker_internal.h). */
int64_t llmr_router_end(llmr_worker *w, int dep, const llmr_admission_end *e)
{
    llmr_slot *s = slot_of(w, dep);
    const llmr_conf *conf = w->conf;
    int64_t now = llmr_wall_ms(), cool;

    if (e->unadmit) {
        llmr_counters_unadmit(s, w->wslot, e->tokens_est, e->t_admit_ms);
        return 0;
    }
    llmr_counters_attempt_end(s, w->wslot, e->outcome, e->dur_us);
    llmr_metrics_attempt_end(s, e);
    if (e->outcome == LLMR_OUTCOME_SUCCESS) {
        if (e->latency)
            llmr_ewma_add(&s->latency_ewma_us, e->dur_us);
        llmr_counters_add_usage(s, e->prompt, e->completion);
    }
    /* A failed or abandoned attempt used no tokens of the deployment's tpm. */
    llmr_counters_tokens_used(s, e->tokens_est, e->prompt + e->completion, e->t_admit_ms, now);
    if (e->outcome != LLMR_OUTCOME_FAILURE || !llmr_err_retryable(e->err))
        return 0;
    cool = llmr_cooldown_ms(conf, e->err == LLMR_ERR_RATE_LIMIT ? e->retry_after_ms : -1,
                            last_usable(w, dep, now));
    return llmr_counters_fail(s, conf->allowed_fails, cool, 0, now) ? cool : 0;
}
