# A private podman (sourced by build-images.sh and play-test.sh): its own storage, run
# directory, containers.conf and storage.conf under $KTM_PODMAN_DIR, so nothing is read from
# or left in the machine's podman setup. Defines `pm` (podman with these settings).
#
# env: KTM_PODMAN_DIR  the private directory (default: $KTM_QEMU_CACHE/podman, i.e.
#                      /var/cache/ktm-qemu/podman: images built once are kept between runs)
#
# Settings, each for a reason met on real hosts (README, "Deployment as a sidecar"):
# - runtime runc: crun 1.8 refuses hybrid cgroup hosts whose cgroup2 root lists controllers;
# - cgroup_manager cgroupfs, events_logger file: no systemd in CI containers and sandboxes;
# - default_ulimits empty and no nofile/nproc raised: podman's defaults raise RLIMIT_NOFILE,
#   which needs CAP_SYS_RESOURCE that sandboxed CI lacks;
# - no network (every pod is played with --network none): KTM needs none.
KTM_PODMAN_DIR="${KTM_PODMAN_DIR:-${KTM_QEMU_CACHE:-/var/cache/ktm-qemu}/podman}"
mkdir -p "$KTM_PODMAN_DIR"/{root,runroot,tmp,netconf}
cat > "$KTM_PODMAN_DIR/containers.conf" <<CONF
[containers]
default_ulimits = []
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$KTM_PODMAN_DIR/events.log"
tmp_dir = "$KTM_PODMAN_DIR/tmp"
volume_path = "$KTM_PODMAN_DIR/root/volumes"
static_dir = "$KTM_PODMAN_DIR/root/libpod"
[network]
network_config_dir = "$KTM_PODMAN_DIR/netconf"
CONF
cat > "$KTM_PODMAN_DIR/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$KTM_PODMAN_DIR/root"
runroot = "$KTM_PODMAN_DIR/runroot"
CONF
export CONTAINERS_CONF="$KTM_PODMAN_DIR/containers.conf"
export CONTAINERS_STORAGE_CONF="$KTM_PODMAN_DIR/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$KTM_PODMAN_DIR/registries.conf"
: > "$CONTAINERS_REGISTRIES_CONF" # no registry: images are built here, FROM scratch
pm() { podman --root "$KTM_PODMAN_DIR/root" --runroot "$KTM_PODMAN_DIR/runroot" "$@"; }
