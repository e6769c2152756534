/* libFuzzer target: the JSON reader every request body and upstream answer
 * goes through, the lookups made on it afterwards, and the escaping of
 * client bytes into error messages.  Beyond crashes it checks invariants
 * (one complete value, the member scan agreeing with the tokens, escaped
 * output valid UTF-8 with no raw control character); run with a per-input
 * -timeout and inputs up to 1 MiB, it also catches inputs that are slow. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static const char *const fields[] = { "model", "stream", "stream_options", "messages",
                                      "prompt", "input" };

/* The start of a value as the member scan reports it: strings with their
 * opening quote. */
static int value_begin(const llmr_json *j, int i)
{
    return j->toks[i].type == JSMN_STRING ? j->toks[i].start - 1 : j->toks[i].start;
}

static void check_object(const llmr_json *j, const uint8_t *data, size_t size)
{
    char out[512];
    int64_t v;
    size_t off, n;

    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
        int t = llmr_json_get(j, 0, fields[f]);
        int found = llmr_json_member((const char *)data, size, fields[f], &off, &n) == 0;
        if ((t >= 0) != found || (found && (int)off != value_begin(j, t)))
            abort();        /* the scan and the tokens disagree on a valid document */
        if (t >= 0 && j->toks[t].type == JSMN_STRING)
            llmr_json_unescape(out, sizeof(out), j->js + j->toks[t].start,
                               (size_t)(j->toks[t].end - j->toks[t].start));
    }
    {   /* all the fields in one scan: what each one-key scan found */
        size_t offs[6], ns[6];
        if (llmr_json_members((const char *)data, size, fields, 6, offs, ns) < 0)
            abort();
        for (size_t f = 0; f < 6; f++) {
            int found = llmr_json_member((const char *)data, size, fields[f], &off, &n) == 0;
            if (found != (ns[f] > 0) || (found && (offs[f] != off || ns[f] != n)))
                abort();
        }
    }
    llmr_json_dup_key(j, 0, fields, (int)(sizeof(fields) / sizeof(fields[0])));
    llmr_json_int(j, llmr_json_get(j, 0, "max_tokens"), &v);
    llmr_json_is_true(j, llmr_json_get(j, 0, "stream"));
    if (llmr_estimate_prompt_tokens(j) < 0)
        abort();
}

/* A valid object read as a usage object: the scan finds the counts the
 * tokens hold (worker/estimate.c reads every answer's usage this way). */
static void check_usage(const llmr_json *j, const uint8_t *data, size_t size)
{
    static const char *const names[] = { "prompt_tokens", "completion_tokens",
                                         "input_tokens", "output_tokens" };
    int64_t tok[2] = { -7, -7 }, scan[2] = { -7, -7 };

    for (int k = 0; k < 4; k++)
        llmr_json_int(j, llmr_json_get(j, 0, names[k]), &tok[k % 2]);
    if (llmr_usage_object((const char *)data, size, &scan[0], &scan[1]) != 0
        || tok[0] != scan[0] || tok[1] != scan[1])
        abort();
}

/* The first element of a valid array, as the tokens have it. */
static void check_first(const llmr_json *j, const uint8_t *data)
{
    const char *a = (const char *)data + j->toks[0].start;
    size_t len = (size_t)(j->toks[0].end - j->toks[0].start), off, n;
    int found = llmr_json_first(a, len, &off, &n) == 0;

    if (found != (j->toks[0].size > 0)
        || (found && (int)off + j->toks[0].start != value_begin(j, 1)))
        abort();
}

/* On any bytes (the scans read upstream answers and stream events as they
 * come): what they report lies inside the input. */
static void check_scans(const uint8_t *data, size_t size)
{
    static const char *const two[] = { "usage", "choices" };
    size_t offs[2], ns[2], off, n;
    int got = llmr_json_members((const char *)data, size, two, 2, offs, ns);

    if (got > 2)
        abort();
    for (int k = 0; got > 0 && k < 2; k++)
        if (ns[k] > 0 && (offs[k] >= size || ns[k] > size - offs[k]))
            abort();
    if (llmr_json_first((const char *)data, size, &off, &n) == 0
        && (off >= size || n == 0 || n > size - off))
        abort();
    {   /* any bytes as an answer: its usage, if any, read inside them */
        int64_t p = -1, c = -1;
        llmr_usage_read((const char *)data, size, &p, &c);
    }
}

/* What llmr_json_escape wrote must be a JSON string's inside as is. */
static void check_escaped(const char *s, size_t n)
{
    llmr_json j = { 0 };
    char doc[1100];

    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            abort();
    doc[0] = '"';
    memcpy(doc + 1, s, n);
    doc[n + 1] = '"';
    if (llmr_json_parse(&j, doc, n + 2, 4) < 0)
        abort();
    llmr_json_free(&j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static llmr_json j;
    char out[1024];
    size_t n;

    if (llmr_json_parse(&j, (const char *)data, size, (int)(size / 2) + 64) == 0) {
        if (llmr_json_skip(&j, 0) != j.ntoks)
            abort();        /* one complete value was parsed */
        if (j.toks[0].type == JSMN_OBJECT) {
            check_object(&j, data, size);
            check_usage(&j, data, size);
        }
        if (j.toks[0].type == JSMN_ARRAY)
            check_first(&j, data);
    }
    check_scans(data, size);
    n = llmr_json_escape(out, sizeof(out), (const char *)data, size);
    if (n >= sizeof(out) || strlen(out) != n)
        abort();
    check_escaped(out, n);
    return 0;
}
