/* conf: the configuration as owned C structs.  llmr_conf_load() parses a
 * libconfig file (DESIGN.md §4), resolves os.environ/ references, validates
 * every value and destroys libconfig's tree before it returns.  Nothing here
 * knows about processes, sockets or shared memory; the master fills in
 * `slot` in each deployment after mapping the config onto the segment. */
#ifndef LLMR_CONF_H
#define LLMR_CONF_H

#include <stddef.h>
#include <stdio.h>             /* FILE, for llmr_conf_convert */

#include "ids.h"            /* LLMR_ID_MAX */

enum llmr_provider {
    LLMR_PROVIDER_OPENAI,       /* bare model name or openai/<model> */
    LLMR_PROVIDER_AZURE,        /* azure/<deployment> */
    LLMR_PROVIDER_ANTHROPIC     /* anthropic/<model>: the Messages API (worker/anthropic*.c) */
};

enum llmr_strategy {
    LLMR_STRATEGY_SIMPLE_SHUFFLE,
    LLMR_STRATEGY_LEAST_BUSY,
    LLMR_STRATEGY_USAGE_BASED,
    LLMR_STRATEGY_LATENCY_BASED
};

typedef struct llmr_deployment {
    char *model_name;           /* the model group clients ask for */
    char *model;                /* litellm_params.model as written */
    enum llmr_provider provider;
    char *upstream_model;       /* model without provider prefix; for azure the deployment */
    char *api_key;              /* resolved; NULL when none; never logged */
    char *api_base;             /* without trailing '/'; default per provider */
    char *api_version;          /* azure: default "2024-02-01"; openai: as written (unused) or NULL */
    long rpm, tpm;              /* 0 = unlimited */
    double weight;              /* 0 = not set */
    int order;                  /* 0 = not set */
    int max_parallel_requests;  /* 0 = unlimited */
    double timeout;             /* seconds; 0 = router timeout */
    int ssl_verify;             /* verify the upstream's TLS certificate (default 1) */
    char *ca_file;              /* CA bundle to verify with; NULL = the system's */
    int http2;                  /* offer HTTP/2 (ALPN h2) to an HTTPS upstream (default 1) */
    unsigned own_tls;           /* LLMR_OWN_*: set in litellm_params, not router_settings */
    long max_input_tokens;      /* 0 = unknown */
    int no_responses;           /* model_info.supports_responses = false */
    int health_check;           /* LLMR_HEALTH_*: what the prober sends */
    char id[LLMR_ID_MAX];       /* model_info.id, else a stable hash of litellm_params */
    int line;                   /* line of the model_list entry, for messages */
    int group;                  /* index into llmr_conf.groups */
    int slot;                   /* shm slot, set by the master; -1 before */
    double stream_timeout;      /* seconds to a stream's first byte; 0 = router's */
} llmr_deployment;

/* The request the health prober sends a deployment (model_info.health_check,
 * model_info.mode = "embedding"). */
enum llmr_health_check {
    LLMR_HEALTH_MODELS,         /* GET {api_base}/models (the default) */
    LLMR_HEALTH_COMPLETION,     /* a 1-token chat completion */
    LLMR_HEALTH_EMBEDDING       /* an embedding of "ping" */
};

#define LLMR_OWN_SSL_VERIFY 1u
#define LLMR_OWN_HTTP2 2u

typedef struct llmr_group {
    char *name;
    int *deployments;           /* indices into llmr_conf.deployments */
    int ndeployments;
} llmr_group;

typedef struct llmr_fallback {
    char *model;                /* the group that failed */
    char **fallbacks;           /* groups to try, in order */
    int nfallbacks;
} llmr_fallback;

typedef struct llmr_fallback_list {
    llmr_fallback *items;
    int n;
} llmr_fallback_list;

typedef struct llmr_alias {
    char *name;                 /* what a client may ask for */
    int group;                  /* the group it routes to */
    int hidden;                 /* left out of /v1/models (still routable) */
} llmr_alias;

/* The response cache (README "Response cache").  Call types are bits in
 * the worker's order of operations: chat, completions, embeddings, responses. */
enum llmr_cache_type { LLMR_CACHE_LOCAL, LLMR_CACHE_REDIS };
#define LLMR_CACHE_CALL_CHAT        1u
#define LLMR_CACHE_CALL_COMPLETIONS 2u
#define LLMR_CACHE_CALL_EMBEDDINGS  4u
#define LLMR_CACHE_CALL_RESPONSES   8u

typedef struct llmr_cache_conf {
    enum llmr_cache_type type;
    double ttl;                 /* seconds an entry lives (3600) */
    long max_size_mb;           /* the local store's bound (256) */
    char *path;                 /* local: the LMDB directory, beside the config file */
    char *ns;                   /* namespace: part of every key ("") */
    unsigned call_types;        /* LLMR_CACHE_CALL_* (all four) */
    char *host;                 /* redis: NULL = router_settings' (or 127.0.0.1) */
    int port;                   /* 0 = 6379 */
    char *password;             /* resolved; never logged */
    char *url;                  /* redis:// or rediss://; overrides host/port/password */
} llmr_cache_conf;

