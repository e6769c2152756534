/* Azure OpenAI: the deployment is in the path, the API version in the
 * query, and the key goes in an api-key header. */
#include <stdio.h>

#include "worker_internal.h"

/* Responses have no deployment in the path (the v1 preview form): the
 * deployment goes in the body's "model", and the API version defaults to
 * the first that has Responses. */
int llmr_azure_url(const llmr_deployment *d, enum llmr_op op, const char *rest,
                   const char *query, char *buf, size_t cap)
{
    const char *more = query != NULL && *query ? "&" : "";

    if (query == NULL)
        query = "";
    if (op == LLMR_OP_RESPONSES)
        return snprintf(buf, cap, "%s/openai/responses%s?api-version=%s%s%s", d->api_base,
                        rest, d->api_version != NULL ? d->api_version : "2025-03-01-preview",
                        more, query);
    return snprintf(buf, cap, "%s/openai/deployments/%s/%s%s?api-version=%s%s%s",
                    d->api_base, d->upstream_model, llmr_op_path[op], rest,
                    d->api_version != NULL ? d->api_version : "2024-02-01", more, query);
}

struct curl_slist *llmr_azure_headers(const llmr_deployment *d)
{
    return llmr_provider_headers(NULL, "api-key", "", d->api_key);
}
