/* The strict request-framing parser of worker/conn.c, fed bytes directly:
 * the same verdict whether a request comes in one piece or byte by byte. */
#include "../../worker/conn.c"

#include "t.h"

static llmr_conf conf = { .max_body_bytes = 1000, .client_header_timeout = 60,
                          .client_body_timeout = 60 };
static llmr_worker w = { .conf = &conf };

/* Feeds `s` in pieces of `step` bytes; returns the refusal status, 0 if
 * accepted, and the phase reached in *phase. */
static int run(const char *s, size_t step, enum phase *phase)
{
    conn k;
    size_t n = strlen(s);

    memset(&k, 0, sizeof(k));
    k.w = &w;
    k.fd = -1;
    for (size_t at = 0; at < n && k.phase != P_REFUSED; at += step) {
        size_t len = n - at < step ? n - at : step, off = 0;
        while (off < len && k.phase != P_REFUSED)
            off += feed(&k, s + at + off, len - off);
    }
    if (phase != NULL)
        *phase = k.phase;
    return k.status;
}

static int verdict(const char *s)
{
    enum phase p1, p2;
    int a = run(s, 1 << 20, &p1), b = run(s, 1, &p2);

    T_EQ_INT(a, b);
    T_EQ_INT(p1, p2);
    return a;
}

#define POST "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"

static void test_valid_requests(void)
{
    enum phase p;

    T_EQ_INT(verdict(POST "Content-Length: 5\r\n\r\nhello" POST "Content-Length: 0\r\n\r\n"), 0);
    T_EQ_INT(run(POST "Content-Length: 5\r\n\r\nhel", 1, &p), 0);
    T_EQ_INT(p, P_BODY);
    T_EQ_INT(verdict(POST "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nA\r\n0123456789\r\n"
                     "0\r\nX-Trailer: 1\r\n\r\n"), 0);
    T_EQ_INT(run(POST "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 3, &p), 0);
    T_EQ_INT(p, P_HEAD);
    T_EQ_INT(verdict("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    T_EQ_INT(verdict(POST "Content-Length:   7  \r\n\r\n1234567"), 0);
}

static void test_smuggling_forms(void)
{
    T_EQ_INT(verdict(POST "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), 400);
    T_EQ_INT(verdict(POST "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), 400);
    T_EQ_INT(verdict(POST "Content-Length: +5\r\n\r\nhello"), 400);
    T_EQ_INT(verdict(POST "Content-Length: 5, 5\r\n\r\nhello"), 400);
    T_EQ_INT(verdict(POST "Content-Length: 0x5\r\n\r\nhello"), 400);
    T_EQ_INT(verdict(POST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    T_EQ_INT(verdict(POST "Transfer-Encoding: chunked \r\n\r\n"), 400);
    T_EQ_INT(verdict(POST "Transfer-Encoding: xchunked\r\n\r\n"), 400);
    T_EQ_INT(verdict(POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
             400);
    T_EQ_INT(verdict(POST "Content-Length : 5\r\n\r\nhello"), 400);
    T_EQ_INT(verdict(POST "X-A: 1\r\n folded\r\nContent-Length: 5\r\n\r\nhello"), 400);
    T_EQ_INT(verdict(POST "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"), 400);
    T_EQ_INT(verdict(POST "Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n"), 400);
    T_EQ_INT(verdict(POST "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"), 400);
    T_EQ_INT(verdict(POST "Transfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n"), 400);
    T_EQ_INT(verdict(POST "Transfer-Encoding: chunked\r\n\r\n1111111111111111\r\n"), 400);
}

static void test_sizes(void)
{
    T_EQ_INT(verdict(POST "Content-Length: 1001\r\n\r\n"), 413);
    T_EQ_INT(verdict(POST "Content-Length: 1000\r\n\r\n"), 0);
    T_EQ_INT(verdict(POST "Content-Length: 9999999999999999999\r\n\r\n"), 400);
    T_EQ_INT(verdict(POST "Transfer-Encoding: chunked\r\n\r\n3E8\r\n"), 0);
    T_EQ_INT(verdict(POST "Transfer-Encoding: chunked\r\n\r\n3E9\r\n"), 413);
}

static void test_body_on_get_closes_after(void)
{
    conn k;

    memset(&k, 0, sizeof(k));
    k.w = &w;
    for (const char *s = "GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"; *s; s++)
        feed(&k, s, 1);
    T_EQ_INT(k.status, 0);
    T_EQ_INT(k.close_after, 1);
}

int main(void)
{
    T_RUN(test_valid_requests);
    T_RUN(test_smuggling_forms);
    T_RUN(test_sizes);
    T_RUN(test_body_on_get_closes_after);
    return T_DONE();
}
