#!/usr/bin/env bash
# Downloads the Debian cloud kernels of the matrix with apt-get download and unpacks them.
# The archive URI comes from this machine's own apt configuration; only the suite varies.
# Packages are cached under $KTM_QEMU_CACHE so that a second run downloads nothing.
# Prints one line per kernel: LABEL<TAB>VMLINUZ<TAB>MODULES_DIR
set -euo pipefail
CACHE="${KTM_QEMU_CACHE:-/var/cache/ktm-qemu}"
KERNELS="${KTM_KERNELS:-5.10,6.1,6.12}"
mkdir -p "$CACHE/apt/state/lists/partial" "$CACHE/apt/cache/archives/partial" "$CACHE/debs" "$CACHE/kernels"

suite_of() {
  case "$1" in
    5.10) echo bullseye ;;
    6.1) echo bookworm ;;
    6.12) echo trixie ;;
    *) echo "unknown kernel label $1" >&2; exit 2 ;;
  esac
}

# The main Debian archive's URI, from deb822 sources or a classic sources.list.
archive_uri() {
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && u != "" && $0 !~ /security/ {print u; exit}' /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { echo "no Debian archive URI in this machine's apt configuration" >&2; exit 1; }
  echo "$uri"
}

APT=(apt-get -q -o "Dir::State=$CACHE/apt/state" -o "Dir::Cache=$CACHE/apt/cache"
  -o "Dir::Etc::SourceList=$CACHE/apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1")

need_update=0
for label in ${KERNELS//,/ }; do
  [ -f "$CACHE/kernels/$label/ready" ] || need_update=1
done
if [ "$need_update" = 1 ]; then
  uri=$(archive_uri)
  : > "$CACHE/apt/sources.list"
  for label in ${KERNELS//,/ }; do
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $(suite_of "$label") main" >> "$CACHE/apt/sources.list"
  done
  "${APT[@]}" update >&2
fi

for label in ${KERNELS//,/ }; do
  dir="$CACHE/kernels/$label"
  if [ ! -f "$dir/ready" ]; then
    suite=$(suite_of "$label")
    # The metapackage's dependency in that suite names the concrete image package.
    pkg=$("${APT[@]/apt-get/apt-cache}" -o "APT::Default-Release=$suite" depends "linux-image-cloud-amd64/$suite" 2>/dev/null \
      | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || { echo "cannot resolve linux-image-cloud-amd64 in $suite" >&2; exit 1; }
    (cd "$CACHE/debs" && ls "${pkg}"_*.deb >/dev/null 2>&1 || "${APT[@]}" download "$pkg/$suite" >&2)
    rm -rf "$dir" && mkdir -p "$dir/root"
    dpkg-deb -x "$(ls "$CACHE/debs/${pkg}"_*.deb | head -n1)" "$dir/root"
    echo "$pkg" > "$dir/package"
    touch "$dir/ready"
  fi
  vmlinuz=$(ls "$dir"/root/boot/vmlinuz-* | head -n1)
  moddir=$(ls -d "$dir"/root/lib/modules/* 2>/dev/null || ls -d "$dir"/root/usr/lib/modules/*)
  printf '%s\t%s\t%s\n' "$label" "$vmlinuz" "$moddir"
done
