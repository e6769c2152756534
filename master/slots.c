/* The master's side of the slot table: it walks the config and gives each
 * deployment a slot of the shared segment, claimed by id (shm/ knows
 * nothing of the config). */
#include "log.h"
#include "master.h"

int llmr_master_map_slots(llmr_shm *shm, llmr_conf *conf, uint32_t gen, uint32_t oldest_live_gen)
{
    /* First pass claims the survivors so that the second pass cannot hand
     * a survivor's slot to a new deployment. */
    for (int i = 0; i < conf->ndeployments; i++)
        conf->deployments[i].slot = llmr_shm_slot_keep(shm, conf->deployments[i].id, gen);
    for (int i = 0; i < conf->ndeployments; i++) {
        llmr_deployment *d = &conf->deployments[i];
        if (d->slot >= 0)
            continue;
        d->slot = llmr_shm_slot_take(shm, d->id, conf->groups[d->group].name, gen, oldest_live_gen);
        if (d->slot < 0) {
            llmr_error("shared segment: no free slot for deployment %s (%d slots)", d->id,
                       LLMR_SHM_SLOTS);
            return -1;
        }
    }
    for (int i = 0; i < conf->ndeployments; i++) {
        llmr_deployment *d = &conf->deployments[i];
        llmr_limits l = { d->rpm, d->tpm, d->max_parallel_requests, conf->sync };
        llmr_shm_slot_limits(shm, d->slot, &l);
    }
    return 0;
}

void llmr_master_restamp_slots(llmr_shm *shm, const llmr_conf *conf, uint32_t gen)
{
    for (int i = 0; i < conf->ndeployments; i++)
        llmr_shm_slot_stamp(shm, conf->deployments[i].slot, gen);
}
