using System.Globalization;
using System.Text;

namespace ManagedTensor.Gpu.Sass;

/// <summary>
/// A GPU's published limits: SMs, boost clock, dense tensor (bf16 in, fp32 accumulate) and fp32 peaks, DRAM
/// bandwidth. <see cref="MmaSyncFraction"/>: the share of the tensor peak that mma.sync (the instruction our
/// kernels issue; Hopper's full rate needs wgmma) can reach: 1 before Hopper; on H100/H200 about 0.62, as
/// microbenchmarks of mma.sync against wgmma report (Luo et al., "Benchmarking and Dissecting the Nvidia Hopper
/// GPU Architecture", 2024) — an assumption of the model, to be replaced by a measurement.
/// </summary>
public sealed record GpuSpec(string Name, string Arch, int Sms, double ClockGHz, double TensorTflops, double Fp32Tflops, double DramGBs, double MmaSyncFraction)
{
    /// <summary>GeForce RTX 4070 (AD104): 46 SMs, 2.475 GHz boost, 58.3 TF dense fp16/bf16 with fp32 accumulate, 29.1 TF fp32, 504 GB/s.</summary>
    public static readonly GpuSpec Rtx4070 = new("RTX 4070", "sm_89", 46, 2.475, 58.3, 29.1, 504, 1.0);

    /// <summary>H100 SXM5: 132 SMs, 1.83 GHz (tensor boost), 989 TF dense bf16, 67 TF fp32, 3350 GB/s.</summary>
    public static readonly GpuSpec H100 = new("H100 SXM", "sm_90", 132, 1.83, 989.4, 66.9, 3350, 0.62);

    /// <summary>H200 SXM: H100's SMs and clocks with 4800 GB/s of HBM3e.</summary>
    public static readonly GpuSpec H200 = new("H200 SXM", "sm_90", 132, 1.83, 989.4, 66.9, 4800, 0.62);

    public static IReadOnlyList<GpuSpec> All { get; } = [Rtx4070, H100, H200];

    /// <summary>mma.m16n8k16 instructions (4096 flops each) one SM completes per clock at the mma.sync rate.</summary>
    public double HmmaPerClock => TensorTflops * 1e12 * MmaSyncFraction / (Sms * ClockGHz * 1e9 * 4096);

    /// <summary>FFMA warp instructions (64 flops each) per SM per clock.</summary>
    public double FfmaPerClock => Fp32Tflops * 1e12 / (Sms * ClockGHz * 1e9 * 64);
}

/// <summary>One prediction: the workload, the kernel and its hot-loop counts, the predicted TFLOP/s and what bounds it.</summary>
public sealed record Prediction(string Workload, string Kernel, string Device, double Tflops, string Bound, double TensorUtilization, double WaveEfficiency);

/// <summary>
/// A performance model from the kernel report's counts: per scheduler (an SM has 4), W resident warps each run
/// the hot loop; one iteration of one warp needs
///   tensor = HMMA x 4 / (SM's HMMA per clock)   clocks of its scheduler's tensor pipe,
///   issue  = instructions                       issue slots (one per clock per scheduler),
///   mufu   = MUFU x 8                           clocks of its special-function unit (4 lanes per scheduler: 8 clocks a warp instruction),
/// and W warps overlap these, but one warp's own chain is serial: an iteration of the W warps takes
///   T = max(W tensor, W issue, W mufu, tensor + issue - HMMA),
/// so the tensor pipe is busy W tensor / T of the time. Predicted TFLOP/s = peak x mma.sync fraction x that
/// utilization x wave efficiency (the last wave of blocks partly empty), capped by DRAM traffic. It is a bound
/// from instruction counts: it ignores shared-memory bank conflicts, barriers, L2 misses and clock throttling,
/// which is what <c>scripts/gpu_checks.sh</c> measures its error against.
/// </summary>
public static class PerfModel
{
    /// <summary>The report kernels the model needs, and the workloads it predicts.</summary>
    public static readonly (string Workload, string Kernel)[] Workloads =
    [
        ("GEMM bf16 4096^3", "hgemm mma bf16 NT"),
        ("GEMM bf16 4096^3", "hgemm wgmma bf16 NT"),   // sm_90a only: what GemmSelect runs on an H100/H200
        ("attention fwd B4 H16 T2048 D64 causal", "attention fwd mma bf16 d64"),
        ("attention fwd B4 H16 T2048 D128 causal", "attention fwd mma bf16 d128"),
    ];

    /// <summary>Predictions for every workload on every device, from the analyses of the report (sm_89 rows for Ada, sm_90 for Hopper).</summary>
    public static IReadOnlyList<Prediction> Predict(IReadOnlyList<KernelAnalysis> rows)
    {
        var list = new List<Prediction>();
        foreach (var gpu in GpuSpec.All)
        {
            foreach (var (workload, kernel) in Workloads)
            {
                var a = rows.FirstOrDefault(r => r.Kernel.Name == kernel && r.Arch.TrimEnd('a') == gpu.Arch && r.HotLoop is not null);
                if (a is null) continue;
                list.Add(workload.StartsWith("GEMM", StringComparison.Ordinal) ? Gemm(a, gpu, 4096, 4096, 4096) : Attention(a, gpu, workload));
            }
        }
        return list;
    }

