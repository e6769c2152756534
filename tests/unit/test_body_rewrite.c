/* The body an upstream gets (worker/provider.c): only the inside of the
 * "model" string changes. */
#include "../../worker/provider.c"

#include "t.h"

static char *rewrite(const char *body, const char *model, size_t *len)
{
    const char *m = strstr(body, "\"model\":");
    const char *start = strchr(m + 7, '"') + 1, *end = strchr(start, '"');

    llmr_body_edit e = { .model_start = (size_t)(start - body), .model_end = (size_t)(end - body) };
    char *b = llmr_body_rewrite(body, strlen(body), &e, model, len);
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

/* The per-request controls llmroute reads and never sends upstream. */
static const char *const controls[] = {
    "fallbacks", "context_window_fallbacks", "num_retries", "timeout",
};

/* `body` planned and rewritten with `model`: a terminated copy. */
static char *planned(const char *body, const char *model)
{
    llmr_json j = { 0 };
    llmr_body_edit e;
    size_t n;
    char *b, *s = NULL;

    if (!T_EQ_INT(llmr_json_parse(&j, body, strlen(body), 256), 0)
        || !T_EQ_INT(llmr_body_plan(&j, controls, 4, &e), 0)) {
        llmr_json_free(&j);
        return strdup("");
    }
    b = llmr_body_rewrite(body, strlen(body), &e, model, &n);
    if (b != NULL && (s = malloc(n + 1)) != NULL) {
        memcpy(s, b, n);
        s[n] = '\0';
    }
    free(b);
    llmr_json_free(&j);
    return s;
}

#define PLANNED(body, model, want)           \
    do {                                     \
        char *got_ = planned(body, model);   \
        T_EQ_STR(got_, want);                \
        free(got_);                          \
    } while (0)

static void test_controls_dropped(void)
{
    /* Nothing to drop: byte for byte, spacing included. */
    PLANNED("{ \"model\" : \"g\",\n  \"x\": [1, 2] }", "m", "{ \"model\" : \"m\",\n  \"x\": [1, 2] }");
    /* First, middle, last member; a run of two; every member but the model. */
    PLANNED("{\"num_retries\":2,\"model\":\"g\",\"x\":1}", "m", "{\"model\":\"m\",\"x\":1}");
    PLANNED("{\"model\":\"g\", \"timeout\": 1.5, \"x\":1}", "m", "{\"model\":\"m\", \"x\":1}");
    PLANNED("{\"model\":\"g\",\"x\":1,\"fallbacks\":[\"a\",\"b\"]}", "m",
            "{\"model\":\"m\",\"x\":1}");
    PLANNED("{\"model\":\"g\",\"fallbacks\":[\"a\"],\"timeout\":3,\"x\":{\"timeout\":1}}", "m",
            "{\"model\":\"m\",\"x\":{\"timeout\":1}}");
    PLANNED("{\"model\":\"g\",\"x\":1,\"num_retries\":0,\"context_window_fallbacks\":[]}", "m",
            "{\"model\":\"m\",\"x\":1}");
    PLANNED("{\"timeout\":1,\"model\":\"g\",\"num_retries\":1}", "m", "{\"model\":\"m\"}");
    /* Two runs apart, and a string that only looks like a control. */
    PLANNED("{\"timeout\":1,\"a\":\"timeout\",\"num_retries\":1,\"model\":\"g\"}", "m",
            "{\"a\":\"timeout\",\"model\":\"m\"}");
}

static void test_model_inserted(void)
{
    /* AzureOpenAI clients send no model: the deployment's goes first. */
    PLANNED("{\"messages\":[]}", "gpt-4o", "{\"model\":\"gpt-4o\",\"messages\":[]}");
    PLANNED("{ \"input\": \"x\" }", "e\"m", "{\"model\":\"e\\\"m\", \"input\": \"x\" }");
    PLANNED("{}", "m", "{\"model\":\"m\"}");
    PLANNED("{\"timeout\":2}", "m", "{\"model\":\"m\"}");
    PLANNED("{\"timeout\":2,\"input\":\"x\"}", "m", "{\"model\":\"m\",\"input\":\"x\"}");
}

int main(void)
{
    T_RUN(test_model_replaced_rest_kept);
    T_RUN(test_model_escaped);
    T_RUN(test_shorter_and_empty);
    T_RUN(test_controls_dropped);
    T_RUN(test_model_inserted);
    return T_DONE();
}
