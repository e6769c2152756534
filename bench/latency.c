/* llmroute-lat: sequential requests at concurrency 1 against two servers,
 * interleaved in rounds so that both see the same machine noise, and the
 * latency percentiles of each.  `make bench` uses it to measure what
 * llmroute adds to a request (B) over a direct call (A).
 *
 *   llmroute-lat -n 10000 -r 20 [-s] -b BODY_FILE PORT_A PORT_B PATH
 *
 * With -s the body asks for a stream: the time measured is to the first
 * "data:" event, and each chunked response is read to its end.
 * Prints one JSON object on stdout. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct target {
    int port;
    int fd;
    double *lat;        /* microseconds */
    int n;
    int reconnects;     /* the server closed a keep-alive connection */
} target;

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int connect_to(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("connect");
        exit(1);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int stream_mode;
static double first_event_us;   /* when the first "data:" arrived */

static double now_us(void);

/* Reads a chunked body to its last chunk, noting the first event. */
static int read_chunked(int fd, char *buf, size_t cap, size_t have)
{
    for (;;) {
        buf[have] = '\0';
        if (first_event_us == 0 && strstr(buf, "data:") != NULL)
            first_event_us = now_us();
        if (have >= 5 && memcmp(buf + have - 5, "0\r\n\r\n", 5) == 0)
            return 0;
        if (have > cap / 2) {       /* keep the tail only */
            memmove(buf, buf + have - 8, 8);
            have = 8;
        }
        ssize_t r = read(fd, buf + have, cap - 1 - have);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
}

/* Reads one response (Content-Length or chunked); returns its status or -1. */
static int read_response(int fd)
{
    static char buf[1 << 16];
    size_t have = 0;
    char *end = NULL;
    long clen = -1;
    int status, chunked = 0;

    first_event_us = 0;
    while (end == NULL) {
        ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (r <= 0)
            return -1;
        have += (size_t)r;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    for (char *p = strstr(buf, "\r\n"); p != NULL && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, "content-length:", 15) == 0)
            clen = strtol(p + 17, NULL, 10);
        if (strncasecmp(p + 2, "transfer-encoding: chunked", 26) == 0)
            chunked = 1;
    }
    if (chunked) {
        size_t body = have - (size_t)(end + 4 - buf);
        memmove(buf, end + 4, body);
        return read_chunked(fd, buf, sizeof(buf), body) == 0 ? status : -1;
    }
    if (clen < 0)
        return -1;
    for (size_t body = have - (size_t)(end + 4 - buf); (long)body < clen;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0)
            return -1;
        body += (size_t)r;
    }
    return status;
}

static void one(target *t, const char *req, size_t len)
{
    double t0 = now_us();
    int status = 0;

    if (write(t->fd, req, len) != (ssize_t)len || (status = read_response(t->fd)) == -1) {
        /* A server may close a keep-alive connection at any time (nginx
         * after keepalive_requests): reconnect and time the retry alone. */
        close(t->fd);
        t->fd = connect_to(t->port);
        t->reconnects++;
        t0 = now_us();
        if (write(t->fd, req, len) == (ssize_t)len)
            status = read_response(t->fd);
    }
    if (status != 200 || (stream_mode && first_event_us == 0)) {
        fprintf(stderr, "request to port %d failed: status %d\n", t->port, status);
        exit(1);
    }
    t->lat[t->n++] = (stream_mode ? first_event_us : now_us()) - t0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(target *t, double p)
{
    return t->lat[(int)(p * (t->n - 1))];
}

int main(int argc, char **argv)
{
    int n = 10000, rounds = 20, opt;
    const char *body_file = NULL;
    char body[65536], req[70000];
    size_t blen = 0, rlen;
    target t[2];

    while ((opt = getopt(argc, argv, "n:r:b:s")) != -1) {
        if (opt == 's') stream_mode = 1;
        else if (opt == 'n') n = atoi(optarg);
        else if (opt == 'r') rounds = atoi(optarg);
        else if (opt == 'b') body_file = optarg;
    }
    if (argc - optind != 3 || body_file == NULL || n <= 0 || rounds <= 0) {
        fprintf(stderr, "usage: llmroute-lat [-n N] [-r ROUNDS] -b BODY PORT_A PORT_B PATH\n");
        return 2;
    }
    FILE *f = fopen(body_file, "r");
    if (f == NULL || (blen = fread(body, 1, sizeof(body), f)) == 0) {
        perror(body_file);
        return 1;
    }
    fclose(f);
    rlen = (size_t)snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                            argv[optind + 2], blen);
    memcpy(req + rlen, body, blen);
    rlen += blen;
    for (int k = 0; k < 2; k++) {
        t[k].port = atoi(argv[optind + k]);
        t[k].fd = connect_to(t[k].port);
        t[k].lat = calloc((size_t)n, sizeof(double));
        t[k].n = 0;
        t[k].reconnects = 0;
        for (int w = 0; w < 200; w++)           /* warm connections and caches */
            one(&t[k], req, rlen), t[k].n = 0;
    }
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < n / rounds; i++)
                one(&t[k], req, rlen);
    for (int k = 0; k < 2; k++)
        qsort(t[k].lat, (size_t)t[k].n, sizeof(double), cmp);
    printf("{\"requests\":%d,\"a_p50_us\":%.1f,\"a_p99_us\":%.1f,\"b_p50_us\":%.1f,"
           "\"b_p99_us\":%.1f,\"added_p50_us\":%.1f,\"added_p99_us\":%.1f,"
           "\"reconnects_a\":%d,\"reconnects_b\":%d}\n",
           t[0].n, pct(&t[0], .5), pct(&t[0], .99), pct(&t[1], .5), pct(&t[1], .99),
           pct(&t[1], .5) - pct(&t[0], .5), pct(&t[1], .99) - pct(&t[0], .99),
           t[0].reconnects, t[1].reconnects);
    for (int k = 0; k < 2; k++) {
        close(t[k].fd);
        free(t[k].lat);
    }
    return 0;
}
