using System.CommandLine;
using ManagedTensor.Gpu.Bench;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt bench gemm --device cuda[:N] [--json FILE] [--quick]`: the GEMM kernels (SGEMM versions side by side,
/// the selected float32 and bf16 kernels) on squares and GPT-2 124M training shapes; see GemmBench.
/// bench/gemm_vs_torch.py runs it and torch.matmul on the same GPU and prints the ratios.
/// Registered as a subcommand of `mt bench`: <c>cmd.Subcommands.Add(GemmBenchCommand.Create());</c>
/// </summary>
public static class GemmBenchCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "cuda or cuda:N (the N-th NVIDIA GPU)", DefaultValueFactory = _ => "cuda" };
        var json = new Option<string?>("--json") { Description = "also write the results to this JSON file" };
        var quick = new Option<bool>("--quick") { Description = "two squares and one GPT-2 layer only" };
        var cmd = new Command("gemm", "GEMM kernels on a CUDA GPU: TFLOP/s per kernel and shape") { device, json, quick };
        cmd.SetAction(p =>
        {
            var dev = Cli.ParseDevice(p.GetValue(device)!, fallback: null);
            if (dev.Kind != DeviceKind.Cuda) throw new UserErrorException($"--device {dev}: mt bench gemm measures CUDA kernels; use --device cuda or cuda:N");
            var args = new List<string> { "--device", p.GetValue(device)! };
            if (p.GetValue(json) is { } path) args.AddRange(["--json", path]);
            if (p.GetValue(quick)) args.Add("--quick");
            return GemmBench.Run([.. args]);
        });
        return cmd;
    }
}
