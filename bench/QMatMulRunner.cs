using System.Diagnostics;
using System.Globalization;
using ManagedTensor.Cpu;
using ManagedTensor.Quant;

namespace ManagedTensor.Bench;

/// <summary>
/// QMatMul alone at the TinyLlama-1.1B layer shapes (`dotnet run -c Release --project bench -- qmatmul [--types T...]
/// [--rows M...]`): one layer's seven products, y = x W^T with W (N, K) in {wq, wo: 2048 x 2048; wk, wv: 256 x 2048;
/// w1, w3: 5632 x 2048; w2: 2048 x 5632}, timed together. For M = 1 (decode) the figure is GB/s of weights read, the
/// quantity a memory-bound GEMV is judged by; for M > 1 (prefill) it is GOP/s (2 M N K per product). Each weight set is
/// ~22 MB for Q4_0 (more than the caches), so every rep reads it from memory. Prints one line per (type, M) and the
/// load average, since the machine is shared.
/// </summary>
public static class QMatMulRunner
{
    private static readonly (int N, int K)[] Layer = [(2048, 2048), (256, 2048), (256, 2048), (2048, 2048), (5632, 2048), (5632, 2048), (2048, 5632)];

    public static void Run(string[] args)
    {
        var types = new List<DType>();
        var rows = new List<int>();
        List<int>? target = null;
        foreach (var a in args)
        {
            if (a == "--types") target = null;
            else if (a == "--rows") target = rows;
            else if (target is null) types.Add(Enum.Parse<DType>(a, ignoreCase: true));
            else target.Add(int.Parse(a));
        }
        if (types.Count == 0) types = [DType.Q4_0, DType.Q8_0, DType.Q4_K, DType.Q6_K];
        if (rows.Count == 0) rows = [1, 32, 128, 512];
        Console.WriteLine($"QMatMul at the TinyLlama-1.1B layer shapes, {Environment.ProcessorCount} threads, AVX-512 {System.Runtime.Intrinsics.X86.Avx512BW.IsSupported}, AVX-VNNI {System.Runtime.Intrinsics.X86.AvxVnni.IsSupported}");
        foreach (var type in types)
        {
            var f = BlockFormats.Get(type);
            var weights = Layer.Select((s, i) => Tensor.FromArray(Values(s.N * s.K, 1 + i, 0.02f), [s.N, s.K]).To(type)).ToArray();
            long bytes = Layer.Sum(s => f.ByteCount((long)s.N * s.K));
            foreach (int m in rows)
            {
                var xs = Layer.Select((s, i) => Tensor.FromArray(Values(m * s.K, 100 + i, 1f), [m, s.K])).ToArray();
                void Once() { for (int i = 0; i < Layer.Length; i++) xs[i].QMatMul(weights[i]); }
                Once();
                double ops = Layer.Sum(s => 2.0 * m * s.N * s.K);
                int inner = Math.Max(1, (int)(2e9 / Math.Max(ops, bytes * 20.0)));
                var times = new List<double>();
                var proc = Process.GetCurrentProcess();
                double cpu0 = proc.TotalProcessorTime.TotalSeconds;
                for (int r = 0; r < 5; r++)
                {
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < inner; i++) Once();
                    times.Add(sw.Elapsed.TotalSeconds / inner);
                }
                proc.Refresh();
                // CPU seconds per rep over the thread count: what a rep would take on an idle machine if the threads
                // scaled perfectly; the figure to compare between runs while others load the machine.
                double cpu = (proc.TotalProcessorTime.TotalSeconds - cpu0) / (5 * inner) / Environment.ProcessorCount;
                times.Sort();
                double best = times[0], median = times[2];
                string figure = m == 1
                    ? $"{bytes / best / 1e9,6:F1} GB/s of weights (median {bytes / median / 1e9:F1}; per CPU time {bytes / cpu / 1e9:F1}), {best * 1e3:F2} ms per layer"
                    : $"{ops / best / 1e9,6:F1} GOP/s (median {ops / median / 1e9:F1}; per CPU time {ops / cpu / 1e9:F1}), {best * 1e3:F1} ms per layer, {m / (best * 22):F1} tok/s for 22 layers";
                Console.WriteLine(string.Format(CultureInfo.InvariantCulture, "{0,-5} M={1,-4} {2}  load {3}", type, m, figure, File.ReadAllText("/proc/loadavg").Split(' ')[0]));
            }
        }
    }

    /// <summary>
    /// `qdot TYPE REPS`: REPS passes of the row dot product over one 2048 x 2048 weight matrix against one activation row,
    /// on the calling thread and nothing else, for instruction counts: run under `valgrind --tool=callgrind` with REPS
    /// and with 0, and the difference over REPS * 2048 * 2048 is the instructions per weight of the kernel alone.
    /// </summary>
    public static void Dot(string[] args)
    {
        var f = BlockFormats.Get(Enum.Parse<DType>(args[0], ignoreCase: true));
        int reps = int.Parse(args[1]), n = 2048, k = 2048;
        var w = new byte[f.ByteCount((long)n * k)];
        f.Encode!(Values(n * k, 1, 0.02f), w);
        var x = Values(k, 2, 1f);
        byte[] xq;
        if (f.DotType == DType.F32) xq = System.Runtime.InteropServices.MemoryMarshal.AsBytes(x.AsSpan()).ToArray();
        else
        {
            var xf = BlockFormats.Get(f.DotType!.Value);
            xq = new byte[xf.ByteCount(k)];
            xf.Encode!(x, xq);
        }
        int rowBytes = (int)f.ByteCount(k), blocks = k / f.BlockSize;
        float sum = 0;
        for (int r = 0; r < reps; r++)
            for (int j = 0; j < n; j++) sum += f.Dot!(w.AsSpan(j * rowBytes, rowBytes), xq, blocks);
        Console.WriteLine($"{f.Name}: {reps} x {n} row dots, checksum {sum}, AVX2 {System.Runtime.Intrinsics.X86.Avx2.IsSupported}, AVX-VNNI {System.Runtime.Intrinsics.X86.AvxVnni.IsSupported}, FMA {System.Runtime.Intrinsics.X86.Fma.IsSupported}");
    }

    private static float[] Values(int n, int seed, float scale)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (rng.NextSingle() - 0.5f) * 3.46f * scale; // uniform, std = scale
        return v;
    }
}
