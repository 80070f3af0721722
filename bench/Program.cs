using BenchmarkDotNet.Running;
using ManagedTensor.Bench;

// `sgemm [--threads T] [sizes...]`: the GFLOP/s table used by sgemm_vs_torch.sh;
// `versions [sizes...]`: naive -> blocked -> packed SGEMM side by side; `gpt-train [--iters N] [--profile]`:
// the GPT training step timing used by gpt_train_vs_torch.sh; `attention-cpu [B H T D]...`: fused CPU
// attention, forward and forward + backward; `kv-decode [contexts...]`: decode ms/token against a KV cache of
// each length (KvDecodeRunner); anything else goes to BenchmarkDotNet.
if (args.Length > 0 && args[0] == "sgemm") SgemmRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "gpt-train") GptTrainRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "versions") SgemmVersions.Run(args[1..]);
else if (args.Length > 0 && args[0] == "attention-cpu") AttentionCpuRunner.Run(args[1..]);
else if (args.Length > 0 && args[0] == "kv-decode") KvDecodeRunner.Run(args[1..]);
else BenchmarkSwitcher.FromAssembly(typeof(SgemmRunner).Assembly).Run(args);
