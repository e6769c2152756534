/* What the pieces of conf/ share; nothing outside conf/ includes this.
 * conf.c reads the file and its sections, conf_value.c reads one value and
 * words the messages, conf_models.c reads model_list and the fallbacks. */
#ifndef LLMR_CONF_INTERNAL_H
#define LLMR_CONF_INTERNAL_H

#include <libconfig.h>
#include <stddef.h>

#include "conf.h"

#define CONF_MAX_SECONDS     1e9     /* keeps seconds * 1e6 inside int64 */
#define CONF_MAX_WEIGHT      1e9

typedef char conf_kpath[256];   /* "model_list[3].litellm_params.api_key" */

/* One load: the file for messages, where they go, and the conf being built. */
typedef struct conf_cx {
    const char *file;
    char *err;
    size_t errlen;
    llmr_conf *conf;
    enum llmr_conf_mode mode;
    int converting;             /* `llmroute convert`: notes for the reader too */
} conf_cx;


/* conf_value.c: messages.  The conf_fail* functions always return -1. */

__attribute__((format(printf, 2, 3)))
const char *conf_kpf(char *buf, const char *fmt, ...);
const char *conf_kp(char *buf, const char *parent, const char *name);
unsigned conf_setting_line(const config_setting_t *s);
__attribute__((format(printf, 4, 5)))
int conf_fail(conf_cx *cx, const config_setting_t *s, const char *key,
              const char *fmt, ...);
int conf_fail_oom(conf_cx *cx, const config_setting_t *s, const char *key);
void conf_join(char *buf, size_t len, const char *const *words, int n);
int conf_check_keys(conf_cx *cx, const config_setting_t *grp, const char *path,
                    const char *const *allowed);


/* conf_value.c: values.  An absent optional member leaves *out alone. */

int conf_has_ctl(const char *s);
const char *conf_str_value(conf_cx *cx, const config_setting_t *s,
                           const char *path);
int conf_opt_str(conf_cx *cx, const config_setting_t *grp, const char *parent,
                 const char *name, char **out, const config_setting_t **where);
int conf_opt_long(conf_cx *cx, const config_setting_t *grp, const char *parent,
                  const char *name, long *out, long min, long max);
int conf_opt_int(conf_cx *cx, const config_setting_t *grp, const char *parent,
                 const char *name, int *out, int min, int max);
int conf_opt_num(conf_cx *cx, const config_setting_t *grp, const char *parent,
                 const char *name, double *out, double min, int exclusive,
                 double max);
/* A boolean member; *given (when not NULL) set to 1 when present. */
int conf_opt_bool(conf_cx *cx, const config_setting_t *grp, const char *parent,
                  const char *name, int *out, int *given);
/* 1 for a non-empty name of printable ASCII without spaces, '"' or '\\'. */
int conf_safe_name(const char *s);
int conf_need_group(conf_cx *cx, const config_setting_t *s, const char *path,
                    const char *example);
int conf_is_string_list(const config_setting_t *s);


/* conf_models.c.  Fallbacks name model groups: parse model_list first. */

int conf_parse_model_list(conf_cx *cx, const config_setting_t *root);
int conf_parse_fallbacks(conf_cx *cx, const config_setting_t *rs,
                         const char *name, llmr_fallback_list *out);
/* ssl_verify in grp (true, false or a CA bundle path); *given set to 1
 * when present. */
int conf_parse_ssl_verify(conf_cx *cx, const config_setting_t *grp, const char *p,
                          int *verify, char **ca_file, int *given);
/* router_settings' TLS defaults onto the deployments that set none. */
int conf_tls_defaults(conf_cx *cx);
int conf_parse_group_names(conf_cx *cx, const config_setting_t *s,
                           const char *path, const char *self,
                           char ***out, int *nout);

/* conf_alias.c: router_settings.model_group_alias (after model_list). */
int conf_parse_aliases(conf_cx *cx, const config_setting_t *rs);
/* conf_value.c: a name os.environ/ may take: [A-Za-z_][A-Za-z0-9_]* */
int conf_valid_env_name(const char *s);
void conf_free_aliases(llmr_conf *c);


/* conf_yaml.c: a YAML file as a tree of nodes with their lines. */

enum { CONF_Y_SCALAR, CONF_Y_MAP, CONF_Y_SEQ };

typedef struct conf_ynode {
    int kind;
    unsigned line;
    char *str;                  /* a scalar's text */
    int plain;                  /* unquoted and untagged: typed as YAML 1.1 */
    struct conf_ynode **kids;   /* a sequence's items; a map's key, value, key, ... */
    int n, cap;
    size_t size;                /* nodes in it, aliases counted each time */
    char *anchor;
    struct conf_ynode *next_all;
} conf_ynode;

typedef struct conf_ydoc {
    conf_ynode *root;           /* NULL for an empty file */
    conf_ynode *all;            /* every node, for freeing (aliases share) */
} conf_ydoc;

enum conf_ytype { CONF_YT_NULL, CONF_YT_BOOL, CONF_YT_INT, CONF_YT_FLOAT, CONF_YT_STR };
typedef struct conf_yvalue {
    long long i;
    double d;
    int b;
} conf_yvalue;

int conf_is_yaml(const char *path);
int conf_yaml_parse(conf_cx *cx, const unsigned char *text, size_t len, conf_ydoc *doc);
void conf_yaml_free(conf_ydoc *doc);
enum conf_ytype conf_yscalar(const conf_ynode *n, conf_yvalue *v);
enum conf_ytype conf_ystring_type(const char *s, conf_yvalue *v);
/* Reads cx->file as YAML and maps it into cf (conf_litellm.c). */
int conf_yaml_read(conf_cx *cx, config_t *cf);
__attribute__((format(printf, 4, 5)))
int conf_yfail(conf_cx *cx, unsigned line, const char *key, const char *fmt, ...);

/* conf_litellm.c: LiteLLM's sections onto the native tree; warnings go to
 * cx->conf->warnings.  apply_env: set environment_variables. */
int conf_litellm_map(conf_cx *cx, const conf_ydoc *doc, config_t *cf, int apply_env);
/* conf_sync.c: router_settings.redis_* (multi-host sync). */
int conf_parse_sync(conf_cx *cx, const config_setting_t *rs);
int conf_sync_defaults(llmr_conf *c);
/* conf_cache.c: the root `cache` section (README "Response cache"). */
void conf_cache_defaults(llmr_conf *c);
int conf_parse_cache(conf_cx *cx, const config_setting_t *s);
void conf_free_cache(llmr_conf *c);
/* conf.c: a relative path made relative to the config file's directory. */
int conf_beside_file(const char *file, char **path);

#endif
