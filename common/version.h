/* The release, for -v, the startup line and GET /metrics' build info. */
#ifndef LLMR_VERSION_H
#define LLMR_VERSION_H

#define LLMR_VERSION "0.1.0"

#endif
