#!/usr/bin/env bash
# Instructions per weight of each block format's row dot product (QMatMul's decode kernel), counted by callgrind:
# `qdot TYPE REPS` runs REPS passes over a 2048 x 2048 matrix on one thread; the difference between 5 and 1 passes,
# over 4 * 2048 * 2048 weights, is the kernel alone (start-up and JIT cancel out). A count, not a time: comparable
# between runs on a loaded machine. Valgrind has no AVX-512 or AVX-VNNI, so this counts the AVX2 paths.
# Usage: bench/qdot_callgrind.sh [TYPE...]   (default Q4_0 Q8_0 Q4_K Q6_K; about a minute per type)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
dotnet build -c Release bench -v q -nologo >/dev/null
count() { DOTNET_TieredCompilation=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    dotnet bench/bin/Release/net10.0/ManagedTensor.Bench.dll qdot "$1" "$2" 2>&1 | grep -oP "Collected : \K[0-9]+"; }
for t in "${@:-Q4_0 Q8_0 Q4_K Q6_K}"; do
    for type in $t; do
        a=$(count "$type" 1); b=$(count "$type" 5)
        echo "$type $(python3 -c "print(f'{($b - $a) / (4 * 2048 * 2048):.3f}')") instructions per weight"
    done
done
