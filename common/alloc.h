#ifndef LLMR_ALLOC_H
#define LLMR_ALLOC_H

#include <stddef.h>

/* calloc() as malloc() and memset(): see alloc.c. */
void *llmr_zalloc(size_t n, size_t size);

/* libevent's and libcurl's allocators, then curl_global_init(): once, in
 * the master, before either library is used (workers inherit them). */
int llmr_libs_init(void);

#endif
