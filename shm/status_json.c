/* The one renderer of the live state as JSON: `llmroute status --json`
 * (the master binary, read-only mapping) and a worker's GET /status.json
 * both call it, so the two can never disagree.  It reads only the segment,
 * which holds no key. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "shm.h"

#define LD(f) ((long long)atomic_load_explicit(&s->f, memory_order_relaxed))

void llmr_shm_slot_limits(llmr_shm *shm, int slot, const llmr_limits *l)
{
    llmr_slot *s;

    if (slot < 0 || slot >= LLMR_SHM_SLOTS)
        return;
    s = &shm->seg->slots[slot];
    atomic_store_explicit(&s->limit_rpm, l->rpm, memory_order_relaxed);
    atomic_store_explicit(&s->limit_tpm, l->tpm, memory_order_relaxed);
    atomic_store_explicit(&s->limit_parallel, l->max_parallel, memory_order_relaxed);
}

/* A JSON string of the NUL-terminated prefix of s[0, cap): a reload may
 * rename the slot while this reads it, so the length is bounded. */
static void put_string(FILE *f, const char *s, size_t cap)
{
    fputc('"', f);
    for (size_t i = 0; i < cap && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* What the health prober last found: "unknown" until it has checked. */
static void put_health(FILE *f, const llmr_slot *s)
{
    static const char *const names[] = { "unknown", "healthy", "unhealthy" };
    llmr_health_view v;

    llmr_health_read(s, &v);
    fprintf(f, ",\"health\":{\"state\":\"%s\",\"latency_ms\":%.1f,\"checked_ms\":%lld,"
            "\"error\":", names[v.state <= LLMR_SLOT_UNHEALTHY ? v.state : 0],
            (double)v.latency_us / 1000.0, (long long)v.checked_ms);
    put_string(f, v.error, sizeof(v.error));
    fputc('}', f);
}

static void put_slot(FILE *f, const llmr_slot *s, int64_t now_ms)
{
    long long ok = LD(successes);
    uint32_t minute = llmr_minute_of(now_ms);

    fputs("{\"id\":", f);
    put_string(f, s->id, sizeof(s->id));
    fputs(",\"group\":", f);
    put_string(f, s->group, sizeof(s->group));
    fprintf(f, ",\"requests\":%lld,\"successes\":%lld,\"failures\":%lld,\"inflight\":%lld,"
            "\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"avg_ms\":%.1f,"
            "\"latency_ewma_ms\":%.1f,\"ttft_ewma_ms\":%.1f,\"fails_this_minute\":%u,"
            "\"cooldowns\":%lld,\"cooldown_left_s\":%.1f,\"rpm_used\":%u,\"tpm_used\":%u,"
            "\"limits\":{\"rpm\":%lld,\"tpm\":%lld,\"max_parallel\":%lld}",
            LD(requests), ok, LD(failures), LD(inflight), LD(prompt_tokens),
            LD(completion_tokens),
            ok > 0 ? (double)LD(latency_us_total) / (double)ok / 1000.0 : 0.0,
            (double)LD(latency_ewma_us) / 1000.0, (double)LD(ttft_ewma_us) / 1000.0,
            llmr_window_count(&s->fail_window, minute), LD(cooldowns),
            (double)llmr_cooldown_left_ms(s, now_ms) / 1000.0,
            llmr_window_count(&s->rpm_window, minute), llmr_window_count(&s->tpm_window, minute),
            LD(limit_rpm), LD(limit_tpm), LD(limit_parallel));
    put_health(f, s);
    llmr_sync_json_slot(f, s, now_ms);
    fputc('}', f);
}

/* The response cache's counters (all zero while it is off). */
static void put_cache(FILE *f, const llmr_cache_stats *s)
{
    fprintf(f, ",\"cache\":{\"hits\":%lld,\"misses\":%lld,\"coalesced\":%lld,\"bypass\":%lld,"
            "\"stores\":%lld,\"evictions\":%lld,\"expired\":%lld,\"errors\":%lld,"
            "\"entries\":%lld,\"bytes\":%lld}", LD(hits), LD(misses), LD(coalesced), LD(bypass),
            LD(stores), LD(evictions), LD(expired), LD(errors), LD(entries), LD(bytes));
}

char *llmr_status_json(const llmr_shm *shm, int64_t now_ms, size_t *len)
{
    const llmr_shm_header *h = &shm->seg->hdr;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    int first = 1;

    if (f == NULL)
        return NULL;
    fputc('{', f);
    llmr_sync_json_header(f, h);
    fprintf(f, "\"master_pid\":%d,\"generation\":%u,\"uptime_s\":%lld,\"now_ms\":%lld,"
            "\"deployments\":[", (int)atomic_load(&h->master_pid), atomic_load(&h->generation),
            (long long)(now_ms / 1000 - h->start_time), (long long)now_ms);
    for (int i = 0; i < LLMR_SHM_SLOTS; i++) {
        if (!llmr_shm_slot_live(shm, i))
            continue;
        if (!first)
            fputc(',', f);
        first = 0;
        put_slot(f, &shm->seg->slots[i], now_ms);
    }
    fputc(']', f);
    put_cache(f, &shm->seg->cache);
    fputs("}\n", f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}
