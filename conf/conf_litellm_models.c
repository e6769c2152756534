/* conf LiteLLM model_list: each entry's litellm_params and model_info onto
 * the native entry, and LiteLLM's provider prefixes onto llmroute's
 * providers.  Providers LiteLLM reaches through an OpenAI-compatible API
 * become openai/<model> with their usual api_base; those llmroute has no
 * adapter for are an error naming the supported ones. */
#include "conf_litellm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct lt_provider {
    const char *prefix;         /* LiteLLM's */
    const char *native;         /* llmroute's, or NULL: the model as written */
    const char *base;           /* default api_base; NULL: llmroute's (openai) or none */
    const char *key_env;        /* where LiteLLM finds the key when none is given */
    const char *base_env;       /* where LiteLLM finds api_base when none is given */
} lt_provider;

static const lt_provider providers[] = {
    { "openai", "openai", NULL, "OPENAI_API_KEY", "OPENAI_API_BASE" },
    { "text-completion-openai", "openai", NULL, "OPENAI_API_KEY", "OPENAI_API_BASE" },
    { "azure", "azure", NULL, "AZURE_API_KEY", "AZURE_API_BASE" },
    { "custom_openai", "openai", NULL, NULL, NULL },
    { "openai_like", "openai", NULL, NULL, NULL },
    { "hosted_vllm", "openai", NULL, "HOSTED_VLLM_API_KEY", "HOSTED_VLLM_API_BASE" },
    { "lm_studio", "openai", NULL, "LM_STUDIO_API_KEY", "LM_STUDIO_API_BASE" },
    { "groq", "openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY", NULL },
    { "deepseek", "openai", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", NULL },
    { "mistral", "openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", NULL },
    { "together_ai", "openai", "https://api.together.xyz/v1", "TOGETHERAI_API_KEY", NULL },
    { "perplexity", "openai", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY", NULL },
    { "deepinfra", "openai", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY",
      NULL },
    { "xai", "openai", "https://api.x.ai/v1", "XAI_API_KEY", NULL },
    { "openrouter", "openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", NULL },
    { "nvidia_nim", "openai", "https://integrate.api.nvidia.com/v1", "NVIDIA_NIM_API_KEY",
      NULL },
    { "cerebras", "openai", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY", NULL },
    { "anthropic", NULL, NULL, NULL, NULL },
};
#define NPROVIDERS ((int) (sizeof(providers) / sizeof(providers[0])))
/* Providers that need an api_base: no public endpoint to default to. */
static const char *const need_base[] = { "custom_openai", "openai_like", "hosted_vllm",
                                         "lm_studio", NULL };

static const char *const params_same[] = {
    "api_key", "api_base", "api_version", "rpm", "tpm", "timeout", "max_parallel_requests",
    "order", "weight", "ssl_verify", "http2", "stream_timeout", NULL
};
/* Cost bookkeeping and LiteLLM's own request handling. */
static const char *const params_ignored[] = {
    "input_cost_per_token", "output_cost_per_token", "input_cost_per_second",
    "output_cost_per_second", "drop_params", "additional_drop_params", "tags", "metadata",
    "max_retries", "use_in_pass_through", "merge_reasoning_content_in_choices",
    "max_budget", "budget_duration", NULL
};
static const char *const info_same[] = { "id", "max_input_tokens", "mode",
                                         "supports_responses", "health_check", NULL };

static void supported_list(char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; i < NPROVIDERS && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s/", i ? ", " : "",
                         providers[i].prefix);
        if (w < 0)
            return;
        used += (size_t) w;
    }
}

static const lt_provider *find_provider(const char *p, size_t n)
{
    for (int i = 0; i < NPROVIDERS; i++)
        if (strlen(providers[i].prefix) == n && memcmp(providers[i].prefix, p, n) == 0)
            return &providers[i];
    return NULL;
}

/* Sets `name` to "os.environ/VAR" when VAR is set and the entry sets no
 * `name`: LiteLLM's fallback to the provider's variable. */
static int env_default(lt *m, config_setting_t *lp, const char *name, const char *var,
                       unsigned line, const char *key)
{
    char ref[128];

    if (var == NULL || config_setting_get_member(lp, name) != NULL || getenv(var) == NULL)
        return 0;
    snprintf(ref, sizeof(ref), LT_ENV "%s", var);
    return lt_set_str(m, lp, name, ref, line, key);
}

/* litellm_params.model (with custom_llm_provider) as "provider/model" in
 * full; *p its provider, NULL for a bare name.  Refuses providers llmroute
 * has no adapter for. */
static int model_provider(lt *m, const conf_ynode *model, const conf_ynode *custom,
                          const char *key, char *full, size_t cap, const lt_provider **p)
{
    const char *name = lt_scalar(m, model, key), *slash;
    char allow[512];

    *p = NULL;
    if (name == NULL)
        return -1;
    if (custom != NULL) {
        const char *c = lt_scalar(m, custom, "custom_llm_provider");
        if (c == NULL)
            return -1;
        snprintf(full, cap, "%s/%s", c, name);
    } else {
        snprintf(full, cap, "%s", name);
    }
    supported_list(allow, sizeof(allow));
    if ((slash = strchr(full, '/')) == NULL) {
        /* A bare name: LiteLLM infers the provider from it. */
        if (strncmp(full, "gemini", 6) == 0 || strncmp(full, "command", 7) == 0)
            return conf_yfail(m->cx, model->line, key, "\"%.64s\" is not an OpenAI model "
                              "and llmroute has no adapter for its provider (supported: %s, "
                              "or a bare OpenAI model name)", full, allow);
        return 0;
    }
    if ((*p = find_provider(full, (size_t) (slash - full))) == NULL)
        return conf_yfail(m->cx, model->line, key, "unsupported provider \"%.*s\": llmroute "
                          "has no adapter for it (supported: %s; any OpenAI-compatible "
                          "server as openai/<model> with api_base)",
                          (int) (slash - full > 40 ? 40 : slash - full), full, allow);
    return 0;
}

/* The native model, and what LiteLLM would take from the environment or
 * the provider's defaults for the params the entry leaves out. */
static int map_model(lt *m, config_setting_t *lp, const conf_ynode *model,
                     const conf_ynode *custom, const char *k)
{
    char full[1100], n[1120];
    const lt_provider *p;

    if (model_provider(m, model, custom, k, full, sizeof(full), &p) != 0)
        return -1;
    if (p == NULL && strncmp(full, "claude", 6) == 0)
        snprintf(n, sizeof(n), "anthropic/%s", full);
    else if (p != NULL && p->native != NULL)
        snprintf(n, sizeof(n), "%s/%s", p->native, strchr(full, '/') + 1);
    else
        snprintf(n, sizeof(n), "%s", full);
    if (lt_set_str(m, lp, "model", n, model->line, k) != 0)
        return -1;
    if (p == NULL)
        return 0;
    if (env_default(m, lp, "api_base", p->base_env, model->line, k) != 0
        || env_default(m, lp, "api_key", p->key_env, model->line, k) != 0)
        return -1;
    if (strcmp(p->prefix, "azure") == 0
        && env_default(m, lp, "api_version", "AZURE_API_VERSION", model->line, k) != 0)
        return -1;
    if (p->base != NULL && config_setting_get_member(lp, "api_base") == NULL)
        return lt_set_str(m, lp, "api_base", p->base, model->line, k);
    if (lt_in(p->prefix, need_base) && config_setting_get_member(lp, "api_base") == NULL)
        return conf_yfail(m->cx, model->line, k, "%s/ needs api_base (the server's "
                          "OpenAI-compatible URL, like \"http://127.0.0.1:8000/v1\")",
                          p->prefix);
    return 0;
}

static int map_param(lt *m, config_setting_t *lp, const conf_ynode *k, const conf_ynode *v,
                     const char *key)
{
    char allow[512];

    if (strcmp(k->str, "model") == 0 || strcmp(k->str, "custom_llm_provider") == 0)
        return 0;       /* map_model */
    if (lt_in(k->str, params_same))
        return lt_put(m, lp, k->str, v, key);
    if (lt_in(k->str, params_ignored))
        return lt_warn(m, k, key, "ignored: LiteLLM's cost tracking or request handling");
    lt_join(allow, sizeof(allow), params_same);
    return conf_yfail(m->cx, k->line, key, "not supported: llmroute sends the client's "
                      "request as it is and cannot honour it (supported: model, "
                      "custom_llm_provider, %s)", allow);
}

static int map_params(lt *m, config_setting_t *ent, const conf_ynode *lp, const char *path)
{
    config_setting_t *out;
    const conf_ynode *model = lt_get(lp, "model");
    conf_kpath p, k;

    conf_kpf(p, "%s.litellm_params", path);
    if (lt_need_map(m, lp, p, "{model: azure/my-deployment}") != 0
        || (out = lt_add(m, ent, "litellm_params", CONFIG_TYPE_GROUP, lp->line, p)) == NULL)
        return -1;
    if (model != NULL) {
        /* An unsupported provider first: it says more than its params do. */
        char full[1100];
        const lt_provider *prov;
        if (model_provider(m, model, lt_get(lp, "custom_llm_provider"),
                           conf_kpf(k, "%s.model", p), full, sizeof(full), &prov) != 0)
            return -1;
    }
    LT_EACH(lp, i, kk, vv) {
        conf_kpf(k, "%s.%s", p, kk->str);
        if (map_param(m, out, kk, vv, k) != 0)
            return -1;
    }
    if (model == NULL)
        return 0;       /* conf.c: "missing model" */
    conf_kpf(k, "%s.model", p);
    return map_model(m, out, model, lt_get(lp, "custom_llm_provider"), k);
}

static int map_info(lt *m, config_setting_t *ent, const conf_ynode *mi, const char *path)
{
    config_setting_t *out;
    conf_kpath p, k;

    conf_kpf(p, "%s.model_info", path);
    if (lt_is_null(mi))
        return 0;
    if (lt_need_map(m, mi, p, "{id: azure-eu-1}") != 0
        || (out = lt_add(m, ent, "model_info", CONFIG_TYPE_GROUP, mi->line, p)) == NULL)
        return -1;
    LT_EACH(mi, i, kk, vv) {
        int rc;

        conf_kpf(k, "%s.%s", p, kk->str);
        if (strcmp(kk->str, "id") == 0)
            rc = lt_put_str(m, out, "id", vv, k);   /* LiteLLM's ids may be numbers */
        else if (lt_in(kk->str, info_same))
            rc = lt_put(m, out, kk->str, vv, k);
        else
            rc = lt_warn(m, kk, k, "ignored: model metadata llmroute does not use");
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int map_entry(lt *m, config_setting_t *list, const conf_ynode *e, int i)
{
    config_setting_t *ent;
    conf_kpath path, k;

    conf_kpf(path, "model_list[%d]", i);
    if (e->kind != CONF_Y_MAP)
        return conf_yfail(m->cx, e->line, path, "must be a mapping, like {model_name: "
                          "gpt-4, litellm_params: {model: azure/gpt-4}}");
    if ((ent = lt_add(m, list, NULL, CONFIG_TYPE_GROUP, e->line, path)) == NULL)
        return -1;
    LT_EACH(e, j, kk, vv) {
        int rc;

        conf_kpf(k, "%s.%s", path, kk->str);
        if (strcmp(kk->str, "model_name") == 0)
            rc = lt_put_str(m, ent, "model_name", vv, k);
        else if (strcmp(kk->str, "litellm_params") == 0)
            rc = map_params(m, ent, vv, path);
        else if (strcmp(kk->str, "model_info") == 0)
            rc = map_info(m, ent, vv, path);
        else
            rc = lt_put(m, ent, kk->str, vv, k);    /* rpm, tpm; conf.c names the rest */
        if (rc != 0)
            return -1;
    }
    return 0;
}

int lt_model_list(lt *m, const conf_ynode *list)
{
    config_setting_t *out;

    if (list->kind != CONF_Y_SEQ)
        return conf_yfail(m->cx, list->line, "model_list", "must be a list of deployments, "
                          "like - model_name: gpt-4");
    if ((out = lt_add(m, m->root, "model_list", CONFIG_TYPE_LIST, list->line,
                      "model_list")) == NULL)
        return -1;
    for (int i = 0; i < list->n; i++)
        if (map_entry(m, out, list->kids[i], i) != 0)
            return -1;
    return 0;
}
