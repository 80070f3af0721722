using System.CommandLine;
using System.Diagnostics;
using System.Globalization;

namespace ManagedTensor.Apps;

/// <summary>What `mt attention-bench` measures.</summary>
public sealed record AttentionBenchOptions(
    Device Device,
    DType DType,
    int Batch = 4,
    int Heads = 16,
    int KvHeads = 16,
    int[]? SeqLens = null,
    int[]? HeadDims = null,
    bool Causal = true,
    double MinSeconds = 0.5,
    bool Memory = false,
    bool Check = true)
{
    public int[] Seqs => SeqLens ?? [512, 1024, 2048, 4096, 8192];
    public int[] Dims => HeadDims ?? [64, 128];
}

/// <summary>
/// The fused attention op on a device, timed the way bench/attention_vs_torch.py times PyTorch's
/// flash backend: forward (the op into preallocated out/lse) and forward + backward (the op, then
/// AttentionBackward), best of several timed runs of at least MinSeconds each, after warm-up, the device
/// synchronized at both ends. FLOPs as flash-attention counts them: 4 B H T S D for the forward (halved
/// when causal), 2.5 times that for the backward. One "key=value" line per shape, for the script.
/// With --memory: the allocator's peak during forward + backward for each T, and the part of it that
/// is neither an input nor an output (attention's own memory: it must grow linearly with T).
/// With --check (default): the device's kernels against the CPU op at small odd sizes first.
/// </summary>
public static class AttentionBench
{
    public static int Run(AttentionBenchOptions o, TextWriter w)
    {
        if (o.Check && !Check(o, w)) return 1;
        if (o.Memory) MemoryTable(o, w);
        else foreach (int d in o.Dims) foreach (int t in o.Seqs) Speed(o, t, d, w);
        return 0;
    }

    private static void Synchronize(Device device)
    {
        if (Backends.For(device) is IDeviceMemory m) m.Synchronize();
    }

    private static double Flops(AttentionBenchOptions o, int t, int d) => 4.0 * o.Batch * o.Heads * t * (double)t * d / (o.Causal ? 2 : 1);

    private static (Tensor Q, Tensor K, Tensor V, Tensor Dout) Inputs(AttentionBenchOptions o, int t, int d, int s = 0)
    {
        var gen = new Generator(1);
        s = s == 0 ? t : s;
        Tensor R(int[] shape)
        {
            var f32 = Tensor.Randn(shape, gen, device: o.Device);
            if (o.DType == DType.F32) return f32;
            var cast = f32.To(o.DType);
            f32.Dispose(); // returned now, not when the GC finalizes it in the middle of a memory measurement
            return cast;
        }
        return (R([o.Batch, o.Heads, t, d]), R([o.Batch, o.KvHeads, s, d]), R([o.Batch, o.KvHeads, s, d]), R([o.Batch, o.Heads, t, d]));
    }

