/* `llmroute status`: the live state of every deployment, read straight from
 * the shared segment's slot table, like varnishstat.  The config only says
 * where the segment is: its secrets need not be in the operator's shell. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "master.h"

#define LD(f) ((long long)atomic_load_explicit(&s->f, memory_order_relaxed))

static void print_wide(const llmr_slot *s, int64_t now_ms)
{
    long long ok = LD(successes);
    double avg = ok > 0 ? (double)LD(latency_us_total) / (double)ok / 1000.0 : 0;
    uint32_t minute = llmr_minute_of(now_ms);
    unsigned fails = llmr_window_count(&s->fail_window, minute);
    char id[LLMR_ID_MAX], group[LLMR_ID_MAX];

    /* Written by the master while no worker of a generation that uses the
     * slot runs, but a reload may rename a slot as this reads it. */
    snprintf(id, sizeof(id), "%.*s", (int)sizeof(id) - 1, s->id);
    snprintf(group, sizeof(group), "%.*s", (int)sizeof(group) - 1, s->group);
    printf("%-24s %-20s %10lld %10lld %8lld %8lld %12lld %12lld %9.1f %9.1f %9.1f %9u %9lld "
           "%9.1f %8u %10u %8lld %9lld %7lld\n",
           id, group, LD(requests), ok, LD(failures), LD(inflight), LD(prompt_tokens),
           LD(completion_tokens), avg, (double)LD(latency_ewma_us) / 1000.0,
           (double)LD(ttft_ewma_us) / 1000.0, fails, LD(cooldowns),
           (double)llmr_cooldown_left_ms(s, now_ms) / 1000.0,
           llmr_window_count(&s->rpm_window, minute), llmr_window_count(&s->tpm_window, minute),
           LD(limit_rpm), LD(limit_tpm), LD(limit_parallel));
}

/* The bytes of s[0, cap) that hold its first `chars` UTF-8 characters. */
static size_t utf8_prefix(const char *s, size_t cap, size_t chars)
{
    size_t i = 0;

    for (size_t c = 0; i < cap && s[i] != '\0'; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80 && c++ == chars)
            break;
    return i;
}

/* s[0, cap) in `width` terminal columns (a character a column): cut with
 * an ellipsis when longer, padded with spaces (printf pads bytes). */
static void put_cell(const char *s, size_t cap, int width)
{
    size_t n = strnlen(s, cap), all = 0;

    for (size_t i = 0; i < n; i++)
        all += ((unsigned char)s[i] & 0xc0) != 0x80;
    if (all > (size_t)width)
        printf("%.*s\u2026", (int)utf8_prefix(s, n, (size_t)width - 1), s);
    else
        printf("%.*s%*s", (int)n, s, width - (int)all, "");
}

/* The default table fits 80 columns: what tells a sick deployment from a
 * healthy one; tokens, means and limits are behind -w. */
static void print_narrow(const llmr_slot *s, int64_t now_ms)
{
    uint32_t minute = llmr_minute_of(now_ms);

    put_cell(s->id, sizeof(s->id), 16);
    putchar(' ');
    put_cell(s->group, sizeof(s->group), 10);
    printf(" %8lld %6lld %4lld %7.0f %7.0f %7u %6.1f\n", LD(requests), LD(failures),
           LD(inflight), (double)LD(latency_ewma_us) / 1000.0, (double)LD(ttft_ewma_us) / 1000.0,
           llmr_window_count(&s->rpm_window, minute),
           (double)llmr_cooldown_left_ms(s, now_ms) / 1000.0);
}

/* Several hosts (master/sync.c): the state, the hosts seen and this
 * host's leases per deployment this minute. */
static void print_sync(const llmr_shm *shm)
{
    const llmr_shm_header *h = &shm->seg->hdr;
    uint32_t st = atomic_load(&h->sync_state), m = llmr_minute_of(llmr_wall_ms());

    if (st == LLMR_SYNC_OFF)
        return;
    printf("sync: %s, %d host(s) seen, sync pid %d, %lld Redis command(s), %lld failed\n",
           llmr_sync_state_name(st), (int)atomic_load(&h->sync_hosts),
           (int)atomic_load(&h->sync_pid), (long long)atomic_load(&h->sync_commands),
           (long long)atomic_load(&h->sync_errors));
    printf("%-24s %9s %9s %11s %11s %8s\n", "LEASES", "RPM_GRANT", "RPM_USED", "TPM_GRANT",
           "TPM_USED", "PAR_SHARE");
    for (int i = 0; i < LLMR_SHM_SLOTS; i++) {
        const llmr_slot *s = &shm->seg->slots[i];
        if (!llmr_shm_slot_live(shm, i))
            continue;
        put_cell(s->id, sizeof(s->id), 24);
        printf(" %9u %9u %11u %11u %8lld\n", llmr_sync_word(&s->rpm_grant[m & 1], m),
               llmr_window_count(&s->rpm_window, m), llmr_sync_word(&s->tpm_grant[m & 1], m),
               llmr_window_count(&s->tpm_window, m), LD(par_grant));
    }
}

