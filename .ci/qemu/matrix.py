"""Collects KTM-MATRIX lines from each run's log into one table (stdout and Markdown)."""
import sys

out_md, runs = sys.argv[1], sys.argv[2:]
columns, cells, rows = [], {}, []
for run in runs:
    column, log = run.split("|", 1)
    columns.append(column)
    with open(log, errors="replace") as f:
        for line in f:
            line = line.rstrip("\r\n")
            i = line.find("KTM-MATRIX\t")
            if i < 0:
                continue
            parts = line[i:].split("\t")
            if len(parts) < 3:
                continue
            row, cell = parts[1], parts[2]
            if row not in rows:
                rows.append(row)
            cells[(row, column)] = cell
width = max([len(r) for r in rows] + [10])
print("\n" + "row".ljust(width) + " | " + " | ".join(columns))
for r in rows:
    print(r.ljust(width) + " | " + " | ".join(cells.get((r, c), "-") for c in columns))
with open(out_md, "w") as f:
    f.write("| metric or probe | " + " | ".join(columns) + " |\n")
    f.write("|---|" + "---|" * len(columns) + "\n")
    for r in rows:
        f.write(f"| {r} | " + " | ".join(cells.get((r, c), "-") for c in columns) + " |\n")
