/* conf: libconfig -> owned structs.  Every value is checked here, once, so
 * the rest of the program can trust an llmr_conf.  A typo must never be
 * ignored: unknown keys are errors that list the allowed ones.  Messages are
 * "FILE:LINE: key.path: what is wrong", and never contain a key's value. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* getline, explicit_bzero */
#endif
#include "conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONF_OPENAI_BASE     "https://api.openai.com/v1"
#define CONF_AZURE_VERSION   "2024-02-01"
#define CONF_LISTEN          "127.0.0.1:4000"
#define CONF_PID_FILE        "llmroute.pid"
#define CONF_MAX_SECONDS     1e9     /* keeps seconds * 1e6 inside int64 */
#define CONF_MAX_WEIGHT      1e9
#define CONF_MAX_WORKERS     256
#define CONF_MAX_RETRIES     100
#define CONF_SHM_NAME_MAX    250
#define CONF_ENV_PREFIX      "os.environ/"

typedef char kpath[256];        /* "model_list[3].litellm_params.api_key" */

typedef struct {
    const char *file;
    char *err;
    size_t errlen;
    llmr_conf *conf;
} cx_t;

static const char *const root_keys[] = {
    "server", "router_settings", "model_list", NULL
};
static const char *const server_keys[] = {
    "listen", "workers", "master_key", "pid_file", "shm_name",
    "max_body_bytes", "drain_timeout", NULL
};
static const char *const router_keys[] = {
    "routing_strategy", "num_retries", "retry_after", "timeout",
    "stream_timeout", "allowed_fails", "cooldown_time", "fallbacks",
    "context_window_fallbacks", "content_policy_fallbacks",
    "default_fallbacks", "routing_strategy_args", NULL
};
static const char *const strategy_args_keys[] = { "lowest_latency_buffer", NULL };
static const char *const fallback_keys[] = { "model", "fallbacks", NULL };
static const char *const entry_keys[] = {
    "model_name", "litellm_params", "model_info", "rpm", "tpm", NULL
};
static const char *const params_keys[] = {
    "model", "api_key", "api_base", "api_version", "rpm", "tpm", "weight",
    "order", "max_parallel_requests", "timeout", NULL
};
static const char *const info_keys[] = { "id", "max_input_tokens", NULL };

static const char *const strategy_names[] = {
    [LLMR_STRATEGY_SIMPLE_SHUFFLE] = "simple-shuffle",
    [LLMR_STRATEGY_LEAST_BUSY]     = "least-busy",
    [LLMR_STRATEGY_USAGE_BASED]    = "usage-based-routing",
    [LLMR_STRATEGY_LATENCY_BASED]  = "latency-based-routing",
};
#define NSTRATEGIES ((int) (sizeof(strategy_names) / sizeof(strategy_names[0])))


/* ---- messages ---------------------------------------------------------- */

/* Key paths are for messages: a path too long for kpath is cut short. */
__attribute__((format(printf, 2, 3)))
static const char *kpf(char *buf, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(kpath), fmt, ap);
    va_end(ap);
    return buf;
}

static const char *kp(char *buf, const char *parent, const char *name)
{
    if (parent != NULL && *parent != '\0')
        return kpf(buf, "%s.%s", parent, name);
    return kpf(buf, "%s", name);
}

/* Array elements carry no line of their own in some libconfig versions:
 * the nearest ancestor with one is the best we can name. */
static unsigned setting_line(const config_setting_t *s)
{
    for (; s != NULL; s = config_setting_parent(s))
        if (config_setting_source_line(s) != 0)
            return config_setting_source_line(s);
    return 0;
}

__attribute__((format(printf, 4, 5)))
static int fail(cx_t *cx, const config_setting_t *s, const char *key,
                const char *fmt, ...)
{
    char msg[768];
    const char *file = cx->file;
    unsigned line = setting_line(s);
    va_list ap;

    if (cx->err == NULL || cx->errlen == 0)
        return -1;
    if (s != NULL && config_setting_source_file(s) != NULL)
        file = config_setting_source_file(s);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line != 0)
        snprintf(cx->err, cx->errlen, "%s:%u: %s%s%s", file, line, key,
                 *key ? ": " : "", msg);
    else
        snprintf(cx->err, cx->errlen, "%s: %s%s%s", file, key,
                 *key ? ": " : "", msg);
    return -1;
}

static int fail_oom(cx_t *cx, const config_setting_t *s, const char *key)
{
    return fail(cx, s, key, "out of memory");
}

static void join(char *buf, size_t len, const char *const *words, int n)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", words[i]);
        if (w < 0 || (size_t) w >= len - used) {
            if (len > 4)
                memcpy(buf + len - 4, "...", 4);
            return;
        }
        used += (size_t) w;
    }
}

static int count(const char *const *list)
{
    int n = 0;

    while (list[n] != NULL)
        n++;
    return n;
}

static int in_list(const char *name, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(name, *list) == 0)
            return 1;
    return 0;
}

static int check_keys(cx_t *cx, const config_setting_t *grp, const char *path,
                      const char *const *allowed)
{
    int n = config_setting_length(grp);

    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(grp, (unsigned) i);
        const char *name = config_setting_name(m);
        char allow[512];
        kpath k;

        if (name != NULL && in_list(name, allowed))
            continue;
        join(allow, sizeof(allow), allowed, count(allowed));
        return fail(cx, m, kp(k, path, name ? name : "?"),
                    "unknown key (allowed: %s)", allow);
    }
    return 0;
}


/* ---- scalar values ----------------------------------------------------- */

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char) *s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int valid_env_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')
              || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* The string value of `s`, os.environ/NAME resolved, or NULL after fail().
 * The result belongs to libconfig or to the environment: copy it. */
