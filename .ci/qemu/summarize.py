#!/usr/bin/env python3
"""Judges every run (guest or host) from its log and .meta, prints a status table and the
kernel matrix, writes the matrix as Markdown, and exits 1 if any run failed.

A run passes when it was not timed out, printed no KTM-FATAL and no kernel panic, printed a
KTM-BEGIN and a `KTM-END NAME rc=0` for every expected binary, and (guests) KTM-DONE.
Matrix cells come from lines `KTM-MATRIX<TAB>row<TAB>cell` anywhere in a run's output.

A run that was retried (see retry_reason: the emulator's text-poke fault, or a guest that
never reached its first test binary) says so in its status and in its kernel cell:
"passed on retry: REASON"; the first boot's log is kept beside the retry's.

usage: summarize.py --markdown OUT.md LOG...     (one LOG per column, in column order)
       summarize.py --emulator-fault LOG         exit 0 iff LOG shows the emulator's text-poke
                                                 fault
       summarize.py --retry-reason LOG           prints why the guest of LOG is booted once more
                                                 and exits 0, or exits 1 (run-matrix.sh)
       summarize.py --closing STEPS              the closing line of .ci/test (see closing())
"""
import argparse
import re
import sys

# The markers, as markers.sh prints them (test_summarize.py's Markers checks the two agree).
MATRIX = re.compile(r"KTM-MATRIX\t([^\t]+)\t(.*)")
BEGIN = re.compile(r"KTM-BEGIN (\S+)")
END = re.compile(r"KTM-END (\S+) rc=(-?\d+)")
RESULT = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed")
PANIC = re.compile(r"Kernel panic - not syncing|BUG: |general protection fault|Oops: ")
RETRY_NOTE = "passed on retry"


def emulator_fault(lines):
    """The signature of QEMU's multi-threaded TCG executing a stale translation of kernel text
    that the other vCPU has just patched (x86 text_poke_bp: int3, sync IPI, new bytes, sync
    IPI): `Oops: int3` with a kernel-mode RIP, then the panic it escalates to. Anything else
    (a NULL dereference, a BUG, a general protection fault) is not this fault."""
    for i, line in enumerate(lines):
        if not re.search(r"Oops: int3\b", line):
            continue
        rest = lines[i + 1:i + 120]
        rip = next((l for l in rest if re.search(r"RIP: 0010:", l)), None)
        if rip is None:
            continue
        if any(re.search(r"Kernel panic - not syncing: Fatal exception", l) for l in rest):
            return True
    return False


def retry_reason(lines, meta):
    """Why a guest run deserves one more boot, or None. Two causes lie outside the code under
    test: the emulator's text-poke fault (emulator_fault), and a guest that never began its
    first test binary (no KTM-BEGIN) without saying why (no KTM-FATAL: the init's own
    checks, a missing disk say, are deterministic and fail at once). The reason names what
    the first boot showed, and the summary prints it: a retry is recorded, never hidden."""
    if emulator_fault(lines):
        return "emulator text-poke fault"
    if any(BEGIN.search(l) or "KTM-FATAL" in l for l in lines):
        return None
    panic = next((l.strip() for l in lines if PANIC.search(l) and "KTM-" not in l), None)
    if panic:
        what = "kernel: " + re.sub(r"^\[\s*[\d.]+\]\s*", "", panic)[:100]
    elif meta.get("timed_out") == "1":
        what = f"timed out after {meta.get('wall_s', '?')}s"
    elif not any(l.startswith("KTM-BOOT ") for l in lines):
        what = "no KTM-BOOT: the init never ran"
    else:
        what = "booted, then stopped"
    return f"guest never reached its first test ({what})"


def read_meta(log):
    meta = {}
    try:
        with open(log + ".meta") as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                meta[k] = v
    except FileNotFoundError:
        pass
    return meta


