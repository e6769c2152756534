/* conf YAML: a LiteLLM config.yaml read with libyaml into a small tree of
 * nodes that keep their line, typed as PyYAML (YAML 1.1) types plain
 * scalars, since that is what LiteLLM reads its file with.  conf_litellm.c
 * maps the tree onto the native libconfig tree, whose settings carry the
 * YAML lines, so every check of conf.c and its FILE:LINE messages apply
 * unchanged.  Anchors, aliases and merge keys (<<) work; duplicate keys
 * are refused (PyYAML keeps the last one silently: a typo must never be
 * ignored). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* strtoll, setenv */
#endif
#include "conf_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Bounds on what a file can make us build: nodes with aliases expanded
 * (a "billion laughs" file is refused, not expanded), nesting, keys in one
 * mapping (the duplicate check is quadratic), anchors (looked up linearly). */
#define Y_MAX_NODES     1000000
#define Y_MAX_DEPTH     64
#define Y_MAX_KEYS      4096
#define Y_MAX_ANCHORS   1024

int llmr_conf_yaml_forced;

int conf_is_yaml(const char *path)
{
    size_t n = strlen(path);

    if (llmr_conf_yaml_forced)
        return 1;
    return (n > 5 && strcmp(path + n - 5, ".yaml") == 0)
        || (n > 4 && strcmp(path + n - 4, ".yml") == 0);
}

