/* Shared by the conf/ unit tests (test_conf.c, test_conf_models.c): the
 * units under test, included to reach their statics, and helpers that write
 * a config to a mkstemp file in /tmp, load it and check the outcome. */
#ifndef LLMR_CONF_TEST_H
#define LLMR_CONF_TEST_H
#include "../../conf/conf.c"
#include "../../conf/conf_models.c"
#include "../../conf/conf_value.c"
#include "../../conf/conf_alias.c"

#include <unistd.h>

#include "t.h"

/* One valid deployment, one line, for configs that test something else;
 * LP: one deployment with extra litellm_params on line 3. */
#define LP(body) "model_list = ( { model_name = \"g\";\n litellm_params = { model = \"m\";\n " body " }; } );\n"
#define ML "model_list = ( { model_name = \"g\"; litellm_params = { model = \"gpt-4o\"; }; } );\n"

static char last_path[64];

T_UNUSED_ static int write_tmp(const char *text)
{
    size_t len = strlen(text);
    int fd;

    snprintf(last_path, sizeof(last_path), "/tmp/llmr-test-conf-XXXXXX");
    if ((fd = mkstemp(last_path)) < 0)
        return -1;
    if (write(fd, text, len) != (ssize_t) len) {
        close(fd);
        unlink(last_path);
        return -1;
    }
    close(fd);
    return 0;
}

/* Loads `text` through a temporary file; the file name stays in last_path. */
T_UNUSED_ static int load_text(const char *text, llmr_conf **c, char *err, size_t errlen)
{
    int rc;

    *c = NULL;
    err[0] = '\0';
    if (write_tmp(text) != 0) {
        snprintf(err, errlen, "cannot write a temporary file");
        return -2;
    }
    rc = llmr_conf_load(last_path, c, err, errlen);
    unlink(last_path);
    return rc;
}

/* A config that must load; NULL (and a failed check) otherwise. */
T_UNUSED_ static llmr_conf *load_ok_(int at, const char *text)
{
    char err[1024];
    llmr_conf *c;
    int rc = load_text(text, &c, err, sizeof(err));

    if (!T_EQ_INT(rc, 0) || !T_CHECK(c != NULL))
        fprintf(stderr, "    (load_ok at line %d) %s\n", at, err);
    return c;
}
#define LOAD_OK(text) load_ok_(__LINE__, text)

/* A config that must fail with "FILE:LINE: KEY: ..." containing `what`. */
T_UNUSED_ static void expect_err_(int at, const char *text, int line, const char *key,
                        const char *what, char *err_out)
{
    char err[1024], prefix[512];
    llmr_conf *c;
    int rc = load_text(text, &c, err, sizeof(err)), ok = 1;

    snprintf(prefix, sizeof(prefix), "%s:%d: %s: ", last_path, line, key);
    ok &= T_EQ_INT(rc, -1);
    ok &= T_CHECK(c == NULL);
    ok &= T_CHECK(strncmp(err, prefix, strlen(prefix)) == 0);
    ok &= T_CONTAINS(err, what);
    if (!ok)
        fprintf(stderr, "    (expect_err at line %d)\n    got:    %s\n    prefix: %s\n",
                at, err, prefix);
    if (err_out != NULL)
        memcpy(err_out, err, sizeof(err));
    llmr_conf_free(c);
}
#define EXPECT_ERR(text, line, key, what) expect_err_(__LINE__, text, line, key, what, NULL)

T_UNUSED_ static int is_hash_id(const char *id)
{
    if (strlen(id) != 18 || strncmp(id, "d-", 2) != 0)
        return 0;
    for (int i = 2; i < 18; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

/* The id of the only deployment in `text`, or "" after a failed check. */
T_UNUSED_ static void id_of(const char *text, char id[LLMR_ID_MAX])
{
    llmr_conf *c = LOAD_OK(text);

    id[0] = '\0';
    if (c != NULL) {
        memcpy(id, c->deployments[0].id, LLMR_ID_MAX);
        llmr_conf_free(c);
    }
}

#endif