def judge(log):
    meta = read_meta(log)
    run = {"column": meta.get("column", log), "meta": meta, "cells": {}, "rows": [], "begun": [],
           "ends": {}, "passed": 0, "failed": 0, "fatal": None, "panic": None, "done": False,
           "release": meta.get("release", "?"), "mem": "", "lines": []}
    current = None
    with open(log, errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\r\n")
            run["lines"].append(line)
            m = MATRIX.search(line)
            if m:
                row, cell = m.group(1), m.group(2).strip()
                if row not in run["cells"]:
                    run["rows"].append(row)
                    run["cells"][row] = []
                if cell not in run["cells"][row]:
                    run["cells"][row].append(cell)
                continue
            if m := BEGIN.search(line):
                current = m.group(1)
                run["begun"].append(current)
            elif m := END.search(line):
                run["ends"][m.group(1)] = int(m.group(2))
                current = None
            elif m := RESULT.search(line):
                run["passed"] += int(m.group(1))
                run["failed"] += int(m.group(2))
            elif "KTM-FATAL" in line:
                run["fatal"] = line.split("KTM-FATAL", 1)[1].strip()
            elif "KTM-DONE" in line:
                run["done"] = True
            elif line.startswith("KTM-BOOT "):
                run["release"] = line.split()[1]
            elif line.startswith("KTM-MEM "):
                kb = dict(re.findall(r"(\w+):(\d+)", line))
                if "MemTotal" in kb:
                    run["mem"] = f"{int(kb['MemTotal']) >> 10} MiB ({int(kb.get('MemAvailable', 0)) >> 10} available)"
            elif PANIC.search(line) and not run["panic"] and "KTM-" not in line:
                run["panic"] = line.strip()
    expected = [b for b in meta.get("binaries", "").split(",") if b]
    problems = []
    if meta.get("timed_out") == "1":
        problems.append(f"TIMEOUT after {meta.get('wall_s')}s" + (f" in {current}" if current else ""))
    if run["fatal"]:
        problems.append("FATAL: " + run["fatal"])
    if run["panic"]:
        problems.append("PANIC: " + run["panic"])
    failed = [b for b, rc in run["ends"].items() if rc != 0]
    if failed:
        problems.append("FAILED: " + " ".join(f"{b} (rc={run['ends'][b]})" for b in failed))
    # Binaries that began but never ended (the guest panicked, hung or was killed in them)
    # and binaries that never began count as well as those that ended badly.
    missing = [b for b in expected if b not in run["ends"]]
    missing += [b for b in run["begun"] if b not in run["ends"] and b not in missing]
    if missing:
        problems.append("no KTM-END for " + " ".join(missing))
    if meta.get("kind") == "guest" and not run["done"] and not problems:
        problems.append("no KTM-DONE")
    if not expected and not run["ends"]:
        problems.append("no test binary ran")
    # Every binary that did not report cleanly counts as at least one failed test: one that
    # ended with rc != 0 without a libtest line counting a failure (it died, or failed
    # outside a test), and one that never ended or never began.
    run["failed"] += sum(1 for b in failed if section_failed(run["lines"], b) == 0)
    run["failed"] += len(missing)
    run["problems"] = problems
    run["retried"] = meta.get("retried", "")
    run["current"] = current
    return run


def section(lines, name):
    out, inside = [], False
    for line in lines:
        if BEGIN.search(line) and BEGIN.search(line).group(1) == name:
            inside = True
        if inside:
            out.append(line)
        if inside and END.search(line) and END.search(line).group(1) == name:
            break
    return out


def section_failed(lines, name):
    """Failed tests that libtest reported for one binary."""
    return sum(int(m.group(2)) for line in section(lines, name) if (m := RESULT.search(line)))


def status_of(r):
    if r["problems"]:
        return "FAIL" + (f" (after a retry: {r['retried']})" if r["retried"] else "")
    return "ok" + (f" ({RETRY_NOTE}: {r['retried']})" if r["retried"] else "")


def kernel_cell(r):
    return r["release"] + (f" ({RETRY_NOTE}: {r['retried']})" if r["retried"] and not r["problems"] else "")


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: " | ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([fmt(header), "-+-".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def md_escape(s):
    return s.replace("|", "\\|")


GO_TEST = re.compile(r"^\s*--- (PASS|FAIL): ")
GO_PKG = re.compile(r"^(ok|FAIL|---? FAIL)\s+\S+")
UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ")
UNITTEST_BAD = re.compile(r"^FAILED \((.*)\)")
COUNTS = re.compile(r"^(\d+) passed, (\d+) failed$")
MATRIX_LINE = re.compile(r"^matrix: (\d+) passed, (\d+) failed$")
CARGO_RUNNING = re.compile(r"^\s*Running (\S.*) \(")
CARGO_FAILED = re.compile(r"^error: test failed, to rerun pass|process didn't exit successfully: ")


def count_step(kind, rc, lines):
    """(passed, failed, note) of one step of .ci/test from its output and exit status.

    kinds: check     - no tests (fmt, clippy): 0 passed, and 1 failed when rc != 0
           libtest   - cargo test: the `test result:` lines, plus 1 failed for every test
                       binary cargo ran (`Running ...`) whose process failed without a
                       failed test in its result line (crashed, killed, no result line)
           unittest  - python3 -m unittest: `Ran N tests`, `FAILED (failures=F, errors=E)`
           matrix    - run-matrix.sh: its closing `matrix: N passed, N failed` line
           gotest    - go test -v: `--- PASS:` / `--- FAIL:` lines (a failed package with
                       no `--- FAIL:` line counts 1 failed)
           counts    - any command that prints `N passed, N failed` as a line (the last wins)
    Whatever the kind, a step that exited non-zero counts at least 1 failed: the closing
    line's failed count is 0 exactly when every step succeeded."""
    p = f = 0
    note = ""
    if kind == "check":
        pass
    elif kind == "libtest":
        binaries = []  # [name, passed, failed, process failed]
        for line in lines:
            if m := CARGO_RUNNING.match(line):
                binaries.append([m.group(1), 0, 0, False])
            elif m := RESULT.search(line):
                if not binaries:
                    binaries.append(["?", 0, 0, False])
                binaries[-1][1] += int(m.group(1))
                binaries[-1][2] += int(m.group(2))
            elif CARGO_FAILED.search(line) and binaries:
                binaries[-1][3] = True
        # A binary whose process failed with no failed test reported (it crashed, was
        # killed, or failed outside libtest). One that exits 0 without a libtest line
        # (a harness = false bench) passes.
        died = [b[0] for b in binaries if b[3] and b[2] == 0]
        p = sum(b[1] for b in binaries)
        f = sum(b[2] for b in binaries) + len(died)
        if died:
            note = "failed without a failed test: " + ", ".join(died)
    elif kind == "unittest":
        for line in lines:
            if m := UNITTEST_RAN.match(line):
                p += int(m.group(1))
            elif m := UNITTEST_BAD.match(line):
                bad = sum(int(n) for k, n in re.findall(r"(\w+)=(\d+)", m.group(1)) if k in ("failures", "errors"))
                p -= bad
                f += bad
    elif kind == "matrix":
        found = [MATRIX_LINE.match(line) for line in lines]
        found = [m for m in found if m]
        if found:
            p, f = int(found[-1].group(1)), int(found[-1].group(2))
        else:
            note = "no `matrix:` line"
    elif kind == "gotest":
        for line in lines:
            if m := GO_TEST.match(line):
                if m.group(1) == "PASS":
                    p += 1
                else:
                    f += 1
        if f == 0 and any(l.startswith("FAIL") for l in lines):
            f = 1
    elif kind == "counts":
        found = [m for m in (COUNTS.match(line.strip()) for line in lines) if m]
        if found:
            p, f = int(found[-1].group(1)), int(found[-1].group(2))
        else:
            note = "no `N passed, N failed` line"
    else:
        raise SystemExit(f"summarize.py: unknown step kind {kind}")
    if rc != 0 and f == 0:
        f = 1
        note = note or f"exit status {rc} without a counted failure"
    return p, f, note


DIGEST_LINES = 40  # of one failed step, in the closing digest
DIGEST_RUN_TAIL = 25  # of one failed guest run's block in the matrix step's output


def failure_digest(kind, lines):
    """The lines of a failed step's output that say what failed, for the closing digest:
    a CI log is often read only from its end, and a step's own report scrolls far above it.
    Never more than DIGEST_LINES lines."""
    out = []
    if kind == "matrix":
        # summarize.py's blocks: `===== COLUMN: problems`, then the failing part of its log.
        blocks, cur = [], None
        for line in lines:
            if line.startswith("===== "):
                cur = [line]
                blocks.append(cur)
            elif line.startswith("Runs:") or line.startswith("failed runs:"):
                cur = None
            elif cur is not None:
                cur.append(line)
        for b in blocks:
            body = [l for l in b[1:] if l.strip()]
            out += [b[0]] + body[-DIGEST_RUN_TAIL:]
        out += [l for l in lines if l.startswith("failed runs:") or l.startswith("run-matrix: ") and "fail" in l]
    elif kind == "libtest":
        for i, l in enumerate(lines):
            if re.match(r"^test .* \.\.\. FAILED$", l) or re.match(r"^---- .* ----$", l) \
                    or CARGO_FAILED.search(l) or l.startswith("error"):
                out.append(l)
            elif l.startswith("thread '"):
                # The panic and its message (an assertion's left and right).
                out += [l] + [m for m in lines[i + 1:i + 4] if m.strip() and not m.startswith("stack backtrace")]
    elif kind == "gotest":
        out = [l for l in lines if GO_TEST.match(l) and "FAIL" in l or l.strip().startswith("FAIL")
               or re.search(r"_test\.go:\d+:", l) and "FAIL" not in l and "INFO" not in l and "WARN" not in l]
    elif kind == "counts":
        out = [l for l in lines if l.startswith("FAIL") or l.startswith("not ok")]
    if not out:
        out = [l for l in lines if l.strip()][-10:]
    return out[-DIGEST_LINES:] if kind != "matrix" else out[:DIGEST_LINES * 3]


def closing(steps_file):
    """Reads STEPS (one line per step of .ci/test: NAME<TAB>KIND<TAB>RC<TAB>LOG), prints a
    digest of what failed, one line per step and `total: N passed, N failed`, and exits 1 iff
    the total has a failure."""
    total_p = total_f = 0
    with open(steps_file) as f:
        steps = [line.rstrip("\n").split("\t", 3) for line in f if line.strip()]
    summary, digest = [], []
    for name, kind, rc, log in steps:
        try:
            with open(log, errors="replace") as f:
                lines = [l.rstrip("\r\n") for l in f]
        except FileNotFoundError:
            lines = []
        p, fl, note = count_step(kind, int(rc), lines)
        total_p += p
        total_f += fl
        summary.append(f"step {name}: rc={rc}, {p} passed, {fl} failed" + (f" ({note})" if note else ""))
        if fl:
            digest += [f"--- what failed in step {name}:"] + failure_digest(kind, lines)
    if digest:
        print("\n".join(digest) + "\n")
    print("\n".join(summary))
    print(f"total: {total_p} passed, {total_f} failed")
    return 1 if total_f else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--emulator-fault":
        with open(sys.argv[2], errors="replace") as f:
            sys.exit(0 if emulator_fault([l.rstrip("\r\n") for l in f]) else 1)
    if len(sys.argv) == 3 and sys.argv[1] == "--retry-reason":
        with open(sys.argv[2], errors="replace") as f:
            reason = retry_reason([l.rstrip("\r\n") for l in f], read_meta(sys.argv[2]))
        if reason:
            print(reason)
        sys.exit(0 if reason else 1)
    if len(sys.argv) == 3 and sys.argv[1] == "--closing":
        sys.exit(closing(sys.argv[2]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--markdown", required=True)
    ap.add_argument("logs", nargs="+")
    a = ap.parse_args()
    runs = [judge(log) for log in a.logs]

    # Details of what went wrong, before the tables.
    for r in runs:
        if not r["problems"]:
            continue
        print(f"\n===== {r['column']}: {'; '.join(r['problems'])}")
        failed = [b for b, rc in r["ends"].items() if rc != 0]
        if failed:
            for b in failed:
                sec = section(r["lines"], b)
                print(f"----- {r['column']} / {b} (last {min(len(sec), 120)} of {len(sec)} lines)")
                print("\n".join(sec[-120:]))
        else:
            print(f"----- {r['column']}: last 60 lines of {r['meta'].get('log', 'the log')}")
            print("\n".join(r["lines"][-60:]))

    print("\nRuns:")
    print(table(["column", "kernel", "status", "tests", "wall", "memory"],
                [[r["column"], r["release"], status_of(r),
                  f"{r['passed']} passed, {r['failed']} failed", r["meta"].get("wall_s", "?") + "s",
                  r["mem"]]
                 for r in runs]))

    rows = []
    for r in runs:
        for row in r["rows"]:
            if row not in rows:
                rows.append(row)
    cell = lambda r, row: " / ".join(r["cells"].get(row, [])) or "-"
    cols = [r["column"] for r in runs]
    print("\nKernel matrix:")
    if rows:
        print(table(["row"] + cols, [["kernel"] + [kernel_cell(r) for r in runs]] +
                    [[row] + [cell(r, row) for r in runs] for row in rows]))
    else:
        print("(no KTM-MATRIX lines)")
    with open(a.markdown, "w") as f:
        f.write("| metric or probe | " + " | ".join(md_escape(c) for c in cols) + " |\n")
        f.write("|---|" + "---|" * len(cols) + "\n")
        f.write("| kernel | " + " | ".join(md_escape(kernel_cell(r)) for r in runs) + " |\n")
        for row in rows:
            f.write(f"| {md_escape(row)} | " + " | ".join(md_escape(cell(r, row)) for r in runs) + " |\n")
    print(f"\n(matrix written to {a.markdown})")

    bad = [r["column"] for r in runs if r["problems"]]
    total_p = sum(r["passed"] for r in runs)
    total_f = sum(r["failed"] for r in runs)
    for r in runs:
        if r["retried"]:
            print(f"retried: {r['column']}: first boot: {r['retried']}; "
                  + ("the retry failed too" if r["problems"] else RETRY_NOTE))
    if bad:
        print("failed runs: " + ", ".join(bad))
    print(f"matrix: {total_p} passed, {total_f} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
