/* The paths that carry a name: Azure OpenAI's deployment routes
 * (/openai/deployments/{name}/chat/completions, /completions, /embeddings,
 * with an ?api-version= that is accepted and ignored), where {name} is the
 * model group, GET /v1/models/{id}, and /v1/responses/{id}[/...] (handed to
 * responses.c, whose methods are per path).  http_api.c asks here for any
 * path that is not one of its fixed ones. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "errors.h"
#include "worker_internal.h"

#define AZURE_PREFIX "/openai/deployments/"

static const struct {
    const char *suffix;
    enum llmr_op op;
} azure_ops[] = {
    { "/chat/completions", LLMR_OP_CHAT },
    { "/completions", LLMR_OP_COMPLETIONS },
    { "/embeddings", LLMR_OP_EMBEDDINGS },
};

/* The percent-decoded name [s, s + len), or NULL when it is empty, holds a
 * NUL once decoded or is longer than any group's name. */
static char *decoded(const char *s, size_t len)
{
    char raw[3 * LLMR_ID_MAX], *d;
    size_t n;

    if (len == 0 || len >= sizeof(raw))
        return NULL;
    memcpy(raw, s, len);
    raw[len] = '\0';
    if ((d = evhttp_uridecode(raw, 0, &n)) != NULL && (n == 0 || strlen(d) != n)) {
        free(d);
        d = NULL;
    }
    return d;
}

enum { NO_ROUTE, AZURE, MODEL_BY_ID, RESPONSE_BY_ID };

/* Which route path is, with its name decoded (*op set for AZURE), or for
 * RESPONSE_BY_ID the rest of the path after the prefix, as is.  *name is
 * NULL for a name that cannot be one. */
static int match(const char *path, enum llmr_op *op, char **name, const char **rest)
{
    *name = NULL;
    if (strncmp(path, AZURE_PREFIX, strlen(AZURE_PREFIX)) == 0) {
        const char *slash = strchr(*rest = path + strlen(AZURE_PREFIX), '/');
        for (size_t i = 0; slash != NULL && i < sizeof(azure_ops) / sizeof(azure_ops[0]); i++)
            if (strcmp(slash, azure_ops[i].suffix) == 0) {
                *op = azure_ops[i].op;
                *name = decoded(*rest, (size_t)(slash - *rest));
                return AZURE;
            }
        return NO_ROUTE;
    }
    if (strncmp(path, "/v1/models/", 11) == 0 || strncmp(path, "/models/", 8) == 0) {
        *rest = path + (path[1] == 'v' ? strlen("/v1/models/") : strlen("/models/"));
        *name = decoded(*rest, strlen(*rest));
        return MODEL_BY_ID;
    }
    if (strncmp(path, "/v1/responses/", 14) == 0 || strncmp(path, "/responses/", 11) == 0) {
        *rest = path + (path[1] == 'v' ? strlen("/v1/responses/") : strlen("/responses/"));
        return RESPONSE_BY_ID;
    }
    return NO_ROUTE;
}

static void model_by_id(llmr_worker *w, struct evhttp_request *req, const char *id)
{
    size_t len = strlen(id);
    struct evbuffer *b;

    /* Hidden aliases too: they are routable, only not listed. */
    if (llmr_conf_route_group(w->conf, id, len) < 0) {
        llmr_error_reply(w, req, LLMR_E_MODEL_NOT_FOUND, LLMR_CLIP(len), id, LLMR_CLIP_MORE(len));
        return;
    }
    if ((b = evbuffer_new()) == NULL) {
        llmr_http_reply_json(w, req, 500, "{}", 2);
        return;
    }
    evbuffer_add(b, "{\"id\":", 6);
    llmr_json_add_str(b, id);
    evbuffer_add_printf(b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"llmroute\"}");
    llmr_http_reply_json(w, req, 200, (const char *)evbuffer_pullup(b, -1),
                         evbuffer_get_length(b));
    evbuffer_free(b);
}

int llmr_routes_handle(llmr_worker *w, struct evhttp_request *req, const char *path)
{
    enum llmr_op op = LLMR_OP_CHAT;
    const char *rest = NULL;
    char *name;
    int kind = match(path, &op, &name, &rest);
    enum evhttp_cmd_type want = kind == AZURE ? EVHTTP_REQ_POST : EVHTTP_REQ_GET;

    if (kind == NO_ROUTE)
        return 0;
    if (kind == RESPONSE_BY_ID) {
        if (!llmr_http_authorized(w, req))
            llmr_error_reply(w, req, LLMR_E_INVALID_API_KEY);
        else
            llmr_responses_forward(w, req, rest);
        return 1;
    }
    if (!llmr_http_method_ok(req, want)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          llmr_http_allow(want));
        llmr_error_reply(w, req, LLMR_E_METHOD_NOT_ALLOWED, kind == AZURE ? AZURE_PREFIX
                         "{deployment}/..." : "/v1/models/{model}");
    } else if (!llmr_http_authorized(w, req)) {
        llmr_error_reply(w, req, LLMR_E_INVALID_API_KEY);
    } else if (name == NULL) {
        llmr_error_reply(w, req, LLMR_E_MODEL_NOT_FOUND, 0, "", "(an invalid name)");
    } else if (kind == AZURE) {
        llmr_http_proxy(w, req, op, name);
    } else {
        model_by_id(w, req, name);
    }
    free(name);
    return 1;
}
