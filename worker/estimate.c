/* The prompt-token estimate used to admit a request against tpm and
 * max_input_tokens before the upstream reports real usage.  About 4 bytes
 * of text a token holds for English; code and CJK text run higher. */
#include "json.h"

/* Adds up the bytes of every string value in the subtree at i; returns the
 * index after it. */
static int string_bytes(const llmr_json *j, int i, int64_t *bytes)
{
    int end = llmr_json_skip(j, i);

    for (int k = i; k < end; k++)
        if (j->toks[k].type == JSMN_STRING && j->toks[k].size == 0)   /* values only */
            *bytes += j->toks[k].end - j->toks[k].start;
    return end;
}

int64_t llmr_estimate_prompt_tokens(const llmr_json *j)
{
    static const char *const fields[] = { "messages", "prompt", "input", "instructions" };
    int64_t bytes = 0, messages = 0;

    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
        int v = llmr_json_get(j, 0, fields[f]);
        if (v < 0)
            continue;
        if (j->toks[v].type == JSMN_ARRAY && f == 0)
            messages += j->toks[v].size;
        string_bytes(j, v, &bytes);
    }
    return (bytes + 3) / 4 + 4 * messages + 3;
}