__attribute__((format(printf, 4, 5)))
int conf_yfail(conf_cx *cx, unsigned line, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    if (cx->err == NULL || cx->errlen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(cx->err, cx->errlen, "%s:%u: %s%s%s", cx->file, line, key, *key ? ": " : "",
             msg);
    return -1;
}


/* ---- building the tree ------------------------------------------------- */

typedef struct ybuild {
    conf_cx *cx;
    conf_ydoc *doc;
    conf_ynode *stack[Y_MAX_DEPTH];
    int depth;
    conf_ynode *anchors[Y_MAX_ANCHORS];
    int nanchors;
    int docs;
} ybuild;

static conf_ynode *new_node(ybuild *b, int kind, unsigned line)
{
    conf_ynode *n = calloc(1, sizeof(*n));

    if (n == NULL)
        return NULL;
    n->kind = kind;
    n->line = line;
    n->size = 1;
    n->next_all = b->doc->all;
    b->doc->all = n;
    return n;
}

static int remember_anchor(ybuild *b, conf_ynode *n, const yaml_char_t *anchor)
{
    if (anchor == NULL)
        return 0;
    if (b->nanchors == Y_MAX_ANCHORS)
        return conf_yfail(b->cx, n->line, "", "more than %d anchors", Y_MAX_ANCHORS);
    if ((n->anchor = strdup((const char *) anchor)) == NULL)
        return conf_yfail(b->cx, n->line, "", "out of memory");
    b->anchors[b->nanchors++] = n;
    return 0;
}

/* The line of an earlier equal key of `map`, or 0. */
static unsigned dup_key(const conf_ynode *map, const conf_ynode *key)
{
    for (int i = 0; i + 1 < map->n; i += 2)
        if (strcmp(map->kids[i]->str, key->str) == 0)
            return map->kids[i]->line;
    return 0;
}

static int push_kid(ybuild *b, conf_ynode *top, conf_ynode *n)
{
    if (top->n == top->cap) {
        int cap = top->cap ? top->cap * 2 : 8;
        conf_ynode **k = realloc(top->kids, (size_t) cap * sizeof(*k));
        if (k == NULL)
            return conf_yfail(b->cx, n->line, "", "out of memory");
        top->kids = k;
        top->cap = cap;
    }
    top->kids[top->n++] = n;
    top->size += n->size;
    if (top->size > Y_MAX_NODES)
        return conf_yfail(b->cx, n->line, "", "more than %d values (aliases counted "
                          "each time they are used)", Y_MAX_NODES);
    return 0;
}

/* Appends a finished node to the open collection (or makes it the root). */
static int attach(ybuild *b, conf_ynode *n)
{
    conf_ynode *top;

    if (b->depth == 0) {
        b->doc->root = n;
        return 0;
    }
    top = b->stack[b->depth - 1];
    if (top->kind == CONF_Y_MAP && top->n % 2 == 0) {
        if (n->kind != CONF_Y_SCALAR)
            return conf_yfail(b->cx, n->line, "", "a mapping key must be a plain string, "
                              "not a list or mapping");
        if (top->n / 2 >= Y_MAX_KEYS)
            return conf_yfail(b->cx, n->line, "", "more than %d keys in one mapping",
                              Y_MAX_KEYS);
        if (dup_key(top, n) != 0)
            return conf_yfail(b->cx, n->line, n->str, "duplicate key (also at line %u)",
                              dup_key(top, n));
    }
    return push_kid(b, top, n);
}

/* YAML's merge key, as PyYAML does it: `<<: *base` (or a list of them)
 * adds the keys of those mappings that this one does not set itself; the
 * first mapping listed wins over the later ones. */
static int merge_keys(ybuild *b, conf_ynode *map)
{
    int n = map->n, w = 0;

    for (int i = 0; i + 1 < n; i += 2) {
        const conf_ynode *k = map->kids[i], *v = map->kids[i + 1];
        int ns = v->kind == CONF_Y_SEQ ? v->n : 1;

        if (!k->plain || strcmp(k->str, "<<") != 0)
            continue;
        for (int s = 0; s < ns; s++) {
            const conf_ynode *src = v->kind == CONF_Y_SEQ ? v->kids[s] : v;
            if (src->kind != CONF_Y_MAP)
                return conf_yfail(b->cx, k->line, "<<", "a merge key takes a mapping or "
                                  "a list of mappings, like <<: *defaults");
            for (int j = 0; j + 1 < src->n; j += 2)
                if (dup_key(map, src->kids[j]) == 0
                    && (push_kid(b, map, src->kids[j]) != 0
                        || push_kid(b, map, src->kids[j + 1]) != 0))
                    return -1;
        }
    }
    for (int i = 0; i + 1 < map->n; i += 2)     /* the "<<" pairs themselves go */
        if (!(i < n && map->kids[i]->plain && strcmp(map->kids[i]->str, "<<") == 0)) {
            map->kids[w++] = map->kids[i];
            map->kids[w++] = map->kids[i + 1];
        }
    map->n = w;
    return 0;
}

static int on_scalar(ybuild *b, const yaml_event_t *ev)
{
    unsigned line = (unsigned) ev->start_mark.line + 1;
    conf_ynode *n = new_node(b, CONF_Y_SCALAR, line);
    size_t len = ev->data.scalar.length;

    if (n == NULL || (n->str = malloc(len + 1)) == NULL)
        return conf_yfail(b->cx, line, "", "out of memory");
    memcpy(n->str, ev->data.scalar.value, len);
    n->str[len] = '\0';
    if (strlen(n->str) != len)
        return conf_yfail(b->cx, line, "", "a value holds a NUL character");
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE
        && ev->data.scalar.plain_implicit;
    if (remember_anchor(b, n, ev->data.scalar.anchor) != 0)
        return -1;
    return attach(b, n);
}

static int on_alias(ybuild *b, const yaml_event_t *ev)
{
    unsigned line = (unsigned) ev->start_mark.line + 1;
    const char *name = (const char *) ev->data.alias.anchor;

    for (int i = b->nanchors - 1; i >= 0; i--)
        if (strcmp(b->anchors[i]->anchor, name) == 0) {
            /* An anchor still open (an alias inside its own node) would
             * make the tree a cycle. */
            for (int d = 0; d < b->depth; d++)
                if (b->stack[d] == b->anchors[i])
                    return conf_yfail(b->cx, line, "", "alias *%.64s refers to a node "
                                      "that contains it", name);
            return attach(b, b->anchors[i]);
        }
    return conf_yfail(b->cx, line, "", "unknown alias *%.64s", name);
}

static int on_start(ybuild *b, const yaml_event_t *ev, int kind)
{
    unsigned line = (unsigned) ev->start_mark.line + 1;
    const yaml_char_t *anchor = kind == CONF_Y_MAP ? ev->data.mapping_start.anchor
                                                   : ev->data.sequence_start.anchor;
    conf_ynode *n;

    if (b->depth == Y_MAX_DEPTH)
        return conf_yfail(b->cx, line, "", "nested more than %d levels deep", Y_MAX_DEPTH);
    if ((n = new_node(b, kind, line)) == NULL)
        return conf_yfail(b->cx, line, "", "out of memory");
    if (remember_anchor(b, n, anchor) != 0)
        return -1;
    b->stack[b->depth++] = n;
    return 0;
}

/* One event; 1 at the end of the stream. */
static int on_event(ybuild *b, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        return 1;
    case YAML_DOCUMENT_START_EVENT:
        if (++b->docs > 1)
            return conf_yfail(b->cx, (unsigned) ev->start_mark.line + 1, "",
                              "a second YAML document: the file must hold one");
        return 0;
    case YAML_SCALAR_EVENT:
        return on_scalar(b, ev);
    case YAML_ALIAS_EVENT:
        return on_alias(b, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(b, ev, CONF_Y_SEQ);
    case YAML_MAPPING_START_EVENT:
        return on_start(b, ev, CONF_Y_MAP);
    case YAML_MAPPING_END_EVENT:
        if (merge_keys(b, b->stack[b->depth - 1]) != 0)
            return -1;
        /* fall through */
    case YAML_SEQUENCE_END_EVENT:
        b->depth--;
        return attach(b, b->stack[b->depth]);
    default:
        return 0;
    }
}

static int parse_error(conf_cx *cx, const yaml_parser_t *p, const unsigned char *text,
                       size_t len)
{
    const char *what = p->problem ? p->problem : "cannot parse";
    unsigned line = (unsigned) p->problem_mark.line + 1;

    if (p->error == YAML_READER_ERROR) {
        /* Bad UTF-8 has no mark: its line is counted from its offset. */
        line = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++)
            line += text[i] == '\n';
    }
    if (cx->err == NULL || cx->errlen == 0)
        return -1;
    if (p->context != NULL)
        snprintf(cx->err, cx->errlen, "%s:%u: syntax error: %s (%s, line %u)", cx->file,
                 line ? line : 1, what, p->context, (unsigned) p->context_mark.line + 1);
    else
        snprintf(cx->err, cx->errlen, "%s:%u: syntax error: %s", cx->file,
                 line ? line : 1, what);
    return -1;
}

