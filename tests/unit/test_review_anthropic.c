/* Review of the Anthropic translations (issue 16): what a chat body asks
 * for and the Messages API cannot give is refused with its reason, never
 * answered with less than was asked. */
#include <string.h>

#include <event2/buffer.h>

#include "anthropic.h"
#include "t.h"

static int refused(const char *body, const char *why)
{
    struct evbuffer *b = evbuffer_new();
    char err[256] = "";
    int usage, rc = llmr_anth_chat_to_messages(body, strlen(body), "m", b, &usage, err,
                                               sizeof(err));

    evbuffer_free(b);
    return rc == -1 && strstr(err, why) != NULL;
}

static int accepted(const char *body)
{
    struct evbuffer *b = evbuffer_new();
    char err[256] = "";
    int usage, rc = llmr_anth_chat_to_messages(body, strlen(body), "m", b, &usage, err,
                                               sizeof(err));

    evbuffer_free(b);
    return rc == 0;
}

#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void test_n_and_logprobs_refused(void)
{
    T_CHECK(refused("{" MSGS ",\"n\":2}", "n:"));
    T_CHECK(refused("{" MSGS ",\"n\":0}", "n:"));
    T_CHECK(refused("{" MSGS ",\"n\":\"2\"}", "n:"));
    T_CHECK(refused("{" MSGS ",\"logprobs\":true}", "logprobs"));
    T_CHECK(refused("{" MSGS ",\"top_logprobs\":3}", "logprobs"));
    T_CHECK(accepted("{" MSGS ",\"n\":1,\"logprobs\":false}"));
    T_CHECK(accepted("{" MSGS ",\"n\":null,\"logprobs\":null,\"top_logprobs\":null}"));
}

/* The translated body, or "" when the translation refused it. */
static const char *translated(const char *body)
{
    static char out[4096];
    struct evbuffer *b = evbuffer_new();
    char err[256];
    int usage;
    size_t n = 0;

    if (llmr_anth_chat_to_messages(body, strlen(body), "m", b, &usage, err, sizeof(err)) == 0)
        n = (size_t)evbuffer_remove(b, out, sizeof(out) - 1);
    out[n] = '\0';
    evbuffer_free(b);
    return out;
}

#define TOOL "{\"type\":\"function\",\"function\":{\"name\":\"f\"}}"

static void test_tool_choice_only_with_tools(void)
{
    T_CHECK(strstr(translated("{" MSGS ",\"parallel_tool_calls\":false}"), "tool_choice") == NULL);
    T_CHECK(strstr(translated("{" MSGS ",\"tool_choice\":\"none\"}"), "tool_choice") == NULL);
    T_CHECK(strstr(translated("{" MSGS ",\"tool_choice\":\"auto\",\"tools\":[]}"),
                   "tool_choice") == NULL);
    T_CHECK(strstr(translated("{" MSGS ",\"parallel_tool_calls\":false,\"tools\":[" TOOL "]}"),
                   "\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":true}")
            != NULL);
    T_CHECK(strstr(translated("{" MSGS ",\"tool_choice\":\"required\",\"tools\":[" TOOL "]}"),
                   "\"tool_choice\":{\"type\":\"any\"}") != NULL);
}

/* An OpenAI-compatible answer whose cached tokens exceed its prompt gave a
 * negative input_tokens to the Anthropic client. */
static void test_cached_over_prompt_never_negative(void)
{
    static const char in[] = "{\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"message\":"
        "{\"content\":\"x\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,"
        "\"completion_tokens\":1,\"prompt_tokens_details\":{\"cached_tokens\":10}}}";
    struct evbuffer *b = evbuffer_new();
    char err[256], out[1024];
    size_t n;

    T_EQ_INT(llmr_anth_chat_to_message(in, sizeof(in) - 1, b, err, sizeof(err)), 0);
    n = (size_t)evbuffer_remove(b, out, sizeof(out) - 1);
    out[n] = '\0';
    T_CHECK(strstr(out, "\"input_tokens\":0,") != NULL);
    T_CHECK(strstr(out, "\"cache_read_input_tokens\":3}") != NULL);
    evbuffer_free(b);
}

int main(void)
{
    T_RUN(test_n_and_logprobs_refused);
    T_RUN(test_tool_choice_only_with_tools);
    T_RUN(test_cached_over_prompt_never_negative);
    return T_DONE();
}
