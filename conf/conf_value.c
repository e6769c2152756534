/* conf values: one scalar, string or list read from a setting, with
 * os.environ/ resolved and its range checked, and the "FILE:LINE: key: ..."
 * messages every part of conf/ fails with. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* getline */
#endif
#include "conf_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONF_ENV_PREFIX      "os.environ/"


/* ---- messages ---------------------------------------------------------- */

/* Key paths are for messages: a path too long for conf_kpath is cut short. */
const char *conf_kpf(char *buf, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(conf_kpath), fmt, ap);
    va_end(ap);
    return buf;
}

const char *conf_kp(char *buf, const char *parent, const char *name)
{
    if (parent != NULL && *parent != '\0')
        return conf_kpf(buf, "%s.%s", parent, name);
    return conf_kpf(buf, "%s", name);
}

/* Array elements carry no line of their own in some libconfig versions:
 * the nearest ancestor with one is the best we can name. */
unsigned conf_setting_line(const config_setting_t *s)
{
    for (; s != NULL; s = config_setting_parent(s))
        if (config_setting_source_line(s) != 0)
            return config_setting_source_line(s);
    return 0;
}

int conf_fail(conf_cx *cx, const config_setting_t *s, const char *key,
              const char *fmt, ...)
{
    char msg[768];
    const char *file = cx->file;
    unsigned line = conf_setting_line(s);
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

int conf_fail_oom(conf_cx *cx, const config_setting_t *s, const char *key)
{
    return conf_fail(cx, s, key, "out of memory");
}

void conf_join(char *buf, size_t len, const char *const *words, int n)
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

int conf_check_keys(conf_cx *cx, const config_setting_t *grp, const char *path,
                    const char *const *allowed)
{
    int n = config_setting_length(grp);

    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(grp, (unsigned) i);
        const char *name = config_setting_name(m);
        char allow[512];
        conf_kpath k;

        if (name != NULL && in_list(name, allowed))
            continue;
        conf_join(allow, sizeof(allow), allowed, count(allowed));
        return conf_fail(cx, m, conf_kp(k, path, name ? name : "?"),
                         "unknown key (allowed: %s)", allow);
    }
    return 0;
}


/* ---- scalar values ----------------------------------------------------- */

int conf_has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char) *s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

int conf_valid_env_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')
              || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* The string value of `s`, os.environ/NAME resolved, or NULL after
 * conf_fail().  The result belongs to libconfig or to the environment: copy
 * it. */
const char *conf_str_value(conf_cx *cx, const config_setting_t *s,
                           const char *path)
{
    const char *v, *name, *env;

    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        conf_fail(cx, s, path, "must be a string");
        return NULL;
    }
    v = config_setting_get_string(s);
    if (strncmp(v, CONF_ENV_PREFIX, strlen(CONF_ENV_PREFIX)) != 0)
        return v;
    name = v + strlen(CONF_ENV_PREFIX);
    if (!conf_valid_env_name(name)) {
        conf_fail(cx, s, path, "os.environ/ must be followed by a variable "
                  "name (letters, digits and '_', not starting with a digit)");
        return NULL;
    }
    env = getenv(name);
    if (env == NULL) {
        conf_fail(cx, s, path, "environment variable %s is not set", name);
        return NULL;
    }
    return env;
}

/* Optional string member `name` of `grp`: absent leaves *out alone and sets
 * *where to NULL; present replaces *out with a copy. */
int conf_opt_str(conf_cx *cx, const config_setting_t *grp, const char *parent,
                 const char *name, char **out, const config_setting_t **where)
{
    const config_setting_t *s = config_setting_get_member(grp, name);
    const char *v;
    char *copy;
    conf_kpath k;

    if (where != NULL)
        *where = s;
    if (s == NULL)
        return 0;
    conf_kp(k, parent, name);
    if ((v = conf_str_value(cx, s, k)) == NULL)
        return -1;
    if ((copy = strdup(v)) == NULL)
        return conf_fail_oom(cx, s, k);
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

static int int_wrapped(conf_cx *cx, const config_setting_t *s)
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

static int fail_range(conf_cx *cx, const config_setting_t *s, const char *path,
                      const char *what, const char *op, double min, double max,
                      int capped)
{
    if (capped)
        return conf_fail(cx, s, path, "must be %s %s %.15g and <= %.15g", what,
                         op, min, max);
    return conf_fail(cx, s, path, "must be %s %s %.15g", what, op, min);
}

static int int_value(conf_cx *cx, const config_setting_t *s, const char *path,
                     long long *out, long long min, long long max)
{
    long long v;
    int capped = max != LLONG_MAX && max != LONG_MAX && max != INT_MAX;

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        if (int_wrapped(cx, s))
            return conf_fail(cx, s, path, "integer too large for libconfig's "
                             "32-bit int: add an L suffix, like 5000000000L");
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

static int num_value(conf_cx *cx, const config_setting_t *s, const char *path,
                     double *out, double min, int exclusive, double max)
{
    const char *op = exclusive ? ">" : ">=";
    double v;

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        if (int_wrapped(cx, s))
            return conf_fail(cx, s, path, "integer too large for libconfig's "
                             "32-bit int: write it as a float, like 5e9");
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

int conf_opt_long(conf_cx *cx, const config_setting_t *grp, const char *parent,
                  const char *name, long *out, long min, long max)
{
    const config_setting_t *s = config_setting_get_member(grp, name);
    long long v = 0;
    conf_kpath k;

    if (s == NULL)
        return 0;
    if (int_value(cx, s, conf_kp(k, parent, name), &v, min, max) != 0)
        return -1;
    *out = (long) v;
    return 0;
}

int conf_opt_int(conf_cx *cx, const config_setting_t *grp, const char *parent,
                 const char *name, int *out, int min, int max)
{
    long v = *out;

    if (conf_opt_long(cx, grp, parent, name, &v, min, max) != 0)
        return -1;
    *out = (int) v;
    return 0;
}

int conf_opt_num(conf_cx *cx, const config_setting_t *grp, const char *parent,
                 const char *name, double *out, double min, int exclusive,
                 double max)
{
    const config_setting_t *s = config_setting_get_member(grp, name);
    conf_kpath k;

    if (s == NULL)
        return 0;
    return num_value(cx, s, conf_kp(k, parent, name), out, min, exclusive, max);
}

int conf_opt_bool(conf_cx *cx, const config_setting_t *grp, const char *parent,
                  const char *name, int *out, int *given)
{
    const config_setting_t *s = config_setting_get_member(grp, name);
    conf_kpath k;

    if (s == NULL)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return conf_fail(cx, s, conf_kp(k, parent, name), "must be true or false");
    *out = config_setting_get_bool(s);
    if (given != NULL)
        *given = 1;
    return 0;
}

/* Model names and aliases travel in JSON bodies, URLs and response headers:
 * printable ASCII without spaces, '"' or '\\'. */
int conf_safe_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '"' || *s == '\\')
            return 0;
    return 1;
}

int conf_need_group(conf_cx *cx, const config_setting_t *s, const char *path,
                    const char *example)
{
    if (config_setting_is_group(s))
        return 0;
    return conf_fail(cx, s, path, "must be a group, like %s", example);
}

/* A list or array of strings, or one string.  Empty arrays are type-less. */
int conf_is_string_list(const config_setting_t *s)
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
