/* The worker's JSON reader: strict grammar, linear time whatever the shape,
 * the depth bound, lookups at the top level with escaped keys, duplicate
 * keys, skipping, integers, the member scan of big answers, escaping. */
#include "../../worker/json.c"

#include "t.h"

#include <time.h>

static int parse(llmr_json *j, const char *s)
{
    return llmr_json_parse(j, s, strlen(s), 1 << 16);
}

static void test_get_top_level_only(void)
{
    llmr_json j = { 0 };
    const char *s = "{\"a\":{\"model\":\"inner\"},\"model\":\"outer\",\"z\":[1,{\"model\":2}]}";

    T_EQ_INT(parse(&j, s), 0);
    int m = llmr_json_get(&j, 0, "model");
    T_CHECK(m > 0);
    T_CHECK(llmr_json_eq(&j, m, "outer"));
    T_EQ_INT(llmr_json_get(&j, 0, "missing"), -1);
    T_EQ_INT(llmr_json_get(&j, m, "model"), -1);     /* not an object */
    llmr_json_free(&j);
}

static void test_rejects_invalid(void)
{
    llmr_json j = { 0 };
    const char *bad[] = { "", "{", "{\"a\":}", "{\"a\":1} x", "{\"a\" \"b\"}", "nul",
                          "{\"a\":1}{\"b\":2}", "{'a':1}",
                          "{\"a\":1,}", "[1,]", "{\"a\":{\"b\"}}", "{1:2}",
                          "[,1]", "[1,,2]", "{\"a\"::1}", "{\"a\":1 \"b\":2}", "[1 2]",
                          "[tru]", "[nulll]", "[01]", "[1.]", "[.5]", "[1e]", "[-]", "[+1]",
                          "[0x10]", "[1.5e+]" };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        T_CHECK(parse(&j, bad[i]) == -1);
    T_EQ_INT(parse(&j, " {\"a\":[1,2]} \n"), 0);
    T_EQ_INT(parse(&j, "{ \"a\" : [ 1 , \"x\" , { } , [ ] , {\"b\":null} ] ,\n\"c\":\"\\\"\"}"), 0);
    T_EQ_INT(parse(&j, "{}"), 0);
    T_EQ_INT(parse(&j, "[0,-0,1.5,-2.25e-3,1E9,10,true,false,null]"), 0);
    llmr_json_free(&j);
}

static void test_grows_and_caps_tokens(void)
{
    llmr_json j = { 0 };
    char buf[8192];
    size_t n = 0;

    n += (size_t)sprintf(buf, "{\"input\":[");
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(buf + n, "%s%d", i ? "," : "", i);
    sprintf(buf + n, "],\"model\":\"m\"}");
    T_EQ_INT(parse(&j, buf), 0);
    T_CHECK(llmr_json_eq(&j, llmr_json_get(&j, 0, "model"), "m"));
    T_EQ_INT(llmr_json_parse(&j, buf, strlen(buf), 100), -1);   /* over the cap */
    llmr_json_free(&j);
}

static void test_int_and_true(void)
{
    llmr_json j = { 0 };
    int64_t v = -5;

    T_EQ_INT(parse(&j, "{\"u\":{\"p\":123,\"c\":-1,\"f\":1.5},\"s\":true,\"t\":\"true\"}"), 0);
    int u = llmr_json_get(&j, 0, "u");
    T_EQ_INT(llmr_json_int(&j, llmr_json_get(&j, u, "p"), &v), 0);
    T_EQ_INT(v, 123);
    T_EQ_INT(llmr_json_int(&j, llmr_json_get(&j, u, "c"), &v), -1);
    T_EQ_INT(llmr_json_int(&j, llmr_json_get(&j, u, "f"), &v), -1);
    T_EQ_INT(llmr_json_int(&j, -1, &v), -1);
    T_CHECK(llmr_json_is_true(&j, llmr_json_get(&j, 0, "s")));
    T_CHECK(!llmr_json_is_true(&j, llmr_json_get(&j, 0, "t")));
    llmr_json_free(&j);
}