int conf_yaml_parse(conf_cx *cx, const unsigned char *text, size_t len, conf_ydoc *doc)
{
    yaml_parser_t p;
    yaml_event_t ev;
    ybuild b;
    int rc = 0;

    memset(doc, 0, sizeof(*doc));
    memset(&b, 0, sizeof(b));
    b.cx = cx;
    b.doc = doc;
    if (!yaml_parser_initialize(&p))
        return conf_yfail(cx, 1, "", "out of memory");
    yaml_parser_set_input_string(&p, text, len);
    while (rc == 0) {
        if (!yaml_parser_parse(&p, &ev)) {
            rc = parse_error(cx, &p, text, len);
            break;
        }
        rc = on_event(&b, &ev);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return rc < 0 ? -1 : 0;
}

void conf_yaml_free(conf_ydoc *doc)
{
    conf_ynode *n = doc->all, *next;

    for (; n != NULL; n = next) {
        next = n->next_all;
        if (n->str != NULL)     /* keys and passwords may be written in the file */
            explicit_bzero(n->str, strlen(n->str));
        free(n->str);
        free(n->anchor);
        free(n->kids);
        free(n);
    }
    doc->all = NULL;
    doc->root = NULL;
}


/* ---- scalar types, as PyYAML resolves a plain scalar ------------------- */

static int one_of(const char *s, const char *const *words)
{
    for (; *words != NULL; words++)
        if (strcmp(s, *words) == 0)
            return 1;
    return 0;
}

/* Digits with '_' between them (PyYAML allows them anywhere after the
 * first digit); the digits without the '_' go into out. */
static int digits(const char *s, const char *set, char *out, size_t cap)
{
    size_t n = 0;

    if (*s == '\0' || *s == '_')
        return 0;
    for (; *s; s++) {
        if (*s == '_')
            continue;
        if (strchr(set, *s) == NULL || n + 1 >= cap)
            return 0;
        out[n++] = *s;
    }
    out[n] = '\0';
    return 1;
}

static int plain_int(const char *s, long long *out)
{
    char buf[80];
    int neg = 0, base = 10;
    const char *set = "0123456789";
    unsigned long long v;
    char *end;

    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    if (s[0] == '0' && s[1] == 'x') {
        s += 2;
        base = 16;
        set = "0123456789abcdefABCDEF";
    } else if (s[0] == '0' && s[1] != '\0') {
        s += 1;
        base = 8;
        set = "01234567";
    }
    if (!digits(s, set, buf, sizeof(buf)))
        return 0;
    errno = 0;
    v = strtoull(buf, &end, base);
    if (errno == ERANGE || *end != '\0' || v > (neg ? (unsigned long long) LLONG_MAX + 1
                                                     : (unsigned long long) LLONG_MAX))
        return 0;   /* too large for an integer: a string, which the checks refuse */
    *out = neg ? (long long) (0 - v) : (long long) v;
    return 1;
}

static int plain_float(const char *s, double *out)
{
    static const char *const inf[] = { ".inf", ".Inf", ".INF", NULL };
    static const char *const nan_[] = { ".nan", ".NaN", ".NAN", NULL };
    char buf[128];
    size_t n = 0;
    const char *p = s, *dot = strchr(s, '.');
    char *end;

    if (dot == NULL)
        return 0;
    if (one_of(p + (*p == '-' || *p == '+'), inf)) {
        *out = *p == '-' ? -INFINITY : INFINITY;
        return 1;
    }
    if (one_of(p, nan_)) {
        *out = NAN;
        return 1;
    }
    for (; *p; p++) {
        if (*p == '_')
            continue;
        if (strchr("0123456789.eE+-", *p) == NULL || n + 1 >= sizeof(buf))
            return 0;
        buf[n++] = *p;
    }
    buf[n] = '\0';
    if (buf[0] == '\0' || strchr(buf, '.') != strrchr(buf, '.'))
        return 0;
    errno = 0;
    *out = strtod(buf, &end);
    return *end == '\0' && end != buf && (buf[0] != '.' || (buf[1] >= '0' && buf[1] <= '9'));
}

enum conf_ytype conf_yscalar(const conf_ynode *n, conf_yvalue *v)
{
    static const char *const nulls[] = { "", "~", "null", "Null", "NULL", NULL };
    static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES",
                                       "on", "On", "ON", NULL };
    static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO",
                                      "off", "Off", "OFF", NULL };
    const char *s = n->str;

    if (!n->plain)
        return CONF_YT_STR;
    if (one_of(s, nulls))
        return CONF_YT_NULL;
    if (one_of(s, yes) || one_of(s, no)) {
        v->b = one_of(s, yes);
        return CONF_YT_BOOL;
    }
    if (plain_int(s, &v->i))
        return CONF_YT_INT;
    if (plain_float(s, &v->d))
        return CONF_YT_FLOAT;
    return CONF_YT_STR;
}

