/*
 * ktm.h: the C ABI of KTM, the Kernel Telemetry Module (src/capi.rs implements it;
 * tests/capi_header.rs fails when the two disagree).
 *
 * Link target/release/libktm.a (plus -lpthread -ldl -lm) or libktm.so.
 *
 * Model: an opaque handle created from YAML config text; start loads and attaches the
 * programs; each ktm_collect reads the counters now and returns one batch of plain structs.
 * Every function may be called from any thread, concurrently, on the same handle (a mutex
 * inside serializes them), except ktm_free, which must be the last call on a handle.
 * No Rust panic crosses this boundary: it is returned as an error.
 *
 * Ownership:
 * - A non-NULL `*error` set by any function is a string owned by the caller, freed with
 *   ktm_string_free (never free()). On success `*error` is set to NULL. `error` may be NULL
 *   when the caller does not want the text.
 * - A batch from ktm_collect is owned by the caller and freed, with every string and array
 *   it points to, by one ktm_batch_free. Nothing in it may be used after that. An array
 *   whose count is 0 is NULL.
 * - Strings from ktm_take_log are owned by the caller (ktm_string_free).
 * - ktm_module_name's string is owned by the handle and valid until ktm_free.
 * Functions returning int return 0 on success and -1 on error.
 *
 * Privileges: ktm_start needs CAP_BPF and CAP_PERFMON; after it, collections need none
 * (except CAP_BPF on kernels before 6.5 with kernel.unprivileged_bpf_disabled set, where
 * every bpf() command needs it). KTM does not drop the host's capabilities or install a
 * seccomp filter in the host's process (that would confine the host's own threads and
 * calls); the host should drop them on every thread after ktm_start, set no_new_privs, and,
 * if it has a filter of its own, allow bpf() commands 1-4 and 15 (map lookup, update,
 * delete, next key, object info) for KTM. `ktm run` does all of this by itself.
 */
#ifndef KTM_H
#define KTM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KTM_ABI_VERSION 1

/* ktm_metric_t.type */
#define KTM_COUNTER 0
#define KTM_GAUGE 1
#define KTM_HISTOGRAM 2

/* Opaque. */
typedef struct ktm ktm_t;

typedef struct ktm_label {
    const char *name;
    const char *value;
} ktm_label_t;

/* A cumulative bucket: observations <= upper_bound (seconds for latency). */
typedef struct ktm_bucket {
    double upper_bound;
    uint64_t cumulative_count;
} ktm_bucket_t;

typedef struct ktm_metric {
    const char *name;           /* family name, e.g. ktm_sys_pread_latency_seconds */
    const char *help;
    uint32_t type;              /* KTM_COUNTER, KTM_GAUGE or KTM_HISTOGRAM */
    const ktm_label_t *labels;
    size_t n_labels;
    uint64_t counter;           /* KTM_COUNTER: monotonic count (whole part of a counter in seconds) */
    double gauge;               /* KTM_GAUGE; KTM_COUNTER in seconds: the exact value, else 0 */
    const ktm_bucket_t *buckets; /* KTM_HISTOGRAM: finite buckets, increasing upper_bound */
    size_t n_buckets;
    double sum;                 /* KTM_HISTOGRAM: sum of observations */
    uint64_t count;             /* KTM_HISTOGRAM: observations; the +Inf bucket */
} ktm_metric_t;

typedef struct ktm_source {
    const char *metric;
    const char *mechanism;      /* fentry, tracepoint, ...; NULL when unavailable */
    const char *detail;         /* attach point, or why unavailable */
} ktm_source_t;

typedef struct ktm_module_status {
    const char *module;         /* e.g. iomonitor */
    const char *state;          /* active, degraded, disabled, waiting_for_target */
    const char *reason;         /* NULL when there is none */
    const char *scope;          /* what the filter selects, in words; may be "" */
    const ktm_source_t *sources;
    size_t n_sources;
} ktm_module_status_t;

typedef struct ktm_batch {
    int64_t timestamp_unix_ns;
    const ktm_metric_t *metrics;
    size_t n_metrics;
    const ktm_module_status_t *modules;
    size_t n_modules;
} ktm_batch_t;

/* The ABI version of the library; compare with KTM_ABI_VERSION. */
uint32_t ktm_abi_version(void);

/* A KTM from YAML config text (NULL or "" for defaults); nothing is loaded yet.
 * NULL on error, with the message naming the config key in *error. */
ktm_t *ktm_new(const char *config_yaml, char **error);

/* Stops every module and frees the handle. NULL is ignored. */
void ktm_free(ktm_t *ktm);

/* Starts `module` (NULL: every module): loads and attaches. Running modules are left alone.
 * On failure (e.g. missing CAP_BPF) the module is disabled with the reason, the KTM is
 * degraded and -1 is returned with every failure in *error. */
int ktm_start(ktm_t *ktm, const char *module, char **error);

/* Stops `module` (NULL: every module): detaches every program. Idempotent. */
int ktm_stop(ktm_t *ktm, const char *module, char **error);

/* One collection of `module` (NULL: every module): counters read now, health check run.
 * *batch receives the metrics and each selected module's status (free: ktm_batch_free). */
int ktm_collect(ktm_t *ktm, const char *module, ktm_batch_t **batch, char **error);

/* Frees a batch and everything it points to. NULL is ignored. */
void ktm_batch_free(ktm_batch_t *batch);

/* One collection of `module` (NULL: every module), as ktm_collect makes it, written to `path`
 * as Prometheus text the way `ktm run --output` writes it: a temporary file beside `path`,
 * mode 0644, renamed over it (node-exporter's textfile collector never reads
 * part of a batch). */
int ktm_write_textfile(ktm_t *ktm, const char *module, const char *path, char **error);

/* 1 when a module failed to start or was last seen degraded or disabled, 0 if not,
 * -1 for NULL. */
int ktm_is_degraded(const ktm_t *ktm);

/* The enabled modules (collector.modules): their number, and name `index` (owned by the
 * handle; NULL when out of range). */
size_t ktm_module_count(const ktm_t *ktm);
const char *ktm_module_name(const ktm_t *ktm, size_t index);

/* collector.interval in nanoseconds: how often the host should collect. */
int64_t ktm_interval_ns(const ktm_t *ktm);

/* The oldest queued log record of the library, or NULL. *level: 1 error, 2 warn, 3 info,
 * 4 debug, 5 trace. Free with ktm_string_free. At most 1024 are queued; older are dropped. */
char *ktm_take_log(int *level);

/* Frees a string returned by this library. NULL is ignored. */
void ktm_string_free(char *s);

/* One entry of the metric catalogue: every metric the library exports, as the library's
 * own table (src/catalogue.rs) defines it. */
typedef struct ktm_metric_def {
    const char *key;    /* the entry's constant name, e.g. SYS_PREAD_LATENCY */
    const char *name;   /* the exported family name, e.g. ktm_sys_pread_latency_seconds */
    const char *help;   /* the # HELP text */
    uint32_t type;      /* KTM_COUNTER, KTM_GAUGE or KTM_HISTOGRAM */
    const char *unit;   /* e.g. seconds, pages, calls */
    const char *labels; /* comma-separated label names; a closed label is followed by ':' and
                         * its values joined by '|', e.g. advice:normal|random|...|other */
} ktm_metric_def_t;

/* The metric catalogue: *defs (if not NULL) receives its entries, static and never freed;
 * returns their number. Needs no handle and no privilege. */
size_t ktm_catalogue(const ktm_metric_def_t **defs);

#ifdef __cplusplus
}
#endif

#endif /* KTM_H */
