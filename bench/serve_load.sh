#!/usr/bin/env bash
# The `mt serve` load test (bench/ServeLoadRunner.cs): streaming chat clients against a server on 127.0.0.1 only,
# bounded in requests and seconds, on stories260K and on TinyLlama-1.1B's shape with random Q4_0 weights.
#   bash bench/serve_load.sh            both models;  MODELS=small or MODELS=big for one
# llama.cpp's server is not run beside it (not built here); the reference in the table is the same model's bare decode
# speed in process, one sequence without HTTP: the ceiling the server's requests share.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/Apps/mt.csproj -c Release -v q -nologo | grep -E " error |rror\(s\)" || true
dotnet build bench/ManagedTensor.Bench.csproj -c Release -v q -nologo | grep -E " error |rror\(s\)" || true
mt=src/Apps/bin/Release/net10.0/mt
bench=bench/bin/Release/net10.0/ManagedTensor.Bench
models="${MODELS:-small big}"

if [[ " $models " == *" small "* ]]; then
    "$bench" serve-load --mt "$mt" --clients 1,4,8 --requests 48 --max-tokens 64 --time-limit 120 --parallel 4 --queue 16
fi
if [[ " $models " == *" big "* ]]; then
    gguf="${TMPDIR:-/tmp}/tinyllama-1.1b-shape-q4_0.gguf"
    [ -f "$gguf" ] || "$bench" make-tinyllama-gguf "$gguf"
    "$bench" serve-load --mt "$mt" --model "$gguf" --clients 1,4 --requests 8 --max-tokens 16 --time-limit 300 --parallel 4 --queue 16 --context 256
fi
