using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ILGPU.Runtime.Cuda;
using ManagedTensor.Quant;

namespace ManagedTensor.Gpu.Bench;

/// <summary>
/// The quantized matmul's figures: `mt bench qmatmul --traffic` (no GPU) prints the bytes a decoded token moves
/// through the weight matrices of Llama-family shapes and the tokens/s that bound allows; `mt bench qmatmul
/// --device cuda [--quick] [--json FILE]` times QMatMul on the device at those shapes: one token row (the GEMV;
/// GB/s of weights and the fraction of the device's peak) and a 512-row prefill chunk (the tensor-core GEMM;
/// TFLOP/s), and adds the matrices of one token into a matmul-only decode time per token.
/// bench/qmatmul_vs_torch.py times the same shapes in PyTorch fp16 (torch.nn.functional.linear) on the same GPU.
/// Timing: a warm-up call (compiles the kernels), then calls until 0.2 s have passed (at least 5), bracketed by
/// synchronizations. Every shape is checked at 16 outputs against a float64 dot product with the CPU's decoding.
/// </summary>
public static class QMatMulBench
{
    /// <summary>A Llama-family shape: the weight matrices one decoded token multiplies by.</summary>
    public sealed record ModelShape(string Name, int Dim, int Hidden, int Layers, int Heads, int KvHeads, int Vocab)
    {
        public int KvDim => Dim / Heads * KvHeads;

        /// <summary>(name, N, K, count per token): y = x W^T with W (N, K).</summary>
        public IEnumerable<(string Name, int N, int K, int Count)> Matrices() =>
        [
            ("attn.q", Dim, Dim, Layers), ("attn.k", KvDim, Dim, Layers), ("attn.v", KvDim, Dim, Layers), ("attn.o", Dim, Dim, Layers),
            ("mlp.gate", Hidden, Dim, Layers), ("mlp.up", Hidden, Dim, Layers), ("mlp.down", Dim, Hidden, Layers), ("lm_head", Vocab, Dim, 1),
        ];

        /// <summary>Weight values a decoded token reads: every matrix once (the embedding table is read one row per token).</summary>
        public long ValuesPerToken => Matrices().Sum(m => (long)m.N * m.K * m.Count);

        /// <summary>Every weight stored: the matrices, the embedding table and the norms (float32).</summary>
        public long StoredBytes(DType format) => ByteCount(format, ValuesPerToken + (long)Vocab * Dim) + 4L * Dim * (2 * Layers + 1);
    }

    public static readonly ModelShape TinyLlama = new("TinyLlama-1.1B", 2048, 5632, 22, 32, 4, 32000);
    public static readonly ModelShape Llama2_7B = new("Llama-2-7B", 4096, 11008, 32, 32, 32, 32000);

    /// <summary>Bytes of <paramref name="values"/> values in a block format or a float dtype.</summary>
    public static long ByteCount(DType format, long values) => format.IsQuantized() ? BlockFormats.Get(format).ByteCount(values) : values * format.SizeOf();

    /// <summary>Memory bandwidths the traffic table divides by: an RTX 4070's and an H200's (bytes/s).</summary>
    public static readonly (string Name, double BytesPerSecond)[] Devices = [("RTX 4070, 504 GB/s", 504e9), ("H200, 4.8 TB/s", 4.8e12)];

    /// <summary>The offline table: per model and weight format, bytes moved per decoded token and the tokens/s they allow.</summary>
    public static void PrintTraffic(TextWriter o)
    {
        o.WriteLine("# weight bytes per decoded token (every matrix read once; KV cache and activations not counted) and the tokens/s bound");
        o.WriteLine($"| model | format | bits/weight | values/token | MB/token | stored GB | {string.Join(" | ", Devices.Select(d => $"tok/s at {d.Name}"))} |");
        o.WriteLine($"|---|---|---:|---:|---:|---:|{string.Concat(Devices.Select(_ => "---:|"))}");
        foreach (var model in new[] { TinyLlama, Llama2_7B })
            foreach (var format in new[] { DType.F16, DType.Q8_0, DType.Q4_0, DType.Q4_K })
            {
                long values = model.ValuesPerToken, bytes = ByteCount(format, values);
                double bits = 8.0 * bytes / values;
                o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {model.Name} | {format} | {bits:F2} | {values / 1e6:F1} M | {bytes / 1e6:F1} | {model.StoredBytes(format) / 1e9:F2} | {string.Join(" | ", Devices.Select(d => (d.BytesPerSecond / bytes).ToString("F0", CultureInfo.InvariantCulture)))} |"));
            }
    }

    public sealed record Result(string Model, string Format, string Matrix, int M, int N, int K, int Count, double Ms, double GBps, double PeakFraction, double Tflops, double MaxRelError);

