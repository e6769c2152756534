/* llmroute-mock: command line, listener, signals. Prints "port=N" once
 * bound so a test can start it on port 0 and read where it landed. */
#include "mock.h"
#include "log.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define OPT_KNOB 256   /* long options for knobs are OPT_KNOB + enum mock_knob */

static const struct option long_opts[] = {
    { "listen", required_argument, NULL, 'l' },
    { "port", required_argument, NULL, 'p' },
    { "name", required_argument, NULL, 'n' },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { "latency", required_argument, NULL, OPT_KNOB + MK_LATENCY_MS },
    { "status", required_argument, NULL, OPT_KNOB + MK_STATUS },
    { "retry-after", required_argument, NULL, OPT_KNOB + MK_RETRY_AFTER },
    { "error", required_argument, NULL, OPT_KNOB + MK_ERROR },
    { "drop", no_argument, NULL, OPT_KNOB + MK_DROP },
    { "chunks", required_argument, NULL, OPT_KNOB + MK_CHUNKS },
    { "chunk-delay", required_argument, NULL, OPT_KNOB + MK_CHUNK_DELAY_MS },
    { "chunk-burst", required_argument, NULL, OPT_KNOB + MK_CHUNK_BURST },
    { "stall-after", required_argument, NULL, OPT_KNOB + MK_STALL_AFTER },
    { "drop-after", required_argument, NULL, OPT_KNOB + MK_DROP_AFTER },
    { "usage", no_argument, NULL, OPT_KNOB + MK_USAGE },
    { "embedding-dims", required_argument, NULL, OPT_KNOB + MK_EMBEDDING_DIMS },
    { "embeddings", required_argument, NULL, OPT_KNOB + MK_EMBEDDINGS },
    { "usage-tokens", required_argument, NULL, OPT_KNOB + MK_USAGE_TOKENS },
    { NULL, 0, NULL, 0 }
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: llmroute-mock [-l ADDR] [-p PORT] [--latency MS] [--status CODE]\n"
        "       [--retry-after SECONDS] [--error context_length|content_policy] [--drop]\n"
        "       [--chunks N] [--chunk-delay MS] [--chunk-burst N] [--stall-after N]\n"
        "       [--drop-after N] [--usage] [--usage-tokens N] [--embedding-dims N]\n"
        "       [--embeddings N] [--name NAME] [-v]\n");
}

static int parse_port(const char *s, int *port)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < 0 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

static const char *opt_name(int val)
{
    for (const struct option *o = long_opts; o->name != NULL; o++)
        if (o->val == val)
            return o->name;
    return "?";
}

/* 0: run, 1: help was printed, -1: bad usage. */
static int parse_args(int argc, char **argv, struct mock_ctx *ctx,
                      const char **addr, int *port)
{
    int o;

    while ((o = getopt_long(argc, argv, "l:p:n:vh", long_opts, NULL)) != -1) {
        if (o >= OPT_KNOB) {
            const char *v = optarg != NULL ? optarg : "1";
            if (mock_knob_set(&ctx->cli, o - OPT_KNOB, v, strlen(v)) < 0) {
                fprintf(stderr, "llmroute-mock: bad value '%s' for --%s\n",
                        v, opt_name(o));
                return -1;
            }
            continue;
        }
        switch (o) {
        case 'l': *addr = optarg; break;
        case 'p':
            if (parse_port(optarg, port) < 0) {
                fprintf(stderr, "llmroute-mock: bad port '%s'\n", optarg);
                return -1;
            }
            break;
        case 'n': ctx->name = optarg; break;
        case 'v': ctx->verbose = 1; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* The benchmark opens thousands of connections at once. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            llmr_warn("setrlimit(RLIMIT_NOFILE): %m");
    }
}

static int bound_port(struct evconnlistener *lev)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Our own listener rather than evhttp_bind_socket: evhttp's backlog of 128
 * overflows under the benchmark's connection bursts. */
static int listen_on(struct mock_ctx *ctx, const char *addr, int port)
{
    struct evutil_addrinfo hints, *ai = NULL;
    struct evconnlistener *lev;
    char service[8];
    int r;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    r = evutil_getaddrinfo(addr, service, &hints, &ai);
    if (r != 0) {
        llmr_error("cannot resolve %s: %s", addr, evutil_gai_strerror(r));
        return -1;
    }
    lev = evconnlistener_new_bind(ctx->base, NULL, NULL,
                                  LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                  4096, ai->ai_addr, (int)ai->ai_addrlen);
    evutil_freeaddrinfo(ai);
    if (lev == NULL) {
        llmr_error("cannot listen on %s:%d: %m", addr, port);
        return -1;
    }
    if (evhttp_bind_listener(ctx->http, lev) == NULL) {
        evconnlistener_free(lev);
        llmr_error("evhttp_bind_listener failed");
        return -1;
    }
    return bound_port(lev);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct mock_ctx *ctx = arg;

    (void)sig;
    (void)what;
    event_base_loopbreak(ctx->base);
}

static int setup(struct mock_ctx *ctx, const char *addr, int port)
{
    ctx->base = event_base_new();
    if (ctx->base == NULL)
        return -1;
    ctx->http = evhttp_new(ctx->base);
    ctx->out = evbuffer_new();
    ctx->sig_term = evsignal_new(ctx->base, SIGTERM, on_signal, ctx);
    ctx->sig_int = evsignal_new(ctx->base, SIGINT, on_signal, ctx);
    if (ctx->http == NULL || ctx->out == NULL || ctx->sig_term == NULL || ctx->sig_int == NULL
        || evsignal_add(ctx->sig_term, NULL) < 0 || evsignal_add(ctx->sig_int, NULL) < 0)
        return -1;
    /* A stalled stream must stay stalled for as long as a test waits on it;
     * evhttp's default 50 s read timeout would end it behind the test's back. */
    evhttp_set_timeout(ctx->http, 3600);
    evhttp_set_allowed_methods(ctx->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD
                               | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS
                               | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(ctx->http, mock_handle, ctx);
    return listen_on(ctx, addr, port);
}

static void teardown(struct mock_ctx *ctx)
{
    mock_calls_free(ctx);
    mock_responses_free();
    if (ctx->http != NULL)
        evhttp_free(ctx->http);
    if (ctx->sig_term != NULL)
        event_free(ctx->sig_term);
    if (ctx->sig_int != NULL)
        event_free(ctx->sig_int);
    if (ctx->out != NULL)
        evbuffer_free(ctx->out);
    if (ctx->base != NULL)
        event_base_free(ctx->base);
    mock_stats_free(&ctx->stats);
    libevent_global_shutdown();
}

int main(int argc, char **argv)
{
    struct mock_ctx ctx;
    const char *addr = "127.0.0.1";
    int port = 0, bound, r;

    memset(&ctx, 0, sizeof(ctx));
    mock_knobs_defaults(&ctx.cli);
    r = parse_args(argc, argv, &ctx, &addr, &port);
    if (r != 0)
        return r < 0 ? 2 : 0;
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    bound = setup(&ctx, addr, port);
    if (bound < 0) {
        llmr_error("llmroute-mock: start-up failed");
        teardown(&ctx);
        return 1;
    }
    printf("port=%d\n", bound);
    fflush(stdout);
    if (ctx.verbose)
        llmr_info("llmroute-mock%s%s listening on %s:%d", ctx.name ? " " : "",
                  ctx.name ? ctx.name : "", addr, bound);
    event_base_dispatch(ctx.base);
    teardown(&ctx);
    return 0;
}
