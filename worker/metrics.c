/* GET /metrics: the shared segment in Prometheus' text format (0.0.4).
 * Every worker's counters are already summed in the segment's atomic
 * words, so any worker answers for all of them, without a lock and without
 * asking the others.  Label values come from the config only (deployment
 * ids and group names), never from a client, so the series are bounded. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "errors.h"
#include "version.h"
#include "worker_internal.h"

static int64_t load(const _Atomic int64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* Label values are deployment ids and group names, which the config
 * already limits to printable ASCII without '"', '\\' or spaces
 * (conf_safe_name, id_char): none of the characters the exposition format
 * escapes (\\, " and newline) can occur, so they go out as they are. */

static void head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{deployment="..",model_group=".."  (the caller closes the braces) */
static void series(struct evbuffer *b, const llmr_conf *c, int i, const char *name)
{
    const llmr_deployment *d = &c->deployments[i];

    evbuffer_add_printf(b, "%s{deployment=\"%s\",model_group=\"%s\"", name, d->id,
                        c->groups[d->group].name);
}

/* One family with one sample per deployment: the slot word at `off`. */
static void per_dep(struct evbuffer *b, llmr_worker *w, const char *name, const char *type,
                    const char *help, size_t off)
{
    const llmr_conf *c = w->conf;

    head(b, name, type, help);
    for (int i = 0; i < c->ndeployments; i++) {
        const char *s = (const char *)llmr_shm_slot(w->shm, c->deployments[i].slot);
        series(b, c, i, name);
        evbuffer_add_printf(b, "} %lld\n", (long long)load((const _Atomic int64_t *)(s + off)));
    }
}

_Static_assert(LLMR_ERR_OTHER < LLMR_FAIL_CLASSES,
               "every error class needs a word in the slot's fail_by_class");

static void failures(struct evbuffer *b, llmr_worker *w)
{
    const llmr_conf *c = w->conf;

    head(b, "llmroute_failures_total", "counter",
         "Attempts that failed, by error class.");
    for (int i = 0; i < c->ndeployments; i++) {
        llmr_slot *s = llmr_shm_slot(w->shm, c->deployments[i].slot);
        for (int k = LLMR_ERR_RATE_LIMIT; k <= LLMR_ERR_OTHER; k++) {
            series(b, c, i, "llmroute_failures_total");
            evbuffer_add_printf(b, ",class=\"%s\"} %lld\n", llmr_err_name((enum llmr_err)k),
                                (long long)load(&s->fail_by_class[k]));
        }
    }
}

/* The gauges read at the scrape: cooling now, this minute's usage, limits. */
static void gauges(struct evbuffer *b, llmr_worker *w)
{
    static const char *const names[] = {
        "llmroute_cooling_down", "llmroute_rpm_used", "llmroute_tpm_used",
        "llmroute_rpm_limit", "llmroute_tpm_limit",
    };
    static const char *const helps[] = {
        "1 while the deployment is cooling down (skipped by the router), else 0.",
        "Requests admitted to the deployment this minute.",
        "Tokens counted against the deployment this minute.",
        "The deployment's rpm limit; 0 = none.",
        "The deployment's tpm limit; 0 = none.",
    };
    const llmr_conf *c = w->conf;
    int64_t now = llmr_wall_ms();
    uint32_t minute = llmr_minute_of(now);

    for (size_t f = 0; f < sizeof(names) / sizeof(names[0]); f++) {
        head(b, names[f], "gauge", helps[f]);
        for (int i = 0; i < c->ndeployments; i++) {
            const llmr_deployment *d = &c->deployments[i];
            llmr_slot *s = llmr_shm_slot(w->shm, d->slot);
            long long v = f == 0 ? llmr_cooldown_left_ms(s, now) > 0
                        : f == 1 ? llmr_window_count(&s->rpm_window, minute)
                        : f == 2 ? llmr_window_count(&s->tpm_window, minute)
                        : f == 3 ? d->rpm : d->tpm;
            series(b, c, i, names[f]);
            evbuffer_add_printf(b, "} %lld\n", v);
        }
    }
}

static void histogram(struct evbuffer *b, llmr_worker *w, const char *name, const char *help,
                      size_t off)
{
    const llmr_conf *c = w->conf;
    char bucket[96], sum[96], count[96];

    snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    snprintf(sum, sizeof(sum), "%s_sum", name);
    snprintf(count, sizeof(count), "%s_count", name);
    head(b, name, "histogram", help);
    for (int i = 0; i < c->ndeployments; i++) {
        const char *slot = (const char *)llmr_shm_slot(w->shm, c->deployments[i].slot);
        const llmr_hist *h = (const llmr_hist *)(slot + off);
        int64_t cum = 0;
        for (int k = 0; k <= LLMR_HIST_BOUNDS; k++) {
            cum += load(&h->bucket[k]);
            series(b, c, i, bucket);
            if (k < LLMR_HIST_BOUNDS)
                evbuffer_add_printf(b, ",le=\"%g\"} %lld\n", llmr_hist_bounds_us[k] / 1e6,
                                    (long long)cum);
            else
                evbuffer_add_printf(b, ",le=\"+Inf\"} %lld\n", (long long)cum);
        }
        series(b, c, i, sum);
        evbuffer_add_printf(b, "} %.6f\n", (double)load(&h->sum_us) / 1e6);
        series(b, c, i, count);
        evbuffer_add_printf(b, "} %lld\n", (long long)cum);
    }
}

static void fallbacks(struct evbuffer *b, llmr_worker *w)
{
    const llmr_conf *c = w->conf;

    head(b, "llmroute_fallbacks_total", "counter",
         "Times a request fell back to the model group (its first attempt there).");
    for (int g = 0; g < c->ngroups; g++) {
        int64_t n = 0;
        for (int k = 0; k < c->groups[g].ndeployments; k++)
            n += load(&llmr_shm_slot(w->shm, c->deployments[c->groups[g].deployments[k]].slot)
                           ->fallbacks);
        evbuffer_add_printf(b, "llmroute_fallbacks_total{model_group=\"%s\"} %lld\n",
                            c->groups[g].name, (long long)n);
    }
}

static void process(struct evbuffer *b, llmr_worker *w)
{
    llmr_shm_header *h = &w->shm->seg->hdr;
    int alive = 0;

    for (int i = 0; i < LLMR_WORKER_SLOTS; i++)
        alive += llmr_shm_worker_pid_of(w->shm, i) != 0;
    head(b, "llmroute_workers_alive", "gauge", "Worker processes running (draining ones included).");
    evbuffer_add_printf(b, "llmroute_workers_alive %d\n", alive);
    head(b, "llmroute_worker_respawns_total", "counter", "Workers started again after dying.");
    evbuffer_add_printf(b, "llmroute_worker_respawns_total %lld\n", (long long)load(&h->respawns));
    head(b, "llmroute_reloads_total", "counter", "Configuration reloads, by result.");
    evbuffer_add_printf(b, "llmroute_reloads_total{result=\"ok\"} %lld\n"
                        "llmroute_reloads_total{result=\"failed\"} %lld\n",
                        (long long)load(&h->reloads_ok), (long long)load(&h->reloads_failed));
    head(b, "llmroute_config_generation", "gauge", "The configuration generation served.");
    evbuffer_add_printf(b, "llmroute_config_generation %u\n",
                        atomic_load_explicit(&h->generation, memory_order_relaxed));
    head(b, "llmroute_start_time_seconds", "gauge", "When the master started (unix seconds).");
    evbuffer_add_printf(b, "llmroute_start_time_seconds %lld\n", (long long)h->start_time);
    head(b, "llmroute_build_info", "gauge", "Always 1; the version as a label.");
    evbuffer_add_printf(b, "llmroute_build_info{version=\"%s\"} 1\n", LLMR_VERSION);
}

/* Several hosts (master/sync.c): the sync state, hosts seen, commands,
 * and this host's grants this minute. */
static void sync_metrics(struct evbuffer *b, llmr_worker *w)
{
    llmr_shm_header *h = &w->shm->seg->hdr;
    const llmr_conf *c = w->conf;
    uint32_t st = atomic_load_explicit(&h->sync_state, memory_order_relaxed);
    uint32_t m = llmr_minute_of(llmr_wall_ms());

    head(b, "llmroute_sync_state", "gauge",
         "1 for the multi-host sync state now (off, connecting, shared, local).");
    for (uint32_t k = LLMR_SYNC_OFF; k <= LLMR_SYNC_LOCAL; k++)
        evbuffer_add_printf(b, "llmroute_sync_state{state=\"%s\"} %d\n",
                            llmr_sync_state_name(k), k == st);
    head(b, "llmroute_sync_hosts", "gauge", "llmroute hosts sharing the limits, last seen.");
    evbuffer_add_printf(b, "llmroute_sync_hosts %d\n", (int)atomic_load(&h->sync_hosts));
    head(b, "llmroute_sync_redis_commands_total", "counter",
         "Redis commands the sync process sent, by result.");
    evbuffer_add_printf(b, "llmroute_sync_redis_commands_total{result=\"sent\"} %lld\n"
                        "llmroute_sync_redis_commands_total{result=\"failed\"} %lld\n",
                        (long long)load(&h->sync_commands), (long long)load(&h->sync_errors));
    head(b, "llmroute_sync_rpm_granted", "gauge",
         "Requests this host may send the deployment this minute (its lease).");
    for (int i = 0; i < c->ndeployments; i++) {
        llmr_slot *sl = llmr_shm_slot(w->shm, c->deployments[i].slot);
        series(b, c, i, "llmroute_sync_rpm_granted");
        evbuffer_add_printf(b, "} %u\n", llmr_sync_word(&sl->rpm_grant[m & 1], m));
    }
    head(b, "llmroute_sync_tpm_granted", "gauge",
         "Tokens this host may send the deployment this minute (its lease).");
    for (int i = 0; i < c->ndeployments; i++) {
        llmr_slot *sl = llmr_shm_slot(w->shm, c->deployments[i].slot);
        series(b, c, i, "llmroute_sync_tpm_granted");
        evbuffer_add_printf(b, "} %u\n", llmr_sync_word(&sl->tpm_grant[m & 1], m));
    }
}

/* The response cache's counters, when it is on (README "Response cache"). */
static void cache(struct evbuffer *b, llmr_worker *w)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } rows[] = {
        { "llmroute_cache_hits_total", "counter", "Requests answered from the cache.",
          offsetof(llmr_cache_stats, hits) },
        { "llmroute_cache_misses_total", "counter", "Cacheable requests sent upstream.",
          offsetof(llmr_cache_stats, misses) },
        { "llmroute_cache_coalesced_total", "counter",
          "Requests answered with an identical request's answer (single-flight).",
          offsetof(llmr_cache_stats, coalesced) },
        { "llmroute_cache_bypass_total", "counter", "Requests with cache no-cache.",
          offsetof(llmr_cache_stats, bypass) },
        { "llmroute_cache_stores_total", "counter", "Answers written to the cache.",
          offsetof(llmr_cache_stats, stores) },
        { "llmroute_cache_evictions_total", "counter", "Entries removed to make room.",
          offsetof(llmr_cache_stats, evictions) },
        { "llmroute_cache_expired_total", "counter", "Expired entries purged.",
          offsetof(llmr_cache_stats, expired) },
        { "llmroute_cache_errors_total", "counter",
          "Cache reads and writes that failed (Redis down, no room).",
          offsetof(llmr_cache_stats, errors) },
        { "llmroute_cache_entries", "gauge", "Entries in the local store.",
          offsetof(llmr_cache_stats, entries) },
        { "llmroute_cache_bytes", "gauge", "Bytes of the local store's data pages.",
          offsetof(llmr_cache_stats, bytes) },
    };
    llmr_cache_stats *s = llmr_shm_cache_stats(w->shm);

    if (!w->conf->cache_responses)
        return;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        head(b, rows[i].name, rows[i].type, rows[i].help);
        evbuffer_add_printf(b, "%s %lld\n", rows[i].name,
                            (long long)load((_Atomic int64_t *)((char *)s + rows[i].off)));
    }
}

