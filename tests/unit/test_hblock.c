/* llmroute's reply headers joined into one evhttp entry (worker/hblock.c):
 * evhttp prints each entry as "key: value\r\n", so the block must print as
 * the headers one by one would, and never let a value end a line early. */
#include "../../worker/hblock.c"

#include <sys/queue.h>

#include <event2/http.h>

#include "t.h"

/* What evhttp_make_header() writes for the entries of a header list. */
static size_t print_as_evhttp(struct evkeyvalq *h, char *out, size_t cap)
{
    struct evkeyval *kv;
    size_t n = 0;

    TAILQ_FOREACH(kv, h, next)
        n += (size_t)snprintf(out + n, cap - n, "%s: %s\r\n", kv->key, kv->value);
    return n;
}

static int entries(struct evkeyvalq *h)
{
    struct evkeyval *kv;
    int n = 0;

    TAILQ_FOREACH(kv, h, next)
        n++;
    return n;
}

static void test_tchar_is_rfc9110s(void)
{
    int ok = 1;

    for (int c = 0; c < 256; c++) {
        int want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                   || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        ok &= llmr_http_tchar((unsigned char)c) == want;
    }
    T_CHECK(ok);
}

/* Three headers in one entry print as the three lines, after the entries
 * before it; only the first name can be looked up (why x-request-id,
 * Date, Content-* and Connection never go in a block). */
static void test_block_prints_as_separate_headers(void)
{
    struct evkeyvalq h;
    llmr_hblock b;
    char got[512];
    size_t n;

    TAILQ_INIT(&h);
    evhttp_add_header(&h, "x-request-id", "req_1");
    llmr_hblock_init(&b);
    T_EQ_INT(llmr_hblock_add(&b, "x-llmroute-deployment", "dep-a"), 0);
    T_EQ_INT(llmr_hblock_add(&b, "x-llmroute-attempts", "2"), 0);
    T_EQ_INT(llmr_hblock_add(&b, "x-ratelimit-remaining-requests", "99"), 0);
    T_EQ_INT(llmr_hblock_attach(&b, &h), 0);
    evhttp_add_header(&h, "Content-Type", "application/json");
    T_EQ_INT(entries(&h), 3);
    n = print_as_evhttp(&h, got, sizeof(got));
    T_EQ_STR(got, "x-request-id: req_1\r\nx-llmroute-deployment: dep-a\r\n"
             "x-llmroute-attempts: 2\r\nx-ratelimit-remaining-requests: 99\r\n"
             "Content-Type: application/json\r\n");
    T_EQ_INT(n, strlen(got));
    T_EQ_STR(evhttp_find_header(&h, "x-request-id"), "req_1");
    T_CHECK(evhttp_find_header(&h, "x-llmroute-attempts") == NULL);
    evhttp_clear_headers(&h);       /* evhttp frees the block's entry (ASan: no leak) */
    T_EQ_INT(entries(&h), 0);
}

/* What could end a line or forge one is dropped with its header, as
 * evhttp_add_header() drops it; the block stays as it was. */
static void test_unsafe_headers_dropped(void)
{
    static const char *const bad_names[] = { "", "x y", "x:y", "x\r\ny", "caf\xc3\xa9", "a\"b" };
    static const char *const bad_values[] = {
        "a\r\nx-evil: 1", "a\nb", "a\rb", "\x01", "a\x7f", "a\r\n b",
    };
    llmr_hblock b;
    int ok = 1;

    llmr_hblock_init(&b);
    T_EQ_INT(llmr_hblock_add(&b, "x-a", "1"), 0);
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        ok &= llmr_hblock_add(&b, bad_names[i], "v") == -1;
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++)
        ok &= llmr_hblock_add(&b, "x-b", bad_values[i]) == -1;
    T_CHECK(ok);
    T_EQ_INT(b.n, strlen("x-a: 1"));
    /* a tab, spaces and UTF-8 are a value's as evhttp takes them */
    T_EQ_INT(llmr_hblock_add(&b, "x-c", "a\tb c \xc3\xa9"), 0);
    b.text[b.n] = '\0';
    T_EQ_STR(b.text, "x-a: 1\r\nx-c: a\tb c \xc3\xa9");
}

/* Full: a header that does not fit is dropped whole, smaller ones still go,
 * and the text never passes its buffer (ASan). */
static void test_bounded(void)
{
    char big[1200];
    llmr_hblock b;
    int added = 0;
    struct evkeyvalq h;
    char *got = malloc(LLMR_HBLOCK_MAX + 64);

    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    llmr_hblock_init(&b);
    for (int i = 0; i < 20; i++)
        added += llmr_hblock_add(&b, "x-ratelimit-big", big) == 0;
    T_EQ_INT(added, (LLMR_HBLOCK_MAX - 1) / (sizeof(big) - 1 + 19));
    T_CHECK(b.n < LLMR_HBLOCK_MAX);
    T_EQ_INT(llmr_hblock_add(&b, "x-s", "1"), 0);
    TAILQ_INIT(&h);
    T_EQ_INT(llmr_hblock_attach(&b, &h), 0);
    T_EQ_INT(print_as_evhttp(&h, got, LLMR_HBLOCK_MAX + 64), b.n + 2);
    T_CHECK(memcmp(got + b.n - 6, "x-s: 1\r\n", 8) == 0);
    evhttp_clear_headers(&h);
    free(got);
}

static void test_empty_block_adds_nothing(void)
{
    struct evkeyvalq h;
    llmr_hblock b;

    TAILQ_INIT(&h);
    llmr_hblock_init(&b);
    T_EQ_INT(llmr_hblock_add(&b, "bad name", "v"), -1);
    T_EQ_INT(llmr_hblock_attach(&b, &h), 0);
    T_EQ_INT(entries(&h), 0);
}

int main(void)
{
    T_RUN(test_tchar_is_rfc9110s);
    T_RUN(test_block_prints_as_separate_headers);
    T_RUN(test_unsafe_headers_dropped);
    T_RUN(test_bounded);
    T_RUN(test_empty_block_adds_nothing);
    return T_DONE();
}
