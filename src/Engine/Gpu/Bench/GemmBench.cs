using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ManagedTensor.Gpu.Gemm;

namespace ManagedTensor.Gpu.Bench;

/// <summary>
/// The GEMM benchmark for a GPU host: `mt bench gemm --device cuda [--json out.json] [--quick]`.
/// Times every problem of <see cref="Problems"/> (squares and GPT-2 124M training products) with the kernel
/// <see cref="GemmSelect"/> picks, and on the squares also SGEMM versions 1-5 side by side, in float32
/// and bf16. Timing: two warm-up launches, then launches until 0.3 s have passed (at least 3), bracketed
/// by accelerator synchronizations, Stopwatch over the whole run divided by the count. Every result is
/// checked at 64 random elements against a float64 dot product on the host. bench/gemm_vs_torch.py runs
/// this and torch.matmul (cuBLAS) on the same GPU and prints the ratios.
/// </summary>
public static class GemmBench
{
    public sealed record Result(string Dtype, string Name, string Layout, int M, int N, int K, string Kernel, double Ms, double Tflops, double MaxRelError);

    /// <summary>(name, layout, M, N, K): layout "NT" = A (M x K) times B stored N x K (a Linear layer's x W^T).</summary>
    public static IEnumerable<(string Name, string Layout, int M, int N, int K)> Problems(bool quick)
    {
        foreach (int s in quick ? new[] { 1024, 4096 } : new[] { 1024, 2048, 4096, 8192 })
            yield return ($"square{s}", "NN", s, s, s);
        // GPT-2 124M at B x T = 8192 tokens: the four Linear layers and the tied lm_head, forward and both backward products.
        var linears = new (string Name, int In, int Out)[] { ("qkv", 768, 2304), ("attn.proj", 768, 768), ("mlp.fc", 768, 3072), ("mlp.proj", 3072, 768), ("lm_head", 768, 50304) };
        foreach (var (name, k, n) in quick ? linears.Take(1) : linears)
        {
            const int M = 8192;
            yield return ($"gpt2.{name}.fwd", "NT", M, n, k);   // y = x W^T:  (M, K) x (N, K)^T
            yield return ($"gpt2.{name}.dx", "NN", M, k, n);    // dx = dy W:  (M, N) x (N, K)
            yield return ($"gpt2.{name}.dw", "TN", n, k, M);    // dW = dy^T x: (M, N)^T x (M, K)
        }
    }

    public static int Run(string[] args)
    {
        string device = Option(args, "--device") ?? "cuda";
        string? json = Option(args, "--json");
        bool quick = args.Contains("--quick");
        var parsed = Device.Parse(device);
        if (parsed.Kind != DeviceKind.Cuda) throw new ArgumentException($"mt bench gemm: --device must be cuda or cuda:N, got {device}");

        GpuDevices.InstallCudaResolver();
        using var context = Context.Create(b => GpuContextOptions.Apply(b.Cuda()));
        var devices = context.GetCudaDevices();
        if (devices.Count == 0) throw new InvalidOperationException("no CUDA device: ILGPU found no driver (libcuda.so.1) or no GPU");
        if (parsed.Index >= devices.Count) throw new ArgumentException($"cuda:{parsed.Index} requested, {devices.Count} device(s) present");
        using var accelerator = (CudaAccelerator)devices[parsed.Index].CreateAccelerator(context);
        Console.WriteLine($"# {accelerator.Name}, {accelerator.NumMultiprocessors} SMs, sm_{accelerator.Architecture.Major}{accelerator.Architecture.Minor}, ILGPU {typeof(Context).Assembly.GetName().Version}");
        Console.WriteLine($"{"dtype",-5} {"problem",-22} {"layout",-6} {"M",6} {"N",6} {"K",6} {"kernel",-22} {"ms",9} {"TFLOP/s",8} {"max rel err",11}");

        var results = new List<Result>();
        var rng = new Random(1234);
        foreach (var (name, layout, m, n, k) in Problems(quick))
        {
            bool ta = layout[0] == 'T', tb = layout[1] == 'T';
            var p = GemmArgs.Dense(m, n, k, ta, tb);
            float[] ha = RandomFloats(rng, (long)m * k), hb = RandomFloats(rng, (long)k * n);
            // float32: the selected kernel, and on squares each version (1 and 2 only up to 2048: seconds per launch beyond).
            using (var da = accelerator.Allocate1D(ha))
            using (var db = accelerator.Allocate1D(hb))
            using (var dc = accelerator.Allocate1D<float>((long)m * n))
            {
                var kernels = new List<GemmKernel?> { null };
                if (name.StartsWith("square", StringComparison.Ordinal))
                {
                    if (m <= 2048) kernels.AddRange([GemmKernel.Sgemm1Naive, GemmKernel.Sgemm2SharedTiles]);
                    kernels.AddRange([GemmKernel.Sgemm3RegisterBlocked, GemmKernel.Sgemm4Vectorized, GemmKernel.Sgemm5WarpTiled]);
                }
                foreach (var force in kernels)
                {
                    GemmKernel used = default;
                    double ms = Time(accelerator, () => used = Run(accelerator, da.View, db.View, dc.View, p, force));
                    double err = SpotCheck(ha, hb, dc.GetAsArray1D(), p, x => x);
                    Report(results, new Result("fp32", name, layout, m, n, k, (force is null ? "select:" : "") + used, ms, 2e-9 * m * n * k / ms, err));
                }
            }
            // bf16: inputs rounded to bf16; the reference uses the rounded values, so the error is the output's rounding.
            var ba = ToBf16(ha);
            var bb = ToBf16(hb);
            using (var da = accelerator.Allocate1D(ba))
            using (var db = accelerator.Allocate1D(bb))
            using (var dc = accelerator.Allocate1D<ushort>((long)m * n))
            {
                double ms = Time(accelerator, () => GemmSelect.Run(accelerator, DType.BF16, da.View, db.View, dc.View, default, p));
                var c = dc.GetAsArray1D();
                double err = SpotCheck(ba, bb, c, p, u => new BFloat16(u).ToFloat());
                Report(results, new Result("bf16", name, layout, m, n, k, "select:" + GemmKernel.HgemmMma, ms, 2e-9 * m * n * k / ms, err));
            }
        }
        if (json is not null)
        {
            File.WriteAllText(json, JsonSerializer.Serialize(new { gpu = accelerator.Name, results }, new JsonSerializerOptions { WriteIndented = true }));
            Console.WriteLine($"# wrote {json}");
        }
        return 0;
    }

