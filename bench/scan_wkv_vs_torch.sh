#!/usr/bin/env bash
# Selective scan and WKV (RWKV-6) on the CPU: ours (sequential and chunked schedules, bench/ScanWkvRunner.cs) against
# the naive PyTorch loops (bench/scan_wkv_torch.py: mamba's selective_scan_ref, RWKV-6's reference recurrence), float32,
# forward and forward + backward, best-of-N milliseconds, with the load average printed before each side.
# Usage: bash bench/scan_wkv_vs_torch.sh [--quick]      (--quick: 2 rounds instead of 5; for a loaded machine)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${1:-}
dotnet build bench/ManagedTensor.Bench.csproj -c Release -v q --nologo > /dev/null
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)  (ours)"
ours=$(dotnet bench/bin/Release/net10.0/ManagedTensor.Bench.dll scan-wkv $quick)
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)  (torch)"
theirs=$(/usr/bin/python3 bench/scan_wkv_torch.py $quick)
echo "| op | shape | torch fwd ms | torch fwd+bwd ms | ours seq fwd | ours seq fwd+bwd | ours chunked fwd | ours chunked fwd+bwd | fwd+bwd speed-up (best of ours) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
while read -r op shape _ tf tb; do
  read -r _ _ _ sf sb < <(grep "^$op $shape sequential " <<< "$ours")
  read -r _ _ _ cf cb < <(grep "^$op $shape chunked " <<< "$ours")
  ratio=$(python3 -c "print(f'{$tb / min($sb, $cb):.1f}x')")
  echo "| $op | $shape | $tf | $tb | $sf | $sb | $cf | $cb | $ratio |"
done <<< "$theirs"
