/* conf model_list: deployments, their providers and ids, the model groups
 * they form, and the fallbacks in router_settings that name those groups. */
#include "conf_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#define CONF_OPENAI_BASE     "https://api.openai.com/v1"
#define CONF_ANTHROPIC_BASE  "https://api.anthropic.com"
#define CONF_AZURE_VERSION   "2024-02-01"
/* What a worker builds from a deployment must fit what an upstream takes:
 * the key goes in one header line and the rest in the request line, where
 * common servers stop at 8 KiB. */
#define CONF_MAX_KEY         4096
#define CONF_MAX_BASE        2048
#define CONF_MAX_MODEL       1024
#define CONF_MAX_VERSION     64

static const char *const fallback_keys[] = { "model", "fallbacks", NULL };
static const char *const entry_keys[] = {
    "model_name", "litellm_params", "model_info", "rpm", "tpm", NULL
};
static const char *const params_keys[] = {
    "model", "api_key", "api_base", "api_version", "rpm", "tpm", "weight",
    "order", "max_parallel_requests", "timeout", "ssl_verify", "http2", "stream_timeout", NULL
};
static const char *const info_keys[] = { "id", "max_input_tokens", "supports_responses",
                                         "mode", "health_check", NULL };


/* ---- model_list -------------------------------------------------------- */

static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
}

static int url_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!id_char(*s) || *s == ':')
            return 0;
    return 1;
}

static int parse_model(conf_cx *cx, const config_setting_t *s, const char *path,
                       llmr_deployment *d)
{
    const char *slash = strchr(d->model, '/'), *up = d->model;
    size_t plen;

    if (!conf_safe_name(d->model))
        return conf_fail(cx, s, path, "must be a non-empty model name of "
                         "printable characters without spaces, '\"' or '\\'");
    if (strlen(d->model) > CONF_MAX_MODEL)
        return conf_fail(cx, s, path, "must be at most %d characters (it goes in "
                         "the upstream's URL or body)", CONF_MAX_MODEL);
    d->provider = LLMR_PROVIDER_OPENAI;
    if (slash != NULL) {
        plen = (size_t) (slash - d->model);
        up = slash + 1;
        if (plen == 5 && memcmp(d->model, "azure", 5) == 0)
            d->provider = LLMR_PROVIDER_AZURE;
        else if (plen == 9 && memcmp(d->model, "anthropic", 9) == 0)
            d->provider = LLMR_PROVIDER_ANTHROPIC;
        else if (!(plen == 6 && memcmp(d->model, "openai", 6) == 0))
            return conf_fail(cx, s, path, "unsupported provider \"%.*s\" "
                             "(allowed: azure/<deployment>, openai/<model>, "
                             "anthropic/<model>, or a bare OpenAI model name)",
                             (int) (plen > 40 ? 40 : plen), d->model);
        if (*up == '\0')
            return conf_fail(cx, s, path, "needs a model after \"%.*s/\"",
                             (int) plen, d->model);
        if (d->provider == LLMR_PROVIDER_AZURE && !url_token(up))
            return conf_fail(cx, s, path, "the Azure deployment name may hold "
                             "only letters, digits, '.', '_' and '-'");
    }
    if ((d->upstream_model = strdup(up)) == NULL)
        return conf_fail_oom(cx, s, path);
    return 0;
}

static int parse_api_base(conf_cx *cx, const config_setting_t *s,
                          const char *path, llmr_deployment *d)
{
    char *b = d->api_base, *host;
    size_t n;

    if (strncasecmp(b, "http://", 7) == 0)
        host = b + 7;
    else if (strncasecmp(b, "https://", 8) == 0)
        host = b + 8;
    else
        return conf_fail(cx, s, path, "must start with http:// or https://");
    if (*host == '\0' || *host == '/')
        return conf_fail(cx, s, path, "must name a host after the scheme");
    if (strlen(b) > CONF_MAX_BASE)
        return conf_fail(cx, s, path, "must be at most %d characters (it goes in every "
                         "upstream request line)", CONF_MAX_BASE);
    if (conf_has_ctl(b) || strpbrk(b, " ?#") != NULL)
        return conf_fail(cx, s, path, "must be a plain URL without spaces, "
                         "control characters, '?' or '#'");
    for (n = strlen(b); n > 0 && b[n - 1] == '/'; n--)
        b[n - 1] = '\0';
    return 0;
}

