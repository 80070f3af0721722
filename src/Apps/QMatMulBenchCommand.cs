using System.CommandLine;
using ManagedTensor.Gpu.Bench;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt bench qmatmul --traffic` (no GPU: weight bytes per decoded token and the tokens/s bound of Llama shapes) and
/// `mt bench qmatmul --device cuda[:N] [--quick] [--json FILE]` (the quantized GEMV and GEMM timed at those shapes);
/// see QMatMulBench. bench/qmatmul_vs_torch.py runs it next to PyTorch fp16 on the same GPU.
/// </summary>
public static class QMatMulBenchCommand
{
    public static Command Create(TextWriter output)
    {
        var traffic = new Option<bool>("--traffic") { Description = "print the bytes per decoded token and the tokens/s bounds (no GPU needed)" };
        var device = new Option<string>("--device") { Description = "cuda or cuda:N (the N-th NVIDIA GPU)", DefaultValueFactory = _ => "cuda" };
        var json = new Option<string?>("--json") { Description = "also write the results to this JSON file" };
        var quick = new Option<bool>("--quick") { Description = "TinyLlama-1.1B's shapes in Q4_0 only" };
        var cmd = new Command("qmatmul", "quantized matmul (GEMV for decode, GEMM for prefill) on Llama shapes: GB/s, TFLOP/s, bytes per token") { traffic, device, json, quick };
        cmd.SetAction(p =>
        {
            if (p.GetValue(traffic)) return QMatMulBench.Run(["--traffic"], output);
            var dev = Cli.ParseDevice(p.GetValue(device)!, fallback: "mt bench qmatmul --traffic needs no GPU");
            if (dev.Kind != DeviceKind.Cuda) throw new UserErrorException($"--device {dev}: mt bench qmatmul measures CUDA kernels; use --device cuda or cuda:N (or --traffic)");
            var args = new List<string> { "--device", p.GetValue(device)! };
            if (p.GetValue(json) is { } path) args.AddRange(["--json", path]);
            if (p.GetValue(quick)) args.Add("--quick");
            return QMatMulBench.Run([.. args], output);
        });
        return cmd;
    }
}
