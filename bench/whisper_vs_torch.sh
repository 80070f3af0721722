#!/usr/bin/env bash
# The `mt transcribe train` Whisper on the CPU, side by side (issue 19): ManagedTensor (`ManagedTensor.Bench whisper`,
# bench/WhisperRunner.cs) and PyTorch 1.13 (bench/whisper_torch.py: the independent plain-PyTorch Whisper of
# tests/fixtures/whisper/make_tiny_whisper.py with Hugging Face's key names, its parameter count checked equal to ours):
#   encode: the encoder forward, no gradients, at batch 1 and batch 8 (ms);
#   train:  one training step at batch 8: teacher-forced cross-entropy of TOKENS tokens, backward, clip, AdamW (ms).
# The model's sizes are SIZES if given (e.g. SIZES="--d-model 384 --layers 4 --heads 6 --frames 3000"), else our
# runner's defaults, which are WhisperTrainConfig's (`ManagedTensor.Bench whisper --print-config`): both sides get them.
# Threads, interleaved rounds, OMP_WAIT_POLICY=PASSIVE for PyTorch, medians and load averages: bench/lib.sh.
#
# Usage: [ROUNDS=3] [THREADS="1 2"] [CASES="encode-b1 encode-b8 train-b8"] [TOKENS=32] [SIZES="..."] [ENCODE_ITERS=4]
#        [TRAIN_ITERS=4] [README=1] bench/whisper_vs_torch.sh [RESULTS_DIR]
# A case is MODE-bBATCH. Each run times ITERS - 1 iterations after one warm-up. Writes RESULTS_DIR/raw.txt and
# RESULTS_DIR/table.md and (unless README=0) puts the table, with the date and load averages, into README.md between
# the whisper-bench-table markers. ROUNDS=1 THREADS=1 ENCODE_ITERS=2 TRAIN_ITERS=2 is a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
out=${1:-bench-results/whisper-$(date -u +%Y%m%dT%H%M%SZ)}
rounds=${ROUNDS:-3}
tokens=${TOKENS:-32}
mkdir -p "$out"
bench_need_torch
bench_build
read -r -a sizes <<< "${SIZES:-$("${OURS[@]}" whisper --print-config)}"
echo "model sizes: ${sizes[*]}" >&2

# run RUNNER MODE BATCH THREADS: the runner's output, its result line last
run() {
    local runner=$1 mode=$2 batch=$3 threads=$4 iters
    iters=$([ "$mode" = train ] && echo "${TRAIN_ITERS:-4}" || echo "${ENCODE_ITERS:-4}")
    bench_pin "$threads"
    local args=(--mode "$mode" --batch "$batch" --tokens "$tokens" "${sizes[@]}" --iters "$iters" --warmup 1)
    case $runner in
        ours) "${PIN[@]}" "${OURS[@]}" whisper "${args[@]}" 2>/dev/null ;;
        pytorch) "${TORCH_ENV[@]}" "${PIN[@]}" /usr/bin/python3 bench/whisper_torch.py "${args[@]}" --threads "$threads" 2>/dev/null ;;
        *) echo "unknown runner $runner" >&2; return 1 ;;
    esac
}

raw="$out/raw.txt"
: > "$raw"
for ((round = 1; round <= rounds; round++)); do
    for c in ${CASES:-encode-b1 encode-b8 train-b8}; do
        for threads in ${THREADS:-1 2}; do
            for r in $(bench_order "$round" ours pytorch); do
                bench_run "$raw" "round=$round case=$c threads=$threads runner=$r" "params ms_per_iter cpu_ms_per_iter peak_rss_mb" \
                    run "$r" "${c%-b*}" "${c##*-b}" "$threads"
            done
        done
    done
done

readme=(--readme README.md --marker whisper-bench-table)
[ "${README:-1}" = 0 ] && readme=()
/usr/bin/python3 bench/bench_table.py "$raw" "$out/table.md" "${readme[@]}" --title "Whisper" --same params \
    --command "$(bench_command bench/whisper_vs_torch.sh ROUNDS THREADS CASES TOKENS SIZES ENCODE_ITERS TRAIN_ITERS)" \
    --note "Model: ${sizes[*]} (mel frames in; the same layer count in encoder and decoder); training on $tokens tokens." \
    --case "encode-b1=encoder forward, batch 1" --case "encode-b8=encoder forward, batch 8" --case "train-b8=training step, batch 8" \
    --runner ours=ManagedTensor --runner "pytorch=PyTorch 1.13 (Debian, OpenBLAS), OMP_WAIT_POLICY=PASSIVE"
echo "raw runs: $raw; table: $out/table.md" >&2
