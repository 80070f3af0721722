#!/usr/bin/env bash
# YOLOv8n at 640 x 640 on the CPU, side by side: ManagedTensor (`ManagedTensor.Bench yolo`, bench/YoloRunner.cs) and
# PyTorch 1.13 (Debian's python3-torch, bench/yolo_torch.py: the same architecture written independently in plain
# torch, its parameter count checked equal to ours), 80 classes:
#   forward: batch 1, eval mode with batch norm folded into the convs, no gradients, outputs decoded (images/s);
#   train:   batch 2, one training step (forward, TAL assigner + CIoU/DFL/BCE loss, backward, clip, AdamW) (ms).
# Threads, interleaved rounds, OMP_WAIT_POLICY=PASSIVE for PyTorch, medians and load averages: bench/lib.sh.
#
# Usage: [ROUNDS=3] [THREADS="1 2"] [MODES="forward train"] [FWD_ITERS=5] [TRAIN_ITERS=3] [README=1]
#        bench/yolo_vs_torch.sh [RESULTS_DIR]
# Writes RESULTS_DIR/raw.txt and RESULTS_DIR/table.md and (unless README=0) puts the table, with the date and load
# averages, into README.md between the yolo-bench-table markers. The defaults take about 10 minutes on a quiet
# 2-core machine (PyTorch's training step is most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
out=${1:-bench-results/yolo-$(date -u +%Y%m%dT%H%M%SZ)}
rounds=${ROUNDS:-3}
mkdir -p "$out"
bench_need_torch
bench_build

# run RUNNER MODE THREADS: the runner's output, its result line last
run() {
    local runner=$1 mode=$2 threads=$3 iters
    iters=$([ "$mode" = train ] && echo "${TRAIN_ITERS:-3}" || echo "${FWD_ITERS:-5}")
    bench_pin "$threads"
    case $runner in
        ours) "${PIN[@]}" "${OURS[@]}" yolo --mode "$mode" --iters "$iters" --warmup 1 2>/dev/null ;;
        pytorch) "${TORCH_ENV[@]}" "${PIN[@]}" /usr/bin/python3 bench/yolo_torch.py --mode "$mode" --threads "$threads" --iters "$iters" --warmup 1 2>/dev/null ;;
        *) echo "unknown runner $runner" >&2; return 1 ;;
    esac
}

raw="$out/raw.txt"
: > "$raw"
for ((round = 1; round <= rounds; round++)); do
    for mode in ${MODES:-forward train}; do
        for threads in ${THREADS:-1 2}; do
            for r in $(bench_order "$round" ours pytorch); do
                bench_run "$raw" "round=$round case=$mode threads=$threads runner=$r" "params ms_per_iter images_per_s cpu_ms_per_iter peak_rss_mb" \
                    run "$r" "$mode" "$threads"
            done
        done
    done
done

readme=(--readme README.md --marker yolo-bench-table)
[ "${README:-1}" = 0 ] && readme=()
/usr/bin/python3 bench/bench_table.py "$raw" "$out/table.md" "${readme[@]}" --title "YOLOv8n 640x640" --same params --rate images_per_s=images/s \
    --command "$(bench_command bench/yolo_vs_torch.sh ROUNDS THREADS MODES FWD_ITERS TRAIN_ITERS)" \
    --case "forward=forward, batch 1, fused BN" --case "train=training step, batch 2" \
    --runner ours=ManagedTensor --runner "pytorch=PyTorch 1.13 (Debian, OpenBLAS), OMP_WAIT_POLICY=PASSIVE"
echo "raw runs: $raw; table: $out/table.md" >&2
