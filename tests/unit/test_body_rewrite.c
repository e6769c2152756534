/* The body an upstream gets (worker/provider.c): only the inside of the
 * "model" string changes. */
#include "../../worker/provider.c"

#include "t.h"

static char *rewrite(const char *body, const char *model, size_t *len)
{
    const char *m = strstr(body, "\"model\":");
    const char *start = strchr(m + 7, '"') + 1, *end = strchr(start, '"');

    char *b = llmr_body_with_model(body, strlen(body), (size_t)(start - body),
                                   (size_t)(end - body), model, len);
    char *s = b != NULL ? malloc(*len + 1) : NULL;

    /* The body is counted, not terminated: a string of it to compare. */
    if (s != NULL) {
        memcpy(s, b, *len);
        s[*len] = '\0';
    }
    free(b);
    return s;
}

static void test_model_replaced_rest_kept(void)
{
    size_t n;
    char *b = rewrite("{\"messages\":[{\"role\":\"user\",\"content\":\"model\"}],"
                      "\"model\":\"group-a\",\"x\":1}", "gpt-4o-mini", &n);

    T_EQ_STR(b, "{\"messages\":[{\"role\":\"user\",\"content\":\"model\"}],"
             "\"model\":\"gpt-4o-mini\",\"x\":1}");
    T_EQ_INT(n, strlen(b));
    free(b);
}

static void test_model_escaped(void)
{
    size_t n;
    char *b = rewrite("{\"model\":\"g\"}", "a\"b\\c", &n);

    T_EQ_STR(b, "{\"model\":\"a\\\"b\\\\c\"}");
    T_EQ_INT(n, strlen(b));
    free(b);
}

static void test_shorter_and_empty(void)
{
    size_t n;
    char *b = rewrite("{\"model\":\"a-very-long-group-name\"}", "", &n);

    T_EQ_STR(b, "{\"model\":\"\"}");
    free(b);
    b = rewrite("{\"model\":\"\",\"stream\":true}", "m", &n);
    T_EQ_STR(b, "{\"model\":\"m\",\"stream\":true}");
    T_EQ_INT(n, strlen(b));
    free(b);
}

int main(void)
{
    T_RUN(test_model_replaced_rest_kept);
    T_RUN(test_model_escaped);
    T_RUN(test_shorter_and_empty);
    return T_DONE();
}
