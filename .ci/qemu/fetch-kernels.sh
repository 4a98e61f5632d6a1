#!/usr/bin/env bash
# Fetches Debian's cloud kernels (linux-image-cloud-amd64 of one suite per label) with
# apt-get download, using a private apt state so the machine's own apt state is untouched,
# and unpacks them. The archive URI is taken from this machine's apt configuration; only the
# suite varies. Everything is cached under $KTM_QEMU_CACHE: once a label is resolved,
# downloaded and unpacked, later runs touch no network.
#
# usage: fetch-kernels.sh [--refresh] LABEL...      (LABEL: 5.10, 6.1, 6.12, sid)
#   A numeric label is a kernel series, checked against what the suite's metapackage names;
#   "sid" is whatever the development suite (unstable) carries, Debian's newest kernel.
#   --refresh   resolve the metapackages again (picks up a newer kernel ABI)
# env: KTM_QEMU_CACHE (default /var/cache/ktm-qemu)
#      KTM_QEMU_SUITES  label=suite overrides, e.g. "6.12=bookworm-backports"
#      KTM_QEMU_ARCHIVE archive URI to use instead of the one in the apt configuration
#      KTM_QEMU_KEYRING keyring for the archive (default debian-archive-keyring.gpg)
# prints one line per label: LABEL<TAB>RELEASE<TAB>VMLINUZ<TAB>MODULES_DIR
set -euo pipefail
CACHE="${KTM_QEMU_CACHE:-/var/cache/ktm-qemu}"
KEYRING="${KTM_QEMU_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
refresh=0
labels=()
for a in "$@"; do
  case "$a" in
    --refresh) refresh=1 ;;
    -*) echo "fetch-kernels.sh: unknown option $a" >&2; exit 2 ;;
    *) labels+=("$a") ;;
  esac
done
[ ${#labels[@]} -gt 0 ] || { echo "usage: fetch-kernels.sh [--refresh] LABEL..." >&2; exit 2; }

suite_of() {
  local kv
  for kv in ${KTM_QEMU_SUITES:-}; do
    [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }
  done
  case "$1" in
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

apt_for() { # suite -> sets APT_GET / APT_CACHE arrays on a private state for that suite
  local d="$CACHE/apt/$1"
  local opts=(-o "Dir::State=$d/state" -o "Dir::Cache=$d/cache"
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

resolve() { # label suite -> writes $CACHE/resolved/LABEL: PACKAGE VERSION DEB [PART=DEB...]
  local label="$1" suite="$2" uri meta pkg ver file part parts=()
  uri=$(archive_uri)
  apt_for "$suite"
  [ -r "$KEYRING" ] || { echo "fetch-kernels.sh: keyring $KEYRING missing (apt-get install debian-archive-keyring)" >&2; return 1; }
  echo "deb [arch=amd64 signed-by=$KEYRING] $uri $suite main" > "$CACHE/apt/$suite/sources.list"
  echo "fetch-kernels: apt-get update for $suite" >&2
  "${APT_GET[@]}" update >&2 || { echo "fetch-kernels.sh: apt-get update for $suite failed (is $suite signed by a key in $KEYRING?)" >&2; return 1; }
  meta=$("${APT_CACHE[@]}" show --no-all-versions linux-image-cloud-amd64 2>/dev/null | field Depends)
  pkg=$(tr ',|' '\n' <<<"$meta" | awk '{print $1}' | grep -m1 '^linux-image-[0-9]' || true)
  [ -n "$pkg" ] || { echo "fetch-kernels.sh: linux-image-cloud-amd64 in $suite names no image package (Depends: $meta)" >&2; return 1; }
  if [[ "$label" =~ ^[0-9.]+$ ]] && ! [[ "$pkg" =~ ^linux-image-${label//./\\.}[.-] ]]; then
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

for label in "${labels[@]}"; do
  suite=$(suite_of "$label")
  # Resolve when asked, when never resolved, or when a resolved package is not cached
  # (then the archive may hold a newer one).
  deb="" parts=()
  [ -s "$CACHE/resolved/$label" ] && read -r pkg ver deb parts_line < "$CACHE/resolved/$label" &&
    read -r -a parts <<<"${parts_line:-}"
  cached=1
  for f in "$deb" "${parts[@]#*=}"; do [ -n "$f" ] && [ -s "$CACHE/debs/$f" ] || cached=0; done
  if [ "$refresh" = 1 ] || [ "$cached" = 0 ]; then
    resolve "$label" "$suite"
    parts_line=""
    read -r pkg ver deb parts_line < "$CACHE/resolved/$label"
    read -r -a parts <<<"${parts_line:-}"
  fi
  apt_for "$suite"
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
  printf '%s\t%s\t%s\t%s\n' "$label" "$(basename "$moddir")" "$vmlinuz" "$moddir"
done
