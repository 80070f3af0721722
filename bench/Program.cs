using BenchmarkDotNet.Running;
using ManagedTensor.Bench;

// `sgemm [--threads T] [sizes...]`: the GFLOP/s table used by sgemm_vs_torch.sh;
// `versions [sizes...]`: naive -> blocked -> packed SGEMM side by side; `gpt-train [--iters N] [--profile]`:
// the GPT training step timing used by gpt_train_vs_torch.sh; `attention-cpu [B H T D]...`: fused CPU
// attention, forward and forward + backward; `kv-decode [contexts...]`: decode ms/token against a KV cache of
// each length (KvDecodeRunner); `qmatmul [--types T...] [--rows M...]`: QMatMul at the 1.1B layer
// shapes; `llama-speed|llama-greedy|llama-logits|write-random-llama`: our side of quant_vs_llamacpp.sh;
// `scan-wkv [--quick]`: selective scan and WKV on the CPU (bench/scan_wkv_vs_torch.sh); `serve-load` and `make-tinyllama-gguf`: the `mt serve` load test (bench/serve_load.sh); anything else goes to
// BenchmarkDotNet. `yolo --mode forward|train`: YOLOv8n at 640 x 640 (bench/yolo_vs_torch.sh, YoloRunner);
// `diffusion --arch unet|dit` and `whisper --mode encode|train`: bench/diffusion_vs_torch.sh and bench/whisper_vs_torch.sh.
if (args.Length > 0 && args[0] == "sgemm") SgemmRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "gpt-train") GptTrainRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "finetune-step") FinetuneStepRunner.Run(args[1..]); // where an `mt finetune` step goes, op by op, and its device memory peak
else if (args.Length > 0 && args[0] == "whisper-train") WhisperTrainRunner.Run(args[1..]); // --data DIR [--profile]: where `mt transcribe train`'s step goes
else if (args.Length > 0 && args[0] == "versions") SgemmVersions.Run(args[1..]);
else if (args.Length > 0 && args[0] == "attention-cpu") AttentionCpuRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "scan-wkv") ScanWkvRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "kv-decode") KvDecodeRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "serve-load") ServeLoadRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "make-tinyllama-gguf") ServeLoadRunner.MakeTinyLlamaGguf(args[1..]);
else if (args.Length > 0 && args[0] == "yolo") YoloRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "diffusion") DiffusionRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "whisper") WhisperRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "qmatmul") QMatMulRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "qdot") QMatMulRunner.Dot(args[1..]);
else if (args.Length > 0 && args[0] == "conv") ConvRunner.Run(args[1..]); // `conv [--path im2col|direct|both]`: CPU Conv2d and its backward ops at the YOLOv8n and U-Net shapes
else if (args.Length > 0 && args[0] == "norm-silu") NormSiluRunner.Run(args[1..]); // batch norm + SiLU, two ops against the fused one
else if (args.Length > 0 && (args[0].StartsWith("llama-") || args[0] is "write-random-llama" or "gguf-compare")) LlamaCppPeerRunner.Run(args);
else BenchmarkSwitcher.FromAssembly(typeof(SgemmRunner).Assembly).Run(args);
