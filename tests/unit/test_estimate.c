/* The prompt-token estimate (worker/estimate.c) that admits a request
 * against tpm and max_input_tokens: bytes of the string values of the
 * top-level messages, prompt and input / 4 (rounded up), plus 4 a message,
 * plus 3. */
#include "../../worker/estimate.c"

#include "t.h"

/* The estimate for a body; -1 (and a failed check) when it does not parse. */
static int64_t estimate(const char *body)
{
    llmr_json j = { 0 };
    int64_t n = -1;

    if (T_EQ_INT(llmr_json_parse(&j, body, strlen(body), 1 << 20), 0))
        n = llmr_estimate_prompt_tokens(&j);
    llmr_json_free(&j);
    return n;
}

static void test_chat_messages(void)
{
    /* "user" + "hello" = 9 bytes: 3 tokens, + 4 for the message, + 3 */
    T_EQ_INT(estimate("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"),
             10);
    /* three messages of "user" + 4 bytes: 24 bytes = 6, + 12, + 3 */
    T_EQ_INT(estimate("{\"messages\":[{\"role\":\"user\",\"content\":\"abcd\"},"
                      "{\"role\":\"user\",\"content\":\"efgh\"},"
                      "{\"role\":\"user\",\"content\":\"ijkl\"}]}"), 21);
    /* content parts: every string value counts, keys do not */
    T_EQ_INT(estimate("{\"messages\":[{\"role\":\"user\",\"content\":"
                      "[{\"type\":\"text\",\"text\":\"abcd\"}]}]}"), 10);
    T_EQ_INT(estimate("{\"messages\":[]}"), 3);
    T_EQ_INT(estimate("{}"), 3);
}

/* Only the prompt counts: the model, sampling options and numbers do not. */
static void test_what_is_not_counted(void)
{
    const char *a = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
    const char *b = "{\"model\":\"a-much-longer-model-name\",\"user\":\"someone-else\","
                    "\"stop\":[\"xxxxxxxxxxxxxxxx\"],\"temperature\":0.5,\"max_tokens\":100000,"
                    "\"messages\":[{\"role\":\"user\",\"content\":\"hello\",\"n\":123456789}]}";

    T_EQ_INT(estimate(a), estimate(b));
    /* a "messages" below the top level is not the prompt */
    T_EQ_INT(estimate("{\"metadata\":{\"messages\":[\"xxxxxxxxxxxxxxxx\"],"
                      "\"prompt\":\"xxxxxxxx\"}}"), 3);
}

/* Completions (prompt) and embeddings (input): a string or an array of
 * them, no per-message charge. */
static void test_prompt_and_input(void)
{
    T_EQ_INT(estimate("{\"prompt\":\"abcdefgh\"}"), 5);
    T_EQ_INT(estimate("{\"prompt\":[\"abcd\",\"efgh\"]}"), 5);
    T_EQ_INT(estimate("{\"prompt\":\"abcdefghi\"}"), 6);         /* 9 bytes round up */
    T_EQ_INT(estimate("{\"input\":[\"abcd\",\"efgh\",\"ijkl\",\"mnop\"]}"), 7);
    T_EQ_INT(estimate("{\"input\":\"a\",\"prompt\":\"b\"}"), 4);   /* both add up */
}

/* A big prompt: the estimate grows with its bytes (no cap, no overflow). */
static void test_big_prompt(void)
{
    size_t n = 4 << 20;
    const char *head = "{\"messages\":[{\"role\":\"user\",\"content\":\"";
    const char *tail = "\"}]}";
    char *body = malloc(strlen(head) + n + strlen(tail) + 1);

    if (!T_CHECK(body != NULL))
        return;
    strcpy(body, head);
    memset(body + strlen(head), 'x', n);
    strcpy(body + strlen(head) + n, tail);
    T_EQ_INT(estimate(body), (int64_t)(n + 4 + 3) / 4 + 4 + 3);
    free(body);
}

int main(void)
{
    T_RUN(test_chat_messages);
    T_RUN(test_what_is_not_counted);
    T_RUN(test_prompt_and_input);
    T_RUN(test_big_prompt);
    return T_DONE();
}
