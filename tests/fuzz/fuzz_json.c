/* libFuzzer target: the JSON checks every request body goes through, and the
 * helpers that read the parsed tokens afterwards. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static llmr_json j;
    char out[512];
    int64_t v;

    if (llmr_json_parse(&j, (const char *)data, size, (int)(size / 2) + 64) == 0
        && j.toks[0].type == JSMN_OBJECT) {
        int m = llmr_json_get(&j, 0, "model");
        if (m >= 0 && j.toks[m].type == JSMN_STRING)
            llmr_json_unescape(out, sizeof(out), j.js + j.toks[m].start,
                               (size_t)(j.toks[m].end - j.toks[m].start));
        llmr_json_int(&j, llmr_json_get(&j, 0, "max_tokens"), &v);
        llmr_json_is_true(&j, llmr_json_get(&j, 0, "stream"));
        if (llmr_estimate_prompt_tokens(&j) < 0)
            abort();
        if (llmr_json_skip(&j, 0) != j.ntoks)
            abort();        /* one complete value was parsed */
    }
    llmr_json_escape(out, sizeof(out), (const char *)data, size);
    if (strlen(out) >= sizeof(out))
        abort();
    return 0;
}