static const char *str_value(cx_t *cx, const config_setting_t *s, const char *path)
{
    const char *v, *name, *env;

    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        fail(cx, s, path, "must be a string");
        return NULL;
    }
    v = config_setting_get_string(s);
    if (strncmp(v, CONF_ENV_PREFIX, strlen(CONF_ENV_PREFIX)) != 0)
        return v;
    name = v + strlen(CONF_ENV_PREFIX);
    if (!valid_env_name(name)) {
        fail(cx, s, path, "os.environ/ must be followed by a variable name "
             "(letters, digits and '_', not starting with a digit)");
        return NULL;
    }
    env = getenv(name);
    if (env == NULL) {
        fail(cx, s, path, "environment variable %s is not set", name);
        return NULL;
    }
    return env;
}

/* Optional string member `name` of `grp`: absent leaves *out alone and sets
 * *where to NULL; present replaces *out with a copy. */
static int opt_str(cx_t *cx, const config_setting_t *grp, const char *parent,
                   const char *name, char **out, const config_setting_t **where)
{
    const config_setting_t *s = config_setting_get_member(grp, name);
    const char *v;
    char *copy;
    kpath k;

    if (where != NULL)
        *where = s;
    if (s == NULL)
        return 0;
    kp(k, parent, name);
    if ((v = str_value(cx, s, k)) == NULL)
        return -1;
    if ((copy = strdup(v)) == NULL)
        return fail_oom(cx, s, k);
    free(*out);
    *out = copy;
    return 0;
}

/* libconfig 1.5 wraps a decimal literal beyond 32 bits into an int without a
 * word (5000000000 reads as 705032704).  Re-read the setting's source line
 * and refuse such a literal instead of using a wrong limit. */
static int literal_overflows(const char *line, const char *name)
{
    size_t nl = strlen(name);

    for (const char *q = line; (q = strstr(q, name)) != NULL; q += nl) {
        const char *r = q + nl;
        unsigned long long v;
        char *end;
        int neg = 0;

        if (q > line && (q[-1] == '_' || q[-1] == '-' || q[-1] == '*'
                         || (q[-1] >= '0' && q[-1] <= '9')
                         || ((q[-1] | 0x20) >= 'a' && (q[-1] | 0x20) <= 'z')))
            continue;
        while (*r == ' ' || *r == '\t')
            r++;
        if (*r != '=' && *r != ':')
            continue;
        for (r++; *r == ' ' || *r == '\t'; r++)
            ;
        if (*r == '-' || *r == '+')
            neg = *r++ == '-';
        if (*r < '0' || *r > '9')
            continue;
        errno = 0;
        if (r[0] == '0' && (r[1] == 'x' || r[1] == 'X'))
            v = strtoull(r + 2, &end, 16);
        else
            v = strtoull(r, &end, 10);
        if (*end == 'L' || *end == '.' || *end == 'e' || *end == 'E')
            continue;
        if (errno == ERANGE || v > (neg ? 2147483648ULL : 2147483647ULL))
            return 1;
    }
    return 0;
}

static int int_wrapped(cx_t *cx, const config_setting_t *s)
{
    const char *file = config_setting_source_file(s);
    unsigned want = config_setting_source_line(s), n = 0;
    const char *name = config_setting_name(s);
    char *buf = NULL;
    size_t cap = 0;
    int over = 0;
    FILE *f;

    if (file == NULL)
        file = cx->file;
    if (want == 0 || name == NULL || (f = fopen(file, "r")) == NULL)
        return 0;
    while (getline(&buf, &cap, f) >= 0)
        if (++n == want) {
            over = literal_overflows(buf, name);
            break;
        }
    free(buf);
    fclose(f);
    return over;
}

static int fail_range(cx_t *cx, const config_setting_t *s, const char *path,
                      const char *what, const char *op, double min, double max,
                      int capped)
{
    if (capped)
        return fail(cx, s, path, "must be %s %s %.15g and <= %.15g", what, op,
                    min, max);
    return fail(cx, s, path, "must be %s %s %.15g", what, op, min);
}

static int int_value(cx_t *cx, const config_setting_t *s, const char *path,
                     long long *out, long long min, long long max)
{
    long long v;
    int capped = max != LLONG_MAX && max != LONG_MAX && max != INT_MAX;

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        if (int_wrapped(cx, s))
            return fail(cx, s, path, "integer too large for libconfig's 32-bit "
                        "int: add an L suffix, like 5000000000L");
        v = config_setting_get_int(s);
        break;
    case CONFIG_TYPE_INT64:
        v = config_setting_get_int64(s);
        break;
    default:
        return fail_range(cx, s, path, "an integer", ">=", (double) min,
                          (double) max, capped);
    }
    if (v < min || v > max)
        return fail_range(cx, s, path, "an integer", ">=", (double) min,
                          (double) max, capped);
    *out = v;
    return 0;
}

static int num_value(cx_t *cx, const config_setting_t *s, const char *path,
                     double *out, double min, int exclusive, double max)
{
    const char *op = exclusive ? ">" : ">=";
    double v;

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        if (int_wrapped(cx, s))
            return fail(cx, s, path, "integer too large for libconfig's 32-bit "
                        "int: write it as a float, like 5e9");
        v = config_setting_get_int(s);
        break;
    case CONFIG_TYPE_INT64:
        v = (double) config_setting_get_int64(s);
        break;
    case CONFIG_TYPE_FLOAT:
        v = config_setting_get_float(s);
        break;
    default:
        return fail_range(cx, s, path, "a number", op, min, max, 1);
    }
    if (!isfinite(v) || (exclusive ? v <= min : v < min) || v > max)
        return fail_range(cx, s, path, "a number", op, min, max, 1);
    *out = v;
    return 0;
}

