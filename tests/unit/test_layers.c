/* What `status` and `-s` read of a config (LLMR_CONF_LOCATE: only what
 * finds the running master, no secret needed), and which slots status shows
 * (those of the serving generation and of a reload being started). */
#include "conf_test.h"

#include <stdlib.h>
#include <sys/mman.h>

#include "master.h"

/* Loads `text` in locate mode through a temporary file. */
static int locate_text(const char *text, llmr_conf **c, char *err, size_t errlen)
{
    int rc;

    *c = NULL;
    err[0] = '\0';
    if (write_tmp(text) != 0)
        return -2;
    rc = llmr_conf_load_mode(last_path, LLMR_CONF_LOCATE, c, err, errlen);
    unlink(last_path);
    return rc;
}

#define SECRET_CONF \
    "server = { listen = \"127.0.0.1:4321\"; master_key = \"os.environ/LLMR_UNIT_UNSET_1\"; };\n" \
    "model_list = ( { model_name = \"g\"; litellm_params = { model = \"azure/x\";\n" \
    "  api_base = \"os.environ/LLMR_UNIT_UNSET_2\"; api_key = \"os.environ/LLMR_UNIT_UNSET_3\"; }; } );\n"

static void test_locate_needs_no_secret(void)
{
    char err[1024];
    llmr_conf *c;

    unsetenv("LLMR_UNIT_UNSET_1");
    unsetenv("LLMR_UNIT_UNSET_2");
    unsetenv("LLMR_UNIT_UNSET_3");
    T_EQ_INT(locate_text(SECRET_CONF, &c, err, sizeof(err)), 0);
    if (!T_CHECK(c != NULL))
        return;
    T_EQ_STR(c->shm_name, "/llmroute-4321");
    T_CHECK(strstr(c->pid_file, "llmroute.pid") != NULL);
    T_CHECK(c->master_key == NULL);
    T_EQ_INT(c->ndeployments, 0);
    llmr_conf_free(c);
    /* The full load still needs every variable. */
    EXPECT_ERR(SECRET_CONF, 1, "server.master_key",
               "environment variable LLMR_UNIT_UNSET_1 is not set");
}

static void test_locate_still_needs_what_locates(void)
{
    char err[1024];
    llmr_conf *c;

    unsetenv("LLMR_UNIT_UNSET_4");
    T_EQ_INT(locate_text("server = { shm_name = \"os.environ/LLMR_UNIT_UNSET_4\"; };\n" ML,
                         &c, err, sizeof(err)), -1);
    T_CONTAINS(err, "server.shm_name: environment variable LLMR_UNIT_UNSET_4 is not set");
    T_EQ_INT(locate_text("server = { pid_file = \"\"; };\n" ML, &c, err, sizeof(err)), -1);
    T_CONTAINS(err, "server.pid_file: must not be empty");
    T_EQ_INT(locate_text("server = { listen = 1; };\n" ML, &c, err, sizeof(err)), -1);
    T_CONTAINS(err, "server.listen");
    T_EQ_INT(locate_text("server = { shm_name = \"/a\"; }\nmodel_list = (", &c, err,
                         sizeof(err)), -1);
    T_CONTAINS(err, "syntax error");
    T_CHECK(c == NULL);
}

static void test_live_slots_follow_the_generations(void)
{
    llmr_shm shm;
    char name[64];
    int a, b, c;

    snprintf(name, sizeof(name), "/llmr-unit-layers-%d", (int)getpid());
    shm_unlink(name);
    if (!T_EQ_INT(llmr_shm_create(&shm, name), 0))
        return;
    a = llmr_shm_slot_take(&shm, "a", "g", 1, 1);
    b = llmr_shm_slot_take(&shm, "b", "g", 1, 1);
    atomic_store(&shm.seg->hdr.generation, 1);
    T_CHECK(llmr_shm_slot_live(&shm, a) && llmr_shm_slot_live(&shm, b));
    /* A reload to generation 2 keeps a and adds c: both shown meanwhile. */
    T_EQ_INT(llmr_shm_slot_keep(&shm, "a", 2), a);
    T_EQ_INT(llmr_shm_slot_keep(&shm, "c", 2), -1);
    c = llmr_shm_slot_take(&shm, "c", "g", 2, 1);
    T_CHECK(c >= 0 && c != a && c != b);
    atomic_store(&shm.seg->hdr.pending_gen, 2);
    T_CHECK(llmr_shm_slot_live(&shm, a) && llmr_shm_slot_live(&shm, b)
            && llmr_shm_slot_live(&shm, c));
    /* Abandoned: generation 1 takes a back, c is no longer shown. */
    llmr_shm_slot_stamp(&shm, a, 1);
    atomic_store(&shm.seg->hdr.pending_gen, 0);
    T_CHECK(llmr_shm_slot_live(&shm, a) && llmr_shm_slot_live(&shm, b));
    T_CHECK(!llmr_shm_slot_live(&shm, c));
    T_CHECK(!llmr_shm_slot_live(&shm, LLMR_SHM_SLOTS - 1));    /* free */
    llmr_shm_destroy(&shm);
}

int main(void)
{
    T_RUN(test_locate_needs_no_secret);
    T_RUN(test_locate_still_needs_what_locates);
    T_RUN(test_live_slots_follow_the_generations);
    return T_DONE();
}
