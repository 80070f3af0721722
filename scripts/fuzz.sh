#!/usr/bin/env bash
# The format fuzzer at length: MUTATIONS (default 500) seeded mutations of every format the project reads
# (llama2.c checkpoint and tokenizer.bin, GGUF, Hugging Face safetensors + config.json + tokenizer.json, sharded
# or not, llm.c GPT-2, training checkpoints). Each must load and run, or end in a one-line user error; the
# counts of each outcome are printed per format, and any unhandled exception with its mutation (to reproduce).
#   usage: scripts/fuzz.sh [MUTATIONS] [SEED]
set -uo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
report=$(mktemp)
trap 'rm -f "$report"' EXIT
dotnet build tests/ManagedTensor.Tests.csproj -c Release -v quiet 2>&1 | grep -E " error |rror CS" && exit 1
MT_FUZZ_MUTATIONS=${1:-500} MT_FUZZ_SEED=${2:-20251204} MT_FUZZ_REPORT=$report \
    dotnet test tests/ManagedTensor.Tests.csproj -c Release --no-build --filter "FullyQualifiedName~FormatFuzzTests" >/dev/null
rc=$?
sort "$report" | grep -v '^ ' ; grep '^ ' "$report"
echo "exit code $rc (0: no unhandled exception)"
exit $rc