    /// <summary>
    /// HMMA.16816 equivalents of one tensor-core instruction of the kernel's hot loop: 1, or 16 for Hopper's HGMMA.64x128x16
    /// (a warpgroup's m64n128k16 is 262,144 flops; each of its 4 warps issues one HGMMA: 65,536 flops, 16 HMMA of 4,096).
    /// </summary>
    public static double MmaWeight(KernelAnalysis a) => a.Kernel.Sm90aOnly ? 16 : 1;

    /// <summary>The share of the tensor peak the kernel's instruction can reach: wgmma's is the full rate.</summary>
    public static double PeakFraction(KernelAnalysis a, GpuSpec gpu) => a.Kernel.Sm90aOnly ? 1.0 : gpu.MmaSyncFraction;

    /// <summary>Tensor-pipe utilization of the hot loop with the kernel's resident warps, and what bounds it.</summary>
    public static (double Utilization, string Bound) Utilization(KernelAnalysis a, GpuSpec gpu)
    {
        var h = a.HotLoop!.Value;
        double w = Math.Max(1.0, a.Occupancy.WarpsPerSm / 4.0);   // warps per scheduler
        double tensor = h.Mma * MmaWeight(a) * 4 / (gpu.HmmaPerClock / gpu.MmaSyncFraction * PeakFraction(a, gpu));
        double issue = h.Total, mufu = h.Mufu * 8.0, chain = tensor + h.Total - h.Mma;
        double t = Math.Max(Math.Max(w * tensor, w * issue), Math.Max(w * mufu, chain));
        string bound = t == w * tensor ? "tensor" : t == w * issue ? "issue" : t == w * mufu ? "MUFU" : "latency (too few warps)";
        return (w * tensor / t, bound);
    }

    /// <summary>C = A B for M x N x K with the kernel's 128 x 128 blocks.</summary>
    public static Prediction Gemm(KernelAnalysis a, GpuSpec gpu, int m, int n, int k)
    {
        var (u, bound) = Utilization(a, gpu);
        long blocks = (long)((m + 127) / 128) * ((n + 127) / 128);
        double waves = WaveEfficiency(blocks, gpu.Sms * Math.Max(1, a.Occupancy.BlocksPerSm));
        double flops = 2.0 * m * n * k;
        double computeSeconds = flops / (gpu.TensorTflops * 1e12 * PeakFraction(a, gpu) * u * waves);
        double dramSeconds = 2.0 * ((double)m * k + (double)k * n + (double)m * n) / (gpu.DramGBs * 1e9); // bf16, each matrix once
        if (dramSeconds > computeSeconds) bound = "DRAM";
        return new Prediction(m == n && n == k ? $"GEMM bf16 {m}^3" : $"GEMM bf16 {m}x{n}x{k}", a.Kernel.Name, gpu.Name, flops / Math.Max(computeSeconds, dramSeconds) / 1e12, bound, u, waves);
    }

    /// <summary>Causal attention forward, B4 H16 T2048: query tiles of 128 rows (8 warps x 16), half the score matrix.</summary>
    public static Prediction Attention(KernelAnalysis a, GpuSpec gpu, string workload)
    {
        const int b = 4, h = 16, t = 2048;
        int d = a.Kernel.Name.EndsWith("d128", StringComparison.Ordinal) ? 128 : 64;
        var (u, bound) = Utilization(a, gpu);
        long blocks = (long)b * h * (t / 128);
        double waves = WaveEfficiency(blocks, gpu.Sms * Math.Max(1, a.Occupancy.BlocksPerSm));
        double flops = 4.0 * b * h * t * t * d / 2;               // QK^T and PV, causal half
        double seconds = flops / (gpu.TensorTflops * 1e12 * gpu.MmaSyncFraction * u * waves);
        return new Prediction(workload, a.Kernel.Name, gpu.Name, flops / seconds / 1e12, bound, u, waves);
    }

    /// <summary>Blocks / (waves x concurrent blocks): the share of the last wave's slots that hold a block.</summary>
    public static double WaveEfficiency(long blocks, long concurrent)
    {
        long waves = (blocks + concurrent - 1) / concurrent;
        return (double)blocks / (waves * concurrent);
    }

    public static string Table(IReadOnlyList<Prediction> predictions)
    {
        var s = new StringBuilder();
        s.AppendLine("| workload | device | kernel | predicted TFLOP/s | bound | tensor pipe busy | wave efficiency |");
        s.AppendLine("| --- | --- | --- | ---: | --- | ---: | ---: |");
        foreach (var p in predictions)
            s.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {p.Workload} | {p.Device} | {p.Kernel} | {p.Tflops:F1} | {p.Bound} | {p.TensorUtilization * 100:F0}% | {p.WaveEfficiency * 100:F0}% |"));
        return s.ToString();
    }

    /// <summary>The predictions as JSON lines for scripts/gpu_checks.sh (bench/model_vs_measured.py reads them).</summary>
    public static string Json(IReadOnlyList<Prediction> predictions)
    {
        var rows = predictions.Select(p => string.Create(CultureInfo.InvariantCulture,
            $"  {{\"workload\": \"{p.Workload}\", \"device\": \"{p.Device}\", \"kernel\": \"{p.Kernel}\", \"tflops\": {p.Tflops:F2}, \"bound\": \"{p.Bound}\"}}"));
        return "[\n" + string.Join(",\n", rows) + "\n]\n";
    }
}
