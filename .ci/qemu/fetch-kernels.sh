#!/usr/bin/env bash
# Fetches Debian's cloud kernels (linux-image-cloud-amd64 or -arm64 of one suite per label)
# with apt-get download, using a private apt state so the machine's own apt state is
# untouched, and unpacks them. The archive URI is taken from this machine's apt
# configuration; only the suite (and the architecture) varies. Everything is cached under
# $KTM_QEMU_CACHE: once a label is resolved, downloaded and unpacked, later runs touch no
# network.
#
# usage: fetch-kernels.sh [--refresh] LABEL...
#        fetch-kernels.sh --archive          prints the archive URI and exits
#   LABEL: 5.10, 6.1, 6.12, sid (amd64), or arm64-6.1, arm64-6.12, arm64-sid (arm64).
#   A numeric label is a kernel series, checked against what the suite's metapackage names;
#   "sid" is whatever the development suite (unstable) carries, Debian's newest kernel.
#   For an arm64 label, busybox-static:arm64 of the same suite is fetched and unpacked too
#   (the guest's busybox; amd64 guests use this machine's busybox-static).
#   --refresh   resolve the metapackages again (picks up a newer kernel ABI)
# env: KTM_QEMU_CACHE (default /var/cache/ktm-qemu)
#      KTM_QEMU_SUITES  label=suite overrides, e.g. "6.12=bookworm-backports" (the series of
#                       an arm64 label: "6.12=..." applies to arm64-6.12 unless it has its own)
#      KTM_QEMU_ARCHIVE archive URI to use instead of the one in the apt configuration
#      KTM_QEMU_KEYRING keyring for the archive (default debian-archive-keyring.gpg)
# prints one line per label:
#   LABEL<TAB>RELEASE<TAB>VMLINUZ<TAB>MODULES_DIR<TAB>ARCH<TAB>BUSYBOX
# ARCH is the Debian architecture (amd64, arm64), BUSYBOX the static busybox for its
# initramfs.
set -euo pipefail
CACHE="${KTM_QEMU_CACHE:-/var/cache/ktm-qemu}"
KEYRING="${KTM_QEMU_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
refresh=0
print_archive=0
labels=()
for a in "$@"; do
  case "$a" in
    --refresh) refresh=1 ;;
    --archive) print_archive=1 ;;
    -*) echo "fetch-kernels.sh: unknown option $a" >&2; exit 2 ;;
    *) labels+=("$a") ;;
  esac
done
[ ${#labels[@]} -gt 0 ] || [ "$print_archive" = 1 ] || { echo "usage: fetch-kernels.sh [--refresh] LABEL..." >&2; exit 2; }

arch_of() { # label -> Debian architecture
  case "$1" in arm64-*) echo arm64 ;; *) echo amd64 ;; esac
}

suite_of() { # label -> suite: an override for the label, then for its series, then the default
  local kv series="${1#arm64-}"
  for kv in ${KTM_QEMU_SUITES:-}; do
    [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }
  done
  for kv in ${KTM_QEMU_SUITES:-}; do
    [ "${kv%%=*}" = "$series" ] && { echo "${kv#*=}"; return; }
  done
  case "$series" in
    5.10) echo bullseye ;;
    6.1) echo bookworm ;;
    6.12) echo trixie ;;
    sid) echo sid ;;
    *) echo "fetch-kernels.sh: no suite known for kernel $1 (set KTM_QEMU_SUITES=\"$1=SUITE\")" >&2; return 1 ;;
  esac
}

# URI of the main Debian archive in this machine's apt sources (deb822 or one-line style):
# an enabled `deb` entry with component main and a plain release suite (no -security,
# -updates, -backports).
archive_uri() {
  if [ -n "${KTM_QEMU_ARCHIVE:-}" ]; then echo "$KTM_QEMU_ARCHIVE"; return; fi
  python3 - <<'PY'
import glob, re, sys
cands = []
def consider(types, uris, suites, comps):
    if "deb" not in types or "main" not in comps:
        return
    if not any(re.fullmatch(r"[a-z]+", s) for s in suites):
        return
    for u in uris:
        if re.match(r"https?://", u) and "security" not in u:
            cands.append(u.rstrip("/"))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path, errors="replace").read()):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, val = line.partition(":")
            key = key.strip().lower()
            fields[key] = val.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        consider(fields.get("types", "").split(), fields.get("uris", "").split(),
                 fields.get("suites", "").split(), fields.get("components", "").split())
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(line) >= 4:
            consider([line[0]], [line[1]], [line[2]], line[3:])
if not cands:
    sys.exit("fetch-kernels.sh: no Debian archive URI (deb, main, plain suite) in /etc/apt; set KTM_QEMU_ARCHIVE")
print(cands[0])
PY
}

apt_dir() { # suite arch -> the private apt state's directory (amd64's keep their old names)
  if [ "$2" = amd64 ]; then echo "$CACHE/apt/$1"; else echo "$CACHE/apt/$1-$2"; fi
}

