/* GET /health and the per-group part of /health/readiness (issue 12, item
 * 3): what the health prober (master/prober.c) last found, read from the
 * segment.  LiteLLM's shape; a deployment's key never appears, only its
 * group, model, id and api_base. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "json.h"
#include "worker_internal.h"

/* Adds "key":"s" (escaped) to b. */
static void add_str(struct evbuffer *b, const char *key, const char *s)
{
    evbuffer_add_printf(b, "\"%s\":", key);
    llmr_json_add_str(b, s);
}

static void add_endpoint(struct evbuffer *b, const llmr_conf *c, const llmr_deployment *d,
                         const llmr_health_view *v, int first)
{
    evbuffer_add_printf(b, "%s{", first ? "" : ",");
    add_str(b, "model", d->model);
    evbuffer_add(b, ",", 1);
    add_str(b, "model_name", c->groups[d->group].name);
    evbuffer_add(b, ",", 1);
    add_str(b, "model_id", d->id);
    evbuffer_add(b, ",", 1);
    add_str(b, "api_base", d->api_base);
    if (v->checked_ms > 0)
        evbuffer_add_printf(b, ",\"latency_ms\":%.1f,\"last_checked\":%.3f",
                            (double)v->latency_us / 1000.0, (double)v->checked_ms / 1000.0);
    if (v->state == LLMR_SLOT_UNHEALTHY) {
        evbuffer_add(b, ",", 1);
        add_str(b, "error", v->error);
    }
    evbuffer_add(b, "}", 1);
}

/* One list: the deployments in health state `state`; returns their count. */
static int add_list(struct evbuffer *b, llmr_worker *w, const char *name, uint32_t state)
{
    const llmr_conf *c = w->conf;
    int n = 0;

    evbuffer_add_printf(b, "\"%s\":[", name);
    for (int i = 0; i < c->ndeployments; i++) {
        llmr_health_view v;
        if (c->deployments[i].slot < 0)
            continue;
        llmr_health_read(llmr_shm_slot(w->shm, c->deployments[i].slot), &v);
        if (v.state != state)
            continue;
        add_endpoint(b, c, &c->deployments[i], &v, n == 0);
        n++;
    }
    evbuffer_add(b, "]", 1);
    return n;
}

void llmr_health_reply(llmr_worker *w, struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    int ok, bad, unknown;

    if (b == NULL) {
        llmr_http_reply_json(w, req, 500, "{}", 2);
        return;
    }
    evbuffer_add(b, "{", 1);
    ok = add_list(b, w, "healthy_endpoints", LLMR_SLOT_HEALTHY);
    evbuffer_add(b, ",", 1);
    bad = add_list(b, w, "unhealthy_endpoints", LLMR_SLOT_UNHEALTHY);
    evbuffer_add(b, ",", 1);
    unknown = add_list(b, w, "unchecked_endpoints", LLMR_SLOT_HEALTH_UNKNOWN);
    evbuffer_add_printf(b, ",\"healthy_count\":%d,\"unhealthy_count\":%d,"
                        "\"unchecked_count\":%d,\"background_health_checks\":%s,"
                        "\"health_check_interval\":%g,\"prober_pid\":%d}", ok, bad, unknown,
                        w->conf->background_health_checks ? "true" : "false",
                        w->conf->health_check_interval,
                        (int)atomic_load(&w->shm->seg->hdr.prober_pid));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    llmr_http_reply(w, req, 200, b);
    evbuffer_free(b);
}

/* Whether a deployment of group g can take a request now: not cooling
 * down and, when health-check routing is on, not found unhealthy. */
static int group_usable(llmr_worker *w, const llmr_group *g, int64_t now)
{
    int health = w->conf->background_health_checks && w->conf->enable_health_check_routing;

    for (int k = 0; k < g->ndeployments; k++) {
        const llmr_deployment *d = &w->conf->deployments[g->deployments[k]];
        const llmr_slot *s;
        if (d->slot < 0)
            continue;
        s = llmr_shm_slot(w->shm, d->slot);
        if (llmr_cooldown_left_ms(s, now) == 0 && !(health && llmr_health_bad(s)))
            return 1;
    }
    return 0;
}

void llmr_health_groups_json(llmr_worker *w, struct evbuffer *b)
{
    const llmr_conf *c = w->conf;
    int64_t now = llmr_wall_ms();

    evbuffer_add(b, "\"groups\":{", 10);
    for (int g = 0; g < c->ngroups; g++) {
        if (g > 0)
            evbuffer_add(b, ",", 1);
        llmr_json_add_str(b, c->groups[g].name);
        evbuffer_add_printf(b, ":{\"usable\":%s}",
                            group_usable(w, &c->groups[g], now) ? "true" : "false");
    }
    evbuffer_add(b, "}", 1);
}
