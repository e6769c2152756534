/* The Anthropic translations (worker/anthropic*.c): pure bytes to bytes,
 * checked on the shapes each API documents, and on malformed input. */
#include <event2/buffer.h>

#include "anthropic.h"
#include "t.h"

static char got[65536];

/* The buffer's bytes as a string (drained), and whether they are one valid
 * JSON object. */
static const char *take(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);

    if (n >= sizeof(got))
        n = sizeof(got) - 1;
    evbuffer_remove(b, got, n);
    got[n] = '\0';
    evbuffer_drain(b, evbuffer_get_length(b));
    return got;
}

static int valid(const char *s)
{
    llmr_json j = { 0 };
    int ok = llmr_anth_parse(&j, s, strlen(s)) == 0;

    llmr_json_free(&j);
    return ok;
}

#define HAS(s, sub) T_CHECK(strstr((s), (sub)) != NULL)
#define LACKS(s, sub) T_CHECK(strstr((s), (sub)) == NULL)

static void test_chat_request_to_messages(void)
{
    static const char in[] =
        "{\"model\":\"g\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"what is \\\"this\\\"?\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBOR\"}}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"}],"
        "\"stop\":\"END\",\"temperature\":0.5,\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"description\":\"d\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":\"required\",\"fallbacks\":[\"x\"]}";
    struct evbuffer *b = evbuffer_new();
    char err[256];
    int usage = 0;
    const char *s;

    T_EQ_INT(llmr_anth_chat_to_messages(in, sizeof(in) - 1, "claude-x", b, &usage, err,
                                        sizeof(err)), 0);
    s = take(b);
    T_CHECK(valid(s));
    T_CHECK(usage);
    HAS(s, "\"model\":\"claude-x\"");
    HAS(s, "\"max_tokens\":4096");
    HAS(s, "\"system\":\"be brief\"");
    HAS(s, "{\"type\":\"text\",\"text\":\"what is \\\"this\\\"?\"}");
    HAS(s, "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\","
           "\"data\":\"iVBOR\"}}");
    HAS(s, "{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"get_weather\","
           "\"input\":{\"city\":\"Paris\"}}");
    HAS(s, "{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":\"sunny\"}");
    HAS(s, "\"stop_sequences\":[\"END\"]");
    HAS(s, "\"temperature\":0.5");
    HAS(s, "\"stream\":true");
    HAS(s, "\"tools\":[{\"name\":\"get_weather\",\"description\":\"d\","
           "\"input_schema\":{\"type\":\"object\"}}]");
    HAS(s, "\"tool_choice\":{\"type\":\"any\"}");
    LACKS(s, "fallbacks");
    LACKS(s, "stream_options");
    evbuffer_free(b);
}

static void test_chat_request_refused(void)
{
    static const char *const bad[] = {
        "[]", "{\"messages\":{}}", "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}",
        "{\"messages\":[{\"role\":\"system\",\"content\":\"only system\"}]}",
        "{\"messages\":[{\"role\":\"tool\",\"content\":\"no id\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"audio\"}]}]}",
    };
    struct evbuffer *b = evbuffer_new();
    char err[256];
    int usage, ok = 1;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ok &= T_CHECK(llmr_anth_chat_to_messages(bad[i], strlen(bad[i]), "m", b, &usage, err,
                                                 sizeof(err)) == -1);
        ok &= T_CHECK(err[0] != '\0');
        evbuffer_drain(b, evbuffer_get_length(b));
    }
    T_CHECK(ok);
    evbuffer_free(b);
}

