#!/usr/bin/env bash
# YOLOv8n at 640 x 640 on the CPU, side by side: ManagedTensor (`ManagedTensor.Bench yolo`, bench/YoloRunner.cs) and
# PyTorch 1.13 (Debian's python3-torch, bench/yolo_torch.py: the same architecture written independently in plain
# torch, its parameter count checked equal to ours), 80 classes:
#   forward: batch 1, eval mode with batch norm folded into the convs, no gradients, outputs decoded (images/s);
#   train:   batch 2, one training step (forward, TAL assigner + CIoU/DFL/BCE loss, backward, clip, AdamW) (ms).
# Threads: 1 = every runner under `taskset -c 0` with one thread; 2 = two threads, no pinning. PyTorch runs with
# OMP_WAIT_POLICY=PASSIVE (its OpenMP workers sleep instead of spinning while they wait: on a machine shared with
# other work, spinning steals the cores it waits for). Runners alternate inside each round (the order flips every
# round) for ROUNDS rounds; the table gives each one's median over the rounds (each run's own figure is the median of
# its timed iterations) with wall and process-CPU time, and every run's 1-minute load average is in the raw log.
#
# Usage: [ROUNDS=3] [THREADS="1 2"] [MODES="forward train"] [FWD_ITERS=5] [TRAIN_ITERS=3] [README=1]
#        bench/yolo_vs_torch.sh [RESULTS_DIR]
# Writes RESULTS_DIR/raw.txt and RESULTS_DIR/table.md and (unless README=0) puts the table, with the date and load
# averages, into README.md between the yolo-bench-table markers. The defaults take about 10 minutes on a quiet
# 2-core machine (PyTorch's training step is most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-results/yolo-$(date -u +%Y%m%dT%H%M%SZ)}
rounds=${ROUNDS:-3}
threads_list=${THREADS:-1 2}
modes=${MODES:-forward train}
mkdir -p "$out"

/usr/bin/python3 -c 'import torch' || { echo "bench/yolo_torch.py needs /usr/bin/python3 with torch (Debian: python3-torch)" >&2; exit 1; }
dotnet build -c Release bench/ManagedTensor.Bench.csproj -v q -nologo >/dev/null

# run RUNNER MODE THREADS: prints the runner's one result line
run() {
    local runner=$1 mode=$2 threads=$3 iters pin=()
    iters=$([ "$mode" = train ] && echo "${TRAIN_ITERS:-3}" || echo "${FWD_ITERS:-5}")
    [ "$threads" = 1 ] && pin=(taskset -c 0)
    case $runner in
        ours) "${pin[@]}" dotnet bench/bin/Release/net10.0/ManagedTensor.Bench.dll yolo --mode "$mode" --iters "$iters" --warmup 1 2>/dev/null ;;
        pytorch) OMP_WAIT_POLICY=PASSIVE "${pin[@]}" /usr/bin/python3 bench/yolo_torch.py --mode "$mode" --threads "$threads" --iters "$iters" --warmup 1 2>/dev/null ;;
        *) echo "unknown runner $runner" >&2; return 1 ;;
    esac
}

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
raw="$out/raw.txt"
: > "$raw"
for ((round = 1; round <= rounds; round++)); do
    for mode in $modes; do
        for threads in $threads_list; do
            list=(ours pytorch)
            ((round % 2 == 0)) && list=(pytorch ours)
            for r in "${list[@]}"; do
                load=$(cut -d' ' -f1 /proc/loadavg)
                line=$(run "$r" "$mode" "$threads" | tail -1)
                echo "round=$round mode=$mode threads=$threads runner=$r params=$(echo "$line" | field params) ms_per_iter=$(echo "$line" | field ms_per_iter) cpu_ms_per_iter=$(echo "$line" | field cpu_ms_per_iter) peak_rss_mb=$(echo "$line" | field peak_rss_mb) load1=$load" | tee -a "$raw"
            done
        done
    done
done

README=${README:-1} /usr/bin/python3 - "$raw" "$out/table.md" README.md <<'EOF'
import datetime, os, re, statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
params = {r["params"] for r in rows}
if len(params) != 1: sys.exit(f"the runners' parameter counts differ: {sorted(params)}")
label = {"ours": "ManagedTensor", "pytorch": "PyTorch 1.13 (Debian, OpenBLAS), OMP_WAIT_POLICY=PASSIVE"}
what = {"forward": "forward, batch 1, fused BN", "train": "training step, batch 2"}
lines = ["| YOLOv8n 640x640 | threads | runner | ms (median) | images/s | CPU ms | peak RSS MB | ours faster by (wall / CPU) | rounds | load avg (1 min) |",
         "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
for mode in dict.fromkeys(r["mode"] for r in rows):
    for threads in dict.fromkeys(r["threads"] for r in rows if r["mode"] == mode):
        med = {}
        for name in label:
            runs = [r for r in rows if r["mode"] == mode and r["threads"] == threads and r["runner"] == name and r["ms_per_iter"]]
            if runs:
                med[name] = (statistics.median(float(r["ms_per_iter"]) for r in runs), statistics.median(float(r["cpu_ms_per_iter"]) for r in runs),
                             max(float(r["peak_rss_mb"]) for r in runs), len(runs), ", ".join(r["load1"] for r in runs))
        batch = 1 if mode == "forward" else 2
        for name, (ms, cpu, rss, n, loads) in med.items():
            ratio = f"{ms / med['ours'][0]:.2f}x / {cpu / med['ours'][1]:.2f}x" if "ours" in med and name != "ours" else ""
            lines.append(f"| {what[mode]} | {threads} | {label[name]} | {ms:.0f} | {batch * 1000 / ms:.2f} | {cpu:.0f} | {rss:.0f} | {ratio} | {n} | {loads} |")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
if os.environ["README"] != "0":
    loads = sorted(float(r["load1"]) for r in rows)
    note = (f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} by `bash bench/yolo_vs_torch.sh` on {os.cpu_count()} cores "
            f"({len(set(r['round'] for r in rows))} interleaved round(s); both models have {params.pop()} parameters), 1-minute load average "
            f"{loads[0]:g}-{loads[-1]:g} (median {statistics.median(loads):g}) during the runs; ratios above 1 mean ours is faster.")
    readme = open(sys.argv[3]).read()
    block = "<!-- yolo-bench-table -->\n" + note + "\n\n" + "\n".join(lines) + "\n<!-- /yolo-bench-table -->"
    new, count = re.subn(r"<!-- yolo-bench-table -->.*?<!-- /yolo-bench-table -->", lambda m: block, readme, flags=re.S)
    if count != 1: sys.exit("README.md has no yolo-bench-table markers")
    open(sys.argv[3], "w").write(new)
EOF
echo "raw runs: $raw; table: $out/table.md" >&2