    public static int Run(string[] args, TextWriter o)
    {
        if (args.Contains("--traffic"))
        {
            PrintTraffic(o);
            return 0;
        }
        var device = Device.Parse(Option(args, "--device") ?? "cuda");
        if (device.Kind != DeviceKind.Cuda) throw new ArgumentException($"mt bench qmatmul: --device must be cuda or cuda:N (or use --traffic), got {device}");
        bool quick = args.Contains("--quick");
        string? json = Option(args, "--json");
        var backend = (GpuBackend)Backends.For(device);
        double peak = PeakBandwidth(backend);
        o.WriteLine($"# {backend.Info.Name}, peak memory bandwidth {peak / 1e9:F0} GB/s (memory clock x bus width)");
        o.WriteLine($"{"model",-15} {"format",-5} {"matrix",-9} {"M",4} {"N",6} {"K",6} {"ms",9} {"GB/s",7} {"of peak",7} {"TFLOP/s",8} {"max rel err",11}");
        var results = new List<Result>();
        var models = quick ? [TinyLlama] : new[] { TinyLlama, Llama2_7B };
        var formats = quick ? [DType.Q4_0] : new[] { DType.Q4_0, DType.Q8_0, DType.Q4_K };
        var gen = new Generator(7);
        foreach (var model in models)
            foreach (var format in formats)
            {
                double tokenMs = 0;
                foreach (var (name, n, k, count) in model.Matrices())
                {
                    using var scope = DeviceMemory.Scope();
                    var wHost = new Conformance.CaseInputs((ulong)(n * 31 + k)).Blocks([n, k], format);
                    var w = wHost.To(device);
                    foreach (int m in new[] { 1, 512 })
                    {
                        var x = Tensor.Rand([m, k], gen, -1, 1).To(DType.F16).To(device);
                        var y = x.QMatMul(w);
                        double ms = Time(backend, () => x.QMatMul(w).Dispose());
                        double err = SpotCheck(x.To(Device.Cpu), wHost, y.To(Device.Cpu));
                        long wBytes = ByteCount(format, (long)n * k);
                        double gbps = wBytes / (ms * 1e6);
                        var r = new Result(model.Name, format.ToString(), name, m, n, k, count, ms, gbps, gbps * 1e9 / peak, 2e-9 * m * n * k / ms, err);
                        results.Add(r);
                        if (m == 1) tokenMs += ms * count;
                        o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"{r.Model,-15} {r.Format,-5} {r.Matrix,-9} {r.M,4} {r.N,6} {r.K,6} {r.Ms,9:F4} {r.GBps,7:F0} {r.PeakFraction,7:P0} {r.Tflops,8:F2} {r.MaxRelError,11:E2}"));
                    }
                }
                long bytes = ByteCount(format, model.ValuesPerToken);
                o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"# {model.Name} {format}: matmuls of one token {tokenMs:F3} ms = {1000 / tokenMs:F0} tok/s (matmul only), {bytes / (tokenMs * 1e6):F0} GB/s over {bytes / 1e6:F0} MB of weights"));
            }
        if (json is not null)
        {
            File.WriteAllText(json, JsonSerializer.Serialize(new { gpu = backend.Info.Name, peak_gbps = peak / 1e9, results }, new JsonSerializerOptions { WriteIndented = true }));
            o.WriteLine($"# wrote {json}");
        }
        return 0;
    }

    /// <summary>The device's theoretical DRAM bandwidth: memory clock (kHz) x 2 (double data rate) x bus width (bits) / 8.</summary>
    private static double PeakBandwidth(GpuBackend b) =>
        b.Accelerator is CudaAccelerator cuda ? cuda.MemoryClockRate * 1e3 * 2 * cuda.MemoryBusWidth / 8 : double.NaN;

    /// <summary>Milliseconds per call: one warm-up call, then at least 5 calls and 0.2 s.</summary>
    private static double Time(GpuBackend b, Action call)
    {
        call();
        b.Synchronize();
        var sw = Stopwatch.StartNew();
        int n = 0;
        do
        {
            call();
            if (++n % 8 == 0) b.Synchronize();
        } while (n < 5 || sw.Elapsed.TotalSeconds < 0.2);
        b.Synchronize();
        return sw.Elapsed.TotalMilliseconds / n;
    }

    /// <summary>Largest |y - ref| / sum |x w| over 16 outputs, the reference in float64 from the CPU's decoding of W.</summary>
    private static double SpotCheck(Tensor x, Tensor w, Tensor y)
    {
        int m = x.Shape[0], k = x.Shape[1], n = w.Shape[0];
        var xs = x.ToDoubleArray();
        var ys = y.ToDoubleArray();
        var rng = new Random(5);
        double worst = 0;
        for (int s = 0; s < 16; s++)
        {
            int i = rng.Next(m), j = rng.Next(n);
            var row = w.Narrow(0, j, 1).To(DType.F32).ToDoubleArray();
            double sum = 0, scale = 0;
            for (int t = 0; t < k; t++)
            {
                sum += xs[(long)i * k + t] * row[t];
                scale += Math.Abs(xs[(long)i * k + t] * row[t]);
            }
            worst = Math.Max(worst, Math.Abs(ys[(long)i * n + j] - sum) / Math.Max(scale, 1e-30));
        }
        return worst;
    }

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
