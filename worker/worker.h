/* worker: the public face of a worker process, all that master/ needs: the
 * entry point the master calls in a forked child, and the exit code of a
 * worker that cannot start.  Everything else of worker/ is in
 * worker_internal.h, for worker/ files only. */
#ifndef LLMR_WORKER_H
#define LLMR_WORKER_H

#include <stdint.h>

#include "conf.h"
#include "shm.h"

/* A worker that cannot start (bad listen socket, no memory at start-up)
 * exits with this code; the master does not respawn it. */
#define LLMR_EXIT_FATAL 2

/* Runs a worker until it has drained or was told to stop; returns the exit
 * code.  `fds` are the listening sockets inherited from the master. */
typedef int llmr_worker_main_fn(const llmr_conf *conf, llmr_shm *shm, const int *fds,
                                int nfds, int index, int wslot, uint32_t generation);
llmr_worker_main_fn llmr_worker_main;

#endif