    private static void Speed(AttentionBenchOptions o, int t, int d, TextWriter w)
    {
        var (q, k, v, dout) = Inputs(o, t, d);
        var attrs = new AttentionAttrs(o.Causal, 1 / Math.Sqrt(d));
        var output = Tensor.Empty(q.Shape, o.DType, o.Device);
        var lse = Tensor.Empty([o.Batch, o.Heads, t], Tensor.LseDType(o.DType), o.Device);
        void Forward() => q.Backend.Execute(Op.Attention, [q, k, v], [output, lse], attrs);
        void ForwardBackward()
        {
            Forward();
            var (dq, dk, dv) = Tensor.AttentionBackward(dout, q, k, v, output, lse, attrs);
            dq.Dispose();
            dk.Dispose();
            dv.Dispose();
        }
        double fwd = Time(Forward, o), both = Time(ForwardBackward, o);
        double flops = Flops(o, t, d);
        var p = Params(o, t, t, d, attrs);
        string path = o.Device.Kind == DeviceKind.Cpu ? "cpu" : Gpu.GpuAttention.ChooseForward(o.DType, p).ToString().ToLowerInvariant();
        string bwdPath = o.Device.Kind == DeviceKind.Cpu ? "cpu" : Gpu.GpuAttention.ChooseBackward(o.DType, p).ToString().ToLowerInvariant();
        w.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"attention B={o.Batch} H={o.Heads} Hkv={o.KvHeads} T={t} D={d} dtype={o.DType} causal={o.Causal} path={path} bwd_path={bwdPath} fwd_ms={fwd * 1e3:F4} fwd_tflops={flops / fwd / 1e12:F2} fwdbwd_ms={both * 1e3:F4} fwdbwd_tflops={3.5 * flops / both / 1e12:F2}"));
        foreach (var x in new[] { q, k, v, dout, output, lse }) x.Dispose();
    }

    private static Gpu.Kernels.Attention.AttentionParams Params(AttentionBenchOptions o, int t, int s, int d, AttentionAttrs a)
        => new(o.Batch, o.Heads, o.KvHeads, t, s, d, a);

    /// <summary>Best seconds per call over 5 timed runs of at least MinSeconds / 5 each (3 warm-up calls first).</summary>
    private static double Time(Action body, AttentionBenchOptions o)
    {
        for (int i = 0; i < 3; i++) body();
        Synchronize(o.Device);
        double best = double.MaxValue;
        for (int rep = 0; rep < 5; rep++)
        {
            int n = 0;
            var sw = Stopwatch.StartNew();
            do
            {
                body();
                n++;
                if (n % 8 == 0) Synchronize(o.Device); // keep the queue short, so the clock measures the device
            } while (sw.Elapsed.TotalSeconds < o.MinSeconds / 5 || n < 3);
            Synchronize(o.Device);
            best = Math.Min(best, sw.Elapsed.TotalSeconds / n);
        }
        return best;
    }

    private static void MemoryTable(AttentionBenchOptions o, TextWriter w)
    {
        if (Backends.For(o.Device) is not IDeviceMemory mem)
        {
            w.WriteLine($"memory: {o.Device} has no device allocator to measure");
            return;
        }
        int[] seqs = o.SeqLens ?? [1024, 2048, 4096, 8192, 16384];
        foreach (int d in o.Dims)
            foreach (int t in seqs)
            {
                var (q, k, v, dout) = Inputs(o, t, d);
                var attrs = new AttentionAttrs(o.Causal, 1 / Math.Sqrt(d));
                var output = Tensor.Empty(q.Shape, o.DType, o.Device);
                var lse = Tensor.Empty([o.Batch, o.Heads, t], Tensor.LseDType(o.DType), o.Device);
                Synchronize(o.Device);
                // Device blocks of tensors dropped earlier come back when the GC finalizes them: let that happen
                // now, and keep the GC out of the measurement, so that only this forward + backward moves the counts.
                GC.Collect();
                GC.WaitForPendingFinalizers();
                bool noGc = GC.TryStartNoGCRegion(64L << 20);
                long before = mem.Stats.LiveBytes;
                mem.ResetPeak();
                q.Backend.Execute(Op.Attention, [q, k, v], [output, lse], attrs);
                var (dq, dk, dv) = Tensor.AttentionBackward(dout, q, k, v, output, lse, attrs);
                Synchronize(o.Device);
                long peak = mem.Stats.PeakBytes;
                if (noGc && System.Runtime.GCSettings.LatencyMode == System.Runtime.GCLatencyMode.NoGCRegion) GC.EndNoGCRegion();
                long outputs = Bytes(dq) + Bytes(dk) + Bytes(dv);
                long extra = peak - before - outputs; // neither inputs (q k v dout out lse, live before) nor the gradients
                double scoreMatrix = (double)o.Batch * o.Heads * t * t * 4; // what a materialized float32 score matrix would take
                w.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"memory B={o.Batch} H={o.Heads} T={t} D={d} dtype={o.DType} peak_mib={peak / 1048576.0:F1} inputs_mib={before / 1048576.0:F1} grads_mib={outputs / 1048576.0:F1} extra_mib={extra / 1048576.0:F2} extra_bytes_per_token={(double)extra / t:F0} score_matrix_would_be_mib={scoreMatrix / 1048576.0:F0}"));
                foreach (var x in new[] { q, k, v, dout, output, lse, dq, dk, dv }) x.Dispose();
            }
    }

    /// <summary>The bytes the caching allocator counts for <paramref name="t"/>: its size rounded up to the block class.</summary>
    private static long Bytes(Tensor t) => DeviceMemory.BlockBytes((long)t.Numel * t.DType.SizeOf());

    /// <summary>Forward, backward and decode on the device against the CPU op at small odd sizes; prints one line each.</summary>
    public static bool Check(AttentionBenchOptions o, TextWriter w)
    {
        if (o.Device.Kind == DeviceKind.Cpu) return true;
        bool ok = true;
        foreach (var (dtype, b, h, hkv, t, s, d, causal) in new (DType, int, int, int, int, int, int, bool)[]
        {
            (DType.BF16, 2, 4, 2, 77, 77, 64, true), (DType.BF16, 1, 4, 1, 70, 133, 128, false), (DType.F16, 1, 2, 2, 130, 130, 64, true),
            (DType.F32, 1, 4, 2, 45, 45, 80, true), (DType.BF16, 2, 8, 2, 1, 300, 128, true), (DType.F32, 1, 2, 1, 1, 1000, 64, true),
        })
        {
            var gen = new Generator(5);
            var q = Tensor.Randn([b, h, t, d], gen).To(dtype).To(DType.F32);
            var k = Tensor.Randn([b, hkv, s, d], gen).To(dtype).To(DType.F32);
            var v = Tensor.Randn([b, hkv, s, d], gen).To(dtype).To(DType.F32);
            var dout = Tensor.Randn([b, h, t, d], gen).To(dtype).To(DType.F32);
            var attrs = new AttentionAttrs(causal, 1 / Math.Sqrt(d));
            var cpuOut = Tensor.Empty(q.Shape);
            var cpuLse = Tensor.Empty([b, h, t]);
            q.Backend.Execute(Op.Attention, [q, k, v], [cpuOut, cpuLse], attrs);
            var (dq, dk, dv) = Tensor.AttentionBackward(dout, q, k, v, cpuOut, cpuLse, attrs);

            Tensor Dev(Tensor x) => x.To(o.Device).To(dtype);
            var (gq, gk, gv, gdo) = (Dev(q), Dev(k), Dev(v), Dev(dout));
            var gOut = Tensor.Empty(q.Shape, dtype, o.Device);
            var gLse = Tensor.Empty([b, h, t], DType.F32, o.Device);
            gq.Backend.Execute(Op.Attention, [gq, gk, gv], [gOut, gLse], attrs);
            var (gdq, gdk, gdv) = Tensor.AttentionBackward(gdo, gq, gk, gv, gOut, gLse, attrs);
            double tol = dtype == DType.F32 ? 1e-3 : 3e-2;
            var p = new Gpu.Kernels.Attention.AttentionParams(b, h, hkv, t, s, d, attrs);
            string path = $"{Gpu.GpuAttention.ChooseForward(dtype, p)}/{Gpu.GpuAttention.ChooseBackward(dtype, p)}".ToLowerInvariant();
            double worst = 0;
            foreach (var (name, want, got) in new[] { ("out", cpuOut, gOut), ("lse", cpuLse, gLse), ("dq", dq, gdq), ("dk", dk, gdk), ("dv", dv, gdv) })
            {
                var e = want.ToDoubleArray();
                var a = got.To(Device.Cpu).To(DType.F32).ToDoubleArray();
                double scale = e.Select(Math.Abs).Where(double.IsFinite).DefaultIfEmpty(1).Max();
                double err = e.Zip(a, (x, y) => x == y ? 0 : Math.Abs(x - y) / Math.Max(scale, 1e-6)).Max();
                worst = Math.Max(worst, err);
                if (double.IsNaN(err) || err > tol) ok = false;
            }
            w.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"check {(worst <= tol ? "PASS" : "FAIL")} {dtype} B={b} H={h}/{hkv} T={t} S={s} D={d} causal={causal} path={path} max_rel_err={worst:E2} (tolerance {tol:E0}, relative to each tensor's largest value)"));
        }
        return ok;
    }
}