static int parse_limit(conf_cx *cx, const config_setting_t *entry,
                       const config_setting_t *params, const char *path,
                       const char *name, long *out)
{
    const config_setting_t *outer = config_setting_get_member(entry, name);
    const config_setting_t *inner = config_setting_get_member(params, name);
    conf_kpath k, pp;

    conf_kpf(pp, "%s.litellm_params", path);
    if (outer != NULL && inner != NULL)
        return conf_fail(cx, inner, conf_kp(k, pp, name), "also set beside "
                         "litellm_params at line %u; keep one",
                         conf_setting_line(outer));
    if (outer != NULL)
        return conf_opt_long(cx, entry, path, name, out, 0, LONG_MAX);
    return conf_opt_long(cx, params, pp, name, out, 0, LONG_MAX);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    while (n--) {
        h ^= *b++;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* A stable id for a deployment without model_info.id: the same params give
 * the same id across runs and reloads, so a reload keeps its shm slot.  The
 * id is sent to clients (x-llmroute-deployment) and shown by status, so it
 * comes from the non-secret params only: never from the key, not even
 * hashed (an unsalted hash of a short key can be searched).  Deployments
 * that differ only by their key are told apart by their order (see
 * unique_id()). */
static void hash_id(llmr_deployment *d)
{
    const char *parts[4] = { d->model_name, d->model, d->api_base,
                             d->api_version ? d->api_version : "" };
    uint64_t h = 0xcbf29ce484222325ULL;

    h = fnv1a(h, "llmroute-deployment-2", sizeof("llmroute-deployment-2"));
    for (int i = 0; i < 4; i++)
        h = fnv1a(h, parts[i], strlen(parts[i]) + 1);
    snprintf(d->id, sizeof(d->id), "d-%016llx", (unsigned long long) h);
}

static int id_taken(const llmr_deployment *ds, int n, const char *id)
{
    for (int j = 0; j < n; j++)
        if (strcmp(ds[j].id, id) == 0)
            return 1;
    return 0;
}

/* The second deployment with the same non-secret params (another key for
 * the same endpoint, say) gets "-2", the third "-3": stable as long as the
 * order of those entries is. */
static void unique_id(llmr_deployment *ds, int i)
{
    char base[LLMR_ID_MAX];

    memcpy(base, ds[i].id, sizeof(base));
    for (int n = 2; id_taken(ds, i, ds[i].id); n++)
        snprintf(ds[i].id, sizeof(ds[i].id), "%.40s-%d", base, n);
}

/* model_info.mode (LiteLLM's: "chat", "completion", "embedding") and
 * model_info.health_check ("models" or "completion"): what the health
 * prober sends.  An embedding deployment is probed with an embedding. */
static int parse_health_check(conf_cx *cx, const config_setting_t *mi, const char *p,
                              llmr_deployment *d)
{
    const config_setting_t *s;
    const char *v;
    conf_kpath k;

    if ((s = config_setting_get_member(mi, "mode")) != NULL) {
        if ((v = conf_str_value(cx, s, conf_kp(k, p, "mode"))) == NULL)
            return -1;
        if (strcmp(v, "embedding") == 0)
            d->health_check = LLMR_HEALTH_EMBEDDING;
        else if (strcmp(v, "chat") != 0 && strcmp(v, "completion") != 0)
            return conf_fail(cx, s, k, "unknown mode \"%.64s\" (allowed: chat, "
                             "completion, embedding)", v);
    }
    if ((s = config_setting_get_member(mi, "health_check")) == NULL)
        return 0;
    if ((v = conf_str_value(cx, s, conf_kp(k, p, "health_check"))) == NULL)
        return -1;
    if (strcmp(v, "models") != 0 && strcmp(v, "completion") != 0)
        return conf_fail(cx, s, k, "unknown check \"%.64s\" (allowed: models, "
                         "completion)", v);
    if (d->health_check == LLMR_HEALTH_EMBEDDING)
        return conf_fail(cx, s, k, "an embedding deployment is checked with an "
                         "embedding: remove health_check or mode");
    d->health_check = strcmp(v, "completion") == 0 ? LLMR_HEALTH_COMPLETION
                                                   : LLMR_HEALTH_MODELS;
    return 0;
}

static int parse_model_info(conf_cx *cx, const config_setting_t *entry,
                            const char *path, llmr_deployment *d)
{
    const config_setting_t *mi = config_setting_get_member(entry, "model_info");
    const config_setting_t *s;
    const char *v;
    int responses = !d->no_responses;
    conf_kpath p, k;

    if (mi == NULL)
        return 0;
    conf_kpf(p, "%s.model_info", path);
    if (conf_need_group(cx, mi, p, "model_info = { id = \"azure-eu-1\"; };") != 0
        || conf_check_keys(cx, mi, p, info_keys) != 0
        || conf_opt_long(cx, mi, p, "max_input_tokens", &d->max_input_tokens, 1,
                         LONG_MAX) != 0)
        return -1;
    if (parse_health_check(cx, mi, p, d) != 0)
        return -1;
    if (conf_opt_bool(cx, mi, p, "supports_responses", &responses, NULL) != 0)
        return -1;
    d->no_responses = !responses;
    if ((s = config_setting_get_member(mi, "id")) == NULL)
        return 0;
    if ((v = conf_str_value(cx, s, conf_kp(k, p, "id"))) == NULL)
        return -1;
    if (*v == '\0' || strlen(v) >= LLMR_ID_MAX)
        return conf_fail(cx, s, k, "must be 1 to %d characters", LLMR_ID_MAX - 1);
    for (const char *c = v; *c; c++)
        if (!id_char(*c))
            return conf_fail(cx, s, k, "may hold only letters, digits, '.', '_', "
                             "':' and '-'");
    memcpy(d->id, v, strlen(v) + 1);
    return 0;
}

/* A CA bundle the workers will load: absolute (a worker's directory is not
 * the operator's), a regular file, readable now. */
static int check_ca_file(conf_cx *cx, const config_setting_t *s, const char *k,
                         const char *path)
{
    struct stat st;
    int fd;

    if (path[0] != '/')
        return conf_fail(cx, s, k, "a CA bundle path must be absolute, like "
                         "\"/etc/ssl/certs/ca-certificates.crt\"");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return conf_fail(cx, s, k, "cannot open the CA bundle: %s", strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return conf_fail(cx, s, k, "the CA bundle must be a file of PEM certificates");
    }
    close(fd);
    return 0;
}

/* LiteLLM's ssl_verify: true (the default: the system's CA bundle), false
 * (no verification), or the path of a CA bundle to verify with. */
int conf_parse_ssl_verify(conf_cx *cx, const config_setting_t *grp, const char *p,
                          int *verify, char **ca_file, int *given)
{
    const config_setting_t *s = config_setting_get_member(grp, "ssl_verify");
    conf_kpath k;

    if (s == NULL)
        return 0;
    *given = 1;
    conf_kp(k, p, "ssl_verify");
    if (config_setting_type(s) == CONFIG_TYPE_BOOL) {
        *verify = config_setting_get_bool(s);
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return conf_fail(cx, s, k, "must be true, false or the path of a CA bundle");
    if (conf_opt_str(cx, grp, p, "ssl_verify", ca_file, NULL) != 0)
        return -1;
    return check_ca_file(cx, s, k, *ca_file);
}

/* Deployments without an ssl_verify or http2 of their own take
 * router_settings' (which default to true). */
int conf_tls_defaults(conf_cx *cx)
{
    llmr_conf *c = cx->conf;

    for (int i = 0; i < c->ndeployments; i++) {
        llmr_deployment *d = &c->deployments[i];

        if (!(d->own_tls & LLMR_OWN_HTTP2))
            d->http2 = c->http2;
        if (d->own_tls & LLMR_OWN_SSL_VERIFY)
            continue;
        d->ssl_verify = c->ssl_verify;
        if (c->ca_file != NULL && (d->ca_file = strdup(c->ca_file)) == NULL)
            return conf_fail_oom(cx, NULL, "router_settings.ssl_verify");
    }
    return 0;
}

static int parse_params(conf_cx *cx, const config_setting_t *entry,
                        const char *path, llmr_deployment *d)
{
    const config_setting_t *lp = config_setting_get_member(entry, "litellm_params");
    const config_setting_t *s;
    conf_kpath p, k;
    int own_verify = 0, own_http2 = 0;

    conf_kpf(p, "%s.litellm_params", path);
    if (lp == NULL)
        return conf_fail(cx, entry, p,
                         "missing (it needs at least model = \"...\")");
    if (conf_need_group(cx, lp, p,
                        "litellm_params = { model = \"gpt-4o\"; };") != 0
        || conf_check_keys(cx, lp, p, params_keys) != 0)
        return -1;

    if (conf_opt_str(cx, lp, p, "model", &d->model, &s) != 0)
        return -1;
    if (s == NULL)
        return conf_fail(cx, lp, p, "missing model (like \"azure/<deployment>\", "
                         "\"openai/<model>\" or \"gpt-4o\")");
    if (parse_model(cx, s, conf_kp(k, p, "model"), d) != 0)
        return -1;

    if (conf_opt_str(cx, lp, p, "api_key", &d->api_key, &s) != 0)
        return -1;
    if (s != NULL && (d->api_key[0] == '\0' || conf_has_ctl(d->api_key)))
        return conf_fail(cx, s, conf_kp(k, p, "api_key"), "must not be empty "
                         "or hold control characters");
    if (s != NULL && strlen(d->api_key) > CONF_MAX_KEY)
        return conf_fail(cx, s, conf_kp(k, p, "api_key"), "must be at most %d characters "
                         "(it is sent in one HTTP header line); this one has %zu",
                         CONF_MAX_KEY, strlen(d->api_key));

    if (conf_opt_str(cx, lp, p, "api_base", &d->api_base, &s) != 0)
        return -1;
    if (s == NULL && d->provider == LLMR_PROVIDER_AZURE)
        return conf_fail(cx, lp, p, "api_base is required for azure/ deployments "
                         "(like \"https://example.openai.azure.com\")");
    if (s == NULL && d->provider == LLMR_PROVIDER_ANTHROPIC
        && (d->api_base = strdup(CONF_ANTHROPIC_BASE)) == NULL)
        return conf_fail_oom(cx, lp, p);
    if (s == NULL && d->api_base == NULL && (d->api_base = strdup(CONF_OPENAI_BASE)) == NULL)
        return conf_fail_oom(cx, lp, p);
    if (s != NULL && parse_api_base(cx, s, conf_kp(k, p, "api_base"), d) != 0)
        return -1;

    if (conf_opt_str(cx, lp, p, "api_version", &d->api_version, &s) != 0)
        return -1;
    if (s != NULL && (!url_token(d->api_version)
                      || strlen(d->api_version) > CONF_MAX_VERSION))
        return conf_fail(cx, s, conf_kp(k, p, "api_version"), "may hold only "
                         "letters, digits, '.', '_' and '-', at most %d, like "
                         "\"2024-02-01\"", CONF_MAX_VERSION);
    if (s == NULL && d->provider == LLMR_PROVIDER_AZURE
        && (d->api_version = strdup(CONF_AZURE_VERSION)) == NULL)
        return conf_fail_oom(cx, lp, p);

    if (parse_limit(cx, entry, lp, path, "rpm", &d->rpm) != 0
        || parse_limit(cx, entry, lp, path, "tpm", &d->tpm) != 0
        || conf_opt_num(cx, lp, p, "weight", &d->weight, 0, 1,
                        CONF_MAX_WEIGHT) != 0
        || conf_opt_int(cx, lp, p, "order", &d->order, 1, INT_MAX) != 0
        || conf_opt_int(cx, lp, p, "max_parallel_requests",
                        &d->max_parallel_requests, 1, INT_MAX) != 0
        || conf_opt_num(cx, lp, p, "timeout", &d->timeout, 0, 1,
                        CONF_MAX_SECONDS) != 0
        || conf_opt_num(cx, lp, p, "stream_timeout", &d->stream_timeout, 0, 1,
                        CONF_MAX_SECONDS) != 0
        || conf_parse_ssl_verify(cx, lp, p, &d->ssl_verify, &d->ca_file, &own_verify) != 0
        || conf_opt_bool(cx, lp, p, "http2", &d->http2, &own_http2) != 0)
        return -1;
    d->own_tls = (own_verify ? LLMR_OWN_SSL_VERIFY : 0) | (own_http2 ? LLMR_OWN_HTTP2 : 0);

    if (d->id[0] == '\0')
        hash_id(d);
    return 0;
}

static unsigned id_line(const config_setting_t *entry)
{
    config_setting_t *s = config_setting_lookup((config_setting_t *) entry,
                                                "model_info.id");

    return conf_setting_line(s != NULL ? s : entry);
}

static int check_duplicate(conf_cx *cx, const config_setting_t *list, int i)
{
    const llmr_deployment *ds = cx->conf->deployments, *d = &ds[i];
    const config_setting_t *entry = config_setting_get_elem(list, (unsigned) i);
    const config_setting_t *idset = config_setting_lookup(
        (config_setting_t *) entry, "model_info.id");
    conf_kpath k;

    if (idset == NULL)
        unique_id(cx->conf->deployments, i);
    for (int j = 0; j < i; j++) {
        const config_setting_t *other = config_setting_get_elem(list, (unsigned) j);

        if (strcmp(ds[j].id, d->id) != 0)
            continue;
        if (idset != NULL) {
            conf_kpf(k, "model_list[%d].model_info.id", i);
            return conf_fail(cx, idset, k, "duplicate deployment id \"%s\" "
                             "(also model_list[%d] at line %u)", d->id, j,
                             id_line(other));
        }
        conf_kpf(k, "model_list[%d]", i);       /* unreachable: unique_id() */
        return conf_fail(cx, entry, k, "same id \"%s\" as model_list[%d] at line %u; "
                         "set model_info.id to tell them apart", d->id, j, id_line(other));
    }
    return 0;
}

static int add_to_group(conf_cx *cx, const config_setting_t *entry, int i)
{
    llmr_conf *c = cx->conf;
    llmr_deployment *d = &c->deployments[i];
    int g = llmr_conf_find_group(c, d->model_name, strlen(d->model_name));

    if (g < 0) {
        g = c->ngroups;
        if ((c->groups[g].name = strdup(d->model_name)) == NULL)
            return conf_fail_oom(cx, entry, "model_list");
        c->ngroups++;
    }
    d->group = g;
    c->groups[g].ndeployments++;
    return 0;
}

static int parse_deployment(conf_cx *cx, const config_setting_t *list, int i)
{
    const config_setting_t *e = config_setting_get_elem(list, (unsigned) i), *s;
    llmr_deployment *d = &cx->conf->deployments[i];
    conf_kpath path, k;

    d->slot = -1;
    d->group = -1;
    d->ssl_verify = 1;
    d->http2 = 1;
    d->line = (int) conf_setting_line(e);
    conf_kpf(path, "model_list[%d]", i);
    if (conf_need_group(cx, e, path, "{ model_name = \"gpt-4\"; litellm_params = "
                        "{ model = \"gpt-4\"; }; }") != 0
        || conf_check_keys(cx, e, path, entry_keys) != 0)
        return -1;

    if (conf_opt_str(cx, e, path, "model_name", &d->model_name, &s) != 0)
        return -1;
    if (s == NULL)
        return conf_fail(cx, e, path, "missing model_name (the model group "
                         "clients ask for)");
    if (!conf_safe_name(d->model_name) || strlen(d->model_name) >= LLMR_ID_MAX)
        return conf_fail(cx, s, conf_kp(k, path, "model_name"), "must be 1 to "
                         "%d printable characters without spaces, '\"' or "
                         "'\\'", LLMR_ID_MAX - 1);

    if (parse_model_info(cx, e, path, d) != 0
        || parse_params(cx, e, path, d) != 0
        || check_duplicate(cx, list, i) != 0)
        return -1;
    return add_to_group(cx, e, i);
}

int conf_parse_model_list(conf_cx *cx, const config_setting_t *root)
{
    const config_setting_t *list = config_setting_get_member(root, "model_list");
    llmr_conf *c = cx->conf;
    int n;

    if (list == NULL)
        return conf_fail(cx, NULL, "model_list", "missing: list at least one "
                         "deployment, like model_list = ( { model_name = "
                         "\"gpt-4\"; litellm_params = { model = \"gpt-4\"; }; "
                         "} );");
    if (!config_setting_is_list(list) && !config_setting_is_array(list))
        return conf_fail(cx, list, "model_list", "must be a list of groups, like "
                         "model_list = ( { model_name = ...; litellm_params = "
                         "{ ... }; } );");
    if ((n = config_setting_length(list)) == 0)
        return conf_fail(cx, list, "model_list",
                         "must list at least one deployment");
    if ((c->deployments = calloc((size_t) n, sizeof(*c->deployments))) == NULL
        || (c->groups = calloc((size_t) n, sizeof(*c->groups))) == NULL)
        return conf_fail_oom(cx, list, "model_list");
    c->ndeployments = n;

    for (int i = 0; i < n; i++)
        if (parse_deployment(cx, list, i) != 0)
            return -1;

    for (int g = 0; g < c->ngroups; g++) {
        llmr_group *gr = &c->groups[g];
        if ((gr->deployments = calloc((size_t) gr->ndeployments,
                                      sizeof(*gr->deployments))) == NULL)
            return conf_fail_oom(cx, list, "model_list");
        gr->ndeployments = 0;
    }
    for (int i = 0; i < n; i++) {
        llmr_group *gr = &c->groups[c->deployments[i].group];
        gr->deployments[gr->ndeployments++] = i;
    }
    return 0;
}


/* ---- fallbacks between model groups ------------------------------------ */

static int known_group(conf_cx *cx, const config_setting_t *s, const char *path,
                       const char *name)
{
    llmr_conf *c = cx->conf;
    const char *names[64];
    int n = c->ngroups < 64 ? c->ngroups : 64;
    char allow[512];

    if (llmr_conf_find_group(c, name, strlen(name)) >= 0)
        return 0;
    for (int i = 0; i < n; i++)
        names[i] = c->groups[i].name;
    conf_join(allow, sizeof(allow), names, n);
    return conf_fail(cx, s, path, "unknown model group \"%.80s\": no model_list "
                     "entry has this model_name (allowed: %s)", name, allow);
}

/* One string or a list of them, each a model group, none listed twice.
 * `self` may not appear. */
int conf_parse_group_names(conf_cx *cx, const config_setting_t *s,
                           const char *path, const char *self,
                           char ***out, int *nout)
{
    int one = config_setting_type(s) == CONFIG_TYPE_STRING;
    int n = one ? 1 : config_setting_length(s);

    if (!conf_is_string_list(s))
        return conf_fail(cx, s, path, "must be a model group name or a list of "
                         "them, like [\"gpt-3.5-turbo\"]");
    if ((*out = calloc((size_t) (n ? n : 1), sizeof(**out))) == NULL)
        return conf_fail_oom(cx, s, path);
    *nout = n;

    for (int i = 0; i < n; i++) {
        const config_setting_t *e = one ? s : config_setting_get_elem(s, (unsigned) i);
        const char *v;
        conf_kpath k;

        if (one)
            conf_kpf(k, "%s", path);
        else
            conf_kpf(k, "%s[%d]", path, i);
        if ((v = conf_str_value(cx, e, k)) == NULL
            || known_group(cx, e, k, v) != 0)
            return -1;
        if (self != NULL && strcmp(v, self) == 0)
            return conf_fail(cx, e, k, "\"%s\" cannot fall back to itself", v);
        for (int j = 0; j < i; j++)
            if (strcmp((*out)[j], v) == 0)
                return conf_fail(cx, e, k, "\"%s\" is listed twice", v);
        if (((*out)[i] = strdup(v)) == NULL)
            return conf_fail_oom(cx, e, k);
    }
    return 0;
}

static int parse_fallback(conf_cx *cx, const config_setting_t *list, int i,
                          const char *lpath, llmr_fallback_list *out)
{
    const config_setting_t *e = config_setting_get_elem(list, (unsigned) i), *s;
    llmr_fallback *f = &out->items[i];
    conf_kpath p, k;

    conf_kpf(p, "%s[%d]", lpath, i);
    if (conf_need_group(cx, e, p, "{ model = \"gpt-4\"; fallbacks = "
                        "[\"gpt-3.5-turbo\"]; }") != 0
        || conf_check_keys(cx, e, p, fallback_keys) != 0
        || conf_opt_str(cx, e, p, "model", &f->model, &s) != 0)
        return -1;
    if (s == NULL)
        return conf_fail(cx, e, p, "missing model (the group that fails)");
    if (known_group(cx, s, conf_kp(k, p, "model"), f->model) != 0)
        return -1;
    for (int j = 0; j < i; j++)
        if (strcmp(out->items[j].model, f->model) == 0)
            return conf_fail(cx, s, k, "\"%s\" already has fallbacks at line %u",
                             f->model, conf_setting_line(
                                 config_setting_get_elem(list, (unsigned) j)));
    if ((s = config_setting_get_member(e, "fallbacks")) == NULL)
        return conf_fail(cx, e, p, "missing fallbacks (the groups to try, like "
                         "[\"gpt-3.5-turbo\"])");
    return conf_parse_group_names(cx, s, conf_kp(k, p, "fallbacks"), f->model,
                                  &f->fallbacks, &f->nfallbacks);
}

int conf_parse_fallbacks(conf_cx *cx, const config_setting_t *rs,
                         const char *name, llmr_fallback_list *out)
{
    const config_setting_t *s = config_setting_get_member(rs, name);
    int n;
    conf_kpath p;

    if (s == NULL)
        return 0;
    conf_kp(p, "router_settings", name);
    if (!config_setting_is_list(s)
        && !(config_setting_is_array(s) && config_setting_length(s) == 0))
        return conf_fail(cx, s, p, "must be a list of groups, like ( { model = "
                         "\"gpt-4\"; fallbacks = [\"gpt-3.5-turbo\"]; } )");
    n = config_setting_length(s);
    if ((out->items = calloc((size_t) (n ? n : 1), sizeof(*out->items))) == NULL)
        return conf_fail_oom(cx, s, p);
    out->n = n;
    for (int i = 0; i < n; i++)
        if (parse_fallback(cx, s, i, p, out) != 0)
            return -1;
    return 0;
}
