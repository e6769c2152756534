/* TLS to upstreams, set up once per worker.
 *
 * libcurl builds a fresh SSL_CTX for every new connection and fills its
 * trust store from CURLOPT_CAINFO/CAPATH: 145 certificates parsed per
 * handshake with the system bundle, about 1 MB each.  Debian's libcurl also
 * sets a default CApath, which keeps libcurl's own CA cache
 * (CURLOPT_CA_CACHE_TIMEOUT) from ever being used.  So each handle here
 * gets no CA file and no CA path, and the SSL_CTX callback installs the one
 * X509_STORE this worker loaded at start for the deployment's bundle.
 * TLS sessions are shared by every handle through one CURLSH, so a new
 * connection to an upstream already met resumes instead of verifying the
 * chain again.  A worker is one thread: the share needs no lock callbacks. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "log.h"
#include "worker_internal.h"

typedef struct tls_store {
    const char *path;           /* the bundle; NULL = libcurl's default */
    X509_STORE *store;
} tls_store;

struct llmr_tls {
    CURLSH *share;
    tls_store *stores;          /* one per distinct bundle */
    int nstores;
    int *store_of;              /* per deployment: index into stores, or -1 */
};

/* libcurl's built-in defaults (Debian: the bundle and /etc/ssl/certs),
 * else OpenSSL's. */
static void default_paths(const char **file, const char **dir)
{
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);

    *file = NULL;
    *dir = NULL;
    if (v->age >= CURLVERSION_NINTH) {
        *file = v->cainfo;
        *dir = v->capath;
    }
    if (*file == NULL && *dir == NULL) {
        *file = X509_get_default_cert_file();
        *dir = X509_get_default_cert_dir();
    }
}

/* The flags libcurl sets on the stores it builds itself. */
static X509_STORE *load_store(const char *path)
{
    X509_STORE *st = X509_STORE_new();
    const char *file = path, *dir = NULL;

    if (st == NULL)
        return NULL;
    if (path == NULL)
        default_paths(&file, &dir);
    if (file != NULL && !X509_STORE_load_file(st, file))
        llmr_error("cannot load the CA bundle %s: TLS upstreams that use it will fail "
                   "verification", file);
    /* A directory is only looked into, lazily, for an issuer the bundle
     * lacks, the way libcurl's default CApath is. */
    if (dir != NULL && !X509_STORE_load_path(st, dir))
        llmr_warn("cannot use the CA directory %s", dir);
    X509_STORE_set_flags(st, X509_V_FLAG_TRUSTED_FIRST | X509_V_FLAG_PARTIAL_CHAIN);
    return st;
}

static int same_path(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The store for `path`, loaded on its first use. */
static int store_index(struct llmr_tls *t, const char *path)
{
    for (int i = 0; i < t->nstores; i++)
        if (same_path(t->stores[i].path, path))
            return i;
    t->stores[t->nstores].path = path;
    t->stores[t->nstores].store = load_store(path);
    if (t->stores[t->nstores].store == NULL)
        return -1;
    return t->nstores++;
}

static int is_https(const llmr_deployment *d)
{
    return strncasecmp(d->api_base, "https://", 8) == 0;
}

int llmr_tls_init(llmr_worker *w)
{
    const llmr_conf *c = w->conf;
    struct llmr_tls *t = calloc(1, sizeof(*t));

    w->tls = t;
    if (t == NULL || (t->share = curl_share_init()) == NULL
        || curl_share_setopt(t->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION)
           != CURLSHE_OK
        || (t->stores = calloc((size_t)c->ndeployments + 1, sizeof(tls_store))) == NULL
        || (t->store_of = calloc((size_t)c->ndeployments + 1, sizeof(int))) == NULL)
        return -1;
    for (int i = 0; i < c->ndeployments; i++) {
        const llmr_deployment *d = &c->deployments[i];

        t->store_of[i] = -1;
        if (is_https(d) && d->ssl_verify
            && (t->store_of[i] = store_index(t, d->ca_file)) < 0)
            return -1;
    }
    return 0;
}

void llmr_tls_free(llmr_worker *w)
{
    struct llmr_tls *t = w->tls;

    if (t == NULL)
        return;
    if (t->share != NULL && curl_share_cleanup(t->share) != CURLSHE_OK)
        llmr_warn("TLS session share still in use at exit");
    for (int i = 0; i < t->nstores; i++)
        X509_STORE_free(t->stores[i].store);
    free(t->stores);
    free(t->store_of);
    free(t);
    w->tls = NULL;
}

/* CURLOPT_SSL_CTX_FUNCTION: called for each new TLS connection, after
 * libcurl has set up an SSL_CTX with an empty store. */
static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *arg)
{
    X509_STORE *st = arg;

    (void)easy;
    if (st != NULL)
        SSL_CTX_set1_cert_store(ssl_ctx, st);
    return CURLE_OK;
}

/* Once per easy handle: these never change between uses. */
void llmr_tls_easy_init(llmr_worker *w, CURL *easy)
{
    curl_easy_setopt(easy, CURLOPT_SHARE, w->tls->share);
    curl_easy_setopt(easy, CURLOPT_CAINFO, NULL);
    curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
}

/* Per attempt: the deployment's verification and trust store.  A
 * deployment with ssl_verify = false skips both checks, as LiteLLM's does. */
void llmr_tls_attempt(llmr_worker *w, CURL *easy, int dep)
{
    int s = w->tls->store_of[dep];
    long verify = w->conf->deployments[dep].ssl_verify ? 1L : 0L;

    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, verify);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_CTX_DATA, s >= 0 ? w->tls->stores[s].store : NULL);
}
