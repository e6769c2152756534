/* stream: a committed stream relayed to its client chunk by chunk
 * (stream.c), and the SSE reading that finds its usage on the way. */
#ifndef LLMR_STREAM_H
#define LLMR_STREAM_H

#include "request.h"

/* Starts the chunked reply with the upstream's status and headers; the
 * request moves to LLMR_REQ_STREAMING. */
void llmr_stream_commit(llmr_request *r);
/* Relays upstream bytes; returns len, or CURL_WRITEFUNC_PAUSE when the
 * client is too far behind. */
size_t llmr_stream_write(llmr_request *r, const char *data, size_t len);
/* Ends a committed stream; with rep->has_kind, an SSE error event first. */
void llmr_stream_end(llmr_request *r, const llmr_reply *rep);
/* The deployment's time to first token, the first token seen at at_us. */
void llmr_stream_ttft(llmr_request *r, int64_t at_us);
/* Usage of the stream: reported, or estimated from its content. */
void llmr_stream_usage(const llmr_request *r, int64_t *prompt, int64_t *completion);
/* Sets the relay's timer up (at the request's start; it runs once committed). */
void llmr_relay_init(llmr_request *r);
/* Gives back what the relay holds (with the request). */
void llmr_relay_free(llmr_relay *rl);

/* The SSE scanner on its own, for the unit tests: feeds bytes, calls `line`
 * for each complete line (without its \n), keeps a partial one in `held`. */
typedef void llmr_sse_line_fn(void *arg, const char *p, size_t n);
void llmr_sse_split(struct evbuffer *held, const char *data, size_t len,
                    llmr_sse_line_fn *line, void *arg);

#endif
