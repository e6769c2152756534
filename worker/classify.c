/* What an upstream failure means for routing, decided in one place for
 * every provider: whether to retry in the group, which fallbacks apply, and
 * whether it counts towards a cooldown. */
#include <ctype.h>
#include <string.h>

#include "worker_internal.h"

#define SCAN_MAX 16384  /* error bodies are small; never scan a huge one */

static int contains_ci(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);

    if (len > SCAN_MAX)
        len = SCAN_MAX;
    for (size_t i = 0; i + n <= len; i++) {
        size_t k = 0;
        while (k < n && tolower((unsigned char)hay[i + k]) == needle[k])
            k++;
        if (k == n)
            return 1;
    }
    return 0;
}

static int any_of(const char *body, size_t len, const char *const *needles)
{
    for (; *needles != NULL; needles++)
        if (contains_ci(body, len, *needles))
            return 1;
    return 0;
}

/* OpenAI's and Azure's codes and the message forms seen in the wild (what
 * LiteLLM's exception mapping keys on), lower case. */
static const char *const context_markers[] = {
    "context_length_exceeded", "maximum context length", "context_window_exceeded",
    "reduce the length of the messages", "input is too long",
    "prompt is too long",   /* Anthropic's 400 */
    NULL
};
static const char *const policy_markers[] = {
    "content_filter", "responsibleaipolicyviolation", "content management policy",
    "content_policy_violation", NULL
};

enum llmr_err llmr_classify(const llmr_deployment *d, CURLcode result, long status,
                            const char *body, size_t len)
{
    (void)d;    /* OpenAI and Azure share their error shapes today */
    if (result == CURLE_OPERATION_TIMEDOUT)
        return LLMR_ERR_TIMEOUT;
    if (result == CURLE_WRITE_ERROR)
        return LLMR_ERR_OTHER;  /* we refused the body: past LLMR_RESPONSE_MAX */
    if (result != CURLE_OK)
        return LLMR_ERR_CONNECTION;
    if (status >= 200 && status < 300)
        return LLMR_ERR_NONE;
    if (status == 429)
        return LLMR_ERR_RATE_LIMIT;
    if (status == 408)
        return LLMR_ERR_TIMEOUT;
    if (status == 401 || status == 403)
        return LLMR_ERR_AUTH;
    if (status == 404)
        return LLMR_ERR_NOT_FOUND;
    if (status >= 500)
        return LLMR_ERR_SERVER;
    if (body != NULL && any_of(body, len, context_markers))
        return LLMR_ERR_CONTEXT_WINDOW;
    if (body != NULL && any_of(body, len, policy_markers))
        return LLMR_ERR_CONTENT_POLICY;
    return LLMR_ERR_BAD_REQUEST;
}

int llmr_err_retryable(enum llmr_err e)
{
    return e == LLMR_ERR_RATE_LIMIT || e == LLMR_ERR_TIMEOUT || e == LLMR_ERR_SERVER
        || e == LLMR_ERR_CONNECTION;
}

const char *llmr_err_name(enum llmr_err e)
{
    static const char *const names[] = {
        [LLMR_ERR_NONE] = "ok", [LLMR_ERR_RATE_LIMIT] = "rate_limit",
        [LLMR_ERR_CONTEXT_WINDOW] = "context_window_exceeded",
        [LLMR_ERR_CONTENT_POLICY] = "content_policy", [LLMR_ERR_AUTH] = "authentication",
        [LLMR_ERR_NOT_FOUND] = "not_found", [LLMR_ERR_BAD_REQUEST] = "bad_request",
        [LLMR_ERR_TIMEOUT] = "timeout", [LLMR_ERR_SERVER] = "server_error",
        [LLMR_ERR_CONNECTION] = "connection_error", [LLMR_ERR_OTHER] = "error",
    };
    return e <= LLMR_ERR_OTHER ? names[e] : "error";
}
