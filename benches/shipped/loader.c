// The shipped iomonitor's loader for the bench (issue 26): what the FODC agent does with
// cilium/ebpf, done with libbpf. Built by the bench in its temporary directory, never by the
// crate's build.
//
//   loader OBJECT CGROUP_ID
//
// Opens and loads OBJECT (the shipped iomonitor.o, built from its public source), writes
// CGROUP_ID into config_map[0] as the agent configures the target's cgroup, attaches every
// program by its section name, prints "ready N" (N programs attached) and then answers lines
// on stdin:
//   cgroup ID   config_map[0] = ID; answers "ok"
//   counts      "count pread N", "count read N", "count lookups N", "count adds N",
//               "count deletes N" (summed over every pid and CPU of the maps), one
//               "prog NAME RUN_CNT RUN_TIME_NS" per attached program (BPF stats), then "end"
// End of stdin: detaches and exits.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROGS 64

static int quiet(enum libbpf_print_level level, const char *fmt, va_list args) {
    if (level == LIBBPF_WARN)
        return vfprintf(stderr, fmt, args);
    return 0;
}

// Sum over every key and every CPU of the u64 at byte offset `off` of a per-CPU hash's values.
static unsigned long long sum_field(struct bpf_map *m, size_t off) {
    int fd = bpf_map__fd(m), ncpu = libbpf_num_possible_cpus();
    size_t vsz = (bpf_map__value_size(m) + 7) & ~(size_t)7;
    unsigned char *vals = calloc(ncpu, vsz);
    unsigned long long total = 0;
    uint32_t key, next;
    uint32_t *cur = NULL;
    if (!vals)
        return 0;
    while (bpf_map_get_next_key(fd, cur, &next) == 0) {
        key = next;
        cur = &key;
        if (bpf_map_lookup_elem(fd, &key, vals) != 0)
            continue;
        for (int c = 0; c < ncpu; c++) {
            uint64_t v;
            memcpy(&v, vals + (size_t)c * vsz + off, sizeof v);
            total += v;
        }
    }
    free(vals);
    return total;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s OBJECT CGROUP_ID\n", argv[0]);
        return 2;
    }
    unsigned long long cg = strtoull(argv[2], NULL, 10);
    libbpf_set_print(quiet);
    struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
    if (!obj) {
        fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    // cilium/ebpf completes a perf event array declared without sizes (the shipped `events`):
    // 4-byte keys and values, one entry per possible CPU. So does this loader (libbpf would
    // create it with zero sizes, which the kernel refuses).
    struct bpf_map *m;
    bpf_object__for_each_map(m, obj) {
        if (bpf_map__type(m) != BPF_MAP_TYPE_PERF_EVENT_ARRAY)
            continue;
        if (bpf_map__key_size(m) == 0)
            bpf_map__set_key_size(m, 4);
        if (bpf_map__value_size(m) == 0)
            bpf_map__set_value_size(m, 4);
        if (bpf_map__max_entries(m) == 0)
            bpf_map__set_max_entries(m, libbpf_num_possible_cpus());
    }
    int err = bpf_object__load(obj);
    if (err) {
        fprintf(stderr, "load: %s\n", strerror(-err));
        return 1;
    }
    struct bpf_map *config = bpf_object__find_map_by_name(obj, "config_map");
    struct bpf_map *pread = bpf_object__find_map_by_name(obj, "pread_latency_stats_map");
    struct bpf_map *read = bpf_object__find_map_by_name(obj, "read_latency_stats_map");
    struct bpf_map *cache = bpf_object__find_map_by_name(obj, "cache_stats_map");
    if (!config || !pread || !read || !cache) {
        fprintf(stderr, "the object lacks config_map, pread/read_latency_stats_map or cache_stats_map\n");
        return 1;
    }
    uint32_t zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(config), &zero, &cg, BPF_ANY)) {
        fprintf(stderr, "config_map: %s\n", strerror(errno));
        return 1;
    }
    struct bpf_program *progs[MAX_PROGS];
    struct bpf_link *links[MAX_PROGS];
    int n = 0;
    struct bpf_program *p;
    bpf_object__for_each_program(p, obj) {
        if (n == MAX_PROGS)
            break;
        struct bpf_link *l = bpf_program__attach(p);
        if (!l) {
            fprintf(stderr, "attach %s (%s): %s\n", bpf_program__name(p), bpf_program__section_name(p),
                    strerror(errno));
            continue;
        }
        progs[n] = p;
        links[n++] = l;
    }
    printf("ready %d\n", n);
    fflush(stdout);
    // struct read_latency_stats_t: 32 buckets, sum_latency_ns, count, read_bytes_total.
    const size_t count_off = 33 * 8;
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "cgroup ", 7) == 0) {
            cg = strtoull(line + 7, NULL, 10);
            int r = bpf_map_update_elem(bpf_map__fd(config), &zero, &cg, BPF_ANY);
            printf(r ? "error %s\n" : "ok\n", strerror(errno));
        } else if (strncmp(line, "counts", 6) == 0) {
            printf("count pread %llu\n", sum_field(pread, count_off));
            printf("count read %llu\n", sum_field(read, count_off));
            printf("count lookups %llu\n", sum_field(cache, 0));
            printf("count adds %llu\n", sum_field(cache, 8));
            printf("count deletes %llu\n", sum_field(cache, 16));
            for (int i = 0; i < n; i++) {
                struct bpf_prog_info info;
                uint32_t len = sizeof info;
                memset(&info, 0, sizeof info);
                bpf_obj_get_info_by_fd(bpf_program__fd(progs[i]), &info, &len);
                printf("prog %s %s %llu %llu\n", bpf_program__name(progs[i]), bpf_program__section_name(progs[i]),
                       (unsigned long long)info.run_cnt, (unsigned long long)info.run_time_ns);
            }
            printf("end\n");
        } else {
            printf("error unknown command\n");
        }
        fflush(stdout);
    }
    for (int i = 0; i < n; i++)
        bpf_link__destroy(links[i]);
    bpf_object__close(obj);
    return 0;
}
