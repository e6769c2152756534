/* llmroute-streams: N concurrent SSE streams against one server, checked
 * event by event.  `make bench` uses it to find how many concurrent streams
 * llmroute holds without a lost or stalled chunk.
 *
 *   llmroute-streams -n STREAMS -e EVENTS [-r CONNECTS_PER_S] [-g STALL_MS] \
 *                    -b BODY_FILE PORT PATH
 *
 * Each stream must deliver EVENTS "data:" events (its last one "[DONE]")
 * with no gap between two reads longer than STALL_MS.  Prints one JSON
 * object: completed, lost (short or broken), stalled, peak concurrency,
 * time to the first event p50/p99 and the longest gap between reads. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
    int fd;
    size_t sent;
    int events, done, failed;
    double t_start, t_first, t_last;
    char tail[8];       /* the last bytes of the previous read, for matches */
    size_t ntail;
} conn;

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int open_conn(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;

    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Counts "data:" events in a read, across read boundaries, and [DONE]. */
static void scan(conn *c, const char *buf, size_t n)
{
    char joined[8 + 65536];

    memcpy(joined, c->tail, c->ntail);
    memcpy(joined + c->ntail, buf, n);
    size_t len = c->ntail + n;
    for (size_t i = c->ntail >= 5 ? c->ntail - 4 : 0; i + 5 <= len; i++) {
        if (memcmp(joined + i, "data:", 5) == 0 && i + 5 > c->ntail)
            c->events++;
        if (i + 6 <= len && memcmp(joined + i, "[DONE]", 6) == 0 && i + 6 > c->ntail)
            c->done = 1;
    }
    c->ntail = len < 7 ? len : 7;
    memcpy(c->tail, joined + len - c->ntail, c->ntail);
}

int main(int argc, char **argv)
{
    int n = 1000, expect = 66, rate = 20000, opt, port, ep, open_now = 0, peak = 0;
    int started = 0, finished = 0, completed = 0, lost = 0, stalled = 0;
    double stall_ms = 1000, max_gap = 0, t0;
    const char *body_file = NULL;
    char body[65536], req[70000];
    size_t rlen, blen;
    struct rlimit rl;

    while ((opt = getopt(argc, argv, "n:e:r:g:b:")) != -1) {
        if (opt == 'n') n = atoi(optarg);
        else if (opt == 'e') expect = atoi(optarg);
        else if (opt == 'r') rate = atoi(optarg);
        else if (opt == 'g') stall_ms = atof(optarg);
        else if (opt == 'b') body_file = optarg;
    }
    if (argc - optind != 2 || body_file == NULL || n <= 0) {
        fprintf(stderr, "usage: llmroute-streams -n N -e EVENTS [-r RATE] [-g STALL_MS] "
                        "-b BODY PORT PATH\n");
        return 2;
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = (rlim_t)n + 64;
        if (rl.rlim_max < rl.rlim_cur)
            rl.rlim_max = rl.rlim_cur;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            perror("setrlimit (raise the open-file limit for this many streams)");
    }
    FILE *f = fopen(body_file, "r");
    if (f == NULL || (blen = fread(body, 1, sizeof(body), f)) == 0) {
        perror(body_file);
        return 1;
    }
    fclose(f);
    port = atoi(argv[optind]);
    rlen = (size_t)snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Content-Type: application/json\r\nConnection: close\r\n"
                            "Content-Length: %zu\r\n\r\n", argv[optind + 1], blen);
    memcpy(req + rlen, body, blen);
    rlen += blen;

    conn *cs = calloc((size_t)n, sizeof(conn));
    double *ttfb = calloc((size_t)n, sizeof(double));
    struct epoll_event evs[1024];
    ep = epoll_create1(0);
    t0 = now_ms();
    while (finished < n) {
        /* Open connections at `rate` per second. */
        int due = (int)((now_ms() - t0) * rate / 1000.0) + 1;
        while (started < n && started < due) {
            conn *c = &cs[started];
            c->fd = open_conn(port);
            c->t_start = c->t_last = now_ms();
            if (c->fd < 0) {
                c->failed = 1;
                lost++;
                finished++;
            } else {
                struct epoll_event e = { .events = EPOLLOUT | EPOLLIN,
                                         .data.u32 = (uint32_t)started };
                epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
                if (++open_now > peak)
                    peak = open_now;
            }
            started++;
        }
        int k = epoll_wait(ep, evs, 1024, 1);
        for (int i = 0; i < k; i++) {
            conn *c = &cs[evs[i].data.u32];
            if ((evs[i].events & EPOLLOUT) && c->sent < rlen) {
                ssize_t w = write(c->fd, req + c->sent, rlen - c->sent);
                if (w > 0)
                    c->sent += (size_t)w;
                if (c->sent == rlen) {
                    struct epoll_event e = { .events = EPOLLIN, .data.u32 = evs[i].data.u32 };
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                }
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                continue;
            char buf[65536];
            ssize_t r = read(c->fd, buf, sizeof(buf));
            if (r > 0) {
                double t = now_ms();
                int had = c->events;
                scan(c, buf, (size_t)r);
                if (had > 0 && t - c->t_last > max_gap)
                    max_gap = t - c->t_last;
                if (had > 0 && t - c->t_last > stall_ms)
                    c->failed = 2;
                if (had == 0 && c->events > 0)
                    c->t_first = t;     /* time to the first event */
                c->t_last = t;
                continue;
            }
            if (r < 0 && errno == EAGAIN)
                continue;
            /* closed: the server ends each stream (Connection: close) */
            close(c->fd);
            open_now--;
            finished++;
            if (c->failed == 2)
                stalled++;
            else if (c->done && c->events == expect)
                completed++;
            else
                lost++;
            if (c->t_first > 0)
                ttfb[completed + stalled + lost - 1] = c->t_first - c->t_start;
        }
    }
    qsort(ttfb, (size_t)n, sizeof(double), cmp);
    printf("{\"streams\":%d,\"completed\":%d,\"lost\":%d,\"stalled\":%d,\"peak_open\":%d,"
           "\"ttfb_p50_ms\":%.2f,\"ttfb_p99_ms\":%.2f,\"max_gap_ms\":%.1f,\"seconds\":%.2f}\n",
           n, completed, lost, stalled, peak, ttfb[n / 2], ttfb[(int)(n * 0.99)], max_gap,
           (now_ms() - t0) / 1e3);
    free(cs);
    free(ttfb);
    return completed == n ? 0 : 1;
}
