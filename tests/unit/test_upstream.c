/* The new-connection gate's bookkeeping (worker/upstream.c): the easy
 * handle -> state map and when a transfer may start a new connection. */
#include "../../worker/upstream.c"

#include "t.h"

#define N 1000

static struct llmr_up up;
static llmr_worker w = { .up = &up };
static up_xfer xs[N];

/* Keys spaced like real handles (a few KB apart), in and out in an order
 * that exercises growth and the backward shift of deletions. */
static void test_map(void)
{
    int ok = 1;

    up.mapcap = 64;
    up.map = calloc(up.mapcap, sizeof(*up.map));
    for (int i = 0; i < N; i++) {
        xs[i].easy = (CURL *)(uintptr_t)(0x7f0000000000ull + (uint64_t)i * 0x1400);
        ok &= map_add(&up, &xs[i]) == 0;
    }
    T_CHECK(ok);
    T_EQ_INT(up.mapn, N);
    T_CHECK(up.mapcap >= 2 * N);
    for (int i = 0; i < N; i += 3)
        map_del(&up, &xs[i]);
    ok = 1;
    for (int i = 0; i < N; i++)
        ok &= xfer_of(&w, xs[i].easy) == (i % 3 == 0 ? NULL : &xs[i]);
    T_CHECK(ok);
    for (int i = 0; i < N; i += 3)
        ok &= map_add(&up, &xs[i]) == 0 && xfer_of(&w, xs[i].easy) == &xs[i];
    T_CHECK(ok);
    T_EQ_INT(up.mapn, N);
    free(up.map);
    memset(&up, 0, sizeof(up));
}

static void test_may_connect(void)
{
    up_origin o = { .conns = 0 };

    up.max_connecting = 2;
    T_CHECK(may_connect(&up, &o));
    o.setup = 2;                    /* two handshakes, no connection yet */
    o.conns = 2;
    T_CHECK(!may_connect(&up, &o));
    o.conns = 3;                    /* one connection is idle: reuse it */
    T_CHECK(may_connect(&up, &o));
    o.ready = 1;                    /* ... unless a transfer holds it */
    T_CHECK(!may_connect(&up, &o));
    o.setup = 1;
    o.ready = 2;                    /* a handshake done: room for another */
    T_CHECK(may_connect(&up, &o));
    up.max_connecting = 0;          /* no limit */
    o.setup = 1000;
    T_CHECK(may_connect(&up, &o));
}

int main(void)
{
    T_RUN(test_map);
    T_RUN(test_may_connect);
    return T_DONE();
}
