#!/usr/bin/env bash
# The `mt diffuse train` denoisers on the CPU, side by side (issue 18): ManagedTensor (`ManagedTensor.Bench diffusion`,
# bench/DiffusionRunner.cs) and PyTorch 1.13 (bench/diffusion_torch.py: the fixtures' independent U-Net and DiT block,
# its parameter counts checked equal to ours), both at the defaults of src/Models/Diffusion/DiffusionConfig.cs
# (1x32x32 images, 10 classes; U-Net 32 channels, mults 1,2,2, attention at 8x8; DiT patch 4, width 128, depth 6):
#   train:  one training step at batch 64 (noise and t sampling, forward, MSE, backward, clip, AdamW, EMA) (ms);
#   sample: one guided denoiser call of `mt diffuse sample` (20 images, cfg 3: 40 rows) and the DDIM update (ms).
# Threads, interleaved rounds, OMP_WAIT_POLICY=PASSIVE for PyTorch, medians and load averages: bench/lib.sh.
#
# Usage: [ROUNDS=3] [THREADS="1 2"] [ARCHS="unet dit"] [MODES="train sample"] [TRAIN_ITERS=4] [SAMPLE_ITERS=4]
#        [README=1] bench/diffusion_vs_torch.sh [RESULTS_DIR]
# Each run times ITERS - 1 iterations after one warm-up. Writes RESULTS_DIR/raw.txt and RESULTS_DIR/table.md and
# (unless README=0) puts the table, with the date and load averages, into README.md between the
# diffusion-bench-table markers. ROUNDS=1 THREADS=1 TRAIN_ITERS=2 SAMPLE_ITERS=2 is a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
out=${1:-bench-results/diffusion-$(date -u +%Y%m%dT%H%M%SZ)}
rounds=${ROUNDS:-3}
mkdir -p "$out"
bench_need_torch
bench_build

# run RUNNER ARCH MODE THREADS: the runner's output, its result line last
run() {
    local runner=$1 arch=$2 mode=$3 threads=$4 iters
    iters=$([ "$mode" = train ] && echo "${TRAIN_ITERS:-4}" || echo "${SAMPLE_ITERS:-4}")
    bench_pin "$threads"
    case $runner in
        ours) "${PIN[@]}" "${OURS[@]}" diffusion --arch "$arch" --mode "$mode" --iters "$iters" --warmup 1 2>/dev/null ;;
        pytorch) "${TORCH_ENV[@]}" "${PIN[@]}" /usr/bin/python3 bench/diffusion_torch.py --arch "$arch" --mode "$mode" --threads "$threads" --iters "$iters" --warmup 1 2>/dev/null ;;
        *) echo "unknown runner $runner" >&2; return 1 ;;
    esac
}

raw="$out/raw.txt"
: > "$raw"
for ((round = 1; round <= rounds; round++)); do
    for mode in ${MODES:-train sample}; do
        for arch in ${ARCHS:-unet dit}; do
            for threads in ${THREADS:-1 2}; do
                for r in $(bench_order "$round" ours pytorch); do
                    bench_run "$raw" "round=$round case=$arch-$mode threads=$threads runner=$r" "params ms_per_iter images_per_s cpu_ms_per_iter peak_rss_mb" \
                        run "$r" "$arch" "$mode" "$threads"
                done
            done
        done
    done
done

readme=(--readme README.md --marker diffusion-bench-table)
[ "${README:-1}" = 0 ] && readme=()
/usr/bin/python3 bench/bench_table.py "$raw" "$out/table.md" "${readme[@]}" --title "denoiser, 1x32x32" --same params --rate images_per_s=images/s \
    --command "$(bench_command bench/diffusion_vs_torch.sh ROUNDS THREADS ARCHS MODES TRAIN_ITERS SAMPLE_ITERS)" \
    --case "unet-train=U-Net training step, batch 64" --case "dit-train=DiT training step, batch 64" \
    --case "unet-sample=U-Net sampling call, 20 images, cfg 3" --case "dit-sample=DiT sampling call, 20 images, cfg 3" \
    --runner ours=ManagedTensor --runner "pytorch=PyTorch 1.13 (Debian, OpenBLAS), OMP_WAIT_POLICY=PASSIVE"
echo "raw runs: $raw; table: $out/table.md" >&2
