/* The order in which one request tries model groups and how long it waits
 * between attempts (DESIGN.md §7): plan[0] is the group asked for; its
 * fallbacks are appended once it is spent, each group at most once, so a
 * request can never loop. */
#include <stdlib.h>
#include <string.h>

#include "request.h"

/* Seconds from a Retry-After header (delta-seconds; an HTTP date is not
 * worth parsing for a back-off), or -1. */
int64_t llmr_retry_after_ms(const llmr_request *r)
{
    char *end;
    double v;

    if (!r->at.retry_after[0])
        return -1;
    v = strtod(r->at.retry_after, &end);
    return end != r->at.retry_after && v >= 0 && v < 1e6 ? (int64_t)(v * 1000) : -1;
}

/* How long to wait before the next attempt in the group.  A 429 waits for
 * its Retry-After when 0 < it <= 60 s.  Any other wait doubles at each retry
 * from a base, up to 8 s, with +-25% jitter so that the retries of a burst
 * spread out: 0.5 s after a 429; after another error 100 ms when the retry
 * can only go to a deployment that already failed this request (give it
 * time), 25 ms when a fresh one is left (only spread the burst).
 * router_settings.retry_after is a floor for every retry. */
int64_t llmr_backoff_ms(llmr_request *r, enum llmr_err err, int64_t ra, int fresh)
{
    int64_t floor = (int64_t)(r->w->conf->retry_after * 1000), wait;
    int step = r->plan.backoff_step < 10 ? r->plan.backoff_step : 10;

    if (err == LLMR_ERR_RATE_LIMIT && ra > 0 && ra <= 60000) {
        wait = ra;
    } else {
        wait = (err == LLMR_ERR_RATE_LIMIT ? 500LL : fresh ? 25LL : 100LL) << step;
        wait = wait < 8000 ? wait : 8000;
        wait += (int64_t)(llmr_rand(r->w) % (uint64_t)(wait / 2 + 1)) - wait / 4;
        r->plan.backoff_step++;
    }
    return wait > floor ? wait : floor;
}

/* How long a failure past allowed_fails cools its deployment: cooldown_time,
 * or a 429's Retry-After when longer, never past max_cooldown_time.  The
 * last deployment of its group that is not cooling gets its Retry-After
 * when it has one, even a shorter one: the upstream said when it takes
 * requests again, and any longer takes the whole group out (LiteLLM does
 * not cool a group's only deployment at all).  0: no cooldown. */
int64_t llmr_cooldown_ms(const llmr_conf *conf, int64_t ra, int last)
{
    int64_t base = (int64_t)(conf->cooldown_time * 1000);
    int64_t cap = (int64_t)(conf->max_cooldown_time * 1000), ms;

    if (base <= 0)
        return 0;               /* cooldown_time = 0 disables cooldowns */
    if (ra >= 0 && last)
        ms = ra;
    else
        ms = ra > base ? ra : base;
    return ms < cap ? ms : cap;
}

/* Appends the groups of `list`'s entry for group g that the plan does not
 * hold yet.  Returns how many were added. */
static int plan_append(llmr_request *r, const llmr_fallback_list *list, int g)
{
    const llmr_conf *conf = r->w->conf;
    char *const *names = NULL;
    int n = 0, added = 0;

    for (int i = 0; i < list->n; i++)
        if (strcmp(list->items[i].model, conf->groups[g].name) == 0) {
            names = list->items[i].fallbacks;
            n = list->items[i].nfallbacks;
        }
    if (list == &conf->fallbacks && names == NULL) {
        names = conf->default_fallbacks;
        n = conf->ndefault_fallbacks;
    }
    for (int i = 0; i < n && r->plan.ngroups < LLMR_PLAN_MAX; i++) {
        int fg = llmr_conf_find_group(conf, names[i], strlen(names[i])), seen = 0;
        for (int k = 0; k < r->plan.ngroups; k++)
            seen |= r->plan.group[k] == fg;
        if (fg >= 0 && !seen) {
            r->plan.group[r->plan.ngroups++] = fg;
            added++;
        }
    }
    return added;
}

/* Appends a request's own list of groups (its controls), each once. */
static void plan_append_own(llmr_request *r, const int *groups, int n)
{
    for (int i = 0; i < n && r->plan.ngroups < LLMR_PLAN_MAX; i++) {
        int seen = 0;
        for (int k = 0; k < r->plan.ngroups; k++)
            seen |= r->plan.group[k] == groups[i];
        if (!seen)
            r->plan.group[r->plan.ngroups++] = groups[i];
    }
}

/* Moves to the next group of the plan with fresh per-group state.
 * Returns 0 when the plan is spent. */
int llmr_plan_next(llmr_request *r)
{
    if (!r->plan.fallbacks_added) {
        r->plan.fallbacks_added = 1;
        if (r->ctl.has_fallbacks)       /* the request's own replace the config's */
            plan_append_own(r, r->ctl.fallbacks, r->ctl.nfallbacks);
        else
            plan_append(r, &r->w->conf->fallbacks, r->plan.group[0]);
    }
    if (r->plan.pos + 1 >= r->plan.ngroups)
        return 0;       /* pos stays on the last group tried, for the headers */
    r->plan.pos++;
    r->plan.nfailed = 0;
    r->plan.group_attempts = 0;
    r->plan.backoff_step = 0;
    return 1;
}

/* Context-window and content-policy errors skip the rest of the group and
 * go to their own fallbacks (of the current group, else of the one asked
 * for); the general fallbacks no longer apply. */
int llmr_plan_switch(llmr_request *r, const llmr_fallback_list *list)
{
    r->plan.ngroups = r->plan.pos + 1;
    r->plan.fallbacks_added = 1;
    if (list == &r->w->conf->context_window_fallbacks && r->ctl.has_cw_fallbacks) {
        plan_append_own(r, r->ctl.cw_fallbacks, r->ctl.ncw_fallbacks);
        return llmr_plan_next(r);
    }
    if (plan_append(r, list, r->plan.group[r->plan.pos]) == 0 && r->plan.pos > 0)
        plan_append(r, list, r->plan.group[0]);
    return llmr_plan_next(r);
}

/* Whether the current group has a deployment that could take a retry:
 * -1 none, 1 one that has not failed this request, 0 only failed ones. */
int llmr_plan_group_room(llmr_request *r)
{
    llmr_pick_req rq = { .tokens = r->tokens_est, .stream = r->stream,
                         .avoid = r->plan.failed, .navoid = r->plan.nfailed, .op = r->op };
    llmr_pick pick;
    int dep = llmr_router_pick(r->w, r->plan.group[r->plan.pos], &rq, &pick);

    if (dep < 0)
        return -1;
    for (int k = 0; k < r->plan.nfailed; k++)
        if (r->plan.failed[k] == dep)
            return 0;
    return 1;
}

/* Remembers why a group had no deployment, for the answer if nothing else
 * serves: a limit wins over a cooldown, the soonest wait is kept. */
void llmr_plan_note_unavailable(llmr_plan *p, const llmr_pick *pick)
{
    if (p->unavail == LLMR_UNAVAIL_NONE || p->unavail == LLMR_UNAVAIL_CONTEXT
        || (pick->why == LLMR_UNAVAIL_LIMIT && p->unavail == LLMR_UNAVAIL_COOLING)) {
        p->unavail = pick->why;
        p->limit = pick->limit;
        p->unavail_wait_ms = pick->wait_ms;
    } else if (pick->why == p->unavail && pick->wait_ms < p->unavail_wait_ms) {
        p->unavail_wait_ms = pick->wait_ms;
    }
}
