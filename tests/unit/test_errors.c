/* The one error table (worker/errors.c): every kind answers a valid
 * OpenAI-shaped body, and the wording the tests and clients read is kept. */
#include "../../worker/errors.c"

#include "t.h"

/* The string value of error.<key> in the body, decoded, or "" when absent;
 * "null" for a JSON null. */
static const char *field(llmr_json *j, const char *key, char *buf, size_t cap)
{
    int e = llmr_json_get(j, 0, "error"), v = e >= 0 ? llmr_json_get(j, e, key) : -1;
    size_t n;

    if (v < 0)
        return "";
    n = (size_t)(j->toks[v].end - j->toks[v].start);
    if (j->toks[v].type != JSMN_STRING)
        return n == 4 && memcmp(j->js + j->toks[v].start, "null", 4) == 0 ? "null" : "";
    if (llmr_json_unescape(buf, cap, j->js + j->toks[v].start, n) < 0)
        return "";
    buf[llmr_json_unescape(buf, cap, j->js + j->toks[v].start, n)] = '\0';
    return buf;
}

static void test_every_kind_is_a_valid_openai_error(void)
{
    char body[3072], buf[2048];
    llmr_json j = { 0 };
    int ok = 1;

    for (int k = 0; k < LLMR_E_COUNT; k++) {
        const llmr_error_def *d = llmr_error_def_of((enum llmr_error_kind)k);
        size_t n = llmr_error_json(body, sizeof(body), (enum llmr_error_kind)k, NULL, NULL,
                                   "a \"quoted\"\n message \xff");
        int parsed = llmr_json_parse(&j, body, n, 64) == 0 && j.toks[0].type == JSMN_OBJECT;

        ok &= T_CHECK(d->status >= 400 && d->status <= 599);
        ok &= T_CHECK(d->type != NULL && d->message != NULL);
        ok &= T_CHECK(parsed);
        if (!parsed)
            continue;
        ok &= T_EQ_STR(field(&j, "type", buf, sizeof(buf)), d->type);
        ok &= T_EQ_STR(field(&j, "code", buf, sizeof(buf)), d->code ? d->code : "null");
        ok &= T_EQ_STR(field(&j, "param", buf, sizeof(buf)), d->param ? d->param : "null");
        ok &= T_EQ_STR(field(&j, "message", buf, sizeof(buf)),
                       "a \"quoted\"\n message \xef\xbf\xbd");
    }
    T_CHECK(ok);
    llmr_json_free(&j);
}

/* A message longer than the body's room still gives valid JSON. */
static void test_long_message_stays_valid(void)
{
    char body[512], msg[4096];
    llmr_json j = { 0 };
    size_t n;

    memset(msg, '"', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    n = llmr_error_json(body, sizeof(body), LLMR_E_BAD_REQUEST, NULL, NULL, msg);
    T_CHECK(n < sizeof(body));
    T_EQ_INT(llmr_json_parse(&j, body, n, 64), 0);
    llmr_json_free(&j);
}

/* The exact bytes of the pre-table bodies, for kinds whose codes the
 * integration tests and clients match. */
static void test_wording_kept(void)
{
    char msg[512], body[1024];

    llmr_error_message(msg, sizeof(msg), LLMR_E_AT_LIMIT, "g", "rpm");
    T_EQ_STR(msg, "model group g: every deployment is at its rpm limit");
    llmr_error_message(msg, sizeof(msg), LLMR_E_UPSTREAM_UNREACHABLE, "g", 3,
                       ", last on deployment ", "d1");
    T_EQ_STR(msg, "model group g: upstream unreachable after 3 attempt(s), last on deployment d1");
    llmr_error_message(msg, sizeof(msg), LLMR_E_UPSTREAM_TLS, "g", 1,
                       ", last on deployment ", "d1", "SSL certificate problem: x");
    T_EQ_STR(msg, "model group g: TLS with the upstream failed after 1 attempt(s), last on "
             "deployment d1: SSL certificate problem: x (is the certificate signed by a CA "
             "of ssl_verify's bundle?)");
    T_EQ_INT(llmr_error_def_of(LLMR_E_UPSTREAM_TLS)->status, 502);
    llmr_error_message(msg, sizeof(msg), LLMR_E_MODEL_NOT_FOUND, 3, "gpt-x", "...");
    T_EQ_STR(msg, "The model `gpt...` does not exist");
    llmr_error_json(body, sizeof(body), LLMR_E_DUPLICATE_KEY, "stream", NULL, "m");
    T_EQ_STR(body, "{\"error\":{\"message\":\"m\",\"type\":\"invalid_request_error\","
             "\"param\":\"stream\",\"code\":\"duplicate_key\"}}");
    llmr_error_json(body, sizeof(body), LLMR_E_OUT_OF_MEMORY, NULL, NULL, "out of memory");
    T_EQ_STR(body, "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
             "\"param\":null,\"code\":null}}");
    /* A stream's failure names its classification as the code. */
    llmr_error_json(body, sizeof(body), LLMR_E_STREAM_FAILED, NULL, "server_error", "x");
    T_EQ_STR(body, "{\"error\":{\"message\":\"x\",\"type\":\"api_error\","
             "\"param\":null,\"code\":\"server_error\"}}");
    T_EQ_INT(llmr_error_def_of(LLMR_E_LOCAL_EXHAUSTED)->status, 503);
    T_EQ_INT(llmr_error_def_of(LLMR_E_UPSTREAM_TIMEOUT)->status, 504);
    T_EQ_INT(llmr_error_def_of(LLMR_E_REQUEST_TIMEOUT)->status, 408);
}

int main(void)
{
    T_RUN(test_every_kind_is_a_valid_openai_error);
    T_RUN(test_long_message_stays_valid);
    T_RUN(test_wording_kept);
    return T_DONE();
}
