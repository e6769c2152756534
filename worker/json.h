/* json: small helpers over jsmn.  Tokens point into the caller's buffer;
 * nothing is copied.  Only the top level of a document is ever searched on
 * the request path, which keeps a lookup O(tokens). */
#ifndef LLMR_JSON_H
#define LLMR_JSON_H

#define JSMN_HEADER
#define JSMN_STRICT
#include <jsmn.h>

#include <stddef.h>
#include <stdint.h>

typedef struct llmr_json {
    const char *js;
    size_t len;
    jsmntok_t *toks;
    int ntoks;
    int cap;
} llmr_json;

/* Tokenizes js[0..len) into j (growing j->toks as needed; reuse j across
 * calls to avoid allocation).  Returns 0, or -1 on invalid or truncated
 * JSON, or when the document has more than `max_tokens` tokens. */
int llmr_json_parse(llmr_json *j, const char *js, size_t len, int max_tokens);
void llmr_json_free(llmr_json *j);

/* The index of the token after the subtree rooted at i. */
int llmr_json_skip(const llmr_json *j, int i);
/* Value token of `key` in the object at token `obj`, or -1. */
int llmr_json_get(const llmr_json *j, int obj, const char *key);
int llmr_json_eq(const llmr_json *j, int i, const char *s);
/* Integer value of a primitive token; -1 when it is not a non-negative integer. */
int llmr_json_int(const llmr_json *j, int i, int64_t *out);
int llmr_json_is_true(const llmr_json *j, int i);

/* Appends s[0..len) to out as the inside of a JSON string (no quotes),
 * escaping what JSON requires.  Returns the bytes written, at most cap-1,
 * and always NUL-terminates. */
size_t llmr_json_escape(char *out, size_t cap, const char *s, size_t len);

/* Decodes the inside of a JSON string (escapes, \\uXXXX with surrogate
 * pairs, into UTF-8).  Returns the length, or -1 when it does not fit in
 * cap bytes or is malformed. */
int llmr_json_unescape(char *out, size_t cap, const char *s, size_t len);

/* estimate.c: the prompt's tokens, estimated from a parsed request:
 * string-value bytes of messages/prompt/input / 4, plus 4 a message, plus 3. */
int64_t llmr_estimate_prompt_tokens(const llmr_json *j);

#endif