static int opt_long(cx_t *cx, const config_setting_t *grp, const char *parent,
                    const char *name, long *out, long min, long max)
{
    const config_setting_t *s = config_setting_get_member(grp, name);
    long long v = 0;
    kpath k;

    if (s == NULL)
        return 0;
    if (int_value(cx, s, kp(k, parent, name), &v, min, max) != 0)
        return -1;
    *out = (long) v;
    return 0;
}

static int opt_int(cx_t *cx, const config_setting_t *grp, const char *parent,
                   const char *name, int *out, int min, int max)
{
    long v = *out;

    if (opt_long(cx, grp, parent, name, &v, min, max) != 0)
        return -1;
    *out = (int) v;
    return 0;
}

static int opt_num(cx_t *cx, const config_setting_t *grp, const char *parent,
                   const char *name, double *out, double min, int exclusive,
                   double max)
{
    const config_setting_t *s = config_setting_get_member(grp, name);
    kpath k;

    if (s == NULL)
        return 0;
    return num_value(cx, s, kp(k, parent, name), out, min, exclusive, max);
}

static int need_group(cx_t *cx, const config_setting_t *s, const char *path,
                      const char *example)
{
    if (config_setting_is_group(s))
        return 0;
    return fail(cx, s, path, "must be a group, like %s", example);
}

/* A list or array of strings, or one string.  Empty arrays are type-less. */
static int is_string_list(const config_setting_t *s)
{
    int n;

    if (config_setting_type(s) == CONFIG_TYPE_STRING)
        return 1;
    if (!config_setting_is_array(s) && !config_setting_is_list(s))
        return 0;
    n = config_setting_length(s);
    for (int i = 0; i < n; i++)
        if (config_setting_type(config_setting_get_elem(s, (unsigned) i))
            != CONFIG_TYPE_STRING)
            return 0;
    return 1;
}


/* ---- server ------------------------------------------------------------ */

static int bad_listen(const char *v, const char **why)
{
    const char *colon = strrchr(v, ':'), *port;
    char host[64];
    size_t hl;
    long p = 0;

    *why = "must be host:port, like 127.0.0.1:4000 or [::1]:4000";
    if (colon == NULL || colon == v)
        return 1;
    hl = (size_t) (colon - v);
    port = colon + 1;
    if (*port == '\0' || strlen(port) > 5)
        goto bad_port;
    for (const char *c = port; *c; c++) {
        if (*c < '0' || *c > '9')
            goto bad_port;
        p = p * 10 + (*c - '0');
    }
    if (p < 1 || p > 65535)
        goto bad_port;

    if (v[0] == '[') {
        struct in6_addr a;
        if (hl < 3 || v[hl - 1] != ']' || hl - 2 >= sizeof(host))
            return 1;
        memcpy(host, v + 1, hl - 2);
        host[hl - 2] = '\0';
        *why = "must hold an IPv6 address between the brackets, like [::1]:4000";
        return inet_pton(AF_INET6, host, &a) != 1;
    }
    for (size_t i = 0; i < hl; i++) {
        char c = v[i];
        if (c == ':') {
            *why = "IPv6 addresses go in brackets, like [::1]:4000";
            return 1;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '-')) {
            *why = "host must be an IPv4 address, a host name or [IPv6]";
            return 1;
        }
    }
    return 0;

bad_port:
    *why = "port must be a number from 1 to 65535";
    return 1;
}

static int parse_listen(cx_t *cx, const config_setting_t *s)
{
    llmr_conf *c = cx->conf;
    int one = config_setting_type(s) == CONFIG_TYPE_STRING;
    int n = one ? 1 : config_setting_length(s);

    if (!is_string_list(s))
        return fail(cx, s, "server.listen", "must be a string \"host:port\" or "
                    "a list of them, like [\"0.0.0.0:4000\", \"[::]:4000\"]");
    if (n == 0)
        return fail(cx, s, "server.listen", "must name at least one address");
    if ((c->listen = calloc((size_t) n, sizeof(*c->listen))) == NULL)
        return fail_oom(cx, s, "server.listen");
    c->nlisten = n;

    for (int i = 0; i < n; i++) {
        const config_setting_t *e = one ? s : config_setting_get_elem(s, (unsigned) i);
        const char *v, *why;
        kpath k;

        if (one)
            kpf(k, "server.listen");
        else
            kpf(k, "server.listen[%d]", i);
        if ((v = str_value(cx, e, k)) == NULL)
            return -1;
        if (bad_listen(v, &why))
            return fail(cx, e, k, "\"%.80s\" %s", v, why);
        for (int j = 0; j < i; j++)
            if (strcmp(c->listen[j], v) == 0)
                return fail(cx, e, k, "\"%s\" is listed twice", v);
        if ((c->listen[i] = strdup(v)) == NULL)
            return fail_oom(cx, e, k);
    }
    return 0;
}