static void test_skip(void)
{
    llmr_json j = { 0 };

    T_EQ_INT(parse(&j, "{\"a\":[1,[2,3],{\"b\":4}],\"c\":5}"), 0);
    /* tokens: 0 obj, 1 "a", 2 arr, 3 1, 4 arr, 5 2, 6 3, 7 obj, 8 "b", 9 4, 10 "c" */
    T_EQ_INT(llmr_json_skip(&j, 2), 10);
    T_EQ_INT(llmr_json_skip(&j, 0), j.ntoks);
    llmr_json_free(&j);
}

static void test_escape(void)
{
    char out[64];

    T_EQ_INT(llmr_json_escape(out, sizeof(out), "a\"b\\c\n\x01", 7), 15);
    T_EQ_STR(out, "a\\\"b\\\\c\\n\\u0001");
    /* Truncation never splits an escape and always terminates. */
    T_EQ_INT(llmr_json_escape(out, 4, "ab\"", 3), 2);
    T_EQ_STR(out, "ab");
}

static void test_unescape(void)
{
    char out[32];
    const char *s = "gpt\\u002d3.5 \\\"q\\\" \\u00e9 \\ud83d\\ude00";

    T_EQ_INT(llmr_json_unescape(out, sizeof(out), s, strlen(s)), 19);
    T_EQ_STR(out, "gpt-3.5 \"q\" \xc3\xa9 \xf0\x9f\x98\x80");
    T_EQ_INT(llmr_json_unescape(out, sizeof(out), "\\x", 2), -1);
    T_EQ_INT(llmr_json_unescape(out, sizeof(out), "\\u12", 4), -1);
    T_EQ_INT(llmr_json_unescape(out, sizeof(out), "\\ud83d", 6), -1);   /* lone surrogate */
    T_EQ_INT(llmr_json_unescape(out, 4, "abcd", 4), -1);                  /* does not fit */
}

static void test_control_chars_rejected(void)
{
    llmr_json j = { 0 };

    T_EQ_INT(parse(&j, "{\"a\":\"x\x01y\"}"), -1);
    T_EQ_INT(parse(&j, "{\"a\":\"x\ny\"}"), -1);
    T_EQ_INT(parse(&j, "{\"a\":\"x\\ny \xc3\xa9\"}"), 0);
    llmr_json_free(&j);
}

static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A 1 MiB body built by repeating `unit` between a prefix and a suffix. */
static char *body_of(const char *pre, const char *unit, const char *post, size_t *len)
{
    size_t n = strlen(unit), cap = 1 << 20, o = strlen(pre);
    char *b = malloc(cap + 64);

    memcpy(b, pre, o);
    while (o + n + strlen(post) + 1 < cap) {
        memcpy(b + o, unit, n);
        o += n;
    }
    if (b[o - 1] == ',')
        o--;
    strcpy(b + o, post);
    *len = o + strlen(post);
    return b;
}

/* The shapes that made jsmn quadratic (wide arrays of empty containers,
 * many keys, repeated deep nests): each 1 MiB document parses and is looked
 * up in well under what the old code took (46 s for the first one).  The
 * bound is wide for sanitizer builds; a linear parser needs milliseconds. */
