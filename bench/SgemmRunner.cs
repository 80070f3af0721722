using System.Diagnostics;
using ManagedTensor.Cpu;

namespace ManagedTensor.Bench;

/// <summary>
/// A plain GFLOP/s runner for the SGEMM
/// (`dotnet run -c Release --project bench -- sgemm [--threads T] [sizes...]`): square C = A * B,
/// warm-up, then several timed reps. Prints "size best-gflops median-gflops" lines that
/// bench/sgemm_vs_torch.sh pairs with PyTorch's numbers. --threads 1 measures one core (kernel tuning).
/// </summary>
public static class SgemmRunner
{
    private static unsafe void Multiply(int n, float[] a, float[] b, float[] c, int threads)
    {
        fixed (float* pa = a, pb = b, pc = c)
            Sgemm.Run(Sgemm.Best, false, false, n, n, n, 1f, pa, n, pb, n, 0f, pc, n, threads);
    }

    public static void Run(string[] args)
    {
        int threads = Environment.ProcessorCount;
        if (args.Length >= 2 && args[0] == "--threads")
        {
            threads = int.Parse(args[1]);
            args = args[2..];
        }
        int[] sizes = args.Length > 0 ? args.Select(int.Parse).ToArray() : [256, 512, 1024, 2048];
        foreach (int n in sizes)
        {
            var rng = new Random(1);
            var a = new float[n * n];
            var b = new float[n * n];
            var c = new float[n * n];
            for (int i = 0; i < a.Length; i++) { a[i] = rng.NextSingle() - 0.5f; b[i] = rng.NextSingle() - 0.5f; }
            double flops = 2.0 * n * n * n;
            // Enough reps for ~0.3 s of timing per rep at 100 GFLOP/s, at least 3.
            int inner = Math.Max(1, (int)(3e10 / flops));
            int reps = 5;
            for (int w = 0; w < 2; w++) Multiply(n, a, b, c, threads);
            double best = double.MaxValue;
            var times = new List<double>();
            for (int r = 0; r < reps; r++)
            {
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < inner; i++) Multiply(n, a, b, c, threads);
                double t = sw.Elapsed.TotalSeconds / inner;
                times.Add(t);
                best = Math.Min(best, t);
            }
            times.Sort();
            double median = times[times.Count / 2];
            Console.WriteLine($"{n} {flops / best / 1e9:F1} {flops / median / 1e9:F1}");
        }
    }
}
