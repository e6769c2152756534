/* clock: the two clocks llmroute reads.  Monotonic microseconds for
 * durations and deadlines; wall milliseconds for what is shared between
 * processes (rpm/tpm windows by minute of the epoch, cooldowns). */
#ifndef LLMR_CLOCK_H
#define LLMR_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t llmr_clock_us(void)   /* CLOCK_MONOTONIC microseconds */
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t llmr_wall_ms(void)    /* CLOCK_REALTIME milliseconds */
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline uint32_t llmr_minute_of(int64_t wall_ms)     /* wall_ms / 60000 */
{
    return (uint32_t)(wall_ms / 60000);
}

#endif