#define SLOT(f) offsetof(llmr_slot, f)

static void render(struct evbuffer *b, llmr_worker *w)
{
    per_dep(b, w, "llmroute_requests_total", "counter",
            "Attempts sent to the deployment.", SLOT(requests));
    per_dep(b, w, "llmroute_successes_total", "counter",
            "Attempts that succeeded.", SLOT(successes));
    failures(b, w);
    per_dep(b, w, "llmroute_retries_total", "counter",
            "Attempts after the first one of a request in the model group.", SLOT(retries));
    fallbacks(b, w);
    per_dep(b, w, "llmroute_cooldowns_total", "counter",
            "Cooldowns started.", SLOT(cooldowns));
    per_dep(b, w, "llmroute_in_flight", "gauge",
            "Attempts in flight now, across every worker.", SLOT(inflight));
    gauges(b, w);
    per_dep(b, w, "llmroute_prompt_tokens_total", "counter",
            "Prompt tokens the deployment reported.", SLOT(prompt_tokens));
    per_dep(b, w, "llmroute_completion_tokens_total", "counter",
            "Completion tokens the deployment reported.", SLOT(completion_tokens));
    histogram(b, w, "llmroute_latency_seconds",
              "Successful attempts, from sending to the last byte.", SLOT(latency));
    histogram(b, w, "llmroute_time_to_first_token_seconds",
              "Streams, from sending to the first token.", SLOT(ttft));
    histogram(b, w, "llmroute_overhead_seconds",
              "llmroute's own time from a request's arrival to its first attempt.",
              SLOT(overhead));
    process(b, w);
    sync_metrics(b, w);
    cache(b, w);
}

