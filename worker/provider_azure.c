/* Azure OpenAI: the deployment is in the path, the API version in the
 * query, and the key goes in an api-key header. */
#include <stdio.h>

#include "worker_internal.h"

int llmr_azure_url(const llmr_deployment *d, enum llmr_op op, char *buf, size_t cap)
{
    int r = snprintf(buf, cap, "%s/openai/deployments/%s/%s?api-version=%s",
                     d->api_base, d->upstream_model, llmr_op_path[op],
                     d->api_version != NULL ? d->api_version : "2024-02-01");
    return r;
}

struct curl_slist *llmr_azure_headers(const llmr_deployment *d)
{
    return llmr_provider_headers(NULL, "api-key", "", d->api_key);
}
