/* What conf_litellm.c and conf_litellm_models.c share: the state of one
 * mapping of a LiteLLM YAML tree onto the native libconfig tree, and the
 * helpers that copy YAML values into settings that carry their YAML line.
 * Nothing outside conf/ includes this. */
#ifndef LLMR_CONF_LITELLM_H
#define LLMR_CONF_LITELLM_H

#include "conf_internal.h"

#define LT_ENV "os.environ/"       /* a reference to the environment */

typedef struct lt {
    conf_cx *cx;
    config_setting_t *root;
    config_setting_t *router;   /* router_settings, made on first use */
    config_setting_t *server;
    int apply_env;
    char **seen;                /* keys warned about, list indices left out */
    int nseen;
} lt;

/* Every key, value pair of a YAML mapping. */
#define LT_EACH(map, i, k, v)                                               \
    for (int i = 0; (map) != NULL && i + 1 < (map)->n; i += 2)              \
        for (const conf_ynode *k = (map)->kids[i], *v = (map)->kids[i + 1]; \
             k != NULL; k = NULL)

const conf_ynode *lt_get(const conf_ynode *map, const char *key);
int lt_is_null(const conf_ynode *n);
int lt_in(const char *name, const char *const *list);
void lt_join(char *buf, size_t len, const char *const *words);

/* A new member (or element, name NULL) of parent at `line`; an existing
 * member of that name is an error naming both lines. */
config_setting_t *lt_add(lt *m, config_setting_t *parent, const char *name, int type,
                         unsigned line, const char *key);
config_setting_t *lt_router(lt *m);
config_setting_t *lt_server(lt *m);
/* Copies a YAML value (typed like PyYAML) into parent.name; a null copies
 * nothing.  A numeric setting written as "os.environ/NAME" is resolved
 * here, since the native file has no references for numbers. */
int lt_put(lt *m, config_setting_t *parent, const char *name, const conf_ynode *v,
           const char *key);
/* A scalar as a string whatever its YAML type (ids, names). */
int lt_put_str(lt *m, config_setting_t *parent, const char *name, const conf_ynode *v,
               const char *key);
int lt_set_str(lt *m, config_setting_t *parent, const char *name, const char *val,
               unsigned line, const char *key);
/* The text of a scalar, or NULL after an error naming key. */
const char *lt_scalar(lt *m, const conf_ynode *v, const char *key);
int lt_need_map(lt *m, const conf_ynode *v, const char *key, const char *example);

/* "FILE:LINE: key: ignored: ..." once per key (list indices aside). */
__attribute__((format(printf, 4, 5)))
int lt_warn(lt *m, const conf_ynode *at, const char *key, const char *fmt, ...);

/* "os.environ/NAME" where a number or boolean goes: its value, typed. */
int lt_put_env_typed(lt *m, config_setting_t *parent, const char *name,
                     const conf_ynode *v, const char *key);

/* conf_litellm_cache.c: litellm_settings.cache (on) and cache_params. */
int lt_cache(lt *m, const conf_ynode *on, const conf_ynode *params);

/* conf_litellm_models.c */
int lt_model_list(lt *m, const conf_ynode *list);

#endif
