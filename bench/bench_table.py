#!/usr/bin/python3
"""The markdown table of a side-by-side benchmark (bench/lib.sh's runs), optionally put into README.md.

RAW holds one line per run, key=value pairs: round, case, threads, runner, the runner's figures (ms_per_iter,
cpu_ms_per_iter, peak_rss_mb, a rate such as images_per_s, params), load1. Rows are grouped by (case, threads) in
the order they first appear, runners in the order of --runner; each cell is the median over the rounds, peak RSS the
largest. "ours faster by" is the peer's median over ours (wall, and process CPU time where both have it): above 1
means ours is faster. --same FIELD fails when runners of one case disagree on FIELD (the parameter count: the same
model on both sides). With --readme and --marker, the table and a note (date, command, rounds, load averages)
replace what lies between <!-- MARKER --> and <!-- /MARKER --> in the README.

Usage: bench_table.py RAW TABLE.md --title T --command CMD --case NAME=LABEL... --runner NAME=LABEL...
       [--rate FIELD=HEADER] [--same FIELD] [--note TEXT] [--readme README.md --marker MARKER]
"""
import argparse, datetime, os, re, statistics, sys


def pairs(items):
    return dict(item.split("=", 1) for item in items)


def fmt(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("table")
    ap.add_argument("--title", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--case", action="append", default=[])
    ap.add_argument("--runner", action="append", default=[])
    ap.add_argument("--rate")
    ap.add_argument("--same")
    ap.add_argument("--note", default="")
    ap.add_argument("--readme")
    ap.add_argument("--marker")
    a = ap.parse_args()
    cases, runners = pairs(a.case), pairs(a.runner)
    rate_field, rate_header = a.rate.split("=", 1) if a.rate else (None, None)
    rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(a.raw) if line.strip()]
    rows = [r for r in rows if r.get("ms_per_iter")]
    if not rows:
        sys.exit(f"{a.raw}: no run gave a figure")
    same = {}
    if a.same:
        for case in dict.fromkeys(r["case"] for r in rows):
            values = {r.get(a.same) for r in rows if r["case"] == case}
            if len(values) != 1 or None in values or "" in values:
                sys.exit(f"{a.raw}: case {case}: the runners' {a.same} differ: {sorted(v or '?' for v in values)}")
            same[case] = values.pop()
    has_cpu = any(r.get("cpu_ms_per_iter") for r in rows)
    head = [a.title, "threads", "runner", "ms (median)"] + ([rate_header] if rate_field else []) + (["CPU ms"] if has_cpu else []) + \
           ["peak RSS MB", "ours faster by (wall / CPU)" if has_cpu else "ours faster by", "rounds", "load avg (1 min)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---|" + "---:|" * (len(head) - 4) + "---|"]
    med = lambda runs, f: statistics.median(float(r[f]) for r in runs) if all(r.get(f) for r in runs) else None
    for case in dict.fromkeys(r["case"] for r in rows):
        for threads in dict.fromkeys(r["threads"] for r in rows if r["case"] == case):
            stats = {}
            for name in runners:
                runs = [r for r in rows if r["case"] == case and r["threads"] == threads and r["runner"] == name]
                if runs:
                    stats[name] = dict(ms=med(runs, "ms_per_iter"), cpu=med(runs, "cpu_ms_per_iter"), rate=med(runs, rate_field) if rate_field else None,
                                       rss=max(float(r["peak_rss_mb"]) for r in runs) if all(r.get("peak_rss_mb") for r in runs) else None,
                                       n=len(runs), loads=", ".join(r["load1"] for r in runs))
            ours = stats.get("ours")
            for name, s in stats.items():
                ratio = ""
                if ours and name != "ours":
                    ratio = f"{s['ms'] / ours['ms']:.2f}x"
                    if has_cpu and s["cpu"] and ours["cpu"]:
                        ratio += f" / {s['cpu'] / ours['cpu']:.2f}x"
                cells = [cases.get(case, case), threads, runners[name], fmt(s["ms"])]
                if rate_field:
                    cells.append(fmt(s["rate"]) if s["rate"] is not None else "")
                if has_cpu:
                    cells.append(fmt(s["cpu"]) if s["cpu"] is not None else "")
                cells += [f"{s['rss']:.0f}" if s["rss"] is not None else "", ratio, str(s["n"]), s["loads"]]
                lines.append("| " + " | ".join(cells) + " |")
    open(a.table, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not (a.readme and a.marker):
        return
    loads = sorted(float(r["load1"]) for r in rows)
    if same:
        counts = set(same.values())
        what = "parameters" if a.same == "params" else a.same
        model = (f"the runners' models have {counts.pop()} {what}" if len(counts) == 1
                 else f"{what} equal across runners in each case: " + ", ".join(sorted(counts, key=float)))
    note = (f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} by `{a.command}` on {os.cpu_count()} cores "
            f"({len(set(r['round'] for r in rows))} interleaved round(s){'; ' + model if same else ''}), 1-minute load average "
            f"{loads[0]:g}-{loads[-1]:g} (median {statistics.median(loads):.1f}) during the runs; ratios above 1 mean ours is faster."
            + (" " + a.note if a.note else ""))
    readme = open(a.readme).read()
    block = f"<!-- {a.marker} -->\n{note}\n\n" + "\n".join(lines) + f"\n<!-- /{a.marker} -->"
    new, count = re.subn(rf"<!-- {re.escape(a.marker)} -->.*?<!-- /{re.escape(a.marker)} -->", lambda m: block, readme, flags=re.S)
    if count != 1:
        sys.exit(f"{a.readme} has no {a.marker} markers")
    open(a.readme, "w").write(new)


if __name__ == "__main__":
    main()
