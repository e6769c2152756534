/* router_settings.model_group_alias: both forms, and every error with
 * FILE:LINE: key. */
#include "conf_test.h"

#define ML2 "model_list = ( { model_name = \"gpt-4o\"; litellm_params = { model = \"gpt-4o\"; }; },\n" \
            " { model_name = \"small\"; litellm_params = { model = \"gpt-4o-mini\"; }; } );\n"

static void test_forms(void)
{
    llmr_conf *c = LOAD_OK(ML2 "router_settings = { model_group_alias = {\n"
                           " gpt-4 = \"gpt-4o\";\n"
                           " mini = { model = \"small\"; hidden = true; }; }; };\n");

    if (c == NULL)
        return;
    T_EQ_INT(c->naliases, 2);
    T_EQ_STR(c->aliases[0].name, "gpt-4");
    T_EQ_INT(c->aliases[0].group, 0);
    T_EQ_INT(c->aliases[0].hidden, 0);
    T_EQ_INT(c->aliases[1].group, 1);
    T_EQ_INT(c->aliases[1].hidden, 1);
    T_EQ_INT(llmr_conf_route_group(c, "gpt-4", 5), 0);
    T_EQ_INT(llmr_conf_route_group(c, "mini", 4), 1);
    T_EQ_INT(llmr_conf_route_group(c, "small", 5), 1);
    T_EQ_INT(llmr_conf_route_group(c, "gpt-4x", 6), -1);
    T_EQ_INT(llmr_conf_find_group(c, "gpt-4", 5), -1);   /* not a group */
    llmr_conf_free(c);

    c = LOAD_OK(ML2 "router_settings = { model_group_alias = (\n"
                " { alias = \"gpt-3.5-turbo\"; model = \"small\"; } ); };\n");
    if (c == NULL)
        return;
    T_EQ_INT(c->naliases, 1);
    T_EQ_STR(c->aliases[0].name, "gpt-3.5-turbo");
    T_EQ_INT(llmr_conf_route_group(c, "gpt-3.5-turbo", 13), 1);
    llmr_conf_free(c);
}

static void test_errors(void)
{
    EXPECT_ERR(ML2 "router_settings = { model_group_alias = {\n gpt-4 = \"nope\"; }; };\n",
               4, "router_settings.model_group_alias.gpt-4", "unknown model group \"nope\"");
    EXPECT_ERR(ML2 "router_settings = { model_group_alias = {\n small = \"gpt-4o\"; }; };\n",
               4, "router_settings.model_group_alias.small", "cannot shadow");
    EXPECT_ERR(ML2 "router_settings = { model_group_alias = (\n"
               " { alias = \"gpt-4o\"; model = \"small\"; } ); };\n",
               4, "router_settings.model_group_alias[0]", "cannot shadow");
    EXPECT_ERR(ML2 "router_settings = { model_group_alias = (\n"
               " { alias = \"a\"; model = \"small\"; },\n"
               " { alias = \"a\"; model = \"gpt-4o\"; } ); };\n",
               5, "router_settings.model_group_alias[1]", "defined twice");
    EXPECT_ERR(ML2 "router_settings = { model_group_alias = {\n x = 3; }; };\n",
               4, "router_settings.model_group_alias.x", "must be a group name");
    EXPECT_ERR(ML2 "router_settings = { model_group_alias = {\n x = { hidden = true; }; }; };\n",
               4, "router_settings.model_group_alias.x", "missing model");
    EXPECT_ERR(ML2 "router_settings = { model_group_alias = {\n"
               " x = { model = \"small\"; hidden = 1; }; }; };\n",
               4, "router_settings.model_group_alias.x.hidden", "true or false");
    EXPECT_ERR(ML2 "router_settings = { model_group_alias = {\n"
               " x = { model = \"small\"; colour = 1; }; }; };\n",
               4, "router_settings.model_group_alias.x.colour", "");
    EXPECT_ERR(ML2 "router_settings = { model_group_alias = (\n { model = \"small\"; } ); };\n",
               4, "router_settings.model_group_alias[0]", "missing alias");
    EXPECT_ERR(ML2 "router_settings = {\n model_group_alias = 3; };\n",
               4, "router_settings.model_group_alias", "must be a group");
}

int main(void)
{
    T_RUN(test_forms);
    T_RUN(test_errors);
    return T_DONE();
}
