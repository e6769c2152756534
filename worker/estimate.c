/* Tokens: the prompt-token estimate used to admit a request against tpm
 * and max_input_tokens before the upstream reports real usage (about 4
 * bytes of text a token holds for English; code and CJK text run higher),
 * and the usage an upstream reports. */
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

/* The "usage" member of the JSON object js[0..len), found by one scan that
 * allocates nothing: the rest, maybe 50 MB of embeddings, is stepped over.
 * Chat's prompt_tokens/completion_tokens and the Responses API's
 * input_tokens/output_tokens; a count absent, or not a plain non-negative
 * integer, leaves its output as it was. */
int llmr_usage_read(const char *js, size_t len, int64_t *prompt, int64_t *completion)
{
    size_t off, n;

    if (js == NULL || llmr_json_member(js, len, "usage", &off, &n) < 0)
        return -1;
    return llmr_usage_object(js + off, n, prompt, completion);
}

/* Scanned too, not tokenized: a buffered answer's usage and a stream's last
 * event are read on every request, and the tokenizer cost 2,500
 * instructions a request for the four numbers. */
int llmr_usage_object(const char *js, size_t len, int64_t *prompt, int64_t *completion)
{
    static const char *const keys[] = {
        "prompt_tokens", "completion_tokens",
        "input_tokens", "output_tokens",        /* the Responses API's, preferred */
    };
    int64_t *const to[] = { prompt, completion, prompt, completion };
    size_t off[4], n[4];

    if (llmr_json_members(js, len, keys, 4, off, n) < 0)
        return -1;
    for (int k = 0; k < 4; k++)
        if (n[k] > 0)
            llmr_json_int_text(js + off[k], n[k], to[k]);
    return 0;
}
