#!/usr/bin/env bash
# ManagedTensor against llama.cpp (LLamaSharp 0.30.0 + LLamaSharp.Backend.Cpu 0.30.0, bench/llamacpp) on the same GGUF
# files, side by side:
#  1. interoperability, both directions (about a minute):
#     - stories260K written by `mt quantize` as F32 and Q8_0: llama.cpp's greedy tokens = ours = the checked-in
#       reference (tests/fixtures/stories260K/greedy200.txt), first 64;
#     - files llama.cpp's quantizer writes (Q4_K_M, Q4_K_S, Q6_K, Q8_0), from stories260K (64 wide: its K-quant rows
#       fall back to Q5_0/Q5_1/Q8_0) and from a random 256-wide model (real Q4_K/Q6_K tensors): they load in mt, give
#       llama.cpp's greedy tokens and close logits;
#     - the same F32 file quantized by llama.cpp and by `mt quantize`: same-type tensors hold the same bytes;
#  2. speed on the TinyLlama-1.1B shape with random weights (F32 written by the bench app, Q8_0, Q4_0, Q4_K by
#     `mt quantize`): prefill and decode tokens/s, same prompt ids and lengths, both sides on $THREADS threads, rounds
#     interleaved (llama.cpp, mt, next format ...), every round printed with the load average. llama.cpp's worker
#     threads spin while waiting: on a busy machine its figures collapse, so read them with the load average.
# Usage: bench/quant_vs_llamacpp.sh [interop|speed|all]   (ROUNDS=3 PROMPT=64 DECODE=32 THREADS=2 TYPES="Q4_0 Q8_0 Q4_K F32")
# Needs ~10 GB of disk under $WORK (default /tmp/mt-llamacpp) and ~10 GB of memory for the F32 model.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
ROUNDS=${ROUNDS:-3}; PROMPT=${PROMPT:-64}; DECODE=${DECODE:-32}; THREADS=${THREADS:-2}
TYPES=${TYPES:-"Q4_0 Q8_0 Q4_K F32"}
WORK=${WORK:-/tmp/mt-llamacpp}
mkdir -p "$WORK"

dotnet build -c Release src/Apps -v q -nologo >/dev/null
dotnet build -c Release bench -v q -nologo >/dev/null
dotnet build -c Release bench/llamacpp -v q -nologo >/dev/null
MT="dotnet src/Apps/bin/Release/net10.0/mt.dll"
OURS="dotnet bench/bin/Release/net10.0/ManagedTensor.Bench.dll"
LCPP="dotnet bench/llamacpp/bin/Release/net10.0/llamacpp-bench.dll"
load() { cut -d' ' -f1-3 /proc/loadavg; }

# Largest |a - b| over two columns of numbers, and whether their argmax agree.
compare_logits() {
    paste "$1" "$2" | awk '{d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; if (NR == 1 || $1 > ba) { ba = $1; ia = NR }
        if (NR == 1 || $2 > bb) { bb = $2; ib = NR } } END { printf "max |logit diff| %.4g, argmax %s\n", m, (ia == ib ? "equal" : "DIFFERS") }'
}

interop() {
    echo "== interop: mt quantize -> llama.cpp (stories260K, greedy 64 after BOS)"
    want=$(head -64 tests/fixtures/stories260K/greedy200.txt | tr '\n' ' ' | sed 's/ $//')
    for t in F32 Q8_0; do
        f="$WORK/s260k-mt-$t.gguf"
        $MT quantize data/stories260K/stories260K.bin "$f" --tokenizer data/stories260K/tok512.bin --type $t >/dev/null
        theirs=$($LCPP greedy "$f" 64); ours=$($OURS llama-greedy "$f" 64)
        echo "  $t: llama.cpp $([ "$theirs" == "$want" ] && echo "= reference" || echo "DIFFERS from reference: $theirs"), mt $([ "$ours" == "$want" ] && echo "= reference" || echo "DIFFERS: $ours")"
    done

    echo "== interop: llama.cpp quantize -> mt"
    $OURS write-random-llama "$WORK/small-f32.gguf" small >/dev/null
    for src in s260k small; do
        f32="$WORK/$src-f32.gguf"; [ $src == s260k ] && f32="$WORK/s260k-mt-F32.gguf"
        for q in Q4_K_M Q4_K_S Q6_K Q8_0; do
            f="$WORK/$src-llamacpp-$q.gguf"
            $LCPP quantize "$f32" "$f" $q >/dev/null 2>&1 || { echo "  $src $q: llama.cpp's quantizer refuses this file"; continue; }
            theirs=$($LCPP greedy "$f" 32); ours=$($OURS llama-greedy "$f" 32)
            ids="1,20,57,94,131,168,205,242,279,300,11,48,85,122,159,196"
            $LCPP logits "$f" "$ids" > "$WORK/l1.txt"; $OURS llama-logits "$f" "$ids" > "$WORK/l2.txt"
            mix=$($OURS gguf-compare "$f" "$f" | sed 's/.*types: //')
            echo "  $src $q [$mix]: greedy 32 $([ "$theirs" == "$ours" ] && echo equal || echo "DIFFER (llama.cpp $theirs | mt $ours)"); 16-token prompt: $(compare_logits "$WORK/l1.txt" "$WORK/l2.txt")"
        done
    done

    echo "== interop: the same F32 file quantized by llama.cpp and by mt quantize (bytes of same-type tensors)"
    for q in Q8_0 Q4_0 Q6_K Q4_K_M; do
        $LCPP quantize "$WORK/small-f32.gguf" "$WORK/small-lcpp-$q.gguf" $q >/dev/null
        $MT quantize "$WORK/small-f32.gguf" "$WORK/small-mt-$q.gguf" --type $q >/dev/null
        echo "  $q: $($OURS gguf-compare "$WORK/small-lcpp-$q.gguf" "$WORK/small-mt-$q.gguf" | tail -1)"
    done
}

speed() {
    echo "== speed: TinyLlama-1.1B shape, random weights, prompt $PROMPT, decode $DECODE, $THREADS threads, $(nproc) cores"
    [ -f "$WORK/tiny-F32.gguf" ] || $OURS write-random-llama "$WORK/tiny-F32.gguf"
    for t in $TYPES; do
        [ $t == F32 ] || [ -f "$WORK/tiny-$t.gguf" ] || $MT quantize "$WORK/tiny-F32.gguf" "$WORK/tiny-$t.gguf" --type $t
    done
    for r in $(seq 1 "$ROUNDS"); do
        for t in $TYPES; do
            f="$WORK/tiny-$t.gguf"
            echo "round $r $t  $($LCPP speed "$f" "$THREADS" "$PROMPT" "$DECODE")  load $(load)"
            echo "round $r $t  $(DOTNET_PROCESSOR_COUNT=$THREADS $OURS llama-speed "$f" "$PROMPT" "$DECODE")  load $(load)"
        done
    done
}

case $WHAT in
    interop) interop ;;
    speed) speed ;;
    *) interop; speed ;;
esac
echo "load average: $(load) on $(nproc) cores"
