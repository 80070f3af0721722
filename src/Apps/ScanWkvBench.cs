using System.CommandLine;
using System.Diagnostics;
using System.Globalization;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt bench scan-wkv [--device cuda|cpu|ilgpu-cpu] [--quick]`: Mamba's selective scan and RWKV-6's WKV, float32,
/// forward and forward + backward (the fused backward op from the forward's saved chunk starts), both schedules,
/// at the ~0.8M recipes' layer shapes, a longer sequence, and (not with --quick) a Mamba-130M / RWKV-6-sized layer.
/// One line per op, shape and schedule, "op shape schedule fwd-ms fwdbwd-ms" (bench/ScanWkvRunner.cs's format),
/// best of 5 timed rounds with the device synchronized at both ends. bench/scan_wkv_torch.py --device cuda prints
/// the naive PyTorch loops on the same GPU in the same format; scripts/gpu_checks.sh BUNDLE OUT scan runs both.
/// </summary>
public static class ScanWkvBench
{
    public static Command Create(TextWriter output)
    {
        var device = Cli.DeviceOption("cuda");
        var quick = new Option<bool>("--quick") { Description = "the small shapes only, 2 rounds" };
        var cmd = new Command("scan-wkv", "selective scan and WKV forward and forward+backward timings (ms), both schedules") { device, quick };
        cmd.SetAction(p =>
        {
            Run(Cli.ParseDevice(p.GetValue(device)!), p.GetValue(quick), output);
            return 0;
        });
        return cmd;
    }

    public static void Run(Device device, bool quick, TextWriter w)
    {
        int reps = quick ? 2 : 5;
        var scans = new List<(int B, int L, int D, int N)> { (12, 64, 256, 16), (4, 1024, 256, 16) };
        var wkvs = new List<(int B, int T, int H, int K)> { (12, 64, 4, 32), (4, 1024, 4, 64) };
        if (!quick)
        {
            scans.Add((8, 2048, 1536, 16));                                    // mamba-130m: d_inner 1536, N 16
            wkvs.Add((8, 2048, 12, 64));                                       // RWKV-6 768-wide: 12 heads of 64
        }
        foreach (var (b, l, d, n) in scans)
        {
            var gen = new Generator(1);
            var x = Tensor.Randn([b, l, d], gen, device: device);
            var delta = Tensor.Rand([b, l, d], gen, 0.001, 0.1, device: device);
            var a = Tensor.Rand([d, n], gen, -2, -0.1, device: device);
            var bm = Tensor.Randn([b, l, n], gen, device: device);
            var cm = Tensor.Randn([b, l, n], gen, device: device);
            var dd = Tensor.Randn([d], gen, device: device);
            var dy = Tensor.Randn([b, l, d], gen, device: device);
            foreach (bool parallel in new[] { false, true })
            {
                var attrs = new SelectiveScanAttrs(64, parallel);
                Tensor[] Fwd() => Tensor.Apply(ScanOps.SelectiveScan, attrs, x, delta, a, bm, cm, dd);
                void Both() => Dispose(Tensor.Apply(ScanOps.SelectiveScanBackward, attrs, [dy, x, delta, a, bm, cm, dd, Fwd()[1]]));
                Report(w, "scan", $"B{b}xL{l}xD{d}xN{n}", parallel, Time(() => Dispose(Fwd()), device, reps), Time(Both, device, reps));
            }
        }
        foreach (var (b, t, h, k) in wkvs)
        {
            var gen = new Generator(2);
            var r = Tensor.Randn([b, t, h, k], gen, device: device);
            var kk = Tensor.Randn([b, t, h, k], gen, device: device).MulScalar(0.1);
            var v = Tensor.Randn([b, t, h, k], gen, device: device);
            var logw = Tensor.Rand([b, t, h, k], gen, -1, -0.01, device: device);
            var u = Tensor.Randn([h, k], gen, device: device);
            var dy = Tensor.Randn([b, t, h, k], gen, device: device);
            foreach (bool parallel in new[] { false, true })
            {
                var attrs = new WkvAttrs(32, parallel);
                Tensor[] Fwd() => Tensor.Apply(WkvOps.Wkv6, attrs, r, kk, v, logw, u);
                void Both() => Dispose(Tensor.Apply(WkvOps.Wkv6Backward, attrs, [dy, r, kk, v, logw, u, Fwd()[1]]));
                Report(w, "wkv6", $"B{b}xT{t}xH{h}xK{k}", parallel, Time(() => Dispose(Fwd()), device, reps), Time(Both, device, reps));
            }
        }
    }

    /// <summary>Returns device memory now rather than when the GC finalizes the tensors.</summary>
    private static void Dispose(Tensor[] ts)
    {
        foreach (var t in ts) t.Dispose();
    }

    private static void Report(TextWriter w, string op, string shape, bool parallel, double fwd, double both) =>
        w.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{op} {shape} {(parallel ? "chunked" : "sequential")} {fwd * 1e3:F3} {both * 1e3:F3}"));

    private static void Synchronize(Device device)
    {
        if (Backends.For(device) is IDeviceMemory m) m.Synchronize();
    }

    /// <summary>Best seconds per call of <paramref name="reps"/> timed rounds of at least 0.2 s, after two warm-up calls (kernel compilation).</summary>
    private static double Time(Action body, Device device, int reps)
    {
        body();
        body();
        Synchronize(device);
        double best = double.MaxValue;
        for (int rep = 0; rep < reps; rep++)
        {
            int n = 0;
            var sw = Stopwatch.StartNew();
            do
            {
                body();
                if (++n % 8 == 0) Synchronize(device);                      // keep the queue short, so the clock measures the device
            } while (sw.Elapsed.TotalSeconds < 0.2);
            Synchronize(device);
            best = Math.Min(best, sw.Elapsed.TotalSeconds / n);
        }
        return best;
    }
}
