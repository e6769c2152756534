/* conn: what a worker does for each client connection before evhttp sees a
 * request (conn.c): a strict look at the raw bytes of every request head
 * and body framing (request smuggling), Content-Length checked before the
 * body is read, and total deadlines for a head and a body (slow senders).
 * guard.c: accepts paused while the worker is out of file descriptors, and
 * the lingering close after a refusal. */
#ifndef LLMR_CONN_H
#define LLMR_CONN_H

#include "worker_internal.h"

/* conn.c */
int llmr_conn_init(llmr_worker *w);
void llmr_conn_free_all(llmr_worker *w);
/* evhttp's bufferevent factory for new connections (evhttp_set_bevcb). */
struct bufferevent *llmr_conn_new_bev(struct event_base *base, void *arg);
/* A request reached the handler: -1 when the connection is being refused
 * and the request must be left alone.  Lifts the idle read timeout while
 * the request is answered (a stream may be silent for long). */
int llmr_conn_request_start(llmr_worker *w, struct evhttp_request *req);
/* Its reply is sent: the idle timeout applies again. */
void llmr_conn_request_done(llmr_worker *w, struct evhttp_request *req);
/* evhttp_connection_set_closecb for the rest of the worker: the
 * connection's own close callback keeps running underneath. */
void llmr_conn_set_closecb(llmr_worker *w, struct evhttp_connection *evcon,
                           void (*cb)(struct evhttp_connection *, void *), void *arg);

/* Bytes queued towards every client of the worker. */
size_t llmr_conn_output_bytes(llmr_worker *w);

/* guard.c */
int llmr_guard_init(llmr_worker *w);
void llmr_guard_free(llmr_worker *w);
/* Hooks accept errors of the worker's listeners (call after binding). */
void llmr_guard_listeners(llmr_worker *w);
/* Keeps reading and discarding from a duplicate of `fd` for a few seconds
 * so that a client still sending gets our answer instead of a reset. */
void llmr_guard_linger(llmr_worker *w, int fd);

#define LLMR_IDLE_TIMEOUT 120   /* seconds a keep-alive connection may idle */

#endif
