using System.Diagnostics;

namespace ManagedTensor.Bench;

/// <summary>
/// CPU attention timings (`dotnet run -c Release --project bench -- attention-cpu [B H T D]...`),
/// causal, float32: the fused forward, and forward + backward (the op pair a training step runs).
/// Default shapes are the two CPU training configs: nanoGPT's CPU run (B 12, H 4, T 64, D 32) and
/// shakespeare_char (B 64, H 6, T 256, D 64). Prints "B H T D fwd-ms fwdbwd-ms fwd-GFLOP/s fwdbwd-GFLOP/s",
/// best of 5 reps; bench/attention_cpu_vs_torch.py prints the same line for PyTorch.
/// </summary>
public static class AttentionCpuRunner
{
    public static void Run(string[] args)
    {
        var shapes = new List<int[]>();
        for (int i = 0; i + 3 < args.Length; i += 4) shapes.Add([int.Parse(args[i]), int.Parse(args[i + 1]), int.Parse(args[i + 2]), int.Parse(args[i + 3])]);
        if (shapes.Count == 0) shapes = [[12, 4, 64, 32], [64, 6, 256, 64]];
        foreach (var sh in shapes)
        {
            int b = sh[0], h = sh[1], t = sh[2], d = sh[3];
            var gen = new Generator(1);
            var q = Tensor.Randn([b, h, t, d], gen);
            var k = Tensor.Randn([b, h, t, d], gen);
            var v = Tensor.Randn([b, h, t, d], gen);
            var dout = Tensor.Randn([b, h, t, d], gen);
            var attrs = new AttentionAttrs(true, 1 / Math.Sqrt(d));
            var o = Tensor.Empty([b, h, t, d]);
            var lse = Tensor.Empty([b, h, t]);
            // The op pair as autograd runs it: the forward keeps (out, lse), the backward starts from them.
            void Forward() => q.Backend.Execute(Op.Attention, [q, k, v], [o, lse], attrs);
            void ForwardBackward()
            {
                Forward();
                Tensor.AttentionBackward(dout, q, k, v, o, lse, attrs);
            }
            double fwd = Time(Forward);
            double both = Time(ForwardBackward);
            // Causal FLOPs as PyTorch and flash-attention count them: 4 B H T^2 D / 2 forward, 2.5x that for backward.
            double flops = 4.0 * b * h * t * t * d / 2;
            Console.WriteLine($"{b} {h} {t} {d} {fwd * 1e3:F3} {both * 1e3:F3} {flops / fwd / 1e9:F1} {3.5 * flops / both / 1e9:F1}");
        }
    }

    private static double Time(Action body)
    {
        // Warm up for a second: tiered compilation needs a few dozen calls (and a quiet moment) before it
        // replaces the first-tier code of the TensorPrimitives instantiations and the lambdas.
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed.TotalSeconds < 1) body();
        double best = double.MaxValue, bestCpu = double.MaxValue;
        var process = Process.GetCurrentProcess();
        for (int rep = 0; rep < 5; rep++)
        {
            int inner = 0;
            process.Refresh();
            var cpu0 = process.TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            do { body(); inner++; } while (sw.Elapsed.TotalSeconds < 0.2);
            best = Math.Min(best, sw.Elapsed.TotalSeconds / inner);
            process.Refresh();
            bestCpu = Math.Min(bestCpu, (process.TotalProcessorTime - cpu0).TotalSeconds / inner);
        }
        Console.Error.WriteLine($"  process CPU time per call: {bestCpu * 1e3:F3} ms (wall time is unreliable on a loaded machine)");
        return best;
    }
}
