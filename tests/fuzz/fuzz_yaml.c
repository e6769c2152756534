/* libFuzzer target: the LiteLLM YAML reader and its mapping onto the native
 * tree, on any bytes.  environment_variables are mapped but not applied
 * (apply_env 0): fuzzed names must not pile up in the environment.  The
 * tree, when one is built, goes through config_write as `convert` would. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "conf_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    conf_cx cx = { "fuzz.yaml", err, sizeof(err), NULL, LLMR_CONF_FULL, 1 };
    conf_ydoc doc;
    config_t cf;
    FILE *null;

    if ((cx.conf = calloc(1, sizeof(*cx.conf))) == NULL)
        return 0;
    config_init(&cf);
    if (conf_yaml_parse(&cx, data, size, &doc) == 0
        && conf_litellm_map(&cx, &doc, &cf, 0) == 0
        && (null = fopen("/dev/null", "w")) != NULL) {
        config_write(&cf, null);
        fclose(null);
    }
    conf_yaml_free(&doc);
    config_destroy(&cf);
    llmr_conf_free(cx.conf);
    return 0;
}