static void test_message_answer_to_chat(void)
{
    static const char in[] =
        "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
        "\"content\":[{\"type\":\"text\",\"text\":\"Let me \\\"check\\\".\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\","
        "\"input\":{\"city\":\"Paris\"}}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
        "\"usage\":{\"input_tokens\":10,\"output_tokens\":7,"
        "\"cache_creation_input_tokens\":2,\"cache_read_input_tokens\":3}}";
    struct evbuffer *b = evbuffer_new();
    char err[256];
    const char *s;

    T_EQ_INT(llmr_anth_message_to_chat(in, sizeof(in) - 1, 1700000000, b, err, sizeof(err)), 0);
    s = take(b);
    T_CHECK(valid(s));
    HAS(s, "\"object\":\"chat.completion\"");
    HAS(s, "\"content\":\"Let me \\\"check\\\".\"");
    HAS(s, "\"tool_calls\":[{\"id\":\"toolu_1\",\"type\":\"function\",\"function\":"
           "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]");
    HAS(s, "\"finish_reason\":\"tool_calls\"");
    HAS(s, "\"prompt_tokens\":15,\"completion_tokens\":7,\"total_tokens\":22");
    HAS(s, "\"cached_tokens\":3");
    HAS(s, "\"cache_creation_input_tokens\":2,\"cache_read_input_tokens\":3");
    evbuffer_free(b);
}

static void test_stop_reasons(void)
{
    static const char *const map[][2] = {
        { "end_turn", "stop" }, { "max_tokens", "length" }, { "stop_sequence", "stop" },
        { "tool_use", "tool_calls" }, { "refusal", "content_filter" },
    };
    llmr_json j = { 0 };
    char js[64];
    int ok = 1;

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        snprintf(js, sizeof(js), "{\"r\":\"%s\"}", map[i][0]);
        llmr_anth_parse(&j, js, strlen(js));
        ok &= T_CHECK(strcmp(llmr_anth_finish_reason(&j, 2), map[i][1]) == 0);
    }
    llmr_json_free(&j);
    T_CHECK(ok);
}

static void test_malformed_answers_refused(void)
{
    static const char *const bad[] = {
        "", "not json", "{}", "{\"type\":\"message\"}", "{\"type\":\"message\",\"id\":\"x\","
        "\"content\":{}}", "[1,2]", "{\"type\":\"message\",\"id\":1,\"content\":[]}",
    };
    struct evbuffer *b = evbuffer_new();
    char err[256];
    int ok = 1;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ok &= T_CHECK(llmr_anth_message_to_chat(bad[i], strlen(bad[i]), 0, b, err,
                                                sizeof(err)) == -1);
        ok &= T_CHECK(llmr_anth_chat_to_message(bad[i], strlen(bad[i]), b, err,
                                                sizeof(err)) == -1);
        evbuffer_drain(b, evbuffer_get_length(b));
    }
    T_CHECK(ok);
    evbuffer_free(b);
}

static void test_errors_both_ways(void)
{
    static const char too_long[] = "{\"type\":\"error\",\"error\":{\"type\":"
        "\"invalid_request_error\",\"message\":\"prompt is too long: 210000 tokens > 200000 "
        "maximum\"}}";
    static const char over[] = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
        "\"message\":\"Overloaded\"}}";
    static const char oai[] = "{\"error\":{\"message\":\"Rate limit\",\"type\":\"requests\","
        "\"param\":null,\"code\":\"rate_limit_exceeded\"}}";
    struct evbuffer *b = evbuffer_new();
    const char *s;

    llmr_anth_error_to_openai(too_long, sizeof(too_long) - 1, 400, b);
    s = take(b);
    T_CHECK(valid(s));
    HAS(s, "\"code\":\"context_length_exceeded\"");
    HAS(s, "\"message\":\"prompt is too long");
    llmr_anth_error_to_openai(over, sizeof(over) - 1, 529, b);
    s = take(b);
    HAS(s, "\"type\":\"overloaded_error\"");
    HAS(s, "\"code\":\"overloaded\"");
    llmr_anth_error_to_openai("<html>", 6, 502, b);
    s = take(b);
    T_CHECK(valid(s));
    HAS(s, "HTTP 502");
    llmr_anth_error_from_openai(oai, sizeof(oai) - 1, 429, b);
    s = take(b);
    T_CHECK(valid(s));
    HAS(s, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":"
           "\"Rate limit\"}}");
    evbuffer_free(b);
}