/// <summary>`mt attention-bench`: the options of <see cref="AttentionBench"/>.</summary>
public static class AttentionBenchCommand
{
    public static Command Create(TextWriter output)
    {
        var device = Cli.DeviceOption("cuda");
        // The tensor-core kernels are what a GPU is measured on; the CPU op computes in float32 only.
        var dtype = new Option<string?>("--dtype") { Description = "bf16, f16 or f32 [default: bf16 on CUDA, f32 elsewhere]" };
        var batch = new Option<int>("--batch") { Description = "batch size", DefaultValueFactory = _ => 4 }.AtLeast(1);
        var heads = new Option<int>("--heads") { Description = "query heads", DefaultValueFactory = _ => 16 }.AtLeast(1);
        var kvHeads = new Option<int>("--kv-heads") { Description = "key/value heads (GQA; a divisor of --heads; 0: as many as --heads)", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var seq = new Option<string>("--seq") { Description = "comma-separated sequence lengths [default: 512,1024,2048,4096,8192; with --memory 1024 to 16384]" };
        var dims = new Option<string>("--head-dim") { Description = "comma-separated head dims", DefaultValueFactory = _ => "64,128" };
        var full = new Option<bool>("--full") { Description = "no causal mask" };
        var seconds = new Option<double>("--seconds") { Description = "timed seconds per measurement", DefaultValueFactory = _ => 0.5 }.Within(0, minExclusive: true);
        var memory = new Option<bool>("--memory") { Description = "peak device memory of forward + backward per T instead of speed" };
        var noCheck = new Option<bool>("--no-check") { Description = "skip the correctness check against the CPU op" };
        var cmd = new Command("attention-bench", "fused attention speed (TFLOP/s, forward and forward + backward) or memory on a device")
        {
            device, dtype, batch, heads, kvHeads, seq, dims, full, seconds, memory, noCheck,
        };
        cmd.SetAction(p =>
        {
            static int[]? Ints(string? s, string option) => string.IsNullOrWhiteSpace(s) ? null : s.Split(',').Select(x =>
                int.TryParse(x, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v > 0 ? v
                    : throw new UserErrorException($"{option} {s}: '{x}' is not a positive whole number")).ToArray();
            var dev = Cli.ParseDevice(p.GetValue(device)!, fallback: "--device cpu measures the CPU op");
            var dt = (p.GetValue(dtype) ?? (dev.Kind == DeviceKind.Cuda ? "bf16" : "f32")).ToLowerInvariant() switch
            {
                "bf16" => DType.BF16,
                "f16" or "fp16" => DType.F16,
                "f32" or "fp32" => DType.F32,
                var x => throw new UserErrorException($"--dtype {x}: expected bf16, f16 or f32"),
            };
            if (dev == Device.Cpu && dt != DType.F32)
                throw new UserErrorException($"--dtype {dt} on --device cpu: the CPU attention op computes in f32 only");
            int h = p.GetValue(heads);
            int kv = p.GetValue(kvHeads) is > 0 and var k ? k : h;
            if (h % kv != 0) throw new UserErrorException($"--kv-heads {kv} must divide --heads {h}");
            var options = new AttentionBenchOptions(dev, dt, p.GetValue(batch), h, kv, Ints(p.GetValue(seq), "--seq"), Ints(p.GetValue(dims), "--head-dim"),
                !p.GetValue(full), p.GetValue(seconds), p.GetValue(memory), !p.GetValue(noCheck));
            return AttentionBench.Run(options, output);
        });
        return cmd;
    }
}
