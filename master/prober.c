/* The health prober (issue 12, item 3): one process per host, forked and
 * supervised by the master like a worker (DESIGN.md §2, helper processes),
 * that sends every deployment a cheap request each health_check_interval
 * and records the outcome in its slot.  Workers read it from the segment;
 * nothing here is on the request path, so plain libcurl multi suffices. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "clock.h"
#include "log.h"
#include "master.h"

#define PROBE_TIMEOUT_MAX 10.0  /* seconds: a probe never takes longer */
#define SNIPPET 120             /* bytes of an error body kept */

typedef struct probe {
    CURL *easy;
    struct curl_slist *headers;
    char *url;                  /* sized to the deployment: api_base + model */
    char body[256];             /* the start of the answer, for the error */
    size_t nbody;
    char curl_err[CURL_ERROR_SIZE];
    int64_t t0_us;
} probe;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    probe *p = arg;
    size_t len = size * n, room = sizeof(p->body) - 1 - p->nbody;

    memcpy(p->body + p->nbody, data, len < room ? len : room);
    p->nbody += len < room ? len : room;
    p->body[p->nbody] = '\0';
    return len;
}

/* The URL (malloc'd, sized to what -t accepts, never cut) and body of d's
 * probe.  Returns the body, or NULL for a GET; *url NULL when out of memory. */
static const char *probe_request(const llmr_deployment *d, char **url,
                                 char *body, size_t bcap)
{
    int azure = d->provider == LLMR_PROVIDER_AZURE;
    const char *op = d->health_check == LLMR_HEALTH_EMBEDDING ? "embeddings"
                   : "chat/completions";
    int n;

    /* Anthropic: {api_base}/v1/messages takes the same small chat body. */
    if (d->provider == LLMR_PROVIDER_ANTHROPIC)
        op = d->health_check == LLMR_HEALTH_MODELS ? "v1/models" : "v1/messages";
    if (d->health_check == LLMR_HEALTH_MODELS) {
        if (azure)
            n = asprintf(url, "%s/openai/models?api-version=%s", d->api_base,
                         d->api_version);
        else
            n = asprintf(url, "%s/%s", d->api_base,
                         d->provider == LLMR_PROVIDER_ANTHROPIC ? op : "models");
        if (n < 0)
            *url = NULL;
        return NULL;
    }
    if (azure)
        n = asprintf(url, "%s/openai/deployments/%s/%s?api-version=%s", d->api_base,
                     d->upstream_model, op, d->api_version);
    else
        n = asprintf(url, "%s/%s", d->api_base, op);
    if (n < 0)
        *url = NULL;
    if (d->health_check == LLMR_HEALTH_EMBEDDING)
        snprintf(body, bcap, "{\"model\":\"%.100s\",\"input\":\"ping\"}", d->upstream_model);
    else
        snprintf(body, bcap, "{\"model\":\"%.100s\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"ping\"}],\"max_tokens\":1}", d->upstream_model);
    return body;
}

static double probe_timeout(const llmr_conf *c, const llmr_deployment *d)
{
    double t = d->timeout > 0 ? d->timeout : c->timeout;

    if (t > c->health_check_interval)
        t = c->health_check_interval;
    if (t > PROBE_TIMEOUT_MAX)
        t = PROBE_TIMEOUT_MAX;
    return t < 1.0 ? 1.0 : t;
}

