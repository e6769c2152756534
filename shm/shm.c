#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int header_matches(const llmr_shm_header *h)
{
    return h->magic == LLMR_SHM_MAGIC && h->version == LLMR_SHM_VERSION
        && h->header_size == sizeof(llmr_shm_header)
        && h->slot_size == sizeof(llmr_slot) && h->nslots == LLMR_SHM_SLOTS;
}

static void header_init(llmr_shm_header *h)
{
    memset(h, 0, sizeof(*h));
    h->magic = LLMR_SHM_MAGIC;
    h->version = LLMR_SHM_VERSION;
    h->header_size = sizeof(llmr_shm_header);
    h->slot_size = sizeof(llmr_slot);
    h->nslots = LLMR_SHM_SLOTS;
    h->start_time = (int64_t)time(NULL);
}

static void *map_fd(int fd, int prot)
{
    void *p = mmap(NULL, sizeof(llmr_shm_segment), prot, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

int llmr_shm_create(llmr_shm *shm, const char *name)
{
    struct stat st;
    int fd, fresh;

    memset(shm, 0, sizeof(*shm));
    snprintf(shm->name, sizeof(shm->name), "%s", name);
    fd = shm_open(name, O_RDWR | O_CREAT, 0600);
    if (fd == -1) {
        llmr_error("shm_open(\"%s\") failed: %s", name, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) == -1)
        goto failed;
    fresh = (size_t)st.st_size != sizeof(llmr_shm_segment);
    if (fresh && ftruncate(fd, sizeof(llmr_shm_segment)) == -1)
        goto failed;
    shm->seg = map_fd(fd, PROT_READ | PROT_WRITE);
    if (shm->seg == NULL)
        goto failed;
    close(fd);
    if (!fresh && !header_matches(&shm->seg->hdr)) {
        llmr_warn("shared segment %s has another layout (version %u); re-creating it",
                  name, shm->seg->hdr.version);
        fresh = 1;
    }
    if (fresh) {
        memset(shm->seg, 0, sizeof(llmr_shm_segment));
        header_init(&shm->seg->hdr);
    }
    return 0;

failed:
    llmr_error("shared segment %s: %s", name, strerror(errno));
    close(fd);
    return -1;
}

int llmr_shm_attach(llmr_shm *shm, const char *name)
{
    struct stat st;
    int fd;

    memset(shm, 0, sizeof(*shm));
    snprintf(shm->name, sizeof(shm->name), "%s", name);
    fd = shm_open(name, O_RDONLY, 0);
    if (fd == -1)
        return -1;
    if (fstat(fd, &st) == -1 || (size_t)st.st_size != sizeof(llmr_shm_segment)) {
        close(fd);
        errno = EPROTO;
        return -1;
    }
    shm->seg = map_fd(fd, PROT_READ);
    close(fd);
    if (shm->seg == NULL)
        return -1;
    if (!header_matches(&shm->seg->hdr)) {
        llmr_shm_detach(shm);
        errno = EPROTO;
        return -1;
    }
    return 0;
}

void llmr_shm_detach(llmr_shm *shm)
{
    if (shm->seg != NULL)
        munmap(shm->seg, sizeof(llmr_shm_segment));
    shm->seg = NULL;
}

void llmr_shm_destroy(llmr_shm *shm)
{
    llmr_shm_detach(shm);
    if (shm->name[0] != '\0' && shm_unlink(shm->name) == -1 && errno != ENOENT)
        llmr_warn("shm_unlink(\"%s\"): %s", shm->name, strerror(errno));
}

static int find_slot(llmr_shm_segment *seg, const char *id)
{
    for (int i = 0; i < LLMR_SHM_SLOTS; i++)
        if (atomic_load(&seg->slots[i].state) == LLMR_SLOT_USED
            && strcmp(seg->slots[i].id, id) == 0)
            return i;
    return -1;
}

/* A slot is reusable when no live process can still write to it: free, or
 * last used by a generation older than every live worker's. */
static int take_free_slot(llmr_shm_segment *seg, uint32_t gen, uint32_t oldest_live_gen)
{
    for (int i = 0; i < LLMR_SHM_SLOTS; i++) {
        llmr_slot *s = &seg->slots[i];
        uint32_t last = atomic_load(&s->last_gen);
        if (atomic_load(&s->state) == LLMR_SLOT_FREE
            || (last != gen && last < oldest_live_gen))
            return i;
    }
    return -1;
}

static void slot_init(llmr_slot *s, const char *id, const char *group)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->group, sizeof(s->group), "%s", group);
    atomic_store(&s->state, LLMR_SLOT_USED);
}

int llmr_shm_slot_keep(llmr_shm *shm, const char *id, uint32_t gen)
{
    int i = find_slot(shm->seg, id);

    if (i >= 0)
        atomic_store(&shm->seg->slots[i].last_gen, gen);
    return i;
}

