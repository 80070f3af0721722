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
# each one's median over the rounds, and every run's 1-minute load average is in the raw log.
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
out=${1:-bench-results/gpt-train-$(date -u +%Y%m%dT%H%M%SZ)}
rounds=${ROUNDS:-3}
shapes=${SHAPES:-small big}
threads_list=${THREADS:-1 2}
runners=${RUNNERS:-ours torchsharp torchsharp-passive pytorch pytorch-passive}
mkdir -p "$out"

if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "installing python3-torch and libopenblas0-pthread..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread >/dev/null
fi
dotnet build -c Release bench/ManagedTensor.Bench.csproj -v q -nologo >/dev/null
dotnet build -c Release bench/torchsharp/TorchSharpGptTrain.csproj -v q -nologo >/dev/null
/usr/bin/python3 bench/torchsharp/weaken_glibcxx.py bench/torchsharp/bin/Release/net10.0/runtimes/linux-x64/native/libLibTorchSharp.so >&2

# run RUNNER SHAPE THREADS: prints the runner's one result line
run() {
    local runner=$1 shape=$2 threads=$3 iters pin=()
    iters=$([ "$shape" = big ] && echo "${ITERS_BIG:-40}" || echo "${ITERS_SMALL:-200}")
    [ "$threads" = 1 ] && pin=(taskset -c 0)
    case $runner in
        ours) "${pin[@]}" dotnet bench/bin/Release/net10.0/ManagedTensor.Bench.dll gpt-train --shape "$shape" --iters "$iters" ;;
        torchsharp) "${pin[@]}" dotnet bench/torchsharp/bin/Release/net10.0/TorchSharpGptTrain.dll --shape "$shape" --threads "$threads" --iters "$iters" ;;
        torchsharp-passive) OMP_WAIT_POLICY=PASSIVE dotnet bench/torchsharp/bin/Release/net10.0/TorchSharpGptTrain.dll --shape "$shape" --threads "$threads" --iters "$iters" ;;
        pytorch) "${pin[@]}" /usr/bin/python3 bench/torch_gpt_train.py --shape "$shape" --threads "$threads" --iters "$iters" ;;
        pytorch-passive) OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/torch_gpt_train.py --shape "$shape" --threads "$threads" --iters "$iters" ;;
        *) echo "unknown runner $runner" >&2; return 1 ;;
    esac
}

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
raw="$out/raw.txt"
: > "$raw"
for ((round = 1; round <= rounds; round++)); do
    for shape in $shapes; do
        for threads in $threads_list; do
            list=()
            for r in $runners; do
                [[ $r == *-passive && $threads == 1 ]] && continue # one thread has no one to wait for
                list+=("$r")
            done
            n=${#list[@]}
            for ((i = 0; i < n; i++)); do
                r=${list[$(((i + round - 1) % n))]}
                load=$(cut -d' ' -f1 /proc/loadavg)
                line=$(run "$r" "$shape" "$threads" | tail -1)
                ms=$(echo "$line" | field ms_per_iter); tok=$(echo "$line" | field tokens_per_s); rss=$(echo "$line" | field peak_rss_mb)
                echo "round=$round shape=$shape threads=$threads runner=$r ms_per_iter=$ms tokens_per_s=$tok peak_rss_mb=$rss load1=$load" | tee -a "$raw"
            done
        done
    done
done

README=${README:-1} ITERS="small ${ITERS_SMALL:-200}, big ${ITERS_BIG:-40}" /usr/bin/python3 - "$raw" "$out/table.md" README.md <<'EOF'
import datetime, os, re, statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
order = ["ours", "torchsharp", "torchsharp-passive", "pytorch", "pytorch-passive"]
label = {"ours": "ManagedTensor", "torchsharp": "TorchSharp 0.107 (libtorch 2.10)", "torchsharp-passive": "TorchSharp, OMP_WAIT_POLICY=PASSIVE",
         "pytorch": "PyTorch 1.13 (Debian, OpenBLAS)", "pytorch-passive": "PyTorch 1.13, OMP_WAIT_POLICY=PASSIVE"}
lines = ["| shape | threads | runner | ms/iter (median) | tokens/s | peak RSS MB | ours faster by | rounds | load avg (1 min) |",
         "|---|---:|---|---:|---:|---:|---:|---:|---|"]
for shape in dict.fromkeys(r["shape"] for r in rows):
    for threads in dict.fromkeys(r["threads"] for r in rows if r["shape"] == shape):
        group = [r for r in rows if r["shape"] == shape and r["threads"] == threads and r["ms_per_iter"]]
        med = {}
        for name in order:
            runs = [r for r in group if r["runner"] == name]
            if runs:
                med[name] = (statistics.median(float(r["ms_per_iter"]) for r in runs), statistics.median(float(r["tokens_per_s"]) for r in runs),
                             max(float(r["peak_rss_mb"]) for r in runs), len(runs), ", ".join(r["load1"] for r in runs))
        for name, (ms, tok, rss, n, loads) in med.items():
            ratio = f"{ms / med['ours'][0]:.2f}x" if "ours" in med and name != "ours" else ""
            lines.append(f"| {shape} | {threads} | {label[name]} | {ms:.1f} | {tok:.0f} | {rss:.0f} | {ratio} | {n} | {loads} |")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
if os.environ["README"] != "0":
    loads = sorted(float(r["load1"]) for r in rows)
    note = (f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} by `bash bench/gpt_train_vs_torch.sh` on {os.cpu_count()} cores, "
            f"{len(set(r['round'] for r in rows))} interleaved round(s) of {os.environ['ITERS']} steps per run, 1-minute load average {loads[0]:g}-{loads[-1]:g} "
            f"(median {statistics.median(loads):g}) during the runs; ratios above 1 mean ours is faster.")
    readme = open(sys.argv[3]).read()
    block = "<!-- gpt-train-table -->\n" + note + "\n\n" + "\n".join(lines) + "\n<!-- /gpt-train-table -->"
    new, count = re.subn(r"<!-- gpt-train-table -->.*?<!-- /gpt-train-table -->", lambda m: block, readme, flags=re.S)
    if count != 1: sys.exit("README.md has no gpt-train-table markers")
    open(sys.argv[3], "w").write(new)
EOF
echo "raw runs: $raw; table: $out/table.md" >&2