static void test_linear_on_hostile_shapes(void)
{
    static const char *const shapes[][3] = {
        { "{\"model\":\"x\",\"messages\":[],\"a\":[", "[],", "]}" },
        { "{\"model\":\"x\",\"a\":[", "{},", "]}" },
        { "{\"model\":\"x\",\"a\":{", "\"k\":{},", "}}" },
        { "{\"a\":[", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],",
          "],\"model\":\"x\"}" },
        { "{", "\"k\":1,", ",\"model\":\"x\"}" },
    };
    llmr_json j = { 0 };

    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        size_t len;
        char *b = body_of(shapes[i][0], shapes[i][1], shapes[i][2], &len);
        double t0 = cpu_s();

        T_EQ_INT(llmr_json_parse(&j, b, len, (int)(len / 2) + 64), 0);
        T_CHECK(llmr_json_eq(&j, llmr_json_get(&j, 0, "model"), "x"));
        T_EQ_INT(llmr_json_get(&j, 0, "missing"), -1);
        T_EQ_INT(llmr_json_skip(&j, 0), j.ntoks);
        llmr_estimate_prompt_tokens(&j);
        T_CHECK(cpu_s() - t0 < 0.5);
        free(b);
    }
    llmr_json_free(&j);
}

static void test_depth_bound_while_scanning(void)
{
    llmr_json j = { 0 };
    char b[2 * LLMR_JSON_MAX_DEPTH + 8];
    int d = LLMR_JSON_MAX_DEPTH;

    memset(b, '[', (size_t)d);
    memset(b + d, ']', (size_t)d);
    T_EQ_INT(llmr_json_parse(&j, b, 2 * (size_t)d, 1 << 16), 0);     /* at the bound */
    T_EQ_INT(j.ntoks, d);
    memset(b, '[', (size_t)d + 1);
    memset(b + d + 1, ']', (size_t)d + 1);
    T_EQ_INT(llmr_json_parse(&j, b, 2 * (size_t)d + 2, 1 << 16), -1);
    T_EQ_STR(j.err, "nested too deeply");
    /* Refused at the first bracket too many, not after reading to the end:
     * the rest here is not even JSON. */
    memcpy(b + d + 1, "garbage", 7);
    T_EQ_INT(llmr_json_parse(&j, b, (size_t)d + 8, 1 << 16), -1);
    T_EQ_STR(j.err, "nested too deeply");
    llmr_json_free(&j);
}

static void test_token_cap_stops_early(void)
{
    llmr_json j = { 0 };
    size_t len;
    char *b = body_of("[", "1,", "]", &len);

    T_EQ_INT(llmr_json_parse(&j, b, len, 1000), -1);
    T_EQ_STR(j.err, "too many JSON tokens");
    T_CHECK(j.cap <= 1000);                 /* never grew past the cap */
    T_EQ_INT(llmr_json_parse(&j, b, len, (int)len), 0);
    T_CHECK(j.cap > KEEP_TOKENS);
    T_EQ_INT(parse(&j, "{}"), 0);           /* the next parse gives the memory back */
    T_CHECK(j.cap <= KEEP_TOKENS);
    free(b);
    llmr_json_free(&j);
}

/* Token shapes the readers of a request body's tokens rely on, as jsmn gives them. */
static void test_jsmn_shapes(void)
{
    llmr_json j = { 0 };

    T_EQ_INT(parse(&j, "{\"a\":[1,{\"b\":\"c\"}],\"d\":{}}"), 0);
    /* 0 obj, 1 "a", 2 arr, 3 1, 4 obj, 5 "b", 6 "c", 7 "d", 8 obj */
    T_EQ_INT(j.ntoks, 9);
    T_EQ_INT(j.toks[0].size, 2);
    T_EQ_INT(j.toks[1].size, 1);
    T_EQ_INT(j.toks[2].size, 2);
    T_EQ_INT(j.toks[4].size, 1);
    T_EQ_INT(j.toks[6].size, 0);
    T_EQ_INT(j.toks[8].size, 0);
    T_EQ_INT(j.toks[6].type, JSMN_STRING);
    T_EQ_INT(j.toks[6].start, 14);
    T_EQ_INT(j.toks[6].end, 15);
    T_EQ_INT(j.toks[2].start, 5);
    T_EQ_INT(j.toks[2].end, 18);
    T_EQ_INT(j.toks[0].end, 26);
    T_EQ_INT(llmr_json_skip(&j, 1), 7);     /* a key with its value */
    T_EQ_INT(llmr_json_skip(&j, 4), 7);
    T_EQ_INT(llmr_json_skip(&j, 7), 9);
    llmr_json_free(&j);
}

