#!/usr/bin/env bash
# One podman guest: boots a Debian cloud kernel under QEMU on the cached Debian root with
# podman and runc (podman-root.sh), on a pure cgroup v2 hierarchy, and runs podman test
# scripts in it (podman-guest.sh); the console log and its .meta are run-guest.py's, so
# summarize.py judges the run like any other (the scripts are its "binaries").
# run-matrix.sh calls it for its podman columns (--podman). See README.md, "Podman guests".
#
# usage: run-podman.sh --label L --column C --kernel VMLINUZ --moddir DIR --log LOG
#                      [--ktm-bin PATH] [--mem MiB] [--smp N]
#                      [--accel A] [--tcg-thread T] [--timeout S] [--append ARGS]
#                      [--env NAME=VALUE]... [--verbose] -- NAME=SCRIPT...
#   NAME=SCRIPT  a bash script, by its path in this repository; it runs in the guest with
#                the repository's working tree (git ls-files: tracked and untracked, not
#                ignored) as its working directory, $KTM_BIN the static ktm binary
#                (--ktm-bin), $KTM_KERNEL the label, and in $KTM_PODMAN_IMAGES the images
#                .ci/podman/build-images.sh built from that binary on this machine (docker
#                archives: `build-images.sh --bin KTM --save DIR`, podman storage in
#                $KTM_QEMU_CACHE/podman-build)
#   --moddir     the kernel's modules directory (fetch-kernels.sh): the guest's modprobe
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
label="" column="" kernel="" moddir="" log="" ktm_bin="" mem=1024 smp=2
accel=tcg tcg_thread=single timeout_s=600 append="" envs=() verbose=()
die() { echo "run-podman: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --label) label="$2"; shift 2 ;;
    --column) column="$2"; shift 2 ;;
    --kernel) kernel="$2"; shift 2 ;;
    --moddir) moddir="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --ktm-bin) ktm_bin="$2"; shift 2 ;;
    --mem) mem="$2"; shift 2 ;;
    --smp) smp="$2"; shift 2 ;;
    --accel) accel="$2"; shift 2 ;;
    --tcg-thread) tcg_thread="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --append) append="$2"; shift 2 ;;
    --env) envs+=(--env "$2"); shift 2 ;;
    --verbose) verbose=(--verbose); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1" ;;
  esac
done
[ -n "$label" ] && [ -n "$column" ] && [ -n "$kernel" ] && [ -n "$moddir" ] && [ -n "$log" ] ||
  die "--label, --column, --kernel, --moddir and --log are required"
[ $# -gt 0 ] || die "no test scripts (NAME=SCRIPT after --)"

# The run's files: the data disk's content.
stage="$(mktemp -d "${log%.log}.podman.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/ktm/modules" "$stage/ktm/images" "$stage/repo"
cp "$here/podman-guest.sh" "$stage/ktm/"
cp -a "$moddir" "$stage/ktm/modules/"
# The guest's log says so when something here fails: the run fails like a guest that could
# not be set up.
host_fatal() {
  ktm_fatal "$*" > "$log"
  printf 'column=%s\nkind=guest\nlabel=%s\nwall_s=0\ntimed_out=0\narch=amd64\n' "$column" "$label" > "$log.meta"
  printf 'binaries=%s\n' "$(IFS=,; echo "${names[*]}")" >> "$log.meta"
  echo "run-podman: $column: $*" >&2
  exit 0
}
# shellcheck source=markers.sh
. "$here/markers.sh"
names=()
for spec in "$@"; do names+=("${spec%%=*}"); done
if [ -n "$ktm_bin" ]; then
  cp "$ktm_bin" "$stage/ktm/ktm"
  if [ -x "$repo/.ci/podman/build-images.sh" ]; then
    t0=$SECONDS
    KTM_PODMAN_DIR="${KTM_QEMU_CACHE:-/var/cache/ktm-qemu}/podman-build" \
      "$repo/.ci/podman/build-images.sh" --arch amd64 --bin "$ktm_bin" --save "$stage/ktm/images" >&2 ||
      host_fatal "the images could not be built on this machine (.ci/podman/build-images.sh)"
    echo "run-podman: images built and saved in $((SECONDS - t0))s: $(cd "$stage/ktm/images" && du -ch -- * | tr '\n' ' ')" >&2
  fi
fi
(cd "$repo" && git ls-files -z -c -o --exclude-standard | xargs -0 cp --parents -t "$stage/repo" 2>/dev/null) ||
  (cd "$repo" && git ls-files -z -c -o --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && cp --parents -a "$f" "$stage/repo/"; done)
for spec in "$@"; do
  [[ "$spec" == *=* ]] || die "$spec: want NAME=SCRIPT"
  [ -f "$stage/repo/${spec#*=}" ] || die "${spec#*=}: no such script in the repository"
  echo "$spec" >> "$stage/ktm/tests.order"
done

initrd="${log%.log}.initrd.cpio.gz"
python3 "$here/build-initramfs.py" --moddir "$moddir" --init "$here/podman-init" \
  --markers "$here/markers.sh" --out "$initrd" 2>&1 | sed 's/^/run-podman: /' >&2
# The data disk holds the run's files and podman's storage (images, containers' layers).
disk_mib=$(( $(du -sm "$stage" | cut -f1) + 2048 ))
root_image="$("$here/podman-root.sh" --ensure)" || host_fatal "no Debian root for the podman guest (podman-root.sh --ensure failed)"
"$here/podman-root.sh" --locked python3 "$here/run-guest.py" --arch amd64 --column "$column" \
  --label "$label" --kernel "$kernel" --initrd "$initrd" --log "$log" --mem "$mem" --smp "$smp" \
  --accel "$accel" --tcg-thread "$tcg_thread" --timeout "$timeout_s" --disk-mib "$disk_mib" \
  --disk-content "$stage" --root-image "$root_image" --append "$append" "${envs[@]}" "${verbose[@]}"
rm -f "$initrd"
printf 'binaries=%s\n' "$(IFS=,; echo "${names[*]}")" >> "$log.meta"