apt_for() { # suite arch -> sets APT_GET / APT_CACHE arrays on a private state for that suite
  # and architecture (the archive's packages of ARCH are apt's native ones there)
  local d
  d="$(apt_dir "$1" "$2")"
  local opts=(-o "APT::Architecture=$2" -o "APT::Architectures=$2"
    -o "Dir::State=$d/state" -o "Dir::Cache=$d/cache"
    -o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=/dev/null"
    -o "Acquire::Languages=none" -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "APT::Get::List-Cleanup=false")
  mkdir -p "$d/state/lists/partial" "$d/cache/archives/partial"
  APT_GET=(apt-get -q "${opts[@]}")
  APT_CACHE=(apt-cache "${opts[@]}")
}

field() { # FIELD from `apt-cache show` text on stdin (first stanza)
  awk -v f="$1:" '$1 == f {sub(/^[^:]*: */, ""); print; exit} /^$/ {exit}'
}

updated=" "
update_for() { # suite arch -> apt-get update of the private state (once per run)
  local uri
  apt_for "$1" "$2"
  [[ "$updated" == *" $1-$2 "* ]] && return 0
  updated+="$1-$2 "
  uri=$(archive_uri)
  [ -r "$KEYRING" ] || { echo "fetch-kernels.sh: keyring $KEYRING missing (apt-get install debian-archive-keyring)" >&2; return 1; }
  echo "deb [arch=$2 signed-by=$KEYRING] $uri $1 main" > "$(apt_dir "$1" "$2")/sources.list"
  echo "fetch-kernels: apt-get update for $1 ($2)" >&2
  "${APT_GET[@]}" update >&2 || { echo "fetch-kernels.sh: apt-get update for $1 failed (is $1 signed by a key in $KEYRING?)" >&2; return 1; }
}