static void test_escaped_keys(void)
{
    llmr_json j = { 0 };

    T_EQ_INT(parse(&j, "{\"mod\\u0065l\":\"a\",\"\\u0073tream\":true,"
                       "\"\\ud800x\":1,\"in\\/put\":2}"), 0);
    T_CHECK(llmr_json_eq(&j, llmr_json_get(&j, 0, "model"), "a"));
    T_CHECK(llmr_json_is_true(&j, llmr_json_get(&j, 0, "stream")));
    T_EQ_INT(llmr_json_get(&j, 0, "in/put"), 8);
    T_EQ_INT(llmr_json_get(&j, 0, "mode"), -1);
    T_EQ_INT(llmr_json_get(&j, 0, "x"), -1);           /* lone surrogate: no match */
    T_CHECK(!llmr_json_eq(&j, 1, "model\\"));
    llmr_json_free(&j);
}

static void test_duplicate_keys(void)
{
    static const char *const names[] = { "model", "stream", "input" };
    llmr_json j = { 0 };

    T_EQ_INT(parse(&j, "{\"model\":\"a\",\"x\":1,\"model\":\"b\"}"), 0);
    T_EQ_INT(llmr_json_dup_key(&j, 0, names, 3), 0);
    T_EQ_INT(parse(&j, "{\"model\":\"a\",\"mod\\u0065l\":\"b\"}"), 0);
    T_EQ_INT(llmr_json_dup_key(&j, 0, names, 3), 0);
    T_EQ_INT(parse(&j, "{\"stream\":true,\"model\":\"a\",\"stream\":false}"), 0);
    T_EQ_INT(llmr_json_dup_key(&j, 0, names, 3), 1);
    /* Nested keys and keys nobody reads may repeat. */
    T_EQ_INT(parse(&j, "{\"model\":\"a\",\"m\":{\"model\":1,\"model\":2},\"x\":1,\"x\":2}"), 0);
    T_EQ_INT(llmr_json_dup_key(&j, 0, names, 3), -1);
    T_EQ_INT(llmr_json_dup_key(&j, 4, names, 3), 0);
    llmr_json_free(&j);
}

static void test_member_scan(void)
{
    const char *s = "{\"data\":[{\"usage\":1,\"s\":\"}]\\\"{\"}],\"u\\u0073age\" : "
                    "{\"prompt_tokens\":7} ,\"z\":null}";
    size_t off, n;

    T_EQ_INT(llmr_json_member(s, strlen(s), "usage", &off, &n), 0);
    T_CHECK(n == 19 && memcmp(s + off, "{\"prompt_tokens\":7}", n) == 0);
    T_EQ_INT(llmr_json_member(s, strlen(s), "z", &off, &n), 0);
    T_CHECK(n == 4 && memcmp(s + off, "null", 4) == 0);
    T_EQ_INT(llmr_json_member(s, strlen(s), "prompt_tokens", &off, &n), -1);
    T_EQ_INT(llmr_json_member("[1]", 3, "usage", &off, &n), -1);
    T_EQ_INT(llmr_json_member("{\"a\":[1,2", 9, "usage", &off, &n), -1);
    T_EQ_INT(llmr_json_member("{\"a\":\"x", 7, "a", &off, &n), -1);
    T_EQ_INT(llmr_json_member("{}", 2, "a", &off, &n), -1);
}

/* The byte-at-a-time definition string_end() replaced: a backslash
 * escapes the byte after it. */
static size_t string_end_ref(const char *s, size_t i, size_t len)
{
    for (i++; i < len; i++) {
        if (s[i] == '"')
            return i + 1;
        if (s[i] == '\\')
            i++;
    }
    return 0;
}

