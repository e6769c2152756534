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
}

static void scan(const char *line, llmr_sse *sse)
{
    memset(sse, 0, sizeof(*sse));
    sse->prompt = sse->completion = -1;
    sse_line(sse, line, strlen(line));
}

/* The members are found by scanning, not by tokenizing the event: each
 * shape a server may send counts as the tokenizer counted it. */
static void test_event_shapes(void)
{
    llmr_sse e;

    /* keys in any order, escaped key names, content with escapes (its JSON
     * length), nested objects and arrays stepped over */
    scan("data: {\"choices\":[{\"index\":0,\"logprobs\":{\"a\":[1,{\"b\":\"}]\"}]},"
         "\"d\\u0065lta\":{\"role\":\"x\",\"content\":\"a\\\"b\\n\"}}],\"id\":\"c\"}", &e);
    T_CHECK(e.content_events == 1 && e.content_bytes == 6 && !e.got_usage);
    /* legacy completions: choices[0].text */
    scan("data: {\"choices\":[{\"text\":\"abc\",\"index\":0}]}", &e);
    T_CHECK(e.content_events == 1 && e.content_bytes == 3);
    /* only the first choice; an empty content, a null one, a delta that is
     * not an object: nothing counted */
    scan("data: {\"choices\":[{\"delta\":{}},{\"delta\":{\"content\":\"zz\"}}]}", &e);
    T_CHECK(e.content_events == 0);
    scan("data: {\"choices\":[{\"delta\":{\"content\":\"\"}}]}", &e);
    T_CHECK(e.content_events == 0);
    scan("data: {\"choices\":[{\"delta\":{\"content\":null}}]}", &e);
    T_CHECK(e.content_events == 0);
    scan("data: {\"choices\":[{\"delta\":\"x\",\"text\":\"abc\"}]}", &e);
    T_CHECK(e.content_events == 0);
    /* usage before choices, the first of two usage members */
    scan("data: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2},\"choices\":"
         "[{\"delta\":{\"content\":\"q\"}}],\"usage\":{\"prompt_tokens\":9}}", &e);
    T_CHECK(e.got_usage && e.prompt == 5 && e.completion == 2 && e.content_bytes == 1);
    /* usage null, or not JSON after all: nothing */
    scan("data: {\"usage\":null,\"choices\":[]}", &e);
    T_CHECK(!e.got_usage && e.content_events == 0);
    scan("data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}", &e);
    T_CHECK(e.content_events == 0);         /* the choices array never ends */
    scan("data: {\"choices\":[{\"delta\":{\"content\":\"ab", &e);
    T_CHECK(e.content_events == 0);
    scan("data: {\"choices\" [1]}", &e);
    T_CHECK(e.content_events == 0 && !e.got_usage);
}

/* The usage counts as the tokenizer reads them (what llmr_usage_object did
 * before it scanned): parse, direct members, the Responses API's names
 * last. */
static int usage_by_tokens(const char *js, int64_t *p, int64_t *c)
{
    llmr_json j = { 0 };
    int rc = llmr_json_parse(&j, js, strlen(js), 256) < 0 || j.toks[0].type != JSMN_OBJECT
             ? -1 : 0;

    if (rc == 0) {
        llmr_json_int(&j, llmr_json_get(&j, 0, "prompt_tokens"), p);
        llmr_json_int(&j, llmr_json_get(&j, 0, "completion_tokens"), c);
        llmr_json_int(&j, llmr_json_get(&j, 0, "input_tokens"), p);
        llmr_json_int(&j, llmr_json_get(&j, 0, "output_tokens"), c);
    }
    llmr_json_free(&j);
    return rc;
}

/* Valid usage objects of every shape give the counts the tokenizer gave. */
static void test_usage_scan_as_tokens(void)
{
    static const char *const objs[] = {
        "{\"prompt_tokens\":18,\"completion_tokens\":5,\"total_tokens\":23}",
        " { \"completion_tokens\" : 7 , \"prompt_tokens\" :\t3 } ",
        "{\"input_tokens\":10,\"output_tokens\":7,\"input_tokens_details\":{\"cached_tokens\":1}}",
        "{\"prompt_tokens\":1,\"input_tokens\":2,\"completion_tokens\":3,\"output_tokens\":4}",
        "{\"prompt_tokens_details\":{\"prompt_tokens\":99},\"prompt_tokens\":4}",
        "{\"prompt_tokens\":4,\"prompt_tokens\":5,\"completion_tokens\":1}",
        "{\"pr\\u006fmpt_tokens\":12,\"completion_tokens\":2}",
        "{\"prompt_tokens\":-1,\"completion_tokens\":\"6\"}",
        "{\"prompt_tokens\":1.5,\"completion_tokens\":2e3}",
        "{\"prompt_tokens\":null,\"completion_tokens\":true}",
        "{\"prompt_tokens\":99999999999999999999,\"completion_tokens\":9223372036854775807}",
        "{\"x\":[1,{\"completion_tokens\":8}],\"y\":\"}\\\"\",\"completion_tokens\":9}",
        "{}",
        "[1,2]",
        "\"usage\"",
    };
    int ok = 1;

    for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++) {
        int64_t p1 = -7, c1 = -7, p2 = -7, c2 = -7;
        int r1 = usage_by_tokens(objs[i], &p1, &c1);
        int r2 = llmr_usage_object(objs[i], strlen(objs[i]), &p2, &c2);
        if (r1 != r2 || p1 != p2 || c1 != c2) {
            fprintf(stderr, "  %s: tokens %d %lld %lld, scan %d %lld %lld\n", objs[i], r1,
                    (long long)p1, (long long)c1, r2, (long long)p2, (long long)c2);
            ok = 0;
        }
    }
    T_CHECK(ok);
}

/* A buffered answer's usage: found past members of any size, none when the
 * answer has no usage object or breaks before it. */
static void test_usage_read(void)
{
    size_t big = 1 << 20;
    char *s = malloc(big + 128);
    int64_t p = -1, c = -1;
    int n = snprintf(s, 32, "{\"data\":\"");

    memset(s + n, 'x', big);
    n += (int)big;
    n += snprintf(s + n, 96, "\",\"usage\":{\"prompt_tokens\":6,\"completion_tokens\":2}}");
    T_EQ_INT(llmr_usage_read(s, (size_t)n, &p, &c), 0);
    T_CHECK(p == 6 && c == 2);
    p = c = -1;
    T_EQ_INT(llmr_usage_read(s, (size_t)n - 30, &p, &c), -1);
    T_CHECK(p == -1 && c == -1);
    T_EQ_INT(llmr_usage_read("{\"id\":\"x\"}", 10, &p, &c), -1);
    T_EQ_INT(llmr_usage_read("{\"usage\":null}", 14, &p, &c), -1);
    T_CHECK(p == -1 && c == -1);
    free(s);
}

int main(void)
{
    T_RUN(test_split_whatever_the_reads);
    T_RUN(test_partial_line_kept);
    T_RUN(test_overlong_line_dropped);
    T_RUN(test_usage_and_content);
    T_RUN(test_event_shapes);
    T_RUN(test_usage_scan_as_tokens);
    T_RUN(test_usage_read);
    return T_DONE();
}