    private static void Report(List<Result> results, Result r)
    {
        results.Add(r);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{r.Dtype,-5} {r.Name,-22} {r.Layout,-6} {r.M,6} {r.N,6} {r.K,6} {r.Kernel,-22} {r.Ms,9:F3} {r.Tflops,8:F2} {r.MaxRelError,11:E2}"));
    }

    /// <summary>Milliseconds per launch: 2 warm-ups, then at least 3 launches and 0.3 s.</summary>
    /// <summary>A forced version (the teaching ladder's 1, 2 and 4 from SgemmLadder/, the backend's 3 and 5 through GemmSelect) or the selection's pick.</summary>
    private static GemmKernel Run(Accelerator accelerator, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmArgs p, GemmKernel? force)
    {
        switch (force)
        {
            case GemmKernel.Sgemm1Naive: SgemmLadder.Sgemm1Naive.Launch(accelerator, a, b, c, default, p); return GemmKernel.Sgemm1Naive;
            case GemmKernel.Sgemm2SharedTiles: SgemmLadder.Sgemm2SharedTiles.Launch(accelerator, a, b, c, default, p); return GemmKernel.Sgemm2SharedTiles;
            case GemmKernel.Sgemm4Vectorized: SgemmLadder.Sgemm4Vectorized.Launch(accelerator, a, b, c, default, p); return GemmKernel.Sgemm4Vectorized;
            default: return GemmSelect.Run(accelerator, a, b, c, default, p, 1, force);
        }
    }

    private static double Time(Accelerator accelerator, Action launch)
    {
        launch();
        launch();
        accelerator.Synchronize();
        var sw = Stopwatch.StartNew();
        int n = 0;
        do
        {
            launch();
            n++;
            if (n % 4 == 0 || n < 4) accelerator.Synchronize();
        } while (n < 3 || sw.Elapsed.TotalSeconds < 0.3);
        accelerator.Synchronize();
        return sw.Elapsed.TotalMilliseconds / n;
    }

    /// <summary>Largest |c - ref| / (|a row| |b col|) over 64 random elements (a scale-free error; fp32 ~1e-7, bf16 output ~4e-3 or less).</summary>
    private static double SpotCheck<T, TC>(T[] a, T[] b, TC[] c, in GemmArgs p, Func<T, float> value) where T : unmanaged where TC : unmanaged
    {
        var rng = new Random(99);
        double worst = 0;
        for (int s = 0; s < 64; s++)
        {
            int i = rng.Next(p.M), j = rng.Next(p.N);
            double sum = 0, scale = 0;
            for (int q = 0; q < p.K; q++)
            {
                double av = value(a[p.TransA != 0 ? (long)q * p.Lda + i : (long)i * p.Lda + q]);
                double bv = value(b[p.TransB != 0 ? (long)j * p.Ldb + q : (long)q * p.Ldb + j]);
                sum += av * bv;
                scale += Math.Abs(av * bv);
            }
            double got = c[(long)i * p.Ldc + j] switch
            {
                float f => f,
                ushort u => new BFloat16(u).ToFloat(),
                _ => double.NaN,
            };
            worst = Math.Max(worst, Math.Abs(got - sum) / Math.Max(scale, 1e-30));
        }
        return worst;
    }

    private static float[] RandomFloats(Random rng, long n)
    {
        var x = new float[n];
        for (long i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    private static ushort[] ToBf16(float[] x)
    {
        var r = new ushort[x.Length];
        for (long i = 0; i < x.Length; i++) r[i] = BFloat16.FromFloat(x[i]).Bits;
        return r;
    }

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
