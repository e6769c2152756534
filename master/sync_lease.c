/* Lease arithmetic of the sync process: how much of a deployment's minute
 * quota a host asks for, holds and hands back.  No I/O; the Lua script in
 * sync_limits.c does llmr_lease_grant()'s sum atomically in Redis.
 *
 * A host holds at least its fair share (limit / hosts) of each minute, so
 * that traffic spread over the hosts reaches the limit without waiting on a
 * refill, and more when it spends fast: it refills, before it runs out,
 * from what no host claimed.  It hands back what it holds above that when
 * the hosts grow. */
#include "sync.h"

/* Seconds of this host's recent rate a refill asks for beyond its use. */
#define LEASE_LOOKAHEAD_S 2.0

long llmr_lease_claim(const llmr_lease_view *v)
{
    long top = v->granted > v->used ? (long)v->granted : (long)v->used;

    return top > (long)v->back ? top - (long)v->back : 0;
}

long llmr_lease_share(long limit, int hosts)
{
    long s;

    if (limit <= 0)
        return 0;
    s = limit / (hosts > 1 ? hosts : 1);
    return s > 0 ? s : 1;
}

/* What the host should hold: its share, or its use plus the lookahead
 * when it spends faster. */
static long lease_keep(const llmr_lease_view *v)
{
    long spent = (long)v->used > (long)v->back ? (long)v->used - (long)v->back : 0;
    long ahead = (long)(v->rate * LEASE_LOOKAHEAD_S + 0.999);
    long need = spent + (ahead > 1 ? ahead : 1);
    long share = llmr_lease_share(v->limit, v->hosts);

    need = need < v->limit ? need : v->limit;
    return share > need ? share : need;
}

int llmr_lease_plan(const llmr_lease_view *v, llmr_lease_ask *ask)
{
    long claim = llmr_lease_claim(v), keep = lease_keep(v);
    long remaining = v->granted > v->used ? (long)v->granted - (long)v->used : 0;
    /* Refill while a few intervals of the current rate are left. */
    long low = (long)(v->rate * 3.0 * v->interval_ms / 1000.0 + 0.999);
    long slack = v->limit / 20 > 1 ? v->limit / 20 : 1;

    ask->give_back = 0;
    ask->floor = claim;
    ask->want = claim;
    if (v->granted == 0 || (claim < keep && remaining <= (low > 1 ? low : 1))) {
        ask->want = keep > claim ? keep : claim;
        return 1;
    }
    if (claim < llmr_lease_share(v->limit, v->hosts)) {
        ask->want = keep;       /* below its share: top up from what is free */
        return 2;
    }
    if (claim > keep + slack && remaining > 0) {
        long excess = claim - keep;
        ask->give_back = excess < remaining ? excess : remaining;
        ask->floor = ask->want = claim - ask->give_back;
        return 1;
    }
    return 0;
}

long llmr_lease_grant(long limit, long total, long cur, long floor, long want, int hand_back)
{
    long others = total - cur, room;

    if (!hand_back && cur > floor)
        floor = cur;
    if (want < floor)
        want = floor;
    room = limit - others - floor;
    return floor + (want - floor < room ? want - floor : room > 0 ? room : 0);
}

uint32_t llmr_lease_grant_of(long claim, uint32_t back)
{
    long g = claim + (long)back;

    return g < 0 ? 0 : g > (long)UINT32_MAX ? UINT32_MAX : (uint32_t)g;
}

uint32_t llmr_lease_fallback(const llmr_lease_view *v)
{
    uint32_t g = llmr_lease_grant_of(llmr_lease_share(v->limit, v->hosts), v->back);

    return g > v->granted ? g : v->granted;
}
