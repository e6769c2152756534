/* llmroute-route: the cost of one routing decision (pick + atomic admission
 * + release) with 2, 64 and 512 deployments in a group, for each strategy.
 * Runs the real router.c and counters.c on a private segment.  Prints one
 * JSON object: nanoseconds per decision. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker_internal.h"

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double time_picks(llmr_worker *w, int stream, int iters)
{
    llmr_pick_req rq = { .tokens = 50, .stream = stream, .reserve = 1 };
    llmr_pick pick;
    double t0 = now_ns();

    for (int i = 0; i < iters; i++) {
        int d = llmr_router_pick(w, 0, &rq, &pick);
        if (d < 0) {
            fprintf(stderr, "no pick\n");
            exit(1);
        }
        llmr_counters_attempt_end(llmr_shm_slot(w->shm, w->conf->deployments[d].slot),
                                  w->wslot, LLMR_OUTCOME_SUCCESS, 100);
    }
    return (now_ns() - t0) / iters;
}

static void run(int n, int first)
{
    static const enum llmr_strategy strategies[] = {
        LLMR_STRATEGY_SIMPLE_SHUFFLE, LLMR_STRATEGY_LEAST_BUSY, LLMR_STRATEGY_USAGE_BASED,
        LLMR_STRATEGY_LATENCY_BASED };
    llmr_shm_segment *seg = aligned_alloc(LLMR_CACHE_LINE, sizeof(*seg));
    llmr_shm shm = { .seg = seg };
    llmr_deployment *deps = calloc((size_t)n, sizeof(*deps));
    int *idx = calloc((size_t)n, sizeof(int));
    llmr_group g = { "bench", idx, n };
    llmr_conf conf = { .deployments = deps, .ndeployments = n, .groups = &g, .ngroups = 1 };

    memset(seg, 0, sizeof(*seg));
    for (int i = 0; i < n; i++) {
        idx[i] = i;
        deps[i].slot = i;
        deps[i].rpm = 1000000000L;     /* limits checked, never reached */
        deps[i].tpm = 2000000000L;
        atomic_store(&seg->slots[i].latency_ewma_us, 1000 + i % 7);
    }
    printf("%s\"%d\":{", first ? "" : ",", n);
    for (size_t k = 0; k < sizeof(strategies) / sizeof(strategies[0]); k++) {
        llmr_worker w = { .conf = &conf, .shm = &shm, .wslot = 0 };
        conf.routing_strategy = strategies[k];
        if (llmr_router_init(&w) < 0)
            exit(1);
        time_picks(&w, 0, 20000);      /* warm up */
        printf("%s\"%s\":%.0f", k ? "," : "", llmr_strategy_name(strategies[k]),
               time_picks(&w, 0, n >= 512 ? 100000 : 400000));
        llmr_router_free(&w);
    }
    printf("}");
    free(seg);
    free(deps);
    free(idx);
}

int main(void)
{
    printf("{\"ns_per_decision\":{");
    run(2, 1);
    run(64, 0);
    run(512, 0);
    printf("}}\n");
    return 0;
}
