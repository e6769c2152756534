/* json: the worker's one JSON reader.  A single pass over the bytes checks
 * the grammar (RFC 8259, strict), bounds the nesting depth while it scans,
 * and writes jsmn-shaped tokens that point into the caller's buffer; nothing
 * is copied.  Each token also records where its subtree ends, so skipping a
 * value and looking a key up are O(1) a member: parsing and every lookup on
 * the request path stay linear in the size of the body, however it is
 * nested. */
#ifndef LLMR_JSON_H
#define LLMR_JSON_H

/* Only jsmn's token types are used; its parser is not (it rescans its token
 * array at each closing bracket, which is quadratic on wide documents). */
#define JSMN_HEADER
#define JSMN_STRICT
#include <jsmn.h>

#include <stddef.h>
#include <stdint.h>

/* Deeper documents are refused while scanning, before any token past the
 * limit is written. */
#define LLMR_JSON_MAX_DEPTH 512

typedef struct llmr_json {
    const char *js;
    size_t len;
    jsmntok_t *toks;
    int *next;          /* next[i]: the index after token i's value */
    int ntoks;
    int cap;
    const char *err;    /* why the last parse failed, for error messages */
} llmr_json;

/* Tokenizes js[0..len) into j (growing j->toks as needed; reuse j across
 * calls to avoid allocation).  Returns 0, or -1 on invalid or truncated
 * JSON, nesting deeper than LLMR_JSON_MAX_DEPTH, or a document of more
 * than `max_tokens` tokens (j->err says which).  Object keys are string
 * tokens of size 1 followed by their value, as in jsmn. */
int llmr_json_parse(llmr_json *j, const char *js, size_t len, int max_tokens);
void llmr_json_free(llmr_json *j);

/* The index of the token after the subtree rooted at i (a key's subtree
 * holds its value). */
int llmr_json_skip(const llmr_json *j, int i);
/* Value token of `key` in the object at token `obj`, or -1.  Keys are
 * compared after unescaping: "mod\u0065l" is "model". */
int llmr_json_get(const llmr_json *j, int obj, const char *key);
/* Whether string token i decodes to s. */
int llmr_json_eq(const llmr_json *j, int i, const char *s);
/* The index in names[0..n) (n <= 32) of the first name that is a key of
 * the object at token obj more than once, compared after unescaping; -1
 * when each appears at most once. */
int llmr_json_dup_key(const llmr_json *j, int obj, const char *const *names, int n);
/* Integer value of a primitive token; -1 when it is not a non-negative integer. */
int llmr_json_int(const llmr_json *j, int i, int64_t *out);
/* The same for the text of a value, s[0..n): 0, or -1 unless it is all
 * digits and fits in an int64_t. */
int llmr_json_int_text(const char *s, size_t n, int64_t *out);
int llmr_json_is_true(const llmr_json *j, int i);

/* Finds the member `key` of the object that js[0..len) holds, without
 * tokenizing: one linear scan, constant memory, whatever the size of the
 * other members (an upstream's 50 MB embeddings answer).  Sets [*off,
 * *off + *n) to the bytes of its value and returns 0, or -1 when the
 * document is not an object or has no such member.  The members before
 * it are walked, not validated. */
int llmr_json_member(const char *js, size_t len, const char *key, size_t *off, size_t *n);

/* The same for several keys in one scan: for each keys[k], [off[k], off[k]
 * + n[k]) its (first) value, n[k] = 0 when absent.  Returns how many were
 * found, once all are or the object ends; -1 when js is not an object or
 * breaks before that. */
#define LLMR_JSON_MEMBERS_MAX 8
int llmr_json_members(const char *js, size_t len, const char *const *keys, int nkeys,
                      size_t *off, size_t *n);

/* The first element of the array that js[0..len) opens with '[': its
 * bytes [*off, *off + *n) and 0, or -1 when it is empty or broken. */
int llmr_json_first(const char *js, size_t len, size_t *off, size_t *n);

/* Appends s[0..len) to out as the inside of a JSON string (no quotes),
 * escaping what JSON requires and replacing each byte that is not part of
 * well-formed UTF-8 by U+FFFD, so that the result is valid JSON whatever
 * s holds.  Returns the bytes written, at most cap-1; never splits an
 * escape or a character, and always NUL-terminates. */
size_t llmr_json_escape(char *out, size_t cap, const char *s, size_t len);
/* Appends s (NULL reads as "") to b as a whole JSON string, quotes
 * included, escaped as llmr_json_escape does; runs of bytes that need no
 * escape go in one evbuffer_add, and nothing is allocated or cut. */
struct evbuffer;
void llmr_json_add_str(struct evbuffer *b, const char *s);

/* Decodes the inside of a JSON string (escapes, \\uXXXX with surrogate
 * pairs, into UTF-8).  Returns the length, or -1 when it does not fit in
 * cap bytes or is malformed. */
int llmr_json_unescape(char *out, size_t cap, const char *s, size_t len);

/* estimate.c: the prompt's tokens, estimated from a parsed request:
 * string-value bytes of messages/prompt/input / 4, plus 4 a message, plus 3. */
int64_t llmr_estimate_prompt_tokens(const llmr_json *j);
/* estimate.c: the counts of the "usage" object member of the JSON object
 * js[0..len) (chat's or the Responses API's names): 0, or -1 when it has
 * none.  Found by scanning, never tokenized. */
int llmr_usage_read(const char *js, size_t len, int64_t *prompt, int64_t *completion);
/* The same counts of the usage object js[0..len) itself. */
int llmr_usage_object(const char *js, size_t len, int64_t *prompt, int64_t *completion);

/* The string token tok's text: as written when it holds no escape, else
 * decoded into buf[cap] (as written when that fails: too long, malformed).
 * *len is its length. */
const char *llmr_json_str(const llmr_json *j, int tok, char *buf, size_t cap, size_t *len);

#endif
