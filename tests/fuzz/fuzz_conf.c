/* libFuzzer target: the configuration loader, on any file content. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    char err[1024];
    llmr_conf *conf = NULL;
    FILE *f;

    if (path[0] == '\0')
        snprintf(path, sizeof(path), "/tmp/llmr-fuzz-conf-%d", (int)getpid());
    if ((f = fopen(path, "w")) == NULL)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    if (llmr_conf_load(path, &conf, err, sizeof(err)) == 0)
        llmr_conf_free(conf);
    return 0;
}
