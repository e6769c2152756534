/* json helpers over jsmn: lookups at the top level, skipping, integers,
 * escaping. */
#include "../../worker/json.c"

#include "t.h"

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
    return T_DONE();
}
