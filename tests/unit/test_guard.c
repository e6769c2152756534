/* worker/guard.c's lingering close, on a real socket pair and event loop:
 * each wakeup reads a bounded amount, so a client that keeps the socket
 * full cannot hold the worker in one callback. */
#include "../../worker/guard.c"

#include <sys/ioctl.h>

#include "t.h"

static void nonblocking(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int unread(int fd)
{
    int n = -1;

    ioctl(fd, FIONREAD, &n);
    return n;
}

static void test_linger_reads_are_capped_per_wakeup(void)
{
    static char buf[65536];
    llmr_worker w;
    int sv[2], left, before, wakeups = 0;
    size_t total = 0;
    ssize_t n;

    memset(&w, 0, sizeof(w));
    T_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nonblocking(sv[0]);
    nonblocking(sv[1]);
    while ((n = write(sv[0], buf, sizeof(buf))) > 0)    /* the client fills it */
        total += (size_t)n;
    T_CHECK(total > (size_t)LINGER_READS * 16384);
    T_CHECK((w.base = event_base_new()) != NULL);
    T_EQ_INT(llmr_guard_init(&w), 0);
    llmr_guard_linger(&w, sv[1]);
    T_EQ_INT(w.guard->nlinger, 1);

    before = unread(sv[1]);
    event_base_loop(w.base, EVLOOP_ONCE);
    left = unread(sv[1]);
    T_CHECK(left > 0);                  /* one wakeup did not drain it all */
    T_CHECK(before - left <= LINGER_READS * 16384);
    while (left > 0 && wakeups++ < 1000) {     /* the persistent event fires again */
        event_base_loop(w.base, EVLOOP_ONCE);
        left = unread(sv[1]);
    }
    T_EQ_INT(left, 0);
    T_EQ_INT(w.guard->nlinger, 1);      /* still lingering: no FIN, no deadline yet */
    close(sv[0]);                       /* the client closes: the linger ends */
    event_base_loop(w.base, EVLOOP_ONCE);
    T_EQ_INT(w.guard->nlinger, 0);
    llmr_guard_free(&w);
    close(sv[1]);
    event_base_free(w.base);
}

int main(void)
{
    T_RUN(test_linger_reads_are_capped_per_wakeup);
    return T_DONE();
}
