/* The allocators libevent and libcurl use.  Both default to calloc() for
 * their zeroed objects: about 24 per proxied request (evhttp's requests,
 * header entries and buffers, libcurl's per-transfer state).  glibc's
 * calloc() always takes the arena's slow path, where malloc() first looks
 * in its per-thread cache (tcache) of recently freed chunks; malloc() and
 * memset() of these small objects cost about a third as much.  Both
 * libraries are handed plain malloc/realloc/free otherwise, so memory
 * allocated before or by other code is freed alike. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "alloc.h"

void *llmr_zalloc(size_t n, size_t size)
{
    void *p;

    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    p = malloc(n * size);
    return p != NULL ? memset(p, 0, n * size) : NULL;
}

int llmr_libs_init(void)
{
    static int done;

    if (done)
        return 0;
    /* libevent zeroes what it gets from a custom malloc itself. */
    event_set_mem_functions(malloc, realloc, free);
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, free, realloc, strdup, llmr_zalloc)
        != CURLE_OK)
        return -1;
    done = 1;
    return 0;
}
