#!/usr/bin/env python3
"""Writes a guest initramfs (cpio newc, gzip) for one kernel.

Contents: static busybox with its applets in /bin, the kernel modules the guest needs
(a virtio disk; ext4 when it is a module) with their dependencies from modules.dep,
decompressed so that busybox insmod loads them, in load order in /lib/ktm/modules.order;
the test binaries in /tests (run order in /tests/.order, debug info stripped), the ktm
binary as /bin/ktm when given, /init and the marker functions it sources
(/lib/ktm/markers.sh, from --markers, default markers.sh beside --init).

A busybox of another architecture than this machine's (the arm64 guests') cannot list its
applets here: then /bin has only busybox and sh, and /init installs the applets' links
first thing (busybox --install -s). Binaries of another architecture are stripped with
that architecture's binutils (aarch64-linux-gnu-strip), else left as they are.

usage: build-initramfs.py --moddir DIR --init FILE --out FILE [--modules "a b"]
                          [--busybox PATH] [--markers FILE] [--ktm-bin PATH] NAME=PATH...
"""
import argparse
import gzip
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile

DEFAULT_MODULES = "virtio_pci virtio_blk ext4"


def norm(name):
    return name.replace("-", "_")


def modname(path):
    return norm(re.sub(r"\.ko(\.(xz|zst|gz))?$", "", os.path.basename(path)))


def module_closure(moddir, wanted):
    """Module files to load, dependencies first, for the wanted module names."""
    deps, builtin, aliases, softdeps = {}, set(), {}, {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            if ":" not in line:
                continue
            path, rest = line.split(":", 1)
            deps[modname(path)] = (path, rest.split())
    try:
        with open(os.path.join(moddir, "modules.builtin")) as f:
            builtin = {modname(line.strip()) for line in f if line.strip()}
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(moddir, "modules.alias")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "alias":
                    aliases.setdefault(parts[1], norm(parts[2]))
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(moddir, "modules.softdep")) as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[0] == "softdep":
                    pre, mode = [], None
                    for p in parts[2:]:
                        if p in ("pre:", "post:"):
                            mode = p
                        elif mode == "pre:":
                            pre.append(p)
                    softdeps[norm(parts[1])] = pre
    except FileNotFoundError:
        pass

    order, seen = [], set()

    def add(name, required):
        name = norm(name)
        if name not in deps:
            name = aliases.get(name, name)
        if name in seen:
            return
        seen.add(name)
        if name not in deps:
            if name not in builtin and required:
                sys.exit(f"build-initramfs: module {name} is neither in modules.dep nor built in ({moddir})")
            return
        for soft in softdeps.get(name, []):
            add(soft, False)
        path, needs = deps[name]
        for d in needs:
            add(modname(d), True)
        order.append(os.path.join(moddir, path))

    for w in wanted:
        add(w, True)
    return order


def read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-qdc", path], check=True, capture_output=True).stdout
    return data


EM_NAMES = {62: "x86_64", 183: "aarch64"}


def elf_machine(path):
    """e_machine of an ELF file (62 x86-64, 183 aarch64), None if not ELF."""
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        return None
    return struct.unpack_from("<H", head, 18)[0]


def native(path):
    """Whether the ELF file is of this machine's architecture (that of the running python)."""
    return elf_machine(path) == elf_machine(os.path.realpath(sys.executable))


def strip_tool(path):
    """The strip that understands the binary, or None."""
    if native(path):
        return shutil.which("strip")
    arch = EM_NAMES.get(elf_machine(path))
    return shutil.which(f"{arch}-linux-gnu-strip") if arch else None


def is_static(path):
    """An ELF executable without a program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", ph, i * phentsize)[0] != 3 for i in range(phnum))


class Cpio:
    """A cpio newc archive written entry by entry."""

    def __init__(self, out):
        self.out, self.ino = out, 1000

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        self.ino += 1
        name_b = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0]
        hdr = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.out.write(hdr + name_b + b"\0" * ((-len(hdr) - len(name_b)) % 4))
        self.out.write(data + b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor):
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def trailer(self):
        self._entry("TRAILER!!!", 0)


def stripped(path):
    """The binary without debug info (smaller initramfs, less guest RAM)."""
    with tempfile.NamedTemporaryFile(delete=False) as t:
        tmp = t.name
    try:
        strip = strip_tool(path)
        if strip:
            subprocess.run([strip, "--strip-debug", "-o", tmp, path], check=True)
            with open(tmp, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(tmp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moddir", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--modules", default=DEFAULT_MODULES)
    ap.add_argument("--ktm-bin")
    ap.add_argument("--busybox", default=shutil.which("busybox") or "/bin/busybox")
    ap.add_argument("--markers", help="the marker functions, default markers.sh beside --init")
    ap.add_argument("tests", nargs="*", help="NAME=PATH")
    a = ap.parse_args()
    markers = a.markers or os.path.join(os.path.dirname(os.path.abspath(a.init)), "markers.sh")

    if not is_static(a.busybox):
        sys.exit(f"build-initramfs: {a.busybox} is not static (apt-get install busybox-static)")
    if native(a.busybox):
        applets = subprocess.run([a.busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    else:
        applets = ["sh"]  # /init runs `busybox --install -s /bin` for the others
    machine = elf_machine(a.busybox)
    mods = module_closure(a.moddir, a.modules.split())

    tmp = a.out + ".tmp"
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        c = Cpio(gz)
        for d in ["bin", "sbin", "dev", "proc", "sys", "tmp", "run", "root", "mnt", "mnt/data",
                  "lib", "lib/ktm", "lib/ktm/modules", "tests", "etc"]:
            c.dir(d)
        c.chardev("dev/console", 5, 1)
        c.chardev("dev/null", 1, 3)
        with open(a.busybox, "rb") as f:
            c.file("bin/busybox", f.read(), 0o755)
        for app in applets:
            if app != "busybox":
                c.symlink("bin/" + app, "busybox")
        names = []
        for m in mods:
            name = modname(m)
            names.append(name)
            c.file(f"lib/ktm/modules/{name}.ko", read_module(m))
        c.file("lib/ktm/modules.order", "".join(n + "\n" for n in names).encode())
        if a.ktm_bin:
            if not is_static(a.ktm_bin):
                sys.exit(f"build-initramfs: {a.ktm_bin} is not statically linked")
            if elf_machine(a.ktm_bin) != machine:
                sys.exit(f"build-initramfs: {a.ktm_bin} is not for the busybox's architecture")
            c.file("bin/ktm", stripped(a.ktm_bin), 0o755)
        order = []
        for spec in a.tests:
            name, _, path = spec.partition("=")
            if not is_static(path):
                sys.exit(f"build-initramfs: {path} is not statically linked (build with -C target-feature=+crt-static)")
            if elf_machine(path) != machine:
                sys.exit(f"build-initramfs: {path} is not for the busybox's architecture "
                         f"({EM_NAMES.get(elf_machine(path), elf_machine(path))}, busybox {EM_NAMES.get(machine, machine)})")
            c.file("tests/" + name, stripped(path), 0o755)
            order.append(name)
        c.file("tests/.order", "".join(n + "\n" for n in order).encode())
        with open(a.init, "rb") as f:
            c.file("init", f.read(), 0o755)
        with open(markers, "rb") as f:
            c.file("lib/ktm/markers.sh", f.read())
        c.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        c.file("etc/group", b"root:x:0:\n")
        c.trailer()
    os.replace(tmp, a.out)
    print(f"build-initramfs: {a.out}: {os.path.getsize(a.out) >> 10} KiB, modules: {' '.join(names) or 'none'}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
