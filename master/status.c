/* `llmroute status`: the live state of every deployment, read straight from
 * the shared segment's slot table, like varnishstat.  The config only says
 * where the segment is: its secrets need not be in the operator's shell. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "master.h"

#define LD(f) ((long long)atomic_load_explicit(&s->f, memory_order_relaxed))

static void print_slot(const llmr_slot *s, int64_t now_ms)
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
           "%9.1f %8u %10u\n",
           id, group, LD(requests), ok, LD(failures), LD(inflight), LD(prompt_tokens),
           LD(completion_tokens), avg, (double)LD(latency_ewma_us) / 1000.0,
           (double)LD(ttft_ewma_us) / 1000.0, fails, LD(cooldowns),
           (double)llmr_cooldown_left_ms(s, now_ms) / 1000.0,
           llmr_window_count(&s->rpm_window, minute), llmr_window_count(&s->tpm_window, minute));
}

int llmr_status_print(const char *conf_path)
{
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
    printf("master pid %d, config generation %u, up %llds, segment %s\n",
           (int)atomic_load(&shm.seg->hdr.master_pid),
           atomic_load(&shm.seg->hdr.generation),
           (long long)(time(NULL) - shm.seg->hdr.start_time), conf->shm_name);
    printf("%-24s %-20s %10s %10s %8s %8s %12s %12s %9s %9s %9s %9s %9s %9s %8s %10s\n",
           "DEPLOYMENT", "GROUP", "REQUESTS", "SUCCESS", "FAILED", "INFLIGHT", "PROMPT_TOK",
           "COMPL_TOK", "AVG_MS", "EWMA_MS", "TTFT_MS", "FAILS_MIN", "COOLDOWNS", "COOLING_S",
           "RPM_MIN", "TPM_MIN");
    for (int i = 0; i < LLMR_SHM_SLOTS; i++)
        if (llmr_shm_slot_live(&shm, i))
            print_slot(&shm.seg->slots[i], llmr_wall_ms());
    llmr_shm_detach(&shm);
    llmr_conf_free(conf);
    return 0;
}
