#!/usr/bin/env bash
# GPT training step on the CPU, side by side: ManagedTensor, TorchSharp 0.107 (libtorch 2.10, NuGet
# TorchSharp-cpu) and PyTorch 1.13 (Debian's python3-torch over OpenBLAS), each training nanoGPT's model on
# character-level tiny Shakespeare with the same loop (batch sampling, forward, backward, clip at 1.0,
# AdamW; each step timed alone, median after 10 warm-up steps) and reporting ms/iter, tokens/s and its peak
# resident memory (VmHWM).
#
# Shapes: small = nanoGPT's CPU recipe (`mt train gpt`'s defaults: 4 layers x 128, block 64, batch 12);
#         big   = 6 layers x 384 (nanoGPT's GPU model), block 256, batch 8.
# Threads: 1 = one core (every runner under `taskset -c 0`, one thread);
#          2 = two threads, no pinning; the libtorch peers are run both with their default OpenMP wait policy
#              (workers spin while waiting) and with OMP_WAIT_POLICY=PASSIVE (they sleep): on a machine shared
#              with other work, spinning steals the cores it waits for.
# Runners alternate inside each round (the order rotates every round) for ROUNDS rounds; the table gives
# each one's median over the rounds, and every run's 1-minute load average is in the raw log (bench/lib.sh).
#
# TorchSharp's libLibTorchSharp.so asks for GLIBCXX_3.4.32, which Debian 12's libstdc++ (GCC 12) lacks: the
# script marks that one version requirement weak in its own build's copy (bench/torchsharp/weaken_glibcxx.py
# says why that is safe); the NuGet cache is left untouched.
#
# Usage: [ROUNDS=3] [SHAPES="small big"] [THREADS="1 2"] [ITERS_SMALL=200] [ITERS_BIG=40] [RUNNERS="..."]
#        [README=1] bench/gpt_train_vs_torch.sh [RESULTS_DIR]
# RUNNERS defaults to "ours torchsharp torchsharp-passive pytorch pytorch-passive" (the -passive ones run
# only at 2 threads). Writes RESULTS_DIR/raw.txt (one line per run) and RESULTS_DIR/table.md, and (unless
# README=0) puts the table, with the date and the load averages it ran under, into README.md between the
# gpt-train-table markers. The defaults take about 40 minutes on a quiet 2-core machine (3 rounds; the big
# shape is most of it); ROUNDS=1 ITERS_SMALL=60 ITERS_BIG=15 is a 10-minute smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
out=${1:-bench-results/gpt-train-$(date -u +%Y%m%dT%H%M%SZ)}
rounds=${ROUNDS:-3}
runners=${RUNNERS:-ours torchsharp torchsharp-passive pytorch pytorch-passive}
mkdir -p "$out"

if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "installing python3-torch and libopenblas0-pthread..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread >/dev/null
fi
bench_build
dotnet build -c Release bench/torchsharp/TorchSharpGptTrain.csproj -v q -nologo >/dev/null
/usr/bin/python3 bench/torchsharp/weaken_glibcxx.py bench/torchsharp/bin/Release/net10.0/runtimes/linux-x64/native/libLibTorchSharp.so >&2

# run RUNNER SHAPE THREADS: the runner's output, its result line last
run() {
    local runner=$1 shape=$2 threads=$3 iters
    iters=$([ "$shape" = big ] && echo "${ITERS_BIG:-40}" || echo "${ITERS_SMALL:-200}")
    bench_pin "$threads"
    case $runner in
        ours) "${PIN[@]}" "${OURS[@]}" gpt-train --shape "$shape" --iters "$iters" ;;
        torchsharp) "${PIN[@]}" dotnet bench/torchsharp/bin/Release/net10.0/TorchSharpGptTrain.dll --shape "$shape" --threads "$threads" --iters "$iters" ;;
        torchsharp-passive) OMP_WAIT_POLICY=PASSIVE dotnet bench/torchsharp/bin/Release/net10.0/TorchSharpGptTrain.dll --shape "$shape" --threads "$threads" --iters "$iters" ;;
        pytorch) "${PIN[@]}" /usr/bin/python3 bench/torch_gpt_train.py --shape "$shape" --threads "$threads" --iters "$iters" ;;
        pytorch-passive) "${TORCH_ENV[@]}" /usr/bin/python3 bench/torch_gpt_train.py --shape "$shape" --threads "$threads" --iters "$iters" ;;
        *) echo "unknown runner $runner" >&2; return 1 ;;
    esac
}

raw="$out/raw.txt"
: > "$raw"
for ((round = 1; round <= rounds; round++)); do
    for shape in ${SHAPES:-small big}; do
        for threads in ${THREADS:-1 2}; do
            list=()
            for r in $runners; do
                [[ $r == *-passive && $threads == 1 ]] && continue # one thread has no one to wait for
                list+=("$r")
            done
            for r in $(bench_order "$round" "${list[@]}"); do
                bench_run "$raw" "round=$round case=$shape threads=$threads runner=$r" "ms_per_iter tokens_per_s peak_rss_mb" run "$r" "$shape" "$threads"
            done
        done
    done
done

readme=(--readme README.md --marker gpt-train-table)
[ "${README:-1}" = 0 ] && readme=()
/usr/bin/python3 bench/bench_table.py "$raw" "$out/table.md" "${readme[@]}" --title shape --rate tokens_per_s=tokens/s \
    --command "$(bench_command bench/gpt_train_vs_torch.sh ROUNDS SHAPES THREADS ITERS_SMALL ITERS_BIG RUNNERS)" \
    --note "Steps per run: small ${ITERS_SMALL:-200}, big ${ITERS_BIG:-40}." \
    --runner ours=ManagedTensor --runner "torchsharp=TorchSharp 0.107 (libtorch 2.10)" --runner "torchsharp-passive=TorchSharp, OMP_WAIT_POLICY=PASSIVE" \
    --runner "pytorch=PyTorch 1.13 (Debian, OpenBLAS)" --runner "pytorch-passive=PyTorch 1.13, OMP_WAIT_POLICY=PASSIVE"
echo "raw runs: $raw; table: $out/table.md" >&2
