using System.Diagnostics;
using System.Numerics;
using ManagedTensor.Cpu;

namespace ManagedTensor.Bench;

/// <summary>
/// How the SGEMM grew, each step kept runnable side by side (`dotnet run -c Release --project bench -- versions`),
/// all computing C = A * B for square row-major matrices:
///   v1 naive:   C[i, j] = sum_p A[i, p] * B[p, j], the textbook triple loop. B is walked down a column,
///               one cache line per multiply-add, so it runs at memory latency, not at FMA speed.
///   v2 blocked: loop order i, p, j (a row of B times a scalar of A added into a row of C: unit stride,
///               SIMD with Vector&lt;float&gt;), tiled 64 x 256 x 256 so the B tile stays in L2 while it is reused.
///               C rows still go to and from L1 on every p: loads and stores, not FMAs, set the pace.
///   v3 packed:  Sgemm.cs on one thread: packed A and B slivers and a 12 x 32 register tile
///               (AVX-512), 24 accumulators that never leave the registers during the k loop.
///   v4 packed, all cores: v3 with the shared B block and dynamic work items.
/// </summary>
public static class SgemmVersions
{
    public static void Naive(int n, float[] a, float[] b, float[] c)
    {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                float sum = 0;
                for (int p = 0; p < n; p++) sum += a[i * n + p] * b[p * n + j];
                c[i * n + j] = sum;
            }
    }

    public static void Blocked(int n, float[] a, float[] b, float[] c)
    {
        const int MB = 64, KB = 256, NB = 256;
        Array.Clear(c, 0, n * n);
        int w = Vector<float>.Count;
        for (int j0 = 0; j0 < n; j0 += NB)
            for (int p0 = 0; p0 < n; p0 += KB)
                for (int i0 = 0; i0 < n; i0 += MB)
                    for (int i = i0; i < Math.Min(i0 + MB, n); i++)
                    {
                        var cRow = c.AsSpan(i * n, n);
                        for (int p = p0; p < Math.Min(p0 + KB, n); p++)
                        {
                            var av = new Vector<float>(a[i * n + p]);
                            var bRow = b.AsSpan(p * n, n);
                            int jEnd = Math.Min(j0 + NB, n), j = j0;
                            for (; j + w <= jEnd; j += w)
                                (new Vector<float>(cRow[j..]) + av * new Vector<float>(bRow[j..])).CopyTo(cRow[j..]);
                            for (; j < jEnd; j++) cRow[j] += a[i * n + p] * bRow[j];
                        }
                    }
    }

    public static unsafe void Packed(int n, float[] a, float[] b, float[] c, int threads)
    {
        fixed (float* pa = a, pb = b, pc = c)
            Sgemm.Run(Sgemm.Best, false, false, n, n, n, 1f, pa, n, pb, n, 0f, pc, n, threads);
    }

    /// <summary>Prints a GFLOP/s table of the four versions (best of 3 after a warm-up).</summary>
    public static void Run(string[] args)
    {
        int[] sizes = args.Length > 0 ? args.Select(int.Parse).ToArray() : [256, 512, 1024];
        var versions = new (string Name, Action<int, float[], float[], float[]> Run)[]
        {
            ("v1 naive", Naive),
            ("v2 blocked+SIMD", Blocked),
            ("v3 packed 1 thread", (n, a, b, c) => Packed(n, a, b, c, 1)),
            ($"v4 packed {Environment.ProcessorCount} threads", (n, a, b, c) => Packed(n, a, b, c, Environment.ProcessorCount)),
        };
        Console.WriteLine($"{"GFLOP/s",-22}" + string.Concat(sizes.Select(s => $"{s,10}")));
        foreach (var (name, run) in versions)
        {
            Console.Write($"{name,-22}");
            foreach (int n in sizes)
            {
                var rng = new Random(1);
                var a = Enumerable.Range(0, n * n).Select(_ => rng.NextSingle() - 0.5f).ToArray();
                var b = Enumerable.Range(0, n * n).Select(_ => rng.NextSingle() - 0.5f).ToArray();
                var c = new float[n * n];
                run(n, a, b, c);
                double best = double.MaxValue;
                for (int r = 0; r < 3; r++)
                {
                    var sw = Stopwatch.StartNew();
                    run(n, a, b, c);
                    best = Math.Min(best, sw.Elapsed.TotalSeconds);
                }
                Console.Write($"{2.0 * n * n * n / best / 1e9,10:F1}");
            }
            Console.WriteLine();
        }
    }
}
