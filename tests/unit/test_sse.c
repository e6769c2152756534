/* SSE line splitting and usage reading of a relayed stream (worker/stream.c). */
#include "../../worker/stream.c"

#include "t.h"

typedef struct lines {
    char got[8][64];
    int n;
} lines;

static void collect(void *arg, const char *p, size_t n)
{
    lines *l = arg;

    if (l->n < 8 && n < 64) {
        memcpy(l->got[l->n], p, n);
        l->got[l->n][n] = '\0';
    }
    l->n++;
}

/* Fed in every split of one read into two, the same lines come out. */
static void test_split_whatever_the_reads(void)
{
    static const char s[] = "data: a\n\ndata: bc\r\n: x\n";
    struct evbuffer *held = evbuffer_new();
    int ok = 1;

    for (size_t cut = 0; cut <= sizeof(s) - 1; cut++) {
        lines l = { .n = 0 };
        llmr_sse_split(held, s, cut, collect, &l);
        llmr_sse_split(held, s + cut, sizeof(s) - 1 - cut, collect, &l);
        ok &= l.n == 4 && strcmp(l.got[0], "data: a") == 0 && l.got[1][0] == '\0'
            && strcmp(l.got[2], "data: bc\r") == 0 && strcmp(l.got[3], ": x") == 0
            && evbuffer_get_length(held) == 0;
    }
    T_CHECK(ok);
    evbuffer_free(held);
}

static void test_partial_line_kept(void)
{
    struct evbuffer *held = evbuffer_new();
    lines l = { .n = 0 };

    llmr_sse_split(held, "data: {\"a\"", 10, collect, &l);
    T_EQ_INT(l.n, 0);
    T_EQ_INT(evbuffer_get_length(held), 10);
    llmr_sse_split(held, ":1}\n", 4, collect, &l);
    T_EQ_INT(l.n, 1);
    T_EQ_STR(l.got[0], "data: {\"a\":1}");
    evbuffer_free(held);
}

/* A data line past SSE_LINE_MAX is dropped, and the next one is read. */
static void test_overlong_line_dropped(void)
{
    struct evbuffer *held = evbuffer_new();
    size_t big = SSE_LINE_MAX + 10;
    char *junk = malloc(big);
    lines l = { .n = 0 };

    memset(junk, 'x', big);
    llmr_sse_split(held, junk, big, collect, &l);
    llmr_sse_split(held, "yy\ndata: ok\n", 12, collect, &l);
    T_EQ_INT(l.n, 1);
    T_EQ_STR(l.got[0], "data: ok");
    free(junk);
    evbuffer_free(held);
}

/* Usage and content counted from events split at any byte. */
static void test_usage_and_content(void)
{
    static const char s[] =
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\" you\"}}]}\r\n\r\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n"
        "data: [DONE]\n\n";
    int ok = 1;

    for (size_t cut = 0; cut < sizeof(s) - 1; cut += 7) {
        llmr_sse sse = { .line = evbuffer_new() };
        llmr_sse_split(sse.line, s, cut, sse_line, &sse);
        llmr_sse_split(sse.line, s + cut, sizeof(s) - 1 - cut, sse_line, &sse);
        ok &= sse.got_usage == 1 && sse.prompt == 12 && sse.completion == 3
            && sse.content_events == 2 && sse.content_bytes == 9;
        evbuffer_free(sse.line);
    }
    T_CHECK(ok);
    llmr_stream_free_all();
}

int main(void)
{
    T_RUN(test_split_whatever_the_reads);
    T_RUN(test_partial_line_kept);
    T_RUN(test_overlong_line_dropped);
    T_RUN(test_usage_and_content);
    return T_DONE();
}
