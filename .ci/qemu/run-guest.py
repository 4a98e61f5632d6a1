#!/usr/bin/env python3
"""Boots one QEMU guest on a fresh ext4 disk, records its serial console and bounds it.

The console goes to LOG; progress (KTM-BEGIN/END, test results) to stderr prefixed with
the column name, or everything with --verbose. Writes LOG.meta (key=value: column, kind,
wall_s, timed_out, qemu_rc, mem_mib, accel) for summarize.py. Exits 0 when QEMU exited
by itself within the timeout; whether the tests passed is judged from the log later.

The guest is x86-64 (qemu-system-x86_64, console ttyS0) or, with --arch arm64, aarch64
(qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on, console ttyAMA0; always TCG here).

usage: run-guest.py --column C --label L --kernel VMLINUZ --initrd INITRD --log LOG
                    [--arch amd64|arm64]
                    [--mem MiB] [--smp N] [--accel tcg|kvm] [--tcg-thread single|multi]
                    [--append KERNEL_ARGS] [--timeout S]
                    [--disk-mib N] [--disk-content DIR] [--root-image IMG]
                    [--env NAME=VALUE]... [--verbose]

--disk-content fills the data disk (/dev/vda) with a directory's files; --root-image
attaches an ext4 image as /dev/vdb with QEMU's snapshot=on (the guest may write to it; the
writes go to a temporary file and the image is left as it was): the podman guests' Debian
root (podman-root.sh, run-podman.sh).
"""
import argparse
import base64
import os
import re
import subprocess
import sys
import threading
import time

PROGRESS = re.compile(r"KTM-(BEGIN|END|FATAL|BOOT|MEM|DONE)|test result:|Kernel panic|panicked at|BUG:|Oops")


def make_disk(path, mib, content=None):
    """A sparse raw image with an ext4 file system that every kernel here mounts; with
    CONTENT, a directory whose files it starts with (mkfs.ext4 -d)."""
    if os.path.exists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.truncate(mib << 20)
    base = ["mkfs.ext4", "-q", "-F", "-L", "ktm-data", "-E", "lazy_itable_init=0,lazy_journal_init=0"]
    if content:
        base += ["-d", content]
    # Newer e2fsprogs enable features that 5.10 cannot mount; older ones do not know them.
    for extra in (["-O", "^orphan_file,^metadata_csum_seed"], ["-O", "^metadata_csum_seed"], []):
        r = subprocess.run(base + extra + [path], capture_output=True, text=True)
        if r.returncode == 0:
            return
    sys.exit(f"run-guest: mkfs.ext4 failed: {r.stderr.strip()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--column", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--arch", choices=["amd64", "arm64"], default="amd64",
                    help="guest architecture (Debian's name)")
    ap.add_argument("--mem", type=int, default=1024)
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--accel", default="tcg")
    ap.add_argument("--tcg-thread", choices=["single", "multi"], default="single",
                    help="TCG threading: single (one host thread for all vCPUs, the default: see "
                         "README.md, the emulator text-poke fault) or multi (one per vCPU)")
    ap.add_argument("--append", default="", help="extra kernel command line")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--disk-mib", type=int, default=2048)
    ap.add_argument("--disk-content", help="directory whose files the data disk starts with")
    ap.add_argument("--root-image", help="ext4 image attached as the second disk, snapshot=on")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    disk = a.log + ".disk.img"
    make_disk(disk, a.disk_mib, a.disk_content)
    env_block = "".join(e + "\n" for e in a.env)
    console = {"amd64": "ttyS0", "arm64": "ttyAMA0"}[a.arch]
    append = f"console={console} panic=-1 quiet loglevel=4 ktm.label={a.label}"
    if a.append:
        append += " " + a.append
    if env_block:
        append += " ktm.env=" + base64.b64encode(env_block.encode()).decode()
    if len(append) > 2000:
        sys.exit("run-guest: kernel command line too long (env too large)")
    accel = a.accel + (f",thread={a.tcg_thread}" if a.accel == "tcg" else "")
    if a.arch == "arm64":
        # pauth-impdef: QEMU's own pointer-authentication hash instead of the architected
        # QARMA, which TCG computes slowly (the guest boots in 4-6 s instead of about 21 s).
        machine = ["qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on"]
    else:
        machine = ["qemu-system-x86_64"]
    cmd = machine + ["-accel", accel, "-m", str(a.mem), "-smp", str(a.smp),
           "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio", "-monitor", "none",
           "-kernel", a.kernel, "-initrd", a.initrd, "-append", append,
           "-drive", f"file={disk},if=virtio,format=raw,cache=unsafe"]
    if a.root_image:
        cmd += ["-drive", f"file={a.root_image},if=virtio,format=raw,cache=unsafe,snapshot=on"]
    if a.accel == "kvm":
        if a.arch != "amd64":
            sys.exit("run-guest: kvm only for amd64 guests on this machine")
        cmd += ["-cpu", "host"]

    tag = f"[{a.column}]"
    start = time.monotonic()
    timed_out = False
    with open(a.log, "wb") as log:
        log.write(("# " + " ".join(cmd) + "\n").encode())
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def pump():
            for raw in p.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip("\r\n")
                if a.verbose or PROGRESS.search(line):
                    print(f"{tag} {time.monotonic() - start:6.1f}s {line}", file=sys.stderr, flush=True)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        try:
            p.wait(timeout=a.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            p.kill()
            p.wait()
        t.join(timeout=10)
    wall = time.monotonic() - start
    os.unlink(disk)
    with open(a.log + ".meta", "w") as m:
        m.write(f"column={a.column}\nkind=guest\nlabel={a.label}\nwall_s={wall:.1f}\n"
                f"timed_out={int(timed_out)}\nqemu_rc={p.returncode}\nmem_mib={a.mem}\naccel={accel}\n"
                f"arch={a.arch}\n")
    status = "TIMEOUT" if timed_out else f"exited rc={p.returncode}"
    print(f"{tag} guest {status} after {wall:.1f}s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