resolve() { # label suite arch -> writes $CACHE/resolved/LABEL: PACKAGE VERSION DEB [PART=DEB...]
  local label="$1" suite="$2" arch="$3" series="${1#arm64-}" meta pkg ver file part parts=()
  update_for "$suite" "$arch"
  meta=$("${APT_CACHE[@]}" show --no-all-versions "linux-image-cloud-$arch" 2>/dev/null | field Depends)
  pkg=$(tr ',|' '\n' <<<"$meta" | awk '{print $1}' | grep -m1 '^linux-image-[0-9]' || true)
  [ -n "$pkg" ] || { echo "fetch-kernels.sh: linux-image-cloud-$arch in $suite names no image package (Depends: $meta)" >&2; return 1; }
  if [[ "$series" =~ ^[0-9.]+$ ]] && ! [[ "$pkg" =~ ^linux-image-${series//./\\.}[.-] ]]; then
    echo "fetch-kernels.sh: $suite's cloud kernel is $pkg, not $label; set KTM_QEMU_SUITES=\"$label=SUITE\"" >&2
    return 1
  fi
  ver=$("${APT_CACHE[@]}" show --no-all-versions "$pkg" | field Version)
  file=$("${APT_CACHE[@]}" show --no-all-versions "$pkg" | field Filename)
  # Newer kernels (7.x in sid) split the image package: the kernel is in linux-binary-ABI,
  # modules.builtin, System.map and config in linux-base-ABI,
  # the modules in linux-modules-ABI, all of the same version, named in its Depends.
  for part in $("${APT_CACHE[@]}" show --no-all-versions "$pkg" | field Depends | tr ',|' '\n\n' |
    awk '{print $1}' | grep -E '^linux-(base|binary|modules)-[0-9]' || true); do
    parts+=("$part=$(basename "$("${APT_CACHE[@]}" show --no-all-versions "$part=$ver" | field Filename)")")
  done
  mkdir -p "$CACHE/resolved"
  printf '%s %s %s%s\n' "$pkg" "$ver" "$(basename "$file")" "${parts[*]/#/ }" > "$CACHE/resolved/$label"
  echo "fetch-kernels: $label = $pkg $ver ($suite)${parts[*]/#/ + }" >&2
}

mkdir -p "$CACHE/debs" "$CACHE/extract"
exec 9>"$CACHE/.lock"
flock 9

if [ "$print_archive" = 1 ]; then
  archive_uri
  exit 0
fi

download() { # package version deb-file: into $CACHE/debs unless there
  [ -s "$CACHE/debs/$3" ] && return 0
  local tmp
  tmp=$(mktemp -d "$CACHE/debs/.dl.XXXXXX")
  chmod 755 "$tmp"
  chown _apt "$tmp" 2>/dev/null || true # apt downloads as user _apt
  echo "fetch-kernels: downloading $1=$2" >&2
  (cd "$tmp" && "${APT_GET[@]}" download "$1=$2" >&2)
  mv "$tmp"/*.deb "$CACHE/debs/$3"
  rm -rf "$tmp"
}

# The guest's static busybox for a foreign architecture: busybox-static of the kernel's suite
# and architecture, resolved once (the name in $CACHE/resolved/busybox-SUITE-ARCH), downloaded
# and unpacked like the kernels. Sets BUSYBOX.
busybox_for() { # suite arch
  local res="$CACHE/resolved/busybox-$1-$2" pkg="" ver="" deb="" file dir f
  [ -s "$res" ] && read -r pkg ver deb < "$res"
  if [ "$refresh" = 1 ] || [ -z "$deb" ] || [ ! -s "$CACHE/debs/$deb" ]; then
    update_for "$1" "$2"
    pkg=busybox-static
    ver=$("${APT_CACHE[@]}" show --no-all-versions "$pkg" | field Version)
    file=$("${APT_CACHE[@]}" show --no-all-versions "$pkg" | field Filename)
    [ -n "$ver" ] && [ -n "$file" ] || { echo "fetch-kernels.sh: no $pkg for $2 in $1" >&2; return 1; }
    deb=$(basename "$file")
    mkdir -p "$CACHE/resolved"
    echo "$pkg $ver $deb" > "$res"
  fi
  apt_for "$1" "$2"
  download "$pkg" "$ver" "$deb"
  dir="$CACHE/extract/${deb%.deb}"
  if [ ! -d "$dir" ]; then
    tmp=$(mktemp -d "$CACHE/extract/.x.XXXXXX")
    dpkg-deb -x "$CACHE/debs/$deb" "$tmp"
    mv "$tmp" "$dir"
  fi
  BUSYBOX=""
  for f in "$dir/bin/busybox" "$dir/usr/bin/busybox"; do [ -f "$f" ] && BUSYBOX="$f"; done
  [ -n "$BUSYBOX" ] || { echo "fetch-kernels.sh: $deb has no bin/busybox" >&2; return 1; }
}

for label in "${labels[@]}"; do
  suite=$(suite_of "$label")
  arch=$(arch_of "$label")
  # Resolve when asked, when never resolved, or when a resolved package is not cached
  # (then the archive may hold a newer one).
  deb="" parts=()
  [ -s "$CACHE/resolved/$label" ] && read -r pkg ver deb parts_line < "$CACHE/resolved/$label" &&
    read -r -a parts <<<"${parts_line:-}"
  cached=1
  for f in "$deb" "${parts[@]#*=}"; do [ -n "$f" ] && [ -s "$CACHE/debs/$f" ] || cached=0; done
  if [ "$refresh" = 1 ] || [ "$cached" = 0 ]; then
    resolve "$label" "$suite" "$arch"
    parts_line=""
    read -r pkg ver deb parts_line < "$CACHE/resolved/$label"
    read -r -a parts <<<"${parts_line:-}"
  fi
  apt_for "$suite" "$arch"
  download "$pkg" "$ver" "$deb"
  for p in "${parts[@]}"; do download "${p%%=*}" "$ver" "${p#*=}"; done
  dir="$CACHE/extract/${deb%.deb}"
  if [ ! -d "$dir" ]; then
    tmp=$(mktemp -d "$CACHE/extract/.x.XXXXXX")
    for f in "$deb" "${parts[@]#*=}"; do dpkg-deb -x "$CACHE/debs/$f" "$tmp"; done
    # Debian's packages leave modules.dep to depmod in postinst: generate it here. depmod -b
    # looks in BASE/lib/modules, and newer packages ship usr/lib/modules.
    [ -d "$tmp/lib/modules" ] || ln -s usr/lib "$tmp/lib"
    for d in "$tmp"/lib/modules/*; do
      depmod -b "$tmp" "$(basename "$d")"
    done
    mv "$tmp" "$dir"
  fi
  vmlinuz="" moddir=""
  for f in "$dir"/boot/vmlinuz-*; do [ -f "$f" ] && vmlinuz="$f"; done
  for d in "$dir"/lib/modules/* "$dir"/usr/lib/modules/*; do [ -f "$d/modules.dep" ] && moddir="$d"; done
  # The split packages (linux-binary-ABI) put the kernel beside its modules.
  [ -z "$vmlinuz" ] && [ -n "$moddir" ] && [ -f "$moddir/vmlinuz" ] && vmlinuz="$moddir/vmlinuz"
  if [ -z "$vmlinuz" ] || [ -z "$moddir" ]; then
    echo "fetch-kernels.sh: $deb has no vmlinuz or modules.dep" >&2
    exit 1
  fi
  if [ "$arch" = amd64 ]; then
    # This machine's busybox-static (ensure-tools.sh installs it).
    BUSYBOX=$(command -v busybox || true)
    [ -n "$BUSYBOX" ] || { echo "fetch-kernels.sh: no busybox here (apt-get install busybox-static)" >&2; exit 1; }
  else
    busybox_for "$suite" "$arch"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$(basename "$moddir")" "$vmlinuz" "$moddir" "$arch" "$BUSYBOX"
done
