/* Anthropic: {api_base}/v1/messages, the key in x-api-key and the API's
 * version in anthropic-version.  Chat requests are translated on the way
 * (worker/anthropic*.c); the other operations have no Anthropic endpoint
 * and get the path they would have, which Anthropic answers 404. */
#include <stdio.h>

#include "anthropic.h"
#include "worker_internal.h"

int llmr_anthropic_url(const llmr_deployment *d, enum llmr_op op, const char *rest,
                       const char *query, char *buf, size_t cap)
{
    int q = query != NULL && *query;

    return snprintf(buf, cap, "%s/v1/%s%s%s%s", d->api_base,
                    op == LLMR_OP_CHAT ? "messages" : llmr_op_path[op], rest,
                    q ? "?" : "", q ? query : "");
}

struct curl_slist *llmr_anthropic_headers(const llmr_deployment *d)
{
    struct curl_slist *h = llmr_provider_headers(NULL, "x-api-key", "", d->api_key);
    struct curl_slist *n = h != NULL ? curl_slist_append(h, "anthropic-version: "
                                                         LLMR_ANTH_VERSION) : NULL;

    if (n == NULL)
        curl_slist_free_all(h);
    return n;
}