/* string_end() finds quotes with memchr() and counts the backslashes
 * before each: the same end as the reference on every string built of
 * quotes, backslashes and letters, cut anywhere (runs of backslashes of
 * both parities, a backslash last, no closing quote). */
static void test_string_end_as_byte_loop(void)
{
    static const char alpha[] = "\"\\\\a";
    char s[16];
    int bad = 0, n = 0;

    for (uint32_t code = 0; code < 1u << 20; code++) {    /* 4^10 strings of 10 */
        uint32_t c = code;

        s[0] = '"';
        for (int k = 1; k <= 10; k++, c >>= 2)
            s[k] = alpha[c & 3];
        for (size_t len = 1; len <= 11; len++, n++)
            bad += string_end(s, 0, len) != string_end_ref(s, 0, len);
    }
    T_EQ_INT(bad, 0);
    T_CHECK(n > 10000000);
    /* the same after 8 to 20 plain letters (8 of the alphabet): the runs of
     * backslashes are counted back from each quote, never past the start */
    char t[40];
    bad = n = 0;
    for (size_t pre = 8; pre <= 20; pre++)
        for (uint32_t code = 0; code < 1u << 16; code++) {
            uint32_t c = code;

            t[0] = '"';
            memset(t + 1, 'b', pre);
            for (size_t k = 0; k < 8; k++, c >>= 2)
                t[1 + pre + k] = alpha[c & 3];
            for (size_t len = pre; len <= pre + 9; len++, n++)
                bad += string_end(t, 0, len) != string_end_ref(t, 0, len);
        }
    T_EQ_INT(bad, 0);
    T_CHECK(n > 8000000);
    T_EQ_INT(string_end("x\"ab\\\\\"c", 1, 8), 7);     /* "ab\\" ends at the quote */
    T_EQ_INT(string_end("\"a\\\"b", 0, 5), 0);            /* "a\"b: escaped, no end */
}

static void test_escape_utf8(void)
{
    char out[64];

    /* Stray continuation, overlong '/', a surrogate, a truncated sequence,
     * past U+10FFFF: each byte becomes U+FFFD.  Valid text stays as is. */
    T_EQ_INT(llmr_json_escape(out, sizeof(out), "\x80\xc0\xaf", 3), 9);
    T_EQ_STR(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    T_EQ_INT(llmr_json_escape(out, sizeof(out), "\xed\xa0\x80", 3), 9);
    T_EQ_INT(llmr_json_escape(out, sizeof(out), "a\xe2\x82", 3), 7);
    T_EQ_INT(llmr_json_escape(out, sizeof(out), "\xf4\x90\x80\x80", 4), 12);
    T_EQ_INT(llmr_json_escape(out, sizeof(out), "\xc3\xa9\xf0\x9f\x98\x80\t", 7), 12);
    T_EQ_STR(out, "\xc3\xa9\xf0\x9f\x98\x80\\u0009");
    /* Truncation never splits a character. */
    T_EQ_INT(llmr_json_escape(out, 5, "ab\xf0\x9f\x98\x80", 6), 2);
    T_EQ_STR(out, "ab");
}

int main(void)
{
    T_RUN(test_unescape);
    T_RUN(test_control_chars_rejected);
    T_RUN(test_get_top_level_only);
    T_RUN(test_rejects_invalid);
    T_RUN(test_grows_and_caps_tokens);
    T_RUN(test_int_and_true);
    T_RUN(test_skip);
    T_RUN(test_escape);
    T_RUN(test_linear_on_hostile_shapes);
    T_RUN(test_depth_bound_while_scanning);
    T_RUN(test_token_cap_stops_early);
    T_RUN(test_jsmn_shapes);
    T_RUN(test_escaped_keys);
    T_RUN(test_duplicate_keys);
    T_RUN(test_member_scan);
    T_RUN(test_string_end_as_byte_loop);
    T_RUN(test_escape_utf8);
    return T_DONE();
}