typedef struct llmr_conf {
    char *file;                 /* path as given, for messages */

    /* server */
    char **listen;              /* "host:port" or "[v6]:port" */
    int nlisten;
    int workers;                /* 0 = one per CPU core */
    char *master_key;           /* resolved; NULL = no auth */
    char *pid_file;
    char *access_log;           /* resolved; NULL = "off" */
    int access_log_off;
    char *shm_name;
    long max_body_bytes;
    double drain_timeout;
    long worker_rlimit_nofile;  /* 0 = keep the inherited limit */
    int upstream_max_connecting;    /* new connections per upstream at once; 0 = no limit */
    double client_header_timeout;   /* seconds to receive a whole request head */
    double client_body_timeout;     /* seconds to receive a whole request body */
    double stream_idle_timeout;     /* seconds a stream may go without upstream data */
    long max_buffered_bytes;        /* upstream answers a worker holds at once */
    int metrics_public;             /* GET /metrics without the master key */

    /* router_settings */
    enum llmr_strategy routing_strategy;
    int num_retries;
    double retry_after;
    double timeout;
    double stream_timeout;      /* 0 = use timeout */
    int allowed_fails;
    double cooldown_time;
    double max_cooldown_time;   /* no cooldown is longer, Retry-After included */
    llmr_fallback_list fallbacks;
    llmr_fallback_list context_window_fallbacks;
    llmr_fallback_list content_policy_fallbacks;
    char **default_fallbacks;
    int ndefault_fallbacks;
    double lowest_latency_buffer;
    llmr_alias *aliases;        /* router_settings.model_group_alias */
    int naliases;
    int ssl_verify;             /* the default of deployments that set none (1) */
    char *ca_file;              /* with it: their CA bundle, or NULL */
    int http2;                  /* the default of deployments that set none (1) */
    int background_health_checks;   /* run the health prober (LiteLLM's name) */
    double health_check_interval;   /* seconds between two rounds of probes */
    int enable_health_check_routing;/* skip deployments the prober found unhealthy */
    /* Several hosts sharing limits through Redis (master/sync.c): on when
     * redis_host or redis_url is set. */
    int sync;
    char *redis_host;           /* NULL = none */
    int redis_port;             /* 6379 */
    char *redis_password;       /* resolved; NULL = none; never logged */
    char *redis_url;            /* redis:// or rediss://; overrides host/port/password */
    char *redis_prefix;         /* "llmroute": every key starts "<prefix>:" */
    int redis_sync_interval_ms; /* 100 */

    /* model_list */
    llmr_deployment *deployments;
    int ndeployments;
    llmr_group *groups;         /* in order of first appearance */
    int ngroups;

    /* A LiteLLM YAML file: "FILE:LINE: key: ignored: why", one per key the
     * load ignored, for the master to log and `convert` to print. */
    char **warnings;
    int nwarnings;
    /* router_settings.cache_responses and the root `cache` section (conf_cache.c) */
    int cache_responses;
    llmr_cache_conf cache;
} llmr_conf;

/* Parses and validates `path`.  On success returns 0 and sets *out.  On
 * error returns -1 and writes "FILE:LINE: key: what is wrong (allowed: ...)"
 * into err. */
int llmr_conf_load(const char *path, llmr_conf **out, char *err, size_t errlen);

enum llmr_conf_mode {
    LLMR_CONF_FULL,     /* everything, every os.environ/ reference resolved */
    /* Only what finds a running instance (server.listen, pid_file,
     * shm_name, for `status` and `-s`): the other sections are only checked
     * for syntax and master_key is not read, so their os.environ/ references
     * stay unresolved and the operator's shell needs none of the secrets.
     * The result has no deployment and no master_key. */
    LLMR_CONF_LOCATE
};
int llmr_conf_load_mode(const char *path, enum llmr_conf_mode mode, llmr_conf **out,
                        char *err, size_t errlen);

void llmr_conf_free(llmr_conf *conf);

/* The group called `name`, or -1. */
int llmr_conf_find_group(const llmr_conf *conf, const char *name, size_t len);

/* The group a client's `name` routes to: a group, else an alias's target;
 * or -1. */
int llmr_conf_route_group(const llmr_conf *conf, const char *name, size_t len);

const char *llmr_strategy_name(enum llmr_strategy s);

/* Set by --format yaml: every file is read as a LiteLLM config.yaml (else
 * only names ending in .yaml or .yml are). */
extern int llmr_conf_yaml_forced;

/* `llmroute convert FILE`: prints the native (libconfig) file equivalent to
 * the LiteLLM YAML file `path` on `out`, its warnings as comments.  -1 with
 * "FILE:LINE: key: message" in err when the mapping fails. */
int llmr_conf_convert(const char *path, FILE *out, char *err, size_t errlen);

#endif
