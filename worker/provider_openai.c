/* OpenAI and OpenAI-compatible servers: {api_base}/{op}, Bearer auth. */
#include <stdio.h>

#include "worker_internal.h"

int llmr_openai_url(const llmr_deployment *d, enum llmr_op op, const char *rest,
                    const char *query, char *buf, size_t cap)
{
    int q = query != NULL && *query;

    return snprintf(buf, cap, "%s/%s%s%s%s", d->api_base, llmr_op_path[op], rest,
                    q ? "?" : "", q ? query : "");
}

struct curl_slist *llmr_openai_headers(const llmr_deployment *d)
{
    return llmr_provider_headers(NULL, "Authorization", "Bearer ", d->api_key);
}