static int parse_server(cx_t *cx, const config_setting_t *s)
{
    llmr_conf *c = cx->conf;
    const config_setting_t *where;
    const char *p = "server";

    if (need_group(cx, s, p, "server = { listen = \"127.0.0.1:4000\"; };") != 0
        || check_keys(cx, s, p, server_keys) != 0)
        return -1;

    if ((where = config_setting_get_member(s, "listen")) != NULL
        && parse_listen(cx, where) != 0)
        return -1;
    if (opt_int(cx, s, p, "workers", &c->workers, 0, CONF_MAX_WORKERS) != 0)
        return -1;

    if (opt_str(cx, s, p, "master_key", &c->master_key, &where) != 0)
        return -1;
    if (where != NULL && c->master_key[0] == '\0')
        return fail(cx, where, "server.master_key", "must not be empty "
                    "(leave it out to serve without authentication)");
    if (where != NULL && has_ctl(c->master_key))
        return fail(cx, where, "server.master_key",
                    "must not contain control characters");

    if (opt_str(cx, s, p, "pid_file", &c->pid_file, &where) != 0)
        return -1;
    if (where != NULL && c->pid_file[0] == '\0')
        return fail(cx, where, "server.pid_file", "must not be empty");

    if (opt_str(cx, s, p, "shm_name", &c->shm_name, &where) != 0)
        return -1;
    if (where != NULL
        && (c->shm_name[0] != '/' || c->shm_name[1] == '\0'
            || strchr(c->shm_name + 1, '/') != NULL
            || strlen(c->shm_name) > CONF_SHM_NAME_MAX || has_ctl(c->shm_name)))
        return fail(cx, where, "server.shm_name", "must be '/' then 1 to %d "
                    "characters without '/', like \"/llmroute-4000\"",
                    CONF_SHM_NAME_MAX - 1);

    if (opt_long(cx, s, p, "max_body_bytes", &c->max_body_bytes, 1, LONG_MAX) != 0
        || opt_num(cx, s, p, "drain_timeout", &c->drain_timeout, 0, 0,
                   CONF_MAX_SECONDS) != 0)
        return -1;
    return 0;
}

/* Defaults that depend on other values: the first listen address names the
 * shared memory object so two instances on one host do not collide. */
static int server_defaults(cx_t *cx)
{
    llmr_conf *c = cx->conf;
    char name[32];

    if (c->nlisten == 0) {
        if ((c->listen = calloc(1, sizeof(*c->listen))) == NULL
            || (c->listen[0] = strdup(CONF_LISTEN)) == NULL)
            return fail_oom(cx, NULL, "server.listen");
        c->nlisten = 1;
    }
    if (c->pid_file == NULL && (c->pid_file = strdup(CONF_PID_FILE)) == NULL)
        return fail_oom(cx, NULL, "server.pid_file");
    if (c->shm_name == NULL) {
        snprintf(name, sizeof(name), "/llmroute-%s", strrchr(c->listen[0], ':') + 1);
        if ((c->shm_name = strdup(name)) == NULL)
            return fail_oom(cx, NULL, "server.shm_name");
    }
    return 0;
}


/* ---- model_list -------------------------------------------------------- */

/* Model names travel in JSON bodies, URLs and response headers. */
static int safe_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if ((unsigned char) *s <= 0x20 || (unsigned char) *s >= 0x7f
            || *s == '"' || *s == '\\')
            return 0;
    return 1;
}

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

static int parse_model(cx_t *cx, const config_setting_t *s, const char *path,
                       llmr_deployment *d)
{
    const char *slash = strchr(d->model, '/'), *up = d->model;
    size_t plen;

    if (!safe_name(d->model))
        return fail(cx, s, path, "must be a non-empty model name of printable "
                    "characters without spaces, '\"' or '\\'");
    d->provider = LLMR_PROVIDER_OPENAI;
    if (slash != NULL) {
        plen = (size_t) (slash - d->model);
        up = slash + 1;
        if (plen == 5 && memcmp(d->model, "azure", 5) == 0)
            d->provider = LLMR_PROVIDER_AZURE;
        else if (!(plen == 6 && memcmp(d->model, "openai", 6) == 0))
            return fail(cx, s, path, "unsupported provider \"%.*s\" (allowed: "
                        "azure/<deployment>, openai/<model>, or a bare OpenAI "
                        "model name)", (int) (plen > 40 ? 40 : plen), d->model);
        if (*up == '\0')
            return fail(cx, s, path, "needs a model after \"%.*s/\"",
                        (int) plen, d->model);
        if (d->provider == LLMR_PROVIDER_AZURE && !url_token(up))
            return fail(cx, s, path, "the Azure deployment name may hold only "
                        "letters, digits, '.', '_' and '-'");
    }
    if ((d->upstream_model = strdup(up)) == NULL)
        return fail_oom(cx, s, path);
    return 0;
}

static int parse_api_base(cx_t *cx, const config_setting_t *s, const char *path,
                          llmr_deployment *d)
{
    char *b = d->api_base, *host;
    size_t n;

    if (strncasecmp(b, "http://", 7) == 0)
        host = b + 7;
    else if (strncasecmp(b, "https://", 8) == 0)
        host = b + 8;
    else
        return fail(cx, s, path, "must start with http:// or https://");
    if (*host == '\0' || *host == '/')
        return fail(cx, s, path, "must name a host after the scheme");
    if (has_ctl(b) || strpbrk(b, " ?#") != NULL)
        return fail(cx, s, path, "must be a plain URL without spaces, "
                    "control characters, '?' or '#'");
    for (n = strlen(b); n > 0 && b[n - 1] == '/'; n--)
        b[n - 1] = '\0';
    return 0;
}

