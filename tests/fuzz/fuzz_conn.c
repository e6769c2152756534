/* libFuzzer target for the request head guard (worker/conn.c): every byte a
 * client sends passes its strict parser of request heads and body framing
 * before evhttp.  The input is cut into reads at points the input itself
 * chooses (its first byte seeds them), and the verdict — refused with which
 * status, or the phase reached — must be the one the whole input gets in one
 * read and byte by byte: the parser reads a line at a time since issue 17,
 * and the socket may cut a head anywhere.  The line kept never overflows. */
#include "../../worker/conn.c"

#include <stdint.h>

#include "access_log.h"
#include "anthropic.h"

/* Never reached: the harness's connections have no evhttp connection, so
 * no refusal is sent and nothing is closed; only the parser runs. */
static void unreachable(const char *what)
{
    fprintf(stderr, "fuzz_conn: %s reached\n", what);
    abort();
}

void llmr_alog_refusal(struct llmr_worker *w, int fd, const char *id, int status,
                       int64_t bytes_out)
{
    (void)w, (void)fd, (void)id, (void)status, (void)bytes_out;
    unreachable("llmr_alog_refusal");
}

size_t llmr_anth_error_buf(char *out, size_t cap, int status, const char *msg)
{
    (void)out, (void)cap, (void)status, (void)msg;
    unreachable("llmr_anth_error_buf");
    return 0;
}

void llmr_anth_reply_error(struct llmr_worker *w, struct evhttp_request *req, int status,
                           const char *msg)
{
    (void)w, (void)req, (void)status, (void)msg;
    unreachable("llmr_anth_reply_error");
}

void llmr_guard_linger(llmr_worker *w, int fd)
{
    (void)w, (void)fd;
    unreachable("llmr_guard_linger");
}

void llmr_http_active_end(llmr_worker *w)
{
    (void)w;
    unreachable("llmr_http_active_end");
}

const char *llmr_http_reason(int status)
{
    (void)status;
    unreachable("llmr_http_reason");
    return "";
}

void llmr_http_reply_json(llmr_worker *w, struct evhttp_request *req, int status,
                          const char *json, size_t len)
{
    (void)w, (void)req, (void)status, (void)json, (void)len;
    unreachable("llmr_http_reply_json");
}

void llmr_request_id_new(char *buf, size_t cap)
{
    (void)buf, (void)cap;
    unreachable("llmr_request_id_new");
}

static llmr_conf conf = { .max_body_bytes = 4096, .client_header_timeout = 60,
                          .client_body_timeout = 60 };
static llmr_worker w = { .conf = &conf };

struct verdict {
    enum phase phase;
    int status, lines;
    size_t linelen;
};

/* Feeds s[0..n) in reads whose lengths come from `cut` (1..16 each, from
 * its bytes in turn; a NULL cut: one read). */
static struct verdict run(const uint8_t *s, size_t n, const uint8_t *cut, size_t ncut)
{
    conn k;
    size_t at = 0, ci = 0;

    memset(&k, 0, sizeof(k));
    k.w = &w;
    k.fd = -1;
    while (at < n && k.phase != P_REFUSED) {
        size_t len = cut == NULL ? n - at : (size_t)(cut[ci++ % ncut] % 16) + 1, off = 0;

        len = len < n - at ? len : n - at;
        while (off < len && k.phase != P_REFUSED) {
            size_t took = feed(&k, (const char *)s + at + off, len - off);

            if (took == 0 || took > len - off)
                unreachable("feed took nothing or more than it was given");
            off += took;
        }
        if (k.linelen > sizeof(k.line))
            unreachable("the line kept overflowed");
        at += len;
    }
    return (struct verdict){ k.phase, k.status, k.lines, k.linelen };
}

static void same(struct verdict a, struct verdict b)
{
    if (a.phase != b.phase || a.status != b.status || a.lines != b.lines
        || a.linelen != b.linelen) {
        fprintf(stderr, "fuzz_conn: verdicts differ: phase %d/%d status %d/%d lines %d/%d "
                "linelen %zu/%zu\n", a.phase, b.phase, a.status, b.status, a.lines, b.lines,
                a.linelen, b.linelen);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t one = 0;   /* (0 % 16) + 1: a byte at a time */
    const uint8_t *cut;
    size_t ncut;
    struct verdict whole;

    if (size < 2)
        return 0;
    ncut = (size_t)(data[0] % 8) + 1;       /* the first bytes choose the cuts */
    if (ncut >= size)
        return 0;
    cut = data + 1;
    data += 1 + ncut;
    size -= 1 + ncut;
    whole = run(data, size, NULL, 0);
    same(whole, run(data, size, cut, ncut));
    same(whole, run(data, size, &one, 1));
    return 0;
}
