/* What an upstream failure means for routing (worker/classify.c): every
 * class, from the transfer's result, the status and the error body, with
 * the exact bodies OpenAI and Azure send for a prompt past the context
 * window and for a content-policy refusal. */
#include "../../worker/classify.c"

#include "t.h"

static const llmr_deployment dep;

static enum llmr_err classify(CURLcode result, long status, const char *body)
{
    return llmr_classify(&dep, result, status, body, body != NULL ? strlen(body) : 0);
}

static enum llmr_err http(long status, const char *body)
{
    return classify(CURLE_OK, status, body);
}

/* OpenAI, chat completions, a prompt past the window (HTTP 400). */
static const char openai_context[] =
    "{\n  \"error\": {\n    \"message\": \"This model's maximum context length is 8192 "
    "tokens. However, your messages resulted in 8215 tokens. Please reduce the length of "
    "the messages.\",\n    \"type\": \"invalid_request_error\",\n    \"param\": \"messages\","
    "\n    \"code\": \"context_length_exceeded\"\n  }\n}\n";
/* Azure OpenAI, the same refusal (HTTP 400). */
static const char azure_context[] =
    "{\"error\":{\"message\":\"This model's maximum context length is 4096 tokens. However, "
    "you requested 4427 tokens (3427 in the messages, 1000 in the completion). Please reduce "
    "the length of the messages or completion.\",\"type\":\"invalid_request_error\","
    "\"param\":\"messages\",\"code\":\"context_length_exceeded\"}}";
/* OpenAI's newer wording, without the code. */
static const char openai_context_nocode[] =
    "{\"error\":{\"message\":\"Input tokens exceed the configured limit of 272000 tokens. "
    "Your messages resulted in 300012 tokens. Please reduce the length of the messages.\","
    "\"type\":\"invalid_request_error\",\"param\":\"messages\",\"code\":null}}";
/* Azure OpenAI's content filter on the prompt (HTTP 400). */
static const char azure_policy[] =
    "{\"error\":{\"message\":\"The response was filtered due to the prompt triggering Azure "
    "OpenAI's content management policy. Please modify your prompt and retry. To learn more "
    "about our content filtering policies please read our documentation: "
    "https://go.microsoft.com/fwlink/?linkid=2198766\",\"type\":null,\"param\":\"prompt\","
    "\"code\":\"content_filter\",\"status\":400,\"innererror\":{\"code\":"
    "\"ResponsibleAIPolicyViolation\",\"content_filter_result\":{\"hate\":{\"filtered\":false,"
    "\"severity\":\"safe\"},\"jailbreak\":{\"filtered\":false,\"detected\":false},"
    "\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":true,"
    "\"severity\":\"medium\"},\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}}}}";
/* OpenAI's safety system (images and moderated models, HTTP 400). */
static const char openai_policy[] =
    "{\"error\":{\"code\":\"content_policy_violation\",\"message\":\"Your request was rejected "
    "as a result of our safety system. Your prompt may contain text that is not allowed by "
    "our safety system.\",\"param\":null,\"type\":\"invalid_request_error\"}}";

static void test_transfer_errors(void)
{
    T_EQ_INT(classify(CURLE_OPERATION_TIMEDOUT, 0, NULL), LLMR_ERR_TIMEOUT);
    T_EQ_INT(classify(CURLE_OPERATION_TIMEDOUT, 200, "{}"), LLMR_ERR_TIMEOUT);  /* mid-body */
    T_EQ_INT(classify(CURLE_WRITE_ERROR, 200, NULL), LLMR_ERR_OTHER);   /* body over the cap */
    T_EQ_INT(classify(CURLE_COULDNT_CONNECT, 0, NULL), LLMR_ERR_CONNECTION);
    T_EQ_INT(classify(CURLE_COULDNT_RESOLVE_HOST, 0, NULL), LLMR_ERR_CONNECTION);
    T_EQ_INT(classify(CURLE_RECV_ERROR, 200, NULL), LLMR_ERR_CONNECTION);
    T_EQ_INT(classify(CURLE_SSL_CONNECT_ERROR, 0, NULL), LLMR_ERR_CONNECTION);
    T_EQ_INT(classify(CURLE_GOT_NOTHING, 0, NULL), LLMR_ERR_CONNECTION);
}

