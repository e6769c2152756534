/* common/redis.c: URL parsing, and the client against a real redis-server
 * started here (make test installs it): commands, AUTH, a timeout that
 * drops the connection, Redis killed (pending callbacks fail, down is
 * reported once) and restarted (up again by itself). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "clock.h"
#include "redis.h"
#include "t.h"

static void test_parse_url(void)
{
    llmr_redis_opts o;
    char err[128];

    llmr_redis_opts_init(&o);
    T_EQ_INT(llmr_redis_parse_url("redis://cache.example:6380/2", &o, err, sizeof err), 0);
    T_EQ_STR(o.host, "cache.example");
    T_EQ_INT(o.port, 6380);
    T_EQ_INT(o.db, 2);
    T_EQ_INT(o.tls, 0);
    llmr_redis_opts_init(&o);
    T_EQ_INT(llmr_redis_parse_url("rediss://al:p@ss@[::1]:7000", &o, err, sizeof err), 0);
    T_EQ_STR(o.username, "al");
    T_EQ_STR(o.password, "p@ss");
    T_EQ_STR(o.host, "::1");
    T_EQ_INT(o.port, 7000);
    T_EQ_INT(o.tls, 1);
    llmr_redis_opts_init(&o);
    T_EQ_INT(llmr_redis_parse_url("redis://:secret@10.0.0.1", &o, err, sizeof err), 0);
    T_EQ_STR(o.username, "");
    T_EQ_STR(o.password, "secret");
    T_EQ_INT(o.port, 6379);
    T_EQ_INT(llmr_redis_parse_url("http://x", &o, err, sizeof err), -1);
    T_EQ_INT(llmr_redis_parse_url("redis://h:99999", &o, err, sizeof err), -1);
    T_EQ_INT(llmr_redis_parse_url("redis://h:12/x", &o, err, sizeof err), -1);
}

/* ---------------------------------------------------------------- live */

static int free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static pid_t start_redis(int port, const char *pass)
{
    char p[16];
    pid_t pid = fork();

    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        snprintf(p, sizeof p, "%d", port);
        if (pass)
            execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--requirepass", pass, (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Polls until redis-server accepts connections (5 s at most). */
static int listening(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)port) };
    int64_t end = llmr_clock_us() + 5000000;

    while (llmr_clock_us() < end) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
        ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return 1;
        usleep(5000);
    }
    return 0;
}

static void stop_redis(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

typedef struct {
    struct event_base *base;
    int ups, downs, replies, nulls;
    char last[64], why[256];
} live;

static void on_state(llmr_redis *r, int up, const char *why, void *arg)
{
    live *l = arg;

    (void)r;
    snprintf(l->why, sizeof l->why, "%s", why);
    if (up)
        l->ups++;
    else
        l->downs++;
}

static void on_reply(llmr_redis *r, redisReply *y, void *arg)
{
    live *l = arg;

    (void)r;
    if (!y) {
        l->nulls++;
        return;
    }
    l->replies++;
    memset(l->last, 0, sizeof l->last);
    if (y->str)
        memcpy(l->last, y->str, (size_t)y->len < sizeof l->last ? (size_t)y->len : sizeof l->last);
}

/* Runs the loop until *counter reaches want or 5 s pass. */
static int run_until(live *l, const int *counter, int want)
{
    int64_t end = llmr_clock_us() + 5000000;

    while (*counter < want && llmr_clock_us() < end)
        event_base_loop(l->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
    return *counter >= want;
}

static void test_live_commands_auth_kill_restart(void)
{
    int port = free_port();
    pid_t pid = start_redis(port, "pw");
    int up = listening(port);
    live l = { .base = event_base_new() };
    llmr_redis_opts o;
    llmr_redis *r;
    char err[128];

    T_CHECK(up);
    llmr_redis_opts_init(&o);
    o.port = port;
    snprintf(o.password, sizeof o.password, "pw");
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 50;
    r = llmr_redis_new(l.base, &o, on_state, NULL, &l, err, sizeof err);
    T_CHECK(r != NULL);
    T_CHECK(run_until(&l, &l.ups, 1));
    T_EQ_INT(l.downs, 0);
    T_EQ_INT(llmr_redis_cmd(r, on_reply, &l, "SET %s %b", "k", "v\0x", (size_t)3), 0);
    T_EQ_INT(llmr_redis_cmd(r, on_reply, &l, "GET k"), 0);
    T_CHECK(run_until(&l, &l.replies, 2));
    T_EQ_INT(memcmp(l.last, "v\0x", 3), 0);

    /* a command that cannot answer in time (500 ms) drops the connection */
    T_EQ_INT(llmr_redis_cmd(r, on_reply, &l, "BLPOP nothing 3"), 0);
    T_CHECK(run_until(&l, &l.nulls, 1));
    T_EQ_INT(l.downs, 1);
    T_CHECK(run_until(&l, &l.ups, 2));

    stop_redis(pid);
    T_EQ_INT(llmr_redis_cmd(r, on_reply, &l, "GET k"), 0);
    T_CHECK(run_until(&l, &l.nulls, 2));        /* the pending command fails */
    T_CHECK(run_until(&l, &l.downs, 2));
    T_EQ_INT(llmr_redis_cmd(r, on_reply, &l, "GET k"), -1);    /* down: refused */
    pid = start_redis(port, "pw");
    T_CHECK(run_until(&l, &l.ups, 3));
    T_EQ_INT(l.downs, 2);                       /* reported once per loss */
    llmr_redis_free(r);
    stop_redis(pid);
    event_base_free(l.base);
}

static void test_wrong_password_is_down(void)
{
    int port = free_port();
    pid_t pid = start_redis(port, "right");
    int up = listening(port);
    live l = { .base = event_base_new() };
    llmr_redis_opts o;
    llmr_redis *r;
    char err[128];

    T_CHECK(up);
    llmr_redis_opts_init(&o);
    o.port = port;
    snprintf(o.password, sizeof o.password, "wrong");
    o.reconnect_min_ms = 20;
    r = llmr_redis_new(l.base, &o, on_state, NULL, &l, err, sizeof err);
    T_CHECK(r != NULL);
    T_CHECK(run_until(&l, &l.downs, 1));
    T_CONTAINS(l.why, "handshake refused");
    T_EQ_INT(l.ups, 0);
    T_CHECK(!llmr_redis_up(r));
    T_EQ_INT(llmr_redis_cmd(r, on_reply, &l, "PING"), -1);
    llmr_redis_free(r);
    stop_redis(pid);
    event_base_free(l.base);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    T_RUN(test_parse_url);
    T_RUN(test_live_commands_auth_kill_restart);
    T_RUN(test_wrong_password_is_down);
    return T_DONE();
}