static int probe_setup(const llmr_conf *c, const llmr_deployment *d, probe *p)
{
    char *hdr, body[256];
    const char *post;
    int azure = d->provider == LLMR_PROVIDER_AZURE;

    memset(p, 0, sizeof(*p));
    post = probe_request(d, &p->url, body, sizeof(body));
    if (p->url == NULL || (p->easy = curl_easy_init()) == NULL) {
        free(p->url);
        p->url = NULL;
        return -1;
    }
    if (d->api_key != NULL) {
        /* Sized to the key (up to what -t accepts): a cut key fails forever. */
        if (asprintf(&hdr, azure ? "api-key: %s"
                     : d->provider == LLMR_PROVIDER_ANTHROPIC ? "x-api-key: %s"
                     : "Authorization: Bearer %s", d->api_key) < 0) {
            curl_easy_cleanup(p->easy);
            p->easy = NULL;
            free(p->url);
            p->url = NULL;
            return -1;
        }
        p->headers = curl_slist_append(p->headers, hdr);
        explicit_bzero(hdr, strlen(hdr));
        free(hdr);
    }
    if (d->provider == LLMR_PROVIDER_ANTHROPIC)
        p->headers = curl_slist_append(p->headers, "anthropic-version: 2023-06-01");
    if (post != NULL) {
        p->headers = curl_slist_append(p->headers, "Content-Type: application/json");
        curl_easy_setopt(p->easy, CURLOPT_COPYPOSTFIELDS, post);
    }
    curl_easy_setopt(p->easy, CURLOPT_URL, p->url);
    curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, p->headers);
    curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(p->easy, CURLOPT_WRITEDATA, p);
    curl_easy_setopt(p->easy, CURLOPT_ERRORBUFFER, p->curl_err);
    curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, (long)(probe_timeout(c, d) * 1000));
    curl_easy_setopt(p->easy, CURLOPT_SSL_VERIFYPEER, d->ssl_verify ? 1L : 0L);
    curl_easy_setopt(p->easy, CURLOPT_SSL_VERIFYHOST, d->ssl_verify ? 2L : 0L);
    if (d->ca_file != NULL)
        curl_easy_setopt(p->easy, CURLOPT_CAINFO, d->ca_file);
    curl_easy_setopt(p->easy, CURLOPT_HTTP_VERSION,
                     d->http2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
    p->t0_us = llmr_clock_us();
    return 0;
}

#define KEY_PART_MIN 4           /* a cut key's start this long is blanked too */

/* Blanks every occurrence of the key in s[0..n), and a start of the key
 * (>= KEY_PART_MIN bytes) that s ends with: text kept from an answer may
 * have cut an echoed key anywhere. */
static void blank_key(char *s, size_t n, const char *key)
{
    size_t klen = key != NULL ? strlen(key) : 0;
    char *hit, *from = s;

    if (klen < KEY_PART_MIN)
        return;
    while ((hit = memmem(from, n - (size_t)(from - s), key, klen)) != NULL) {
        memset(hit, '*', klen);
        from = hit + klen;
    }
    for (size_t l = klen - 1 < n ? klen - 1 : n; l >= KEY_PART_MIN; l--)
        if (memcmp(s + n - l, key, l) == 0) {
            memset(s + n - l, '*', l);
            break;
        }
}

/* Keeps printable ASCII of s and blanks the key once more, so an upstream
 * that echoes the key back never puts it in /health or the log. */
