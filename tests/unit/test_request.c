/* The request's state machine (worker/request.c): which transitions are
 * legal, as the LLMR_CHECKS builds enforce them. */
#include "../../worker/request.c"

#include "t.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int may(enum llmr_req_state from, enum llmr_req_state to)
{
    return (legal[from] & (1u << to)) != 0;
}

/* Every live state may finish; a finishing request only becomes done; a
 * done one goes nowhere. */
static void test_every_live_state_finishes_once(void)
{
    static const enum llmr_req_state live[] = { LLMR_REQ_ADMITTED, LLMR_REQ_BACKOFF,
                                                LLMR_REQ_ATTEMPT, LLMR_REQ_STREAMING };
    int ok = 1;

    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
        ok &= may(live[i], LLMR_REQ_REPLYING) && !may(live[i], LLMR_REQ_DONE);
    T_CHECK(ok);
    T_EQ_INT(legal[LLMR_REQ_REPLYING], 1u << LLMR_REQ_DONE);
    T_EQ_INT(legal[LLMR_REQ_DONE], 0);
}

/* A stream that has sent bytes never goes back to trying deployments. */
static void test_streaming_only_ends(void)
{
    T_EQ_INT(legal[LLMR_REQ_STREAMING], 1u << LLMR_REQ_REPLYING);
    T_CHECK(may(LLMR_REQ_ATTEMPT, LLMR_REQ_STREAMING));
    T_CHECK(!may(LLMR_REQ_BACKOFF, LLMR_REQ_STREAMING));
    T_CHECK(!may(LLMR_REQ_ADMITTED, LLMR_REQ_STREAMING));
}

/* Retries: a failed attempt waits or tries again; a wait ends in a pick. */
static void test_retry_paths(void)
{
    T_CHECK(may(LLMR_REQ_ATTEMPT, LLMR_REQ_BACKOFF));
    T_CHECK(may(LLMR_REQ_ATTEMPT, LLMR_REQ_ADMITTED));
    T_CHECK(may(LLMR_REQ_BACKOFF, LLMR_REQ_ADMITTED));
    T_CHECK(!may(LLMR_REQ_BACKOFF, LLMR_REQ_ATTEMPT));
    T_CHECK(may(LLMR_REQ_ADMITTED, LLMR_REQ_ATTEMPT));
}

/* Checked builds (sanitizers, DEBUG=1) stop at an illegal transition;
 * release builds do not pay for the check. */
static void test_illegal_transition_aborts_when_checked(void)
{
    llmr_request r = { .state = LLMR_REQ_DONE };
#ifdef LLMR_CHECKS
    int st = 0;
    pid_t pid = fork();

    if (pid == 0) {
        if (freopen("/dev/null", "w", stderr) == NULL)
            _exit(3);
        llmr_request_set_state(&r, LLMR_REQ_ADMITTED);
        _exit(0);
    }
    T_CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    T_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
#else
    llmr_request_set_state(&r, LLMR_REQ_ADMITTED);
    T_EQ_INT(r.state, LLMR_REQ_ADMITTED);
#endif
}

int main(void)
{
    T_RUN(test_illegal_transition_aborts_when_checked);
    T_RUN(test_every_live_state_finishes_once);
    T_RUN(test_streaming_only_ends);
    T_RUN(test_retry_paths);
    return T_DONE();
}