static void test_statuses(void)
{
    T_EQ_INT(http(200, "{}"), LLMR_ERR_NONE);
    T_EQ_INT(http(201, NULL), LLMR_ERR_NONE);
    T_EQ_INT(http(299, NULL), LLMR_ERR_NONE);
    T_EQ_INT(http(429, "{\"error\":{\"code\":\"rate_limit_exceeded\"}}"), LLMR_ERR_RATE_LIMIT);
    T_EQ_INT(http(408, NULL), LLMR_ERR_TIMEOUT);
    T_EQ_INT(http(401, "{\"error\":{\"code\":\"invalid_api_key\"}}"), LLMR_ERR_AUTH);
    T_EQ_INT(http(403, NULL), LLMR_ERR_AUTH);
    T_EQ_INT(http(404, "{\"error\":{\"code\":\"DeploymentNotFound\"}}"), LLMR_ERR_NOT_FOUND);
    T_EQ_INT(http(500, NULL), LLMR_ERR_SERVER);
    T_EQ_INT(http(502, "<html>Bad Gateway</html>"), LLMR_ERR_SERVER);
    T_EQ_INT(http(503, NULL), LLMR_ERR_SERVER);
    T_EQ_INT(http(504, NULL), LLMR_ERR_SERVER);
    T_EQ_INT(http(599, NULL), LLMR_ERR_SERVER);
    T_EQ_INT(http(400, NULL), LLMR_ERR_BAD_REQUEST);
    T_EQ_INT(http(400, "{\"error\":{\"message\":\"Invalid value for 'temperature'\"}}"),
             LLMR_ERR_BAD_REQUEST);
    T_EQ_INT(http(422, "not json at all"), LLMR_ERR_BAD_REQUEST);
    T_EQ_INT(http(413, ""), LLMR_ERR_BAD_REQUEST);
}

static void test_context_window_bodies(void)
{
    T_EQ_INT(http(400, openai_context), LLMR_ERR_CONTEXT_WINDOW);
    T_EQ_INT(http(400, azure_context), LLMR_ERR_CONTEXT_WINDOW);
    T_EQ_INT(http(400, openai_context_nocode), LLMR_ERR_CONTEXT_WINDOW);
    /* the code alone, the message alone, in any case */
    T_EQ_INT(http(400, "{\"error\":{\"code\":\"context_length_exceeded\"}}"),
             LLMR_ERR_CONTEXT_WINDOW);
    T_EQ_INT(http(400, "{\"error\":{\"message\":\"This model's MAXIMUM CONTEXT LENGTH is "
                       "128000 tokens.\"}}"), LLMR_ERR_CONTEXT_WINDOW);
    T_EQ_INT(http(400, "{\"message\":\"Input is too long for requested model.\"}"),
             LLMR_ERR_CONTEXT_WINDOW);
    T_EQ_INT(http(400, "{\"error\":{\"code\":\"context_window_exceeded\"}}"),
             LLMR_ERR_CONTEXT_WINDOW);
}

static void test_content_policy_bodies(void)
{
    T_EQ_INT(http(400, azure_policy), LLMR_ERR_CONTENT_POLICY);
    T_EQ_INT(http(400, openai_policy), LLMR_ERR_CONTENT_POLICY);
    T_EQ_INT(http(400, "{\"error\":{\"code\":\"content_filter\"}}"), LLMR_ERR_CONTENT_POLICY);
    T_EQ_INT(http(400, "{\"error\":{\"innererror\":{\"code\":\"ResponsibleAIPolicyViolation\""
                       "}}}"), LLMR_ERR_CONTENT_POLICY);
}

/* The status decides before the body: a 429 or a 5xx that quotes a
 * context-length message is still retried, and a 2xx is never an error. */
static void test_status_before_body(void)
{
    T_EQ_INT(http(429, openai_context), LLMR_ERR_RATE_LIMIT);
    T_EQ_INT(http(500, azure_policy), LLMR_ERR_SERVER);
    T_EQ_INT(http(401, openai_context), LLMR_ERR_AUTH);
    T_EQ_INT(http(404, azure_policy), LLMR_ERR_NOT_FOUND);
    T_EQ_INT(http(200, openai_context), LLMR_ERR_NONE);
    /* both markers: the context window wins (a fallback group can serve it) */
    T_EQ_INT(http(400, "{\"code\":\"content_filter\",\"message\":\"maximum context length\"}"),
             LLMR_ERR_CONTEXT_WINDOW);
}