/* Same typing for a string from the environment (os.environ/ of a number). */
enum conf_ytype conf_ystring_type(const char *s, conf_yvalue *v)
{
    conf_ynode n;

    memset(&n, 0, sizeof(n));
    n.str = (char *) s;
    n.plain = 1;
    return conf_yscalar(&n, v);
}


/* ---- reading a file ---------------------------------------------------- */

static int slurp(conf_cx *cx, unsigned char **text, size_t *len)
{
    FILE *f = fopen(cx->file, "rb");
    size_t cap = 65536, n = 0, got;
    unsigned char *buf = NULL, *nb;

    if (f == NULL)
        return conf_fail(cx, NULL, "", "cannot open: %s", strerror(errno));
    for (;;) {
        if ((nb = realloc(buf, cap)) == NULL) {
            free(buf);
            fclose(f);
            return conf_fail(cx, NULL, "", "out of memory");
        }
        buf = nb;
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        cap *= 2;
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        fclose(f);
        return conf_fail(cx, NULL, "", "cannot read: %s", strerror(e));
    }
    fclose(f);
    *text = buf;
    *len = n;
    return 0;
}

int conf_yaml_read(conf_cx *cx, config_t *cf)
{
    unsigned char *text = NULL;
    size_t len = 0;
    conf_ydoc doc;
    int rc;

    if (slurp(cx, &text, &len) != 0)
        return -1;
    rc = conf_yaml_parse(cx, text, len, &doc);
    explicit_bzero(text, len);
    free(text);
    if (rc == 0)
        rc = conf_litellm_map(cx, &doc, cf, 1);
    conf_yaml_free(&doc);
    return rc;
}

/* `llmroute convert`: the native file on `out`, the warnings as comments
 * above it.  Only the mapping runs: the result is checked by -t, in the
 * environment that has the secrets. */
int llmr_conf_convert(const char *path, FILE *out, char *err, size_t errlen)
{
    static char dummy[1];
    conf_cx cx = { path, err ? err : dummy, err ? errlen : sizeof(dummy), NULL,
                   LLMR_CONF_FULL, 1 };
    config_t cf;
    int rc;

    if (cx.errlen > 0)
        cx.err[0] = '\0';
    if ((cx.conf = calloc(1, sizeof(*cx.conf))) == NULL)
        return conf_fail_oom(&cx, NULL, "");
    config_init(&cf);
    rc = conf_yaml_read(&cx, &cf);
    if (rc == 0) {
        fprintf(out, "# llmroute configuration converted from %s by `llmroute convert`.\n"
                "# Check it with: llmroute -t -c FILE\n", path);
        for (int i = 0; i < cx.conf->nwarnings; i++)
            fprintf(out, "# %s\n", cx.conf->warnings[i]);
        fputc('\n', out);
        config_write(&cf, out);
        fflush(out);
    }
    config_destroy(&cf);
    llmr_conf_free(cx.conf);
    return rc;
}
