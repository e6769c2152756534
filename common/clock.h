/* The clocks every process reads.  Monotonic time measures durations inside
 * one process (deadlines, latencies); wall time is what the shared segment
 * compares across processes (cooldown deadlines, the minute of a usage
 * window), so that every worker reads the same value. */
#ifndef LLMR_CLOCK_H
#define LLMR_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC microseconds. */
static inline int64_t llmr_clock_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* CLOCK_REALTIME milliseconds. */
static inline int64_t llmr_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The minute a wall-clock time falls in: the key of the per-minute windows. */
static inline uint32_t llmr_minute_of(int64_t wall_ms)
{
    return (uint32_t)(wall_ms / 60000);
}

#endif