/* Only body[0..len) is read, and never past the first 16 KiB. */
static void test_body_bounds(void)
{
    const char *body = "{\"error\":{\"code\":\"bad\"}} context_length_exceeded";
    size_t json_len = strlen("{\"error\":{\"code\":\"bad\"}}");
    size_t n = SCAN_MAX + 64;
    char *big = malloc(n + 1);

    T_EQ_INT(llmr_classify(&dep, CURLE_OK, 400, body, json_len), LLMR_ERR_BAD_REQUEST);
    T_EQ_INT(llmr_classify(&dep, CURLE_OK, 400, body, strlen(body)), LLMR_ERR_CONTEXT_WINDOW);
    if (!T_CHECK(big != NULL))
        return;
    memset(big, ' ', n);
    memcpy(big + SCAN_MAX - strlen("content_filter"), "content_filter", strlen("content_filter"));
    T_EQ_INT(llmr_classify(&dep, CURLE_OK, 400, big, n), LLMR_ERR_CONTENT_POLICY);
    memset(big, ' ', n);
    memcpy(big + SCAN_MAX + 1, "content_filter", strlen("content_filter"));
    T_EQ_INT(llmr_classify(&dep, CURLE_OK, 400, big, n), LLMR_ERR_BAD_REQUEST);
    free(big);
}

/* Retried in the group and counted towards a cooldown: rate limits,
 * timeouts, 5xx and connection errors; never what the caller must fix. */
static void test_retryable(void)
{
    static const struct { enum llmr_err e; int retry; } want[] = {
        { LLMR_ERR_NONE, 0 }, { LLMR_ERR_RATE_LIMIT, 1 }, { LLMR_ERR_CONTEXT_WINDOW, 0 },
        { LLMR_ERR_CONTENT_POLICY, 0 }, { LLMR_ERR_AUTH, 0 }, { LLMR_ERR_NOT_FOUND, 0 },
        { LLMR_ERR_BAD_REQUEST, 0 }, { LLMR_ERR_TIMEOUT, 1 }, { LLMR_ERR_SERVER, 1 },
        { LLMR_ERR_CONNECTION, 1 }, { LLMR_ERR_OTHER, 0 },
    };

    T_EQ_INT(sizeof(want) / sizeof(want[0]), LLMR_ERR_OTHER + 1);   /* every class */
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!T_EQ_INT(llmr_err_retryable(want[i].e), want[i].retry))
            fprintf(stderr, "    class %s\n", llmr_err_name(want[i].e));
}

static void test_names(void)
{
    T_EQ_STR(llmr_err_name(LLMR_ERR_NONE), "ok");
    T_EQ_STR(llmr_err_name(LLMR_ERR_RATE_LIMIT), "rate_limit");
    T_EQ_STR(llmr_err_name(LLMR_ERR_CONTEXT_WINDOW), "context_window_exceeded");
    T_EQ_STR(llmr_err_name(LLMR_ERR_CONTENT_POLICY), "content_policy");
    T_EQ_STR(llmr_err_name(LLMR_ERR_AUTH), "authentication");
    T_EQ_STR(llmr_err_name(LLMR_ERR_NOT_FOUND), "not_found");
    T_EQ_STR(llmr_err_name(LLMR_ERR_BAD_REQUEST), "bad_request");
    T_EQ_STR(llmr_err_name(LLMR_ERR_TIMEOUT), "timeout");
    T_EQ_STR(llmr_err_name(LLMR_ERR_SERVER), "server_error");
    T_EQ_STR(llmr_err_name(LLMR_ERR_CONNECTION), "connection_error");
    T_EQ_STR(llmr_err_name(LLMR_ERR_OTHER), "error");
    T_EQ_STR(llmr_err_name((enum llmr_err)(LLMR_ERR_OTHER + 1)), "error");
}

int main(void)
{
    T_RUN(test_transfer_errors);
    T_RUN(test_statuses);
    T_RUN(test_context_window_bodies);
    T_RUN(test_content_policy_bodies);
    T_RUN(test_status_before_body);
    T_RUN(test_body_bounds);
    T_RUN(test_retryable);
    T_RUN(test_names);
    return T_DONE();
}
