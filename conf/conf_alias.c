/* router_settings.model_group_alias: other names for model groups.  A
 * client asking for an alias is routed to its target group; /v1/models
 * lists it unless hidden.  Written as a group when the alias is a valid
 * libconfig name (gpt-4 = "gpt-4o"; or gpt-4 = { model = "gpt-4o";
 * hidden = true; };), or as a list for names libconfig cannot spell
 * (( { alias = "gpt-3.5-turbo"; model = "gpt-4o"; } )). */
#include <stdlib.h>
#include <string.h>

#include "conf_internal.h"

static const char *const alias_keys[] = { "alias", "model", "hidden", NULL };

/* Checks and stores one alias; `e` is where a message points. */
static int add_alias(conf_cx *cx, const config_setting_t *e, const char *k,
                     const char *name, const char *target, int hidden)
{
    llmr_conf *c = cx->conf;
    llmr_alias *a;
    int g = llmr_conf_find_group(c, target, strlen(target));

    /* Like a model_name: it is echoed in /v1/models and in headers. */
    if (!conf_safe_name(name) || strlen(name) >= LLMR_ID_MAX)
        return conf_fail(cx, e, k, "an alias must be 1 to %d printable characters without "
                         "spaces, '\"' or '\\'", LLMR_ID_MAX - 1);
    if (llmr_conf_find_group(c, name, strlen(name)) >= 0)
        return conf_fail(cx, e, k, "\"%.80s\" is a model group of model_list: an alias "
                         "cannot shadow it", name);
    if (g < 0)
        return conf_fail(cx, e, k, "\"%.80s\" aliases unknown model group \"%.80s\": no "
                         "model_list entry has this model_name", name, target);
    for (int i = 0; i < c->naliases; i++)
        if (strcmp(c->aliases[i].name, name) == 0)
            return conf_fail(cx, e, k, "alias \"%.80s\" is defined twice", name);
    a = &c->aliases[c->naliases];
    if ((a->name = strdup(name)) == NULL)
        return conf_fail_oom(cx, e, k);
    c->naliases++;
    a->group = g;
    a->hidden = hidden;
    return 0;
}

/* An entry's { model = "..."; hidden = ...; alias = "..."; } form; `name`
 * is NULL in the list form, where alias names it. */
static int parse_entry_group(conf_cx *cx, const config_setting_t *e, const char *k,
                             const char *name)
{
    const config_setting_t *m = config_setting_get_member(e, "model");
    const config_setting_t *al = config_setting_get_member(e, "alias");
    const char *target, *n = name;
    int hidden = 0;
    conf_kpath kk;

    if (conf_check_keys(cx, e, k, alias_keys) != 0)
        return -1;
    if (m == NULL)
        return conf_fail(cx, e, k, "missing model: the group the alias stands for");
    if ((target = conf_str_value(cx, m, conf_kp(kk, k, "model"))) == NULL)
        return -1;
    if (conf_opt_bool(cx, e, k, "hidden", &hidden, NULL) != 0)
        return -1;
    if (name == NULL) {
        if (al == NULL)
            return conf_fail(cx, e, k, "missing alias: the name clients ask for");
        if ((n = conf_str_value(cx, al, conf_kp(kk, k, "alias"))) == NULL)
            return -1;
    } else if (al != NULL) {
        return conf_fail(cx, al, conf_kp(kk, k, "alias"), "not allowed here: the "
                         "setting's name is the alias");
    }
    return add_alias(cx, e, k, n, target, hidden);
}

int conf_parse_aliases(conf_cx *cx, const config_setting_t *rs)
{
    const config_setting_t *s = config_setting_get_member(rs, "model_group_alias");
    const char *p = "router_settings.model_group_alias";
    int n, as_list;

    if (s == NULL)
        return 0;
    as_list = config_setting_is_list(s);
    if (!as_list && !config_setting_is_group(s))
        return conf_fail(cx, s, p, "must be a group, like { gpt-4 = \"gpt-4o\"; }, or a "
                         "list, like ( { alias = \"gpt-3.5-turbo\"; model = \"gpt-4o\"; } )");
    n = config_setting_length(s);
    if ((cx->conf->aliases = calloc((size_t)(n ? n : 1), sizeof(llmr_alias))) == NULL)
        return conf_fail_oom(cx, s, p);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *name = as_list ? NULL : config_setting_name(e);
        conf_kpath k;

        if (as_list)
            conf_kpf(k, "%s[%d]", p, i);
        else
            conf_kp(k, p, name);
        if (config_setting_type(e) == CONFIG_TYPE_STRING && !as_list) {
            if (add_alias(cx, e, k, name, config_setting_get_string(e), 0) != 0)
                return -1;
        } else if (config_setting_is_group(e)) {
            if (parse_entry_group(cx, e, k, name) != 0)
                return -1;
        } else {
            return conf_fail(cx, e, k, as_list ? "must be a group, like { alias = "
                             "\"gpt-3.5-turbo\"; model = \"gpt-4o\"; }"
                             : "must be a group name, like \"gpt-4o\", or a group, like "
                             "{ model = \"gpt-4o\"; hidden = true; }");
        }
    }
    return 0;
}

int llmr_conf_route_group(const llmr_conf *conf, const char *name, size_t len)
{
    int g = llmr_conf_find_group(conf, name, len);

    for (int i = 0; g < 0 && conf != NULL && i < conf->naliases; i++) {
        const char *a = conf->aliases[i].name;
        if (strlen(a) == len && memcmp(a, name, len) == 0)
            g = conf->aliases[i].group;
    }
    return g;
}

void conf_free_aliases(llmr_conf *c)
{
    for (int i = 0; c->aliases != NULL && i < c->naliases; i++)
        free(c->aliases[i].name);
    free(c->aliases);
    c->aliases = NULL;
    c->naliases = 0;
}
