#!/usr/bin/env bash
# The architecture comparison of the README: each architecture `mt train` knows, at its default preset
# (shakespeare-char-cpu: tiny Shakespeare, character level, ~0.8M parameters, block 64, batch 12, nanoGPT's CPU
# optimizer recipe), trained for the same iterations; then 500 tokens sampled from its best checkpoint with its
# cached/recurrent decoding. Columns: parameters, best val loss, training tokens/s (mean of the progress lines after
# the first), decode tokens/s (a 501-token sample minus a 1-token sample, so start-up and the model load cancel),
# peak resident memory of the training process (/usr/bin/time; CPU runs: weights, optimizer state, activations and
# the runtime). The load average is printed with each row: on a shared machine the speeds are not comparable across
# rows unless the load was low.
# Usage: [ITERS=2000] [ARCHS="gpt mamba rwkv retnet moe bitnet"] [DEVICE=cpu] bash bench/arch_compare.sh
#   Another architecture registered in src/Models/Architectures.cs joins by adding its name to ARCHS.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${ITERS:-2000}
archs=${ARCHS:-gpt mamba rwkv retnet moe bitnet}
device=${DEVICE:-cpu}
dotnet build src/Apps/mt.csproj -c Release -v q --nologo > /dev/null
mt="dotnet src/Apps/bin/Release/net10.0/mt.dll"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "iters $iters, device $device, $(nproc) cores"
echo
echo "| arch | params | best val loss | train tok/s | decode tok/s | peak RSS MiB | load avg (start, end) |"
echo "|---|---:|---:|---:|---:|---:|---|"
for arch in $archs; do
  load0=$(cut -d' ' -f1 /proc/loadavg)
  log="$work/$arch.log"
  /usr/bin/time -f "maxrss_kb=%M" -o "$work/$arch.time" \
    $mt train "$arch" --out-dir "$work/$arch" --max-iters "$iters" --lr-decay-iters "$iters" --device "$device" --sample-length 0 > "$log"
  params=$(sed -n 's/^model: .*: \([0-9.]*M\) parameters.*/\1/p' "$log")
  best=$(sed -n 's/^best val loss \([0-9.]*\)/\1/p' "$log")
  toks=$(grep -o '[0-9,]* tok/s' "$log" | tail -n +2 | tr -d ',' | awk '{s += $1; n++} END {if (n) printf "%.0f", s / n; else print "-"}')
  rss=$(sed -n 's/maxrss_kb=\([0-9]*\)/\1/p' "$work/$arch.time" | awk '{printf "%.0f", $1 / 1024}')
  t0=$(date +%s.%N); $mt sample --out-dir "$work/$arch/best.safetensors" --length 1 --device "$device" > /dev/null 2>&1
  t1=$(date +%s.%N); $mt sample --out-dir "$work/$arch/best.safetensors" --length 501 --device "$device" > /dev/null 2>&1
  t2=$(date +%s.%N)
  decode=$(python3 -c "print(f'{500 / max(1e-9, ($t2 - $t1) - ($t1 - $t0)):.0f}')")
  echo "| $arch | $params | $best | $toks | $decode | $rss | $load0, $(cut -d' ' -f1 /proc/loadavg) |"
done
