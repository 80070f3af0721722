#!/usr/bin/env bash
# Every GPU figure the open issues ask for, in one prepared run on a GPU host (H100/H200 with PyTorch;
# no .NET SDK needed there). Build the bundle first on a machine with the SDK (scripts/bundle.sh), carry
# artifacts/mt-linux-x64, then on the GPU host:
#   scripts/gpu_checks.sh [artifacts/mt-linux-x64] [results-dir] [quick|full|llama|quant|scan|yolo]
# The bundle is 67 MB unpacked (a 53 MB single-file executable, its two native libraries, data/); where what can be
# carried is limited, carry artifacts/mt-linux-x64.tar.gz (53 MB) and unpack it there first:
#   tar xzf artifacts/mt-linux-x64.tar.gz -C artifacts && scripts/gpu_checks.sh artifacts/mt-linux-x64 "$OUT" quick
# Each step has its own time limit and writes its log to results-dir, so a slow or failing step does not
# cost the others. "quick" (the default) fits a 10-minute device call:
#   1. mt selftest --device cuda            issue 4: every op, GPU vs CPU reference, realistic sizes
#   2. GEMM vs cuBLAS (torch.matmul)        issue 5: TFLOP/s and ratios, fp32 (TF32 off) and bf16
#   3. attention vs SDPA flash              issue 6: TFLOP/s fwd and fwd+bwd, and peak memory per T
#   4. GPT shakespeare_char, 300 steps      issue 4: ms/iter ours vs PyTorch eager fp32, same GPU, peak memory
#   5. the performance model                issue 14: bench/kernel_model.json's predictions (made offline from the SASS
#                                           report by bench/kernel_report.sh) next to steps 2 and 3's measurements
# Step limits of "quick" sum to 540 s (the bundle starts in about a second), so the run fits a 600 s call.
# Exit status: 0 when every step exited 0, else 1 (the failed steps are listed at the end); 2 without a bundle.
# "full" adds the whole 5000-step shakespeare_char run (best val loss, wall time) for both.
# "llama" (a separate call) is issue 7's GPU decode: stories260K and the TinyLlama-1.1B shape (F16) with
# the one Llama (weights as stored), next to the same models in PyTorch eager on the same GPU, and the decode step
# with 64, 512 and 2048 tokens in the KV cache (read in place: its cost should grow only by the attention's reads).
# "quant" (a separate call, ~8 minutes) is issue 12's quantized weights on the GPU: the qmatmul and decode
# conformance cases at realistic sizes, the GEMV/GEMM at TinyLlama-1.1B and Llama-2-7B shapes in Q4_0, Q8_0 and
# Q4_K next to PyTorch fp16 F.linear (bytes per token, GB/s, fraction of peak, ours/torch), and the whole 1.1B
# shape decoding in Q4_0 (mt bench --big --types Q4_0) next to PyTorch fp16.
# "scan" (a separate call, ~4 minutes) is issue 16's selective scan and WKV GPU kernels: their conformance cases at
# realistic sizes, then forward and forward+backward ms of ours (mt bench scan-wkv) and of the naive PyTorch loops on
# the same GPU (bench/scan_wkv_torch.py --device cuda --big), same shapes, one line per op, shape and schedule.
# "yolo" (a separate call, at most 8 x 65 s) is issue 17's YOLOv8n at 640 x 640 (80 classes): a batch-1 forward in eval
# mode with fused batch norm (images/s) and a batch-2 training step (ms), ours (`mt bench yolo`, the workload of
# src/Models/Detection/Yolo/YoloSpeed.cs) and the same architecture in plain PyTorch (bench/yolo_torch.py --device
# cuda), each synchronized around its timings, 2 interleaved rounds (YOLO_ROUNDS), medians of 10 timed iterations
# after 3 warm-up ones, each run limited to 65 s (YOLO_LIMIT; ours compiles its kernels in the warm-up); the ratio
# table (bench/bench_table.py) in results-dir/YOLO_GPU.md, the raw lines in yolo_raw.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle="${1:-artifacts/mt-linux-x64}"
out="${2:-${OUT:-gpu-results}}"
mode="${3:-quick}"
mt="$bundle/mt"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
[ -x "$mt" ] || { echo "no bundle at $bundle (run scripts/bundle.sh on a machine with the .NET SDK)" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

failed=()
step() { # step NAME SECONDS COMMAND...  (rc 124: the step ran past its limit)
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || failed+=("$name (rc $rc)")
    echo "   rc=$rc, $((SECONDS - t0)) s; tail of $out/$name.log:"
    tail -n 25 "$out/$name.log" | sed 's/^/   /'
}
finish() {
    echo "results in $out"
    if [ ${#failed[@]} -gt 0 ]; then
        echo "FAILED: ${failed[*]}"
        exit 1
    fi
    echo "all steps passed"
    exit 0
}

if [ "$mode" = llama ]; then
    step llama_ours 240 "$mt" bench --device cuda --big --types F16 --context 64 512 2048
    step llama_torch 240 python3 bench/llama_decode_vs_torch.py --device cuda --big --f16
    finish
fi

if [ "$mode" = quant ]; then
    step quant_selftest_qmatmul 120 "$mt" selftest --device cuda --filter qmatmul
    step quant_selftest_decode 30 "$mt" selftest --device cuda --filter decode
    step qmatmul_vs_torch 240 python3 bench/qmatmul_vs_torch.py --mt "$mt" --out "$out/QMATMUL_GPU.md"
    step llama_q4_0_ours 90 "$mt" bench --device cuda --big --types Q4_0
    step llama_f16_torch 75 python3 bench/llama_decode_vs_torch.py --device cuda --big --f16
    finish
fi

if [ "$mode" = scan ]; then
    step scan_selftest 60 "$mt" selftest --device cuda --filter scan
    step wkv_selftest 60 "$mt" selftest --device cuda --filter wkv
    step scan_wkv_ours 150 "$mt" bench scan-wkv --device cuda
    step scan_wkv_torch 240 python3 bench/scan_wkv_torch.py --device cuda --big
    finish
fi

if [ "$mode" = yolo ]; then
    source bench/lib.sh   # bench_order, bench_run (one raw line per run, with the load average)
    raw="$out/yolo_raw.txt"
    : > "$raw"
    yolo_one() { # yolo_one RUNNER MODE: the runner's output (its result line last), stderr and stdout also in a log
        local log="$out/yolo_$1_$2.log"
        case $1 in
            ours) timeout "${YOLO_LIMIT:-65}" "$mt" bench yolo --device cuda --mode "$2" --iters 13 --warmup 3 2>>"$log" | tee -a "$log" ;;
            pytorch) timeout "${YOLO_LIMIT:-65}" python3 bench/yolo_torch.py --device cuda --mode "$2" --iters 13 --warmup 3 2>>"$log" | tee -a "$log" ;;
        esac
    }
    for ((round = 1; round <= ${YOLO_ROUNDS:-2}; round++)); do
        for m in forward train; do
            for r in $(bench_order "$round" ours pytorch); do
                echo "== yolo round $round, $m, $r (limit ${YOLO_LIMIT:-65}s; log $out/yolo_${r}_$m.log)"
                bench_run "$raw" "round=$round case=$m threads=gpu runner=$r" "params ms_per_iter images_per_s peak_rss_mb device_peak_mb" \
                    yolo_one "$r" "$m"
                tail -n 1 "$raw" | grep -q "ms_per_iter=[0-9]" || failed+=("yolo round $round $m $r")
            done
        done
    done
    step yolo_table 30 python3 bench/bench_table.py "$raw" "$out/YOLO_GPU.md" --same params --rate images_per_s=images/s \
        --title "YOLOv8n 640x640, $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" \
        --command "scripts/gpu_checks.sh BUNDLE OUT yolo" --case "forward=forward, batch 1, fused BN" --case "train=training step, batch 2" \
        --runner ours=ManagedTensor --runner "pytorch=PyTorch $(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null) eager"
    cat "$out/YOLO_GPU.md" 2>/dev/null
    finish
fi

step selftest 105 "$mt" selftest --device cuda
step gemm 135 python3 bench/gemm_vs_torch.py --mt "$mt" --quick --out "$out/GEMM_GPU.md"
step attention 105 python3 bench/attention_vs_torch.py --mt "$mt"
step model 5 python3 bench/model_vs_measured.py --model bench/kernel_model.json --gemm-json gemm_ours.json \
    --attention-log "$out/attention.log" --gpu "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
step attention_memory 40 python3 bench/attention_vs_torch.py --mt "$mt" --memory
iters=300 ours_limit=90 torch_limit=60
[ "$mode" = full ] && iters=5000 ours_limit=3000 torch_limit=1200
step gpt_ours "$ours_limit" "$mt" train gpt --preset shakespeare-char --device cuda \
    --max-iters "$iters" --out-dir "$out/gpt-ours" --sample-length 200 --log-interval 50
step gpt_torch "$torch_limit" python3 bench/torch_gpt_train.py --preset shakespeare-char --device cuda \
    --iters "$iters" $([ "$mode" = full ] && echo --eval)
finish