int llmr_shm_slot_take(llmr_shm *shm, const char *id, const char *group, uint32_t gen,
                       uint32_t oldest_live_gen)
{
    int i = take_free_slot(shm->seg, gen, oldest_live_gen);

    if (i < 0)
        return -1;
    slot_init(&shm->seg->slots[i], id, group);
    atomic_store(&shm->seg->slots[i].last_gen, gen);
    return i;
}

void llmr_shm_slot_stamp(llmr_shm *shm, int slot, uint32_t gen)
{
    if (slot >= 0 && slot < LLMR_SHM_SLOTS)
        atomic_store(&shm->seg->slots[slot].last_gen, gen);
}

int llmr_shm_slot_live(const llmr_shm *shm, int slot)
{
    const llmr_slot *s = &shm->seg->slots[slot];
    uint32_t last = atomic_load(&s->last_gen), pending;

    if (atomic_load(&s->state) != LLMR_SLOT_USED)
        return 0;
    pending = atomic_load(&shm->seg->hdr.pending_gen);
    return last == atomic_load(&shm->seg->hdr.generation) || (pending != 0 && last == pending);
}

void llmr_shm_worker_claim(llmr_shm *shm, int wslot)
{
    llmr_worker_rec *r;

    if (wslot < 0 || wslot >= LLMR_WORKER_SLOTS)
        return;
    r = &shm->seg->workers[wslot];
    atomic_store(&r->ready_gen, 0);
    atomic_store(&r->pid, 0);
}

void llmr_shm_worker_pid(llmr_shm *shm, int wslot, int32_t pid)
{
    if (wslot < 0 || wslot >= LLMR_WORKER_SLOTS)
        return;
    atomic_store(&shm->seg->workers[wslot].pid, pid);
    if (pid == 0)
        atomic_store(&shm->seg->workers[wslot].ready_gen, 0);
}

void llmr_shm_worker_ready(llmr_shm *shm, int wslot, uint32_t gen)
{
    if (wslot >= 0 && wslot < LLMR_WORKER_SLOTS)
        atomic_store(&shm->seg->workers[wslot].ready_gen, gen);
}

uint32_t llmr_shm_worker_ready_gen(const llmr_shm *shm, int wslot)
{
    if (wslot < 0 || wslot >= LLMR_WORKER_SLOTS)
        return 0;
    return atomic_load(&shm->seg->workers[wslot].ready_gen);
}

int32_t llmr_shm_worker_pid_of(const llmr_shm *shm, int wslot)
{
    if (wslot < 0 || wslot >= LLMR_WORKER_SLOTS)
        return 0;
    return atomic_load(&shm->seg->workers[wslot].pid);
}

/* A worker of a dead master may still finish requests and give back its
 * share meanwhile: compare-and-swap so that no such change is overwritten
 * by a sum taken before it. */
void llmr_shm_recount_inflight(llmr_shm *shm)
{
    for (int i = 0; i < LLMR_SHM_SLOTS; i++) {
        llmr_slot *s = &shm->seg->slots[i];
        int64_t old = atomic_load(&s->inflight), sum;

        do {
            sum = 0;
            for (int k = 0; k < LLMR_WORKER_SLOTS; k++)
                sum += atomic_load_explicit(&s->inflight_by_worker[k], memory_order_relaxed);
        } while (old != sum && !atomic_compare_exchange_weak(&s->inflight, &old, sum));
    }
}

void llmr_shm_reload_outcome(llmr_shm *shm, int ok, const char *msg)
{
    llmr_shm_header *h = &shm->seg->hdr;

    atomic_fetch_add(&h->reload_seq, 1);           /* odd: writing */
    atomic_store(&h->reload_ok, ok);
    snprintf(h->reload_msg, sizeof(h->reload_msg), "%s", msg);
    atomic_fetch_add(&h->reload_seq, 1);           /* even: stable */
    atomic_fetch_add_explicit(ok ? &h->reloads_ok : &h->reloads_failed, 1,
                              memory_order_relaxed);
}

uint32_t llmr_shm_reload_seq(const llmr_shm *shm)
{
    return atomic_load(&shm->seg->hdr.reload_seq);
}

int llmr_shm_reload_read(const llmr_shm *shm, uint32_t seq, char *msg, size_t cap)
{
    const llmr_shm_header *h = &shm->seg->hdr;
    size_t n;
    int ok;

    if ((seq & 1) || cap == 0)
        return -1;
    ok = atomic_load(&h->reload_ok);
    n = strnlen(h->reload_msg, sizeof(h->reload_msg) - 1);
    n = n < cap - 1 ? n : cap - 1;
    memcpy(msg, h->reload_msg, n);
    msg[n] = '\0';
    return atomic_load(&h->reload_seq) == seq ? ok : -1;
}