static void test_messages_request_to_chat(void)
{
    static const char in[] =
        "{\"model\":\"g\",\"max_tokens\":100,\"system\":[{\"type\":\"text\",\"text\":\"sys\"}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{\"a\":1}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
        "\"content\":\"42\"},{\"type\":\"image\",\"source\":{\"type\":\"base64\","
        "\"media_type\":\"image/jpeg\",\"data\":\"AAA\"}}]}],"
        "\"stop_sequences\":[\"X\"],\"stream\":true,\"tools\":[{\"name\":\"f\","
        "\"input_schema\":{\"type\":\"object\"}}],\"tool_choice\":{\"type\":\"tool\","
        "\"name\":\"f\"},\"metadata\":{\"user_id\":\"u1\"}}";
    struct evbuffer *b = evbuffer_new();
    char err[256];
    const char *s;

    T_EQ_INT(llmr_anth_messages_to_chat(in, sizeof(in) - 1, "gpt-x", b, err, sizeof(err)), 0);
    s = take(b);
    T_CHECK(valid(s));
    HAS(s, "{\"model\":\"gpt-x\",\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},"
           "{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"ok\","
           "\"tool_calls\":[{\"id\":\"toolu_1\",\"type\":\"function\",\"function\":{\"name\":"
           "\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},{\"role\":\"tool\",\"tool_call_id\":"
           "\"toolu_1\",\"content\":\"42\"},{\"role\":\"user\",\"content\":[{\"type\":"
           "\"image_url\",\"image_url\":{\"url\":\"data:image/jpeg;base64,AAA\"}}]}]");
    HAS(s, "\"max_tokens\":100");
    HAS(s, "\"stop\":[\"X\"]");
    HAS(s, "\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    HAS(s, "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
           "{\"type\":\"object\"}}}]");
    HAS(s, "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}");
    HAS(s, "\"user\":\"u1\"");
    T_CHECK(llmr_anth_estimate(in, sizeof(in) - 1) > 3);
    evbuffer_free(b);
}

static void test_chat_answer_to_message(void)
{
    static const char in[] =
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-x\",\"choices\":"
        "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hello\",\"tool_calls\":"
        "[{\"id\":\"call_9\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
        "\"{\\\"a\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":"
        "9,\"completion_tokens\":4,\"total_tokens\":13}}";
    struct evbuffer *b = evbuffer_new();
    char err[256];
    const char *s;

    T_EQ_INT(llmr_anth_chat_to_message(in, sizeof(in) - 1, b, err, sizeof(err)), 0);
    s = take(b);
    T_CHECK(valid(s));
    HAS(s, "\"id\":\"msg_chatcmpl-1\",\"type\":\"message\",\"role\":\"assistant\"");
    HAS(s, "\"content\":[{\"type\":\"text\",\"text\":\"hello\"},{\"type\":\"tool_use\","
           "\"id\":\"call_9\",\"name\":\"f\",\"input\":{\"a\":1}}]");
    HAS(s, "\"stop_reason\":\"tool_use\"");
    HAS(s, "\"input_tokens\":9,\"output_tokens\":4");
    evbuffer_free(b);
}

/* Anthropic's documented event sequence, fed in every split into two reads:
 * the same chunks come out. */
static const char anth_events[] =
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
    "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\","
    "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,"
    "\"output_tokens\":1}}}\n\n"
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: ping\ndata: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
    "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,"
    "\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{}}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,"
    "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\": 1}\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

