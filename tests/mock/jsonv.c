/* A strict RFC 8259 check run before jsmn. jsmn accepts "tru", trailing
 * commas and missing commas, and closes deep nesting in O(depth^2); OpenAI
 * answers 400 to all of that, so the mock must too, in one linear pass. */
#include "mock.h"

#include <string.h>

#define MAX_DEPTH 512

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Each scanner takes the index of the first byte and returns the index
 * just past the token, or 0 (never a valid end: a token is not empty). */
static size_t scan_string(const char *s, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return 0;
        if (c != '\\')
            continue;
        if (++i >= n)
            return 0;
        if (s[i] == 'u') {
            if (i + 4 >= n || !is_hex(s[i + 1]) || !is_hex(s[i + 2])
                || !is_hex(s[i + 3]) || !is_hex(s[i + 4]))
                return 0;
            i += 4;
        } else if (strchr("\"\\/bfnrt", s[i]) == NULL || s[i] == '\0') {
            return 0;
        }
    }
    return 0;
}

static size_t scan_digits(const char *s, size_t i, size_t n)
{
    size_t start = i;

    while (i < n && is_digit(s[i]))
        i++;
    return i > start ? i : 0;
}

static size_t scan_number(const char *s, size_t i, size_t n)
{
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0')
        i++;
    else if ((i = scan_digits(s, i, n)) == 0)
        return 0;
    if (i < n && s[i] == '.' && (i = scan_digits(s, i + 1, n)) == 0)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if ((i = scan_digits(s, i, n)) == 0)
            return 0;
    }
    return i;
}

static size_t scan_scalar(const char *s, size_t i, size_t n)
{
    static const char *const words[] = { "true", "false", "null" };

    if (s[i] == '"')
        return scan_string(s, i, n);
    if (s[i] == '-' || is_digit(s[i]))
        return scan_number(s, i, n);
    for (size_t w = 0; w < 3; w++) {
        size_t l = strlen(words[w]);
        if (n - i >= l && memcmp(s + i, words[w], l) == 0)
            return i + l;
    }
    return 0;
}

/* A member's `"key" :`; returns the index past the colon, or 0. */
static size_t scan_key(const char *s, size_t i, size_t n)
{
    if (s[i] != '"' || (i = scan_string(s, i, n)) == 0)
        return 0;
    i = skip_ws(s, i, n);
    return i < n && s[i] == ':' ? i + 1 : 0;
}

enum expect { X_VALUE, X_KEY, X_AFTER };

/* Iterative, so nesting costs a byte of stack per level, not a frame. */
int mock_json_valid(const char *s, size_t n)
{
    char stack[MAX_DEPTH];
    int depth = 0;
    enum expect x = X_VALUE;
    size_t i = 0;

    for (;;) {
        i = skip_ws(s, i, n);
        if (x == X_AFTER && depth == 0)
            return i == n ? 0 : -1;
        if (i >= n)
            return -1;
        if (x == X_KEY) {
            if ((i = scan_key(s, i, n)) == 0)
                return -1;
            x = X_VALUE;
        } else if (x == X_AFTER) {
            char close = stack[depth - 1] == '{' ? '}' : ']';
            if (s[i] == close) {
                depth--;
                i++;
            } else if (s[i] == ',') {
                i++;
                x = stack[depth - 1] == '{' ? X_KEY : X_VALUE;
            } else {
                return -1;
            }
        } else if (s[i] == '{' || s[i] == '[') {
            if (depth == MAX_DEPTH)
                return -1;
            stack[depth++] = s[i];
            i = skip_ws(s, i + 1, n);
            if (i < n && s[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
                depth--;
                i++;
                x = X_AFTER;
            } else {
                x = stack[depth - 1] == '{' ? X_KEY : X_VALUE;
            }
        } else {
            if ((i = scan_scalar(s, i, n)) == 0)
                return -1;
            x = X_AFTER;
        }
    }
}
