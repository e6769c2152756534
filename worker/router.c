/* Picking a deployment inside a model group.  simple-shuffle draws at
 * random, weighted by `weight` when any deployment of the group sets one
 * (an unset weight counts 1), else by rpm when every deployment sets it,
 * else by tpm likewise, else uniformly. */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

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

int llmr_router_init(llmr_worker *w)
{
    const llmr_conf *c = w->conf;
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    w->rng = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)w->index;
    w->router.weight = calloc((size_t)c->ndeployments, sizeof(double));
    w->router.cand = calloc((size_t)c->ndeployments, sizeof(int));
    if (w->router.weight == NULL || w->router.cand == NULL)
        return -1;
    for (int g = 0; g < c->ngroups; g++)
        group_weights(c, &c->groups[g], w->router.weight);
    return 0;
}

void llmr_router_free(llmr_worker *w)
{
    free(w->router.weight);
    w->router.weight = NULL;
    free(w->router.cand);
    w->router.cand = NULL;
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
        return cand[llmr_rand(w) % (uint64_t)n];
    r = rand_unit(w) * total;
    for (int k = 0; k < n; k++) {
        r -= w->router.weight[cand[k]];
        if (r < 0)
            return cand[k];
    }
    return cand[n - 1];     /* rounding left r just above zero */
}

/* least-busy: fewest in-flight requests across every worker, ties broken
 * at random so that idle deployments share the load. */
static int pick_least_busy(llmr_worker *w, const int *cand, int n)
{
    int best = -1, ties = 0;
    int64_t best_n = 0;

    for (int k = 0; k < n; k++) {
        int i = cand[k];
        int64_t busy = atomic_load_explicit(
            &llmr_shm_slot(w->shm, w->conf->deployments[i].slot)->inflight,
            memory_order_relaxed);
        if (best < 0 || busy < best_n) {
            best = i;
            best_n = busy;
            ties = 1;
        } else if (busy == best_n && llmr_rand(w) % (uint64_t)++ties == 0) {
            best = i;
        }
    }
    return best;
}

/* The group's deployments that are not cooling down, and of those the ones
 * not in avoid[] when there is any. */
static int candidates(llmr_worker *w, const llmr_group *g, const int *avoid, int navoid,
                      int64_t *wait_ms)
{
    int64_t now = llmr_now_ms(), soonest = 0;
    int n = 0, fresh = 0;

    for (int k = 0; k < g->ndeployments; k++) {
        int i = g->deployments[k];
        int64_t left = llmr_cooldown_left_ms(
            llmr_shm_slot(w->shm, w->conf->deployments[i].slot), now);
        if (left > 0) {
            soonest = soonest == 0 || left < soonest ? left : soonest;
            continue;
        }
        if (!listed(i, avoid, navoid)) {    /* fresh ones first */
            w->router.cand[n++] = w->router.cand[fresh];
            w->router.cand[fresh++] = i;
        } else {
            w->router.cand[n++] = i;
        }
    }
    if (wait_ms != NULL)
        *wait_ms = soonest;
    return fresh > 0 ? fresh : n;
}

int llmr_router_pick(llmr_worker *w, int group, const int *avoid, int navoid,
                     int64_t *wait_ms)
{
    int n = candidates(w, &w->conf->groups[group], avoid, navoid, wait_ms);

    if (n == 0)
        return -1;
    if (w->conf->routing_strategy == LLMR_STRATEGY_LEAST_BUSY)
        return pick_least_busy(w, w->router.cand, n);
    return pick_shuffle(w, w->router.cand, n);
}