static void test_stream_anthropic_to_chunks(void)
{
    struct evbuffer *b = evbuffer_new();
    static char first[sizeof(got)];
    int ok = 1;
    int64_t p = 0, c = 0;

    for (size_t cut = 0; cut < sizeof(anth_events) - 1; cut += 7) {
        llmr_anth_up *s = llmr_anth_up_new(1, 1700000000);
        ok &= T_CHECK(llmr_anth_up_feed(s, anth_events, cut, b) == 0);
        ok &= T_CHECK(llmr_anth_up_feed(s, anth_events + cut, sizeof(anth_events) - 1 - cut,
                                        b) == 0);
        ok &= T_CHECK(llmr_anth_up_usage(s, &p, &c) == 1 && p == 25 && c == 15);
        ok &= T_CHECK(llmr_anth_up_content_events(s) == 3);
        take(b);
        if (cut == 0)
            snprintf(first, sizeof(first), "%s", got);
        else
            ok &= T_CHECK(strcmp(first, got) == 0);
        llmr_anth_up_free(s);
    }
    T_CHECK(ok);
    HAS(first, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}");
    HAS(first, "\"delta\":{\"content\":\"Hello\"}");
    HAS(first, "\"tool_calls\":[{\"index\":0,\"id\":\"toolu_1\",\"type\":\"function\","
               "\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]");
    HAS(first, "\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\": 1}\"}}]");
    HAS(first, "\"finish_reason\":\"tool_calls\"");
    HAS(first, "\"usage\":{\"prompt_tokens\":25,\"completion_tokens\":15,\"total_tokens\":40}");
    T_CHECK(strcmp(first + strlen(first) - 14, "data: [DONE]\n\n") == 0);
    LACKS(first, "ping");
    evbuffer_free(b);
}

static void test_stream_malformed_and_error(void)
{
    struct evbuffer *b = evbuffer_new();
    llmr_anth_up *s = llmr_anth_up_new(0, 0);
    static const char err_ev[] = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                                 "\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

    T_EQ_INT(llmr_anth_up_feed(s, "data: {nope\n\n", 13, b), -1);
    HAS(take(b), "upstream_bad_response");
    llmr_anth_up_free(s);
    s = llmr_anth_up_new(0, 0);
    T_EQ_INT(llmr_anth_up_feed(s, err_ev, sizeof(err_ev) - 1, b), -1);
    HAS(take(b), "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\"");
    llmr_anth_up_free(s);
    evbuffer_free(b);
}

static const char chat_chunks[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
    "\"tool_calls\"}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":"
    "4,\"total_tokens\":13}}\n\n"
    "data: [DONE]\n\n";

static void test_stream_chunks_to_anthropic(void)
{
    struct evbuffer *b = evbuffer_new();
    llmr_anth_down *s = llmr_anth_down_new("g", 7);
    int64_t p = 0, c = 0;
    const char *out;

    T_EQ_INT(llmr_anth_down_feed(s, chat_chunks, sizeof(chat_chunks) - 1, b), 0);
    T_CHECK(llmr_anth_down_done(s));
    T_CHECK(llmr_anth_down_usage(s, &p, &c) == 1 && p == 9 && c == 4);
    llmr_anth_down_finish(s, b);        /* once done, nothing more */
    out = take(b);
    HAS(out, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
             "\"msg_c1\"");
    HAS(out, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
             "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}");
    HAS(out, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
             "\"text\":\"Hi\"}}");
    HAS(out, "{\"type\":\"content_block_stop\",\"index\":0}");
    HAS(out, "\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_1\","
             "\"name\":\"f\",\"input\":{}}");
    HAS(out, "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}");
    HAS(out, "\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":"
             "{\"input_tokens\":9,\"output_tokens\":4}");
    T_CHECK(strcmp(out + strlen(out) - 51,
                   "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n") == 0);
    llmr_anth_down_free(s);

    /* a stream cut before [DONE] is still closed properly by finish */
    s = llmr_anth_down_new("g", 7);
    llmr_anth_down_feed(s, chat_chunks, 150, b);
    llmr_anth_down_finish(s, b);
    out = take(b);
    HAS(out, "\"usage\":{\"input_tokens\":7,\"output_tokens\":0}");
    HAS(out, "message_stop");
    llmr_anth_down_free(s);
    evbuffer_free(b);
}

int main(void)
{
    T_RUN(test_chat_request_to_messages);
    T_RUN(test_chat_request_refused);
    T_RUN(test_message_answer_to_chat);
    T_RUN(test_stop_reasons);
    T_RUN(test_malformed_answers_refused);
    T_RUN(test_errors_both_ways);
    T_RUN(test_messages_request_to_chat);
    T_RUN(test_chat_answer_to_message);
    T_RUN(test_stream_anthropic_to_chunks);
    T_RUN(test_stream_malformed_and_error);
    T_RUN(test_stream_chunks_to_anthropic);
    return T_DONE();
}
