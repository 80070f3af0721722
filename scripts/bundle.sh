#!/usr/bin/env bash
# Publishes `mt` as one self-contained linux-x64 executable (the .NET runtime inside, no SDK or runtime
# needed on the target) plus the default data files, for GPU hosts without .NET. See docs/GPU.md.
#   scripts/bundle.sh [output-dir]        default: artifacts/mt-linux-x64 (and a .tar.gz next to it)
# Not trimmed: ILGPU finds CoreLib methods by reflection, and trimming removes them.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

out="${1:-artifacts/mt-linux-x64}"
rm -rf "$out"
dotnet publish src/Apps/mt.csproj -c Release -r linux-x64 --self-contained \
    -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true \
    -p:InvariantGlobalization=true -p:DebugType=none -p:PublishTrimmed=false \
    -o "$out"
# The default model, tokenizers and text (DataFiles.Find looks next to the executable).
mkdir -p "$out/data"
cp -r data/. "$out/data/"
tar -czf "$out.tar.gz" -C "$(dirname "$out")" "$(basename "$out")"
echo "bundle: $out ($(du -sh "$out/mt" | cut -f1) executable), archive $out.tar.gz ($(du -sh "$out.tar.gz" | cut -f1))"
echo "on the GPU host: tar xzf $(basename "$out").tar.gz && cd $(basename "$out") && ./mt selftest --device cuda"