static void sanitise(char *s, const char *key)
{
    for (char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
            *c = ' ';
    blank_key(s, strlen(s), key);
}

static void probe_record(llmr_shm *shm, const llmr_deployment *d, probe *p, CURLcode rc)
{
    char err[LLMR_HEALTH_ERR_WORDS * 8];
    long status = 0;
    int64_t lat = llmr_clock_us() - p->t0_us;

    curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
    err[0] = '\0';
    /* The key goes before anything is cut: a cut key no longer matches. */
    blank_key(p->body, p->nbody, d->api_key);
    blank_key(p->curl_err, strlen(p->curl_err), d->api_key);
    if (rc != CURLE_OK)
        snprintf(err, sizeof(err), "%s%s%.150s", curl_easy_strerror(rc),
                 p->curl_err[0] ? ": " : "", p->curl_err);
    else if (status < 200 || status > 299)
        snprintf(err, sizeof(err), "HTTP %ld: %.*s", status, SNIPPET, p->body);
    sanitise(err, d->api_key);
    if (d->slot >= 0)
        llmr_health_write(llmr_shm_slot(shm, d->slot), err[0] == '\0', lat, llmr_wall_ms(),
                          err);
    if (err[0] != '\0')
        llmr_debug("health check of %s failed: %s", d->id, err);
}

/* Whether d was found healthy recently enough to skip it this round: a
 * reload or a respawned prober starts a round at once, and probing every
 * deployment then would pay a completion per deployment on each SIGHUP.
 * The window leaves room for the probe's own time, so the regular rounds,
 * an interval apart, still probe it each time.  Unknown and unhealthy ones
 * are always probed. */
static int probe_fresh(const llmr_conf *c, llmr_shm *shm, const llmr_deployment *d,
                       int64_t now_ms)
{
    llmr_health_view v;
    double window = c->health_check_interval - probe_timeout(c, d) - 0.25;

    if (d->slot < 0 || window <= 0)
        return 0;
    llmr_health_read(llmr_shm_slot(shm, d->slot), &v);
    return v.state == LLMR_SLOT_HEALTHY && v.checked_ms > 0
           && now_ms - v.checked_ms >= 0 && now_ms - v.checked_ms < (int64_t)(window * 1000);
}

/* Probes every deployment due at once and waits for all of them. */
static void probe_round(const llmr_conf *c, llmr_shm *shm, CURLM *multi, probe *ps)
{
    int running = 0, left;
    CURLMsg *m;
    int64_t now_ms = llmr_wall_ms();

    for (int i = 0; i < c->ndeployments; i++) {
        ps[i].easy = NULL;
        if (probe_fresh(c, shm, &c->deployments[i], now_ms))
            continue;
        if (probe_setup(c, &c->deployments[i], &ps[i]) == 0)
            curl_multi_add_handle(multi, ps[i].easy);
    }
    do {
        curl_multi_perform(multi, &running);
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            char *priv = NULL;
            probe *p;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
            p = (probe *)(void *)priv;
            probe_record(shm, &c->deployments[p - ps], p, m->data.result);
        }
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 200, NULL);
    } while (running > 0);
    for (int i = 0; i < c->ndeployments; i++) {
        if (ps[i].easy == NULL)
            continue;
        curl_multi_remove_handle(multi, ps[i].easy);
        curl_easy_cleanup(ps[i].easy);
        for (struct curl_slist *h = ps[i].headers; h != NULL; h = h->next)
            explicit_bzero(h->data, strlen(h->data));   /* the key's copy */
        curl_slist_free_all(ps[i].headers);
        free(ps[i].url);
        ps[i].url = NULL;
    }
}

/* Sleeps until the next round, waking to notice a dead master. */
static void pause_until(double t, pid_t master)
{
    while (llmr_mono_s() < t && getppid() == master) {
        double left = t - llmr_mono_s();
        usleep((useconds_t)((left > 0.2 ? 0.2 : left > 0 ? left : 0) * 1e6));
    }
}

int llmr_prober_main(const llmr_conf *conf, llmr_shm *shm, pid_t master)
{
    CURLM *multi = curl_multi_init();
    probe *ps = calloc((size_t)(conf->ndeployments > 0 ? conf->ndeployments : 1),
                       sizeof(*ps));
    sigset_t none;

    /* No state to drain: the master's SIGQUIT or SIGTERM just ends it. */
    signal(SIGQUIT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (multi == NULL || ps == NULL) {
        llmr_error("health prober: out of memory");
        free(ps);
        if (multi != NULL)
            curl_multi_cleanup(multi);
        return 1;
    }
    llmr_debug("health prober %d: %d deployment(s) every %.1f s", (int)getpid(),
               conf->ndeployments, conf->health_check_interval);
    while (getppid() == master) {
        double next = llmr_mono_s() + conf->health_check_interval;
        probe_round(conf, shm, multi, ps);
        pause_until(next, master);
    }
    free(ps);
    curl_multi_cleanup(multi);
    return 0;
}
