using System.Diagnostics;

namespace ManagedTensor.Bench;

/// <summary>
/// CPU timings of Mamba's selective scan and RWKV-6's WKV (`dotnet run -c Release --project bench -- scan-wkv [--quick]`),
/// float32, forward and forward + backward, for both schedules (sequential, chunk-parallel). Shapes are the layers of
/// the ~0.8M-parameter `mt train` recipes (batch 12, length 64) and a longer sequence (batch 4, length 1024).
/// Prints one line per op, shape and schedule: "op shape schedule fwd-ms fwdbwd-ms", best of 5 (2 with --quick);
/// bench/scan_wkv_torch.py prints the same lines for the naive PyTorch loops, and bench/scan_wkv_vs_torch.sh
/// puts them side by side.
/// </summary>
public static class ScanWkvRunner
{
    public static void Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        int reps = quick ? 2 : 5;
        foreach (var (b, l, d, n) in new[] { (12, 64, 256, 16), (4, 1024, 256, 16) })
        {
            var gen = new Generator(1);
            var x = Tensor.Randn([b, l, d], gen);
            var delta = Tensor.Rand([b, l, d], gen, 0.001, 0.1);
            var a = Tensor.Rand([d, n], gen, -2, -0.1);
            var bm = Tensor.Randn([b, l, n], gen);
            var cm = Tensor.Randn([b, l, n], gen);
            var dd = Tensor.Randn([d], gen);
            var dy = Tensor.Randn([b, l, d], gen);
            foreach (bool parallel in new[] { false, true })
            {
                var attrs = new SelectiveScanAttrs(64, parallel);
                Tensor[] Fwd() => Tensor.Apply(ScanOps.SelectiveScan, attrs, x, delta, a, bm, cm, dd);
                void Both() => Tensor.Apply(ScanOps.SelectiveScanBackward, attrs, [dy, x, delta, a, bm, cm, dd, Fwd()[1]]);
                Report("scan", $"B{b}xL{l}xD{d}xN{n}", parallel, Time(() => Fwd(), reps), Time(Both, reps));
            }
        }
        foreach (var (b, t, h, k) in new[] { (12, 64, 4, 32), (4, 1024, 4, 64) })
        {
            var gen = new Generator(2);
            var r = Tensor.Randn([b, t, h, k], gen);
            var kk = Tensor.Randn([b, t, h, k], gen).MulScalar(0.1);
            var v = Tensor.Randn([b, t, h, k], gen);
            var logw = Tensor.Rand([b, t, h, k], gen, -1, -0.01);
            var u = Tensor.Randn([h, k], gen);
            var dy = Tensor.Randn([b, t, h, k], gen);
            foreach (bool parallel in new[] { false, true })
            {
                var attrs = new WkvAttrs(32, parallel);
                Tensor[] Fwd() => Tensor.Apply(WkvOps.Wkv6, attrs, r, kk, v, logw, u);
                void Both() => Tensor.Apply(WkvOps.Wkv6Backward, attrs, [dy, r, kk, v, logw, u, Fwd()[1]]);
                Report("wkv6", $"B{b}xT{t}xH{h}xK{k}", parallel, Time(() => Fwd(), reps), Time(Both, reps));
            }
        }
    }

    private static void Report(string op, string shape, bool parallel, double fwd, double both) =>
        Console.WriteLine($"{op} {shape} {(parallel ? "chunked" : "sequential")} {fwd * 1e3:F3} {both * 1e3:F3}");

    /// <summary>Best seconds per call of 5 (or <paramref name="reps"/>) timed rounds of at least 0.2 s, after 1 s of warm-up (tiered JIT).</summary>
    private static double Time(Action body, int reps)
    {
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed.TotalSeconds < 1) body();
        double best = double.MaxValue;
        for (int rep = 0; rep < reps; rep++)
        {
            int inner = 0;
            var sw = Stopwatch.StartNew();
            do { body(); inner++; } while (sw.Elapsed.TotalSeconds < 0.2);
            best = Math.Min(best, sw.Elapsed.TotalSeconds / inner);
        }
        return best;
    }
}