static int parse_limit(cx_t *cx, const config_setting_t *entry,
                       const config_setting_t *params, const char *path,
                       const char *name, long *out)
{
    const config_setting_t *outer = config_setting_get_member(entry, name);
    const config_setting_t *inner = config_setting_get_member(params, name);
    kpath k, pp;

    kpf(pp, "%s.litellm_params", path);
    if (outer != NULL && inner != NULL)
        return fail(cx, inner, kp(k, pp, name), "also set beside litellm_params "
                    "at line %u; keep one", setting_line(outer));
    if (outer != NULL)
        return opt_long(cx, entry, path, name, out, 0, LONG_MAX);
    return opt_long(cx, params, pp, name, out, 0, LONG_MAX);
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
 * key enters as a hash of the config text (the literal, or "os.environ/X"),
 * so rotating a secret in the environment keeps the counters and the id
 * reveals nothing about the key. */
static void hash_id(llmr_deployment *d, const char *raw_key)
{
    const char *parts[5] = { d->model_name, d->model, d->api_base,
                             d->api_version ? d->api_version : "", "" };
    uint64_t h = 0xcbf29ce484222325ULL;
    char keyhex[17];

    if (raw_key != NULL) {
        snprintf(keyhex, sizeof(keyhex), "%016llx", (unsigned long long)
                 fnv1a(0xcbf29ce484222325ULL, raw_key, strlen(raw_key)));
        parts[4] = keyhex;
    }
    h = fnv1a(h, "llmroute-deployment-1", sizeof("llmroute-deployment-1"));
    for (int i = 0; i < 5; i++)
        h = fnv1a(h, parts[i], strlen(parts[i]) + 1);
    snprintf(d->id, sizeof(d->id), "d-%016llx", (unsigned long long) h);
}

static int parse_model_info(cx_t *cx, const config_setting_t *entry,
                            const char *path, llmr_deployment *d)
{
    const config_setting_t *mi = config_setting_get_member(entry, "model_info");
    const config_setting_t *s;
    const char *v;
    kpath p, k;

    if (mi == NULL)
        return 0;
    kpf(p, "%s.model_info", path);
    if (need_group(cx, mi, p, "model_info = { id = \"azure-eu-1\"; };") != 0
        || check_keys(cx, mi, p, info_keys) != 0
        || opt_long(cx, mi, p, "max_input_tokens", &d->max_input_tokens, 1,
                    LONG_MAX) != 0)
        return -1;
    if ((s = config_setting_get_member(mi, "id")) == NULL)
        return 0;
    if ((v = str_value(cx, s, kp(k, p, "id"))) == NULL)
        return -1;
    if (*v == '\0' || strlen(v) >= LLMR_ID_MAX)
        return fail(cx, s, k, "must be 1 to %d characters", LLMR_ID_MAX - 1);
    for (const char *c = v; *c; c++)
        if (!id_char(*c))
            return fail(cx, s, k, "may hold only letters, digits, '.', '_', "
                        "':' and '-'");
    memcpy(d->id, v, strlen(v) + 1);
    return 0;
}

static int parse_params(cx_t *cx, const config_setting_t *entry,
                        const char *path, llmr_deployment *d)
{
    const config_setting_t *lp = config_setting_get_member(entry, "litellm_params");
    const config_setting_t *s;
    kpath p, k;

    kpf(p, "%s.litellm_params", path);
    if (lp == NULL)
        return fail(cx, entry, p, "missing (it needs at least model = \"...\")");
    if (need_group(cx, lp, p, "litellm_params = { model = \"gpt-4o\"; };") != 0
        || check_keys(cx, lp, p, params_keys) != 0)
        return -1;

    if (opt_str(cx, lp, p, "model", &d->model, &s) != 0)
        return -1;
    if (s == NULL)
        return fail(cx, lp, p, "missing model (like \"azure/<deployment>\", "
                    "\"openai/<model>\" or \"gpt-4o\")");
    if (parse_model(cx, s, kp(k, p, "model"), d) != 0)
        return -1;

    if (opt_str(cx, lp, p, "api_key", &d->api_key, &s) != 0)
        return -1;
    if (s != NULL && (d->api_key[0] == '\0' || has_ctl(d->api_key)))
        return fail(cx, s, kp(k, p, "api_key"), "must not be empty or hold "
                    "control characters");

    if (opt_str(cx, lp, p, "api_base", &d->api_base, &s) != 0)
        return -1;
    if (s == NULL && d->provider == LLMR_PROVIDER_AZURE)
        return fail(cx, lp, p, "api_base is required for azure/ deployments "
                    "(like \"https://example.openai.azure.com\")");
    if (s == NULL && (d->api_base = strdup(CONF_OPENAI_BASE)) == NULL)
        return fail_oom(cx, lp, p);
    if (s != NULL && parse_api_base(cx, s, kp(k, p, "api_base"), d) != 0)
        return -1;

    if (opt_str(cx, lp, p, "api_version", &d->api_version, &s) != 0)
        return -1;
    if (s != NULL && !url_token(d->api_version))
        return fail(cx, s, kp(k, p, "api_version"), "may hold only letters, "
                    "digits, '.', '_' and '-', like \"2024-02-01\"");
    if (s == NULL && d->provider == LLMR_PROVIDER_AZURE
        && (d->api_version = strdup(CONF_AZURE_VERSION)) == NULL)
        return fail_oom(cx, lp, p);

    if (parse_limit(cx, entry, lp, path, "rpm", &d->rpm) != 0
        || parse_limit(cx, entry, lp, path, "tpm", &d->tpm) != 0
        || opt_num(cx, lp, p, "weight", &d->weight, 0, 1, CONF_MAX_WEIGHT) != 0
        || opt_int(cx, lp, p, "order", &d->order, 1, INT_MAX) != 0
        || opt_int(cx, lp, p, "max_parallel_requests",
                   &d->max_parallel_requests, 1, INT_MAX) != 0
        || opt_num(cx, lp, p, "timeout", &d->timeout, 0, 1, CONF_MAX_SECONDS) != 0)
        return -1;

    if (d->id[0] == '\0') {
        s = config_setting_get_member(lp, "api_key");
        hash_id(d, s != NULL ? config_setting_get_string(s) : NULL);
    }
    return 0;
}

static unsigned id_line(const config_setting_t *entry)
{
    config_setting_t *s = config_setting_lookup((config_setting_t *) entry,
                                                "model_info.id");

    return setting_line(s != NULL ? s : entry);
}

static int check_duplicate(cx_t *cx, const config_setting_t *list, int i)
{
    const llmr_deployment *ds = cx->conf->deployments, *d = &ds[i];
    const config_setting_t *entry = config_setting_get_elem(list, (unsigned) i);
    const config_setting_t *idset = config_setting_lookup(
        (config_setting_t *) entry, "model_info.id");
    kpath k;

    for (int j = 0; j < i; j++) {
        const config_setting_t *other = config_setting_get_elem(list, (unsigned) j);

        if (strcmp(ds[j].id, d->id) != 0)
            continue;
        if (idset != NULL) {
            kpf(k, "model_list[%d].model_info.id", i);
            return fail(cx, idset, k, "duplicate deployment id \"%s\" (also "
                        "model_list[%d] at line %u)", d->id, j, id_line(other));
        }
        kpf(k, "model_list[%d]", i);
        return fail(cx, entry, k, "same deployment as model_list[%d] at line %u "
                    "(id \"%s\" from model_name, model, api_base, api_version "
                    "and api_key); set model_info.id to tell them apart",
                    j, id_line(other), d->id);
    }
    return 0;
}

static int add_to_group(cx_t *cx, const config_setting_t *entry, int i)
{
    llmr_conf *c = cx->conf;
    llmr_deployment *d = &c->deployments[i];
    int g = llmr_conf_find_group(c, d->model_name, strlen(d->model_name));

    if (g < 0) {
        g = c->ngroups;
        if ((c->groups[g].name = strdup(d->model_name)) == NULL)
            return fail_oom(cx, entry, "model_list");
        c->ngroups++;
    }
    d->group = g;
    c->groups[g].ndeployments++;
    return 0;
}

static int parse_deployment(cx_t *cx, const config_setting_t *list, int i)
{
    const config_setting_t *e = config_setting_get_elem(list, (unsigned) i), *s;
    llmr_deployment *d = &cx->conf->deployments[i];
    kpath path, k;

    d->slot = -1;
    d->group = -1;
    d->line = (int) setting_line(e);
    kpf(path, "model_list[%d]", i);
    if (need_group(cx, e, path, "{ model_name = \"gpt-4\"; litellm_params = "
                   "{ model = \"gpt-4\"; }; }") != 0
        || check_keys(cx, e, path, entry_keys) != 0)
        return -1;

    if (opt_str(cx, e, path, "model_name", &d->model_name, &s) != 0)
        return -1;
    if (s == NULL)
        return fail(cx, e, path, "missing model_name (the model group clients "
                    "ask for)");
    if (!safe_name(d->model_name) || strlen(d->model_name) >= LLMR_ID_MAX)
        return fail(cx, s, kp(k, path, "model_name"), "must be 1 to %d printable "
                    "characters without spaces, '\"' or '\\'", LLMR_ID_MAX - 1);

    if (parse_model_info(cx, e, path, d) != 0
        || parse_params(cx, e, path, d) != 0
        || check_duplicate(cx, list, i) != 0)
        return -1;
    return add_to_group(cx, e, i);
}

static int parse_model_list(cx_t *cx, const config_setting_t *root)
{
    const config_setting_t *list = config_setting_get_member(root, "model_list");
    llmr_conf *c = cx->conf;
    int n;

    if (list == NULL)
        return fail(cx, NULL, "model_list", "missing: list at least one "
                    "deployment, like model_list = ( { model_name = \"gpt-4\"; "
                    "litellm_params = { model = \"gpt-4\"; }; } );");
    if (!config_setting_is_list(list) && !config_setting_is_array(list))
        return fail(cx, list, "model_list", "must be a list of groups, like "
                    "model_list = ( { model_name = ...; litellm_params = "
                    "{ ... }; } );");
    if ((n = config_setting_length(list)) == 0)
        return fail(cx, list, "model_list", "must list at least one deployment");
    if ((c->deployments = calloc((size_t) n, sizeof(*c->deployments))) == NULL
        || (c->groups = calloc((size_t) n, sizeof(*c->groups))) == NULL)
        return fail_oom(cx, list, "model_list");
    c->ndeployments = n;

    for (int i = 0; i < n; i++)
        if (parse_deployment(cx, list, i) != 0)
            return -1;

    for (int g = 0; g < c->ngroups; g++) {
        llmr_group *gr = &c->groups[g];
        if ((gr->deployments = calloc((size_t) gr->ndeployments,
                                      sizeof(*gr->deployments))) == NULL)
            return fail_oom(cx, list, "model_list");
        gr->ndeployments = 0;
    }
    for (int i = 0; i < n; i++) {
        llmr_group *gr = &c->groups[c->deployments[i].group];
        gr->deployments[gr->ndeployments++] = i;
    }
    return 0;
}


/* ---- router_settings --------------------------------------------------- */

static int known_group(cx_t *cx, const config_setting_t *s, const char *path,
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
    join(allow, sizeof(allow), names, n);
    return fail(cx, s, path, "unknown model group \"%.80s\": no model_list "
                "entry has this model_name (allowed: %s)", name, allow);
}

/* One string or a list of them, each a model group, none listed twice.
 * `self` may not appear. */
static int parse_group_names(cx_t *cx, const config_setting_t *s,
                             const char *path, const char *self,
                             char ***out, int *nout)
{
    int one = config_setting_type(s) == CONFIG_TYPE_STRING;
    int n = one ? 1 : config_setting_length(s);

    if (!is_string_list(s))
        return fail(cx, s, path, "must be a model group name or a list of them, "
                    "like [\"gpt-3.5-turbo\"]");
    if ((*out = calloc((size_t) (n ? n : 1), sizeof(**out))) == NULL)
        return fail_oom(cx, s, path);
    *nout = n;

    for (int i = 0; i < n; i++) {
        const config_setting_t *e = one ? s : config_setting_get_elem(s, (unsigned) i);
        const char *v;
        kpath k;

        if (one)
            kpf(k, "%s", path);
        else
            kpf(k, "%s[%d]", path, i);
        if ((v = str_value(cx, e, k)) == NULL || known_group(cx, e, k, v) != 0)
            return -1;
        if (self != NULL && strcmp(v, self) == 0)
            return fail(cx, e, k, "\"%s\" cannot fall back to itself", v);
        for (int j = 0; j < i; j++)
            if (strcmp((*out)[j], v) == 0)
                return fail(cx, e, k, "\"%s\" is listed twice", v);
        if (((*out)[i] = strdup(v)) == NULL)
            return fail_oom(cx, e, k);
    }
    return 0;
}

static int parse_fallback(cx_t *cx, const config_setting_t *list, int i,
                          const char *lpath, llmr_fallback_list *out)
{
    const config_setting_t *e = config_setting_get_elem(list, (unsigned) i), *s;
    llmr_fallback *f = &out->items[i];
    kpath p, k;

    kpf(p, "%s[%d]", lpath, i);
    if (need_group(cx, e, p, "{ model = \"gpt-4\"; fallbacks = "
                   "[\"gpt-3.5-turbo\"]; }") != 0
        || check_keys(cx, e, p, fallback_keys) != 0
        || opt_str(cx, e, p, "model", &f->model, &s) != 0)
        return -1;
    if (s == NULL)
        return fail(cx, e, p, "missing model (the group that fails)");
    if (known_group(cx, s, kp(k, p, "model"), f->model) != 0)
        return -1;
    for (int j = 0; j < i; j++)
        if (strcmp(out->items[j].model, f->model) == 0)
            return fail(cx, s, k, "\"%s\" already has fallbacks at line %u",
                        f->model, setting_line(config_setting_get_elem(list,
                                                                       (unsigned) j)));
    if ((s = config_setting_get_member(e, "fallbacks")) == NULL)
        return fail(cx, e, p, "missing fallbacks (the groups to try, like "
                    "[\"gpt-3.5-turbo\"])");
    return parse_group_names(cx, s, kp(k, p, "fallbacks"), f->model,
                             &f->fallbacks, &f->nfallbacks);
}

static int parse_fallbacks(cx_t *cx, const config_setting_t *rs,
                           const char *name, llmr_fallback_list *out)
{
    const config_setting_t *s = config_setting_get_member(rs, name);
    int n;
    kpath p;

    if (s == NULL)
        return 0;
    kp(p, "router_settings", name);
    if (!config_setting_is_list(s)
        && !(config_setting_is_array(s) && config_setting_length(s) == 0))
        return fail(cx, s, p, "must be a list of groups, like ( { model = "
                    "\"gpt-4\"; fallbacks = [\"gpt-3.5-turbo\"]; } )");
    n = config_setting_length(s);
    if ((out->items = calloc((size_t) (n ? n : 1), sizeof(*out->items))) == NULL)
        return fail_oom(cx, s, p);
    out->n = n;
    for (int i = 0; i < n; i++)
        if (parse_fallback(cx, s, i, p, out) != 0)
            return -1;
    return 0;
}

static int parse_strategy(cx_t *cx, const config_setting_t *rs)
{
    const config_setting_t *s = config_setting_get_member(rs, "routing_strategy");
    const char *v, *k = "router_settings.routing_strategy";
    char allow[256];

    if (s == NULL)
        return 0;
    if ((v = str_value(cx, s, k)) == NULL)
        return -1;
    for (int i = 0; i < NSTRATEGIES; i++)
        if (strcmp(v, strategy_names[i]) == 0) {
            cx->conf->routing_strategy = (enum llmr_strategy) i;
            return 0;
        }
    join(allow, sizeof(allow), strategy_names, NSTRATEGIES);
    return fail(cx, s, k, "unknown strategy \"%.64s\" (allowed: %s)", v, allow);
}

static int parse_router(cx_t *cx, const config_setting_t *rs)
{
    llmr_conf *c = cx->conf;
    const config_setting_t *s;
    const char *p = "router_settings";

    if (need_group(cx, rs, p, "router_settings = { num_retries = 2; };") != 0
        || check_keys(cx, rs, p, router_keys) != 0
        || parse_strategy(cx, rs) != 0
        || opt_int(cx, rs, p, "num_retries", &c->num_retries, 0,
                   CONF_MAX_RETRIES) != 0
        || opt_num(cx, rs, p, "retry_after", &c->retry_after, 0, 0,
                   CONF_MAX_SECONDS) != 0
        || opt_num(cx, rs, p, "timeout", &c->timeout, 0, 1, CONF_MAX_SECONDS) != 0
        || opt_num(cx, rs, p, "stream_timeout", &c->stream_timeout, 0, 0,
                   CONF_MAX_SECONDS) != 0
        || opt_int(cx, rs, p, "allowed_fails", &c->allowed_fails, 0, INT_MAX) != 0
        || opt_num(cx, rs, p, "cooldown_time", &c->cooldown_time, 0, 0,
                   CONF_MAX_SECONDS) != 0
        || parse_fallbacks(cx, rs, "fallbacks", &c->fallbacks) != 0
        || parse_fallbacks(cx, rs, "context_window_fallbacks",
                           &c->context_window_fallbacks) != 0
        || parse_fallbacks(cx, rs, "content_policy_fallbacks",
                           &c->content_policy_fallbacks) != 0)
        return -1;

    if ((s = config_setting_get_member(rs, "default_fallbacks")) != NULL
        && parse_group_names(cx, s, "router_settings.default_fallbacks", NULL,
                             &c->default_fallbacks, &c->ndefault_fallbacks) != 0)
        return -1;

    if ((s = config_setting_get_member(rs, "routing_strategy_args")) != NULL) {
        const char *ap = "router_settings.routing_strategy_args";
        if (need_group(cx, s, ap, "routing_strategy_args = { "
                       "lowest_latency_buffer = 0.0; };") != 0
            || check_keys(cx, s, ap, strategy_args_keys) != 0
            || opt_num(cx, s, ap, "lowest_latency_buffer",
                       &c->lowest_latency_buffer, 0, 0, CONF_MAX_WEIGHT) != 0)
            return -1;
    }
    return 0;
}


/* ---- the whole file ---------------------------------------------------- */

static void set_defaults(llmr_conf *c)
{
    c->workers = 0;
    c->max_body_bytes = 10485760;
    c->drain_timeout = 30.0;
    c->routing_strategy = LLMR_STRATEGY_SIMPLE_SHUFFLE;
    c->num_retries = 2;
    c->retry_after = 0.0;
    c->timeout = 600.0;
    c->stream_timeout = 0.0;
    c->allowed_fails = 3;
    c->cooldown_time = 60.0;
    c->lowest_latency_buffer = 0.0;
}

static int read_file(cx_t *cx, config_t *cf)
{
    FILE *f = fopen(cx->file, "r");
    const char *efile;

    if (f == NULL)
        return fail(cx, NULL, "", "cannot open: %s", strerror(errno));
    if (fgetc(f) == EOF && ferror(f)) {
        int e = errno;
        fclose(f);
        return fail(cx, NULL, "", "cannot read: %s", strerror(e));
    }
    fclose(f);

    if (config_read_file(cf, cx->file) == CONFIG_TRUE)
        return 0;
    if (config_error_type(cf) != CONFIG_ERR_PARSE)
        return fail(cx, NULL, "", "cannot read: %s", config_error_text(cf));
    efile = config_error_file(cf) ? config_error_file(cf) : cx->file;
    snprintf(cx->err, cx->errlen, "%s:%d: syntax error: %s", efile,
             config_error_line(cf), config_error_text(cf));
    return -1;
}

static int parse_root(cx_t *cx, const config_setting_t *root)
{
    const config_setting_t *s;

    if (check_keys(cx, root, "", root_keys) != 0)
        return -1;
    if ((s = config_setting_get_member(root, "server")) != NULL
        && parse_server(cx, s) != 0)
        return -1;
    if (server_defaults(cx) != 0 || parse_model_list(cx, root) != 0)
        return -1;
    /* Fallbacks name model groups, so model_list comes first. */
    if ((s = config_setting_get_member(root, "router_settings")) != NULL
        && parse_router(cx, s) != 0)
        return -1;
    return 0;
}

int llmr_conf_load(const char *path, llmr_conf **out, char *err, size_t errlen)
{
    static char dummy[1];
    cx_t cx = { path, err ? err : dummy, err ? errlen : sizeof(dummy), NULL };
    config_t cf;
    int rc;

    *out = NULL;
    if (cx.errlen > 0)
        cx.err[0] = '\0';
    if ((cx.conf = calloc(1, sizeof(*cx.conf))) == NULL
        || (cx.conf->file = strdup(path)) == NULL) {
        free(cx.conf);
        return fail_oom(&cx, NULL, "");
    }
    set_defaults(cx.conf);

    config_init(&cf);
    rc = read_file(&cx, &cf);
    if (rc == 0)
        rc = parse_root(&cx, config_root_setting(&cf));
    config_destroy(&cf);

    if (rc != 0) {
        llmr_conf_free(cx.conf);
        return -1;
    }
    *out = cx.conf;
    return 0;
}


/* ---- lookups and cleanup ----------------------------------------------- */

int llmr_conf_find_group(const llmr_conf *conf, const char *name, size_t len)
{
    if (conf == NULL || name == NULL)
        return -1;
    for (int i = 0; i < conf->ngroups; i++) {
        const char *g = conf->groups[i].name;
        if (g != NULL && strlen(g) == len && memcmp(g, name, len) == 0)
            return i;
    }
    return -1;
}

const char *llmr_strategy_name(enum llmr_strategy s)
{
    if ((int) s < 0 || (int) s >= NSTRATEGIES)
        return "unknown";
    return strategy_names[s];
}

static void free_secret(char *s)
{
    if (s != NULL)
        explicit_bzero(s, strlen(s));
    free(s);
}

static void free_strings(char **v, int n)
{
    for (int i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

static void free_fallbacks(llmr_fallback_list *l)
{
    for (int i = 0; l->items != NULL && i < l->n; i++) {
        free(l->items[i].model);
        free_strings(l->items[i].fallbacks, l->items[i].nfallbacks);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void llmr_conf_free(llmr_conf *c)
{
    if (c == NULL)
        return;
    free(c->file);
    free_strings(c->listen, c->nlisten);
    free_secret(c->master_key);
    free(c->pid_file);
    free(c->shm_name);
    free_fallbacks(&c->fallbacks);
    free_fallbacks(&c->context_window_fallbacks);
    free_fallbacks(&c->content_policy_fallbacks);
    free_strings(c->default_fallbacks, c->ndefault_fallbacks);
    for (int i = 0; c->deployments != NULL && i < c->ndeployments; i++) {
        llmr_deployment *d = &c->deployments[i];
        free(d->model_name);
        free(d->model);
        free(d->upstream_model);
        free_secret(d->api_key);
        free(d->api_base);
        free(d->api_version);
    }
    free(c->deployments);
    for (int i = 0; c->groups != NULL && i < c->ngroups; i++) {
        free(c->groups[i].name);
        free(c->groups[i].deployments);
    }
    free(c->groups);
    free(c);
}
