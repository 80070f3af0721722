#!/usr/bin/env bash
# Regenerates bench/KERNELS.md, the SASS-level kernel report and performance model (and bench/kernel_model.json,
# the predictions scripts/gpu_checks.sh compares with measurements), with no GPU: fetches ptxas and cuobjdump
# (scripts/cuda_tools.sh, cached after the first run), builds, and runs `mt kernels --report`.
# About 2 minutes on 2 cores. Extra arguments go to mt (e.g. --filter hgemm to print a subset only).
set -euo pipefail
cd "$(dirname "$0")/.."
export MT_CUDA_TOOLS="$(scripts/cuda_tools.sh)"
dotnet build src/Apps/mt.csproj -c Release -v q -nologo >/dev/null
if [ $# -gt 0 ]; then
    exec dotnet src/Apps/bin/Release/net10.0/mt.dll kernels --report "$@"
fi
dotnet src/Apps/bin/Release/net10.0/mt.dll kernels --report --out bench/KERNELS.md --model-json bench/kernel_model.json
