/* libFuzzer target: the Anthropic translations (worker/anthropic*.c), fed
 * what clients and upstreams may send.  Beyond crashes and leaks it checks
 * the one promise they make: whatever the input, what they write is valid
 * JSON (a whole body, or each SSE data line), and a refused input says why.
 * So a malformed upstream answer becomes a clear 502, never a crash or
 * broken JSON to the client. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "anthropic.h"

static void must_be_object(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    llmr_json j = { 0 };

    if (llmr_anth_parse(&j, (const char *)evbuffer_pullup(b, -1), n) < 0)
        abort();
    llmr_json_free(&j);
    evbuffer_drain(b, n);
}

/* Each "data: " line of an SSE output is one JSON object, or [DONE]. */
static void must_be_events(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    const char *p, *end;

    if (n == 0)             /* pullup gives NULL: no pointer arithmetic on it */
        return;
    p = (const char *)evbuffer_pullup(b, -1);
    end = p + n;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        if (len > 6 && memcmp(p, "data: ", 6) == 0
            && !(len == 12 && memcmp(p + 6, "[DONE]", 6) == 0)) {
            llmr_json j = { 0 };
            if (llmr_anth_parse(&j, p + 6, len - 6) < 0)
                abort();
            llmr_json_free(&j);
        }
        p += len + 1;
    }
    evbuffer_drain(b, n);
}

static void bodies(const char *s, size_t n, struct evbuffer *b)
{
    char err[256];
    int usage;

    err[0] = '\0';
    if (llmr_anth_chat_to_messages(s, n, "m\"x", b, &usage, err, sizeof(err)) == 0)
        must_be_object(b);
    else if (err[0] == '\0')
        abort();
    evbuffer_drain(b, evbuffer_get_length(b));
    if (llmr_anth_messages_to_chat(s, n, "m", b, err, sizeof(err)) == 0)
        must_be_object(b);
    evbuffer_drain(b, evbuffer_get_length(b));
    if (llmr_anth_message_to_chat(s, n, 1, b, err, sizeof(err)) == 0)
        must_be_object(b);
    evbuffer_drain(b, evbuffer_get_length(b));
    if (llmr_anth_chat_to_message(s, n, b, err, sizeof(err)) == 0)
        must_be_object(b);
    evbuffer_drain(b, evbuffer_get_length(b));
    llmr_anth_error_to_openai(s, n, 400, b);
    must_be_object(b);
    llmr_anth_error_from_openai(s, n, 529, b);
    must_be_object(b);
    llmr_anth_estimate(s, n);
}

/* The stream translators, the input cut in two reads where its first byte
 * says (the same bytes in other reads must not matter). */
static void streams(const char *s, size_t n, struct evbuffer *b)
{
    size_t cut = n > 0 ? (unsigned char)s[0] % (n + 1) : 0;
    llmr_anth_up *up = llmr_anth_up_new(1, 1);
    llmr_anth_down *down = llmr_anth_down_new("m", 3);

    if (up == NULL || down == NULL)
        abort();
    llmr_anth_up_feed(up, s, cut, b);
    llmr_anth_up_feed(up, s + cut, n - cut, b);
    must_be_events(b);
    llmr_anth_down_feed(down, s, cut, b);
    llmr_anth_down_feed(down, s + cut, n - cut, b);
    llmr_anth_down_finish(down, b);
    must_be_events(b);
    llmr_anth_up_free(up);
    llmr_anth_down_free(down);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL)
        return 0;
    bodies((const char *)data, size, b);
    streams((const char *)data, size, b);
    evbuffer_free(b);
    return 0;
}