void llmr_metrics_handle(llmr_worker *w, struct evhttp_request *req)
{
    struct evbuffer *b;

    if (!llmr_http_method_ok(req, EVHTTP_REQ_GET)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          llmr_http_allow(EVHTTP_REQ_GET));
        llmr_error_reply(w, req, LLMR_E_METHOD_NOT_ALLOWED, "/metrics");
        return;
    }
    b = evbuffer_new();
    if (b != NULL)
        render(b, w);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    llmr_http_reply(w, req, b != NULL ? 200 : 500, b);
    if (b != NULL)
        evbuffer_free(b);
}

void llmr_metrics_attempt_end(llmr_slot *s, const llmr_admission_end *e)
{
    if (e->outcome == LLMR_OUTCOME_FAILURE)
        llmr_counters_fail_class(s, (int)e->err);
    else if (e->outcome == LLMR_OUTCOME_SUCCESS)
        llmr_hist_add(&s->latency, e->dur_us);
    if (e->retry)
        atomic_fetch_add_explicit(&s->retries, 1, memory_order_relaxed);
    if (e->fallback)
        atomic_fetch_add_explicit(&s->fallbacks, 1, memory_order_relaxed);
    if (e->overhead_us >= 0)
        llmr_hist_add(&s->overhead, e->overhead_us);
}