/* The response cache's counters, once it has seen a request. */
static void print_cache(const llmr_cache_stats *c)
{
#define C(f) ((long long)atomic_load_explicit(&c->f, memory_order_relaxed))
    if (C(hits) + C(misses) + C(bypass) + C(coalesced) == 0)
        return;
    printf("response cache: hits %lld, misses %lld, coalesced %lld, bypass %lld, stores %lld, "
           "evictions %lld, expired %lld, errors %lld, entries %lld, bytes %lld\n", C(hits),
           C(misses), C(coalesced), C(bypass), C(stores), C(evictions), C(expired), C(errors),
           C(entries), C(bytes));
#undef C
}

static void print_table(const llmr_shm *shm, const char *name, int wide)
{
    printf("master pid %d, config generation %u, up %llds, segment %s\n",
           (int)atomic_load(&shm->seg->hdr.master_pid),
           atomic_load(&shm->seg->hdr.generation),
           (long long)(time(NULL) - shm->seg->hdr.start_time), name);
    if (wide)
        printf("%-24s %-20s %10s %10s %8s %8s %12s %12s %9s %9s %9s %9s %9s %9s %8s %10s "
               "%8s %9s %7s\n",
               "DEPLOYMENT", "GROUP", "REQUESTS", "SUCCESS", "FAILED", "INFLIGHT", "PROMPT_TOK",
               "COMPL_TOK", "AVG_MS", "EWMA_MS", "TTFT_MS", "FAILS_MIN", "COOLDOWNS", "COOLING_S",
               "RPM_MIN", "TPM_MIN", "RPM_LIM", "TPM_LIM", "PAR_LIM");
    else
        printf("%-16s %-10s %8s %6s %4s %7s %7s %7s %6s\n", "DEPLOYMENT", "GROUP", "REQUESTS",
               "FAILED", "INFL", "LAT_MS", "TTFT_MS", "RPM_MIN", "COOL_S");
    for (int i = 0; i < LLMR_SHM_SLOTS; i++) {
        if (!llmr_shm_slot_live(shm, i))
            continue;
        if (wide)
            print_wide(&shm->seg->slots[i], llmr_wall_ms());
        else
            print_narrow(&shm->seg->slots[i], llmr_wall_ms());
    }
    print_sync(shm);
    print_cache(&shm->seg->cache);
}

int llmr_status_print(const char *conf_path, int flags)
{
    int rc = 0;
    char err[1024];
    llmr_conf *conf = NULL;
    llmr_shm shm;

    if (llmr_conf_load_mode(conf_path, LLMR_CONF_LOCATE, &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "llmroute: %s\n", err);
        return 1;
    }
    if (llmr_shm_attach(&shm, conf->shm_name) < 0) {
        fprintf(stderr, "llmroute: no running instance: shared segment %s: %s\n",
                conf->shm_name, strerror(errno));
        llmr_conf_free(conf);
        return 1;
    }
    /* A master killed outright leaves its segment behind: the segment's
     * counters are no proof that anything runs. */
    if (!llmr_pid_is_ours(atomic_load(&shm.seg->hdr.master_pid))) {
        fprintf(stderr, "llmroute: not running: master pid %d is gone (shared segment %s "
                "is left from it; the next start takes it over)\n",
                (int)atomic_load(&shm.seg->hdr.master_pid), conf->shm_name);
        llmr_shm_detach(&shm);
        llmr_conf_free(conf);
        return 1;
    }
    if (flags & LLMR_STATUS_JSON) {
        size_t len;
        char *json = llmr_status_json(&shm, llmr_wall_ms(), &len);
        if (json == NULL)
            fprintf(stderr, "llmroute: status: out of memory\n");
        else
            fwrite(json, 1, len, stdout);
        rc = json == NULL;
        free(json);
    } else
        print_table(&shm, conf->shm_name, flags & LLMR_STATUS_WIDE);
    llmr_shm_detach(&shm);
    llmr_conf_free(conf);
    return rc;
}
