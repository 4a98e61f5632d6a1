#!/usr/bin/env python3
"""Judges every run (guest or host) from its log and .meta, prints a status table and the
kernel matrix, writes the matrix as Markdown, and exits 1 if any run failed.

A run passes when it was not timed out, printed no KTM-FATAL and no kernel panic, printed a
KTM-BEGIN and a `KTM-END NAME rc=0` for every expected binary, and (guests) KTM-DONE.
Matrix cells come from lines `KTM-MATRIX<TAB>row<TAB>cell` anywhere in a run's output.

usage: summarize.py --markdown OUT.md LOG...     (one LOG per column, in column order)
"""
import argparse
import re
import sys

MATRIX = re.compile(r"KTM-MATRIX\t([^\t]+)\t(.*)")
BEGIN = re.compile(r"KTM-BEGIN (\S+)")
END = re.compile(r"KTM-END (\S+) rc=(-?\d+)")
RESULT = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed")
PANIC = re.compile(r"Kernel panic - not syncing|BUG: kernel NULL pointer|general protection fault")


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
            elif PANIC.search(line) and not run["panic"]:
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
    missing = [b for b in expected if b not in run["ends"]]
    if missing:
        problems.append("no KTM-END for " + " ".join(missing))
    if meta.get("kind") == "guest" and not run["done"] and not problems:
        problems.append("no KTM-DONE")
    if not expected and not run["ends"]:
        problems.append("no test binary ran")
    # A binary that died without its libtest summary line counts as one failed test.
    run["failed"] += sum(1 for b in failed if not section_has_result(run["lines"], b))
    run["failed"] += len(missing)
    if problems and run["failed"] == 0:
        run["failed"] = 1  # a hung, panicked or otherwise broken run is never "0 failed"
    run["problems"] = problems
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


def section_has_result(lines, name):
    return any(RESULT.search(line) for line in section(lines, name))


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: " | ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([fmt(header), "-+-".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def md_escape(s):
    return s.replace("|", "\\|")


def main():
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
                [[r["column"], r["release"], "ok" if not r["problems"] else "FAIL",
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
        print(table(["row"] + cols, [["kernel"] + [r["release"] for r in runs]] +
                    [[row] + [cell(r, row) for r in runs] for row in rows]))
    else:
        print("(no KTM-MATRIX lines)")
    with open(a.markdown, "w") as f:
        f.write("| metric or probe | " + " | ".join(md_escape(c) for c in cols) + " |\n")
        f.write("|---|" + "---|" * len(cols) + "\n")
        f.write("| kernel | " + " | ".join(md_escape(r["release"]) for r in runs) + " |\n")
        for row in rows:
            f.write(f"| {md_escape(row)} | " + " | ".join(md_escape(cell(r, row)) for r in runs) + " |\n")
    print(f"\n(matrix written to {a.markdown})")

    bad = [r["column"] for r in runs if r["problems"]]
    total_p = sum(r["passed"] for r in runs)
    total_f = sum(r["failed"] for r in runs)
    if bad:
        print("failed runs: " + ", ".join(bad))
    print(f"matrix: {total_p} passed, {total_f} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
