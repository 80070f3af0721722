using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu.Gemm;
using ManagedTensor.Gpu.Kernels;
using ManagedTensor.Gpu.Kernels.Attention;

namespace ManagedTensor.Gpu;

/// <summary>Which attention kernel family runs (Auto picks; the others are for tests and benchmarks).</summary>
public enum AttentionPath
{
    Auto,
    Simt,    // any head dim up to 256, any float dtype (AttentionSimtKernels)
    Mma,     // tensor cores: F16/BF16, head dim 64 or 128, forward and backward (AttentionMma*Kernels)
    Decode,  // T = 1: split over the cache, then a merge (AttentionDecodeKernels)
}

/// <summary>
/// Launchers of the attention kernels on one accelerator (the GPU backend keeps one per device).
/// Buffers come as byte views of contiguous tensors in the op's layout (see <see cref="Op.Attention"/>);
/// lse is float32. Kernels are compiled on first use through the accelerator's <see cref="KernelCache"/>,
/// named attention_{kernel}_{dtype}[_d{D}][_dropout][_plain]. The backward and the decode path need a float32
/// workspace (<see cref="BackwardWorkspaceFloats"/>, <see cref="ForwardWorkspaceFloats"/>): the caller may pass
/// one (the GPU backend passes a block of its allocator); otherwise one is kept and grown here, so steady-state
/// calls allocate nothing. On CUDA the tensor-core kernels run their mma path with fixed block shapes; on
/// other accelerators (ILGPU's CPU one in tests) their plain path, with groups sized to the accelerator.
/// </summary>
public sealed class GpuAttention(Accelerator accelerator) : IDisposable
{
    private MemoryBuffer1D<float, Stride1D.Dense>? _workspace;

    public Accelerator Accelerator => accelerator;

    /// <summary>Bytes of workspace held here now (the "extra memory" of attention beyond inputs and outputs).</summary>
    public long WorkspaceBytes => (_workspace?.Length ?? 0) * sizeof(float);

    private KernelCache Kernels => KernelCache.For(accelerator);
    private bool TensorCores => accelerator.AcceleratorType == AcceleratorType.Cuda;
    private int SimtThreads => Math.Min(AttentionSimtKernels.GroupSize, accelerator.MaxNumThreadsPerGroup);
    // Two warps: every simulated lane of the CPU accelerator is an OS thread, and every barrier wakes them all.
    private int PlainMmaThreads => 32 * Math.Clamp(accelerator.MaxNumThreadsPerGroup / 32, 1, 2);
    private int DecodeThreads => 32 * Math.Clamp(accelerator.MaxNumThreadsPerGroup / 32, 1, AttentionDecodeKernels.GroupSize / 32);

    /// <summary>How many chunks the decode kernel splits the cache into: two groups per multiprocessor, chunks of at least 64 keys.</summary>
    public int DecodeSplits(AttentionParams p)
    {
        int heads = p.B * p.H, target = 2 * Math.Max(accelerator.NumMultiprocessors, 1);
        return Math.Clamp((target + heads - 1) / heads, 1, Math.Max(1, Tiles(p.S, 64)));
    }

    /// <summary>Workspace floats <see cref="Forward"/> needs (only the decode path needs any).</summary>
    public long ForwardWorkspaceFloats(DType dtype, AttentionParams p, AttentionPath path = AttentionPath.Auto, int decodeSplits = 0)
    {
        if (path == AttentionPath.Auto) path = ChooseForward(dtype, p);
        if (path != AttentionPath.Decode) return 0;
        return (long)(decodeSplits > 0 ? decodeSplits : DecodeSplits(p)) * p.B * p.H * (p.D + 2);
    }

    /// <summary>
    /// Workspace floats <see cref="Backward"/> needs: Di = dout . out per query row, and for the tensor-core kernel the
    /// float32 dQ accumulator (B H T D: the memory that saves computing S and dP a second time for dQ).
    /// </summary>
    public static long BackwardWorkspaceFloats(DType dtype, AttentionParams p)
    {
        long rows = (long)p.B * p.H * p.T;
        return ChooseBackward(dtype, p) == AttentionPath.Mma ? rows * (p.D + 1) : rows;
    }

    /// <summary>The kernel family <see cref="Forward"/> uses for these sizes.</summary>
    public static AttentionPath ChooseForward(DType dtype, AttentionParams p)
    {
        if (p.T == 1 && p.D <= AttentionDecodeKernels.MaxD && AttentionDecodeKernels.Supports(p.D, dtype.SizeOf())) return AttentionPath.Decode;
        if (dtype is DType.F16 or DType.BF16 && AttentionMmaKernels.Supports(p.D)) return AttentionPath.Mma;
        return AttentionPath.Simt;
    }

    /// <summary>The kernel family <see cref="Backward"/> uses: tensor cores for F16/BF16 with head dim 64 or 128, else SIMT.</summary>
    public static AttentionPath ChooseBackward(DType dtype, AttentionParams p)
        => dtype is DType.F16 or DType.BF16 && AttentionMmaBackwardKernels.Supports(p.D) ? AttentionPath.Mma : AttentionPath.Simt;

    /// <summary>out and lse from q, k, v.</summary>
    public void Forward(DType dtype, ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o, ArrayView<float> lse,
        AttentionParams p, AttentionPath path = AttentionPath.Auto, int decodeSplits = 0, ArrayView<float> workspace = default)
    {
        bool auto = path == AttentionPath.Auto;
        if (auto) path = ChooseForward(dtype, p);
        // cp.async and 16-byte loads need 16-byte aligned rows: an unaligned view (only reachable through odd offsets) runs the SIMT kernel.
        if (auto && path != AttentionPath.Simt && !Aligned(q, k, v)) path = AttentionPath.Simt;
        Check(dtype, p, path);
        if (!p.KvDense && path != AttentionPath.Decode)
            throw new ArgumentException($"GPU attention: only the decode kernel reads strided k and v (a KV cache's views in place); the {path} kernel needs them dense");
        switch (path)
        {
            case AttentionPath.Mma: ForwardMma(dtype, q, k, v, o, lse, p); break;
            case AttentionPath.Decode: Decode(dtype, q, k, v, o, lse, p, decodeSplits, workspace); break;
            default: Launch(SimtSpec(nameof(AttentionSimtKernels.Forward), "forward_simt", dtype), SimtConfig(p.T, p.B * p.H), dtype, q, k, v, o, lse, p); break;
        }
    }

    /// <summary>dq, dk, dv (the scores are recomputed from lse; Di = dout . out and, on tensor cores, the dQ accumulator go to the workspace).</summary>
    public void Backward(DType dtype, ArrayView<byte> dout, ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o,
        ArrayView<float> lse, ArrayView<byte> dq, ArrayView<byte> dk, ArrayView<byte> dv, AttentionParams p, ArrayView<float> workspace = default,
        AttentionPath path = AttentionPath.Auto)
    {
        bool auto = path == AttentionPath.Auto;
        if (auto) path = ChooseBackward(dtype, p);
        if (path == AttentionPath.Mma && (dtype == DType.F32 || !AttentionMmaBackwardKernels.Supports(p.D)))
            throw new NotSupportedException($"the tensor-core attention backward takes F16/BF16 with head dim 64 or 128, not {dtype} with head dim {p.D}");
        // The plain twin of the tensor-core backward needs its 4 warps; unaligned views need the SIMT kernel too.
        if (auto && path == AttentionPath.Mma && (!Aligned(dout, q, k, v) || !TensorCores && accelerator.MaxNumThreadsPerGroup < AttentionMmaBackwardKernels.Threads))
            path = AttentionPath.Simt;
        if (path == AttentionPath.Mma && !TensorCores && accelerator.MaxNumThreadsPerGroup < AttentionMmaBackwardKernels.Threads)
            throw new NotSupportedException($"the tensor-core attention backward needs groups of {AttentionMmaBackwardKernels.Threads} threads; {accelerator.Name} allows {accelerator.MaxNumThreadsPerGroup}");
        Check(dtype, p, AttentionPath.Simt);
        long rows = (long)p.B * p.H * p.T;
        long need = path == AttentionPath.Mma ? rows * (p.D + 1) : rows;
        var ws = (workspace.Length >= need ? workspace : Workspace(need)).SubView(0, need);
        var delta = ws.SubView(0, rows);
        Launch(Spec(typeof(AttentionMmaBackwardKernels), nameof(AttentionMmaBackwardKernels.Delta), $"attention_delta_{dtype}", Storage(dtype), Element(dtype)),
            GridStride(rows), dtype, dout, o, delta, p.D, (int)rows);
        if (path != AttentionPath.Mma)
        {
            Launch(SimtSpec(nameof(AttentionSimtKernels.BackwardDq), "backward_dq_simt", dtype), SimtConfig(p.T, p.B * p.H), dtype, q, k, v, dout, lse, delta, dq, p);
            Launch(SimtSpec(nameof(AttentionSimtKernels.BackwardDkDv), "backward_dkdv_simt", dtype), SimtConfig(p.S, p.B * p.Hkv), dtype, q, k, v, dout, lse, delta, dk, dv, p);
            return;
        }
        var dqAccum = ws.SubView(rows, rows * p.D);
        dqAccum.MemSetToZero(accelerator.DefaultStream);
        var spec = BackwardSpec(dtype, p.D, p.Dropout != 0, TensorCores);
        int threads = AttentionMmaBackwardKernels.Threads;
        var config = new KernelConfig(new Index2D(Tiles(p.S, 64), p.B * p.Hkv), new Index2D(threads, 1),
            SharedMemoryConfig.RequestDynamic<byte>(spec.DynamicSharedBytes));
        Kernels.Launch(spec, config, U16(q), U16(k), U16(v), U16(dout), lse, delta, U16(dk), U16(dv), dqAccum,
            Address(q), Address(k), Address(v), Address(dout), p);
        var finish = Spec(typeof(AttentionMmaBackwardKernels), nameof(AttentionMmaBackwardKernels.FinishDq), $"attention_backward_finish_dq_{dtype}", Format(dtype));
        Kernels.Launch(finish, GridStride(rows * p.D), dqAccum, U16(dq), p.Scale, checked((int)(rows * p.D)));
    }

    private static void Check(DType dtype, AttentionParams p, AttentionPath path)
    {
        if (dtype is not (DType.F32 or DType.F16 or DType.BF16))
            throw new NotSupportedException($"GPU attention takes F32, F16 or BF16, not {dtype}");
        if (p.H % Math.Max(p.Hkv, 1) != 0) throw new ArgumentException($"GPU attention: {p.H} query heads are not a multiple of {p.Hkv} kv heads");
        switch (path)
        {
            case AttentionPath.Mma when dtype == DType.F32 || !AttentionMmaKernels.Supports(p.D):
                throw new NotSupportedException($"the tensor-core attention kernel takes F16/BF16 with head dim 64 or 128, not {dtype} with head dim {p.D}");
            case AttentionPath.Decode when p.T != 1 || !AttentionDecodeKernels.Supports(p.D, dtype.SizeOf()):
                throw new NotSupportedException($"the decode attention kernel takes one query (T = 1) and a head dim <= {AttentionDecodeKernels.MaxD} whose rows are whole 16-byte vectors, not T = {p.T}, D = {p.D} ({dtype})");
            case AttentionPath.Simt when p.D > AttentionSimtKernels.MaxD:
                throw new NotSupportedException($"GPU attention supports head dims up to {AttentionSimtKernels.MaxD}, not {p.D}");
        }
    }

    // ---- launchers ----

    private void ForwardMma(DType dtype, ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o, ArrayView<float> lse, AttentionParams p)
    {
        int threads = TensorCores ? AttentionMmaKernels.Threads : PlainMmaThreads; // 16 query rows per warp
        var spec = ForwardSpec(dtype, p.D, p.Dropout != 0, TensorCores, threads / 32);
        var config = new KernelConfig(new Index2D(Tiles(p.T, threads / 2), p.B * p.H), new Index2D(threads, 1), SharedMemoryConfig.RequestDynamic<byte>(spec.DynamicSharedBytes));
        Kernels.Launch(spec, config, U16(q), U16(k), U16(v), U16(o), lse, Address(q), Address(k), Address(v), p);
    }

    private void Decode(DType dtype, ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o, ArrayView<float> lse, AttentionParams p,
        int splits, ArrayView<float> workspace)
    {
        int heads = p.B * p.H;
        if (splits <= 0) splits = DecodeSplits(p);
        long slots = (long)splits * heads;
        var ws = workspace.Length >= slots * (p.D + 2) ? workspace : Workspace(slots * (p.D + 2));
        var partialO = ws.SubView(0, slots * p.D);
        var partialM = ws.SubView(slots * p.D, slots);
        var partialL = ws.SubView(slots * (p.D + 1), slots);
        var split = DecodeSpec(dtype, p.D, p.Dropout != 0);
        Launch(split, new KernelConfig(new Index2D(splits, heads), new Index2D(DecodeThreads, 1)), dtype, q, k, v, partialO, partialM, partialL, splits, p);
        var merge = Spec(typeof(AttentionDecodeKernels), nameof(AttentionDecodeKernels.Merge), $"attention_decode_merge_{dtype}", Storage(dtype), Element(dtype));
        Launch(merge, GridStride((long)heads * p.D), dtype, partialO, partialM, partialL, o, lse, splits, p.D, heads * p.D);
    }

    /// <summary>Launches with byte views cast to the dtype's storage type.</summary>
    private void Launch(KernelSpec spec, KernelConfig config, DType dtype, params object[] args)
    {
        for (int i = 0; i < args.Length; i++)
            if (args[i] is ArrayView<byte> bytes)
                args[i] = dtype == DType.F32 ? bytes.Cast<float>() : bytes.Cast<ushort>();
        Kernels.Launch(spec, config, args);
    }

    private KernelConfig SimtConfig(int rows, int heads)
    {
        int threads = SimtThreads;
        return new KernelConfig(new Index2D(Tiles(rows, threads), heads), new Index2D(threads, 1));
    }

    /// <summary>A grid-stride launch over n items: 256-thread groups (fewer on the CPU accelerator), at most 32 per multiprocessor.</summary>
    private KernelConfig GridStride(long n)
    {
        int threads = Math.Min(256, accelerator.MaxNumThreadsPerGroup);
        long groups = Math.Clamp((n + threads - 1) / threads, 1, 32L * Math.Max(accelerator.NumMultiprocessors, 1));
        return new KernelConfig((int)groups, threads);
    }

    // ---- the kernel list ----

    private static Type Storage(DType dtype) => dtype == DType.F32 ? typeof(float) : typeof(ushort);
    private static Type Element(DType dtype) => dtype switch { DType.F32 => typeof(Same<float>), DType.BF16 => typeof(BF16AsFloat), _ => typeof(F16AsFloat) };
    private static Type Format(DType dtype) => dtype == DType.BF16 ? typeof(BF16AsFloat) : typeof(F16AsFloat);
    private static Type HeadDim(int d) => d == 64 ? typeof(HeadDim64) : typeof(HeadDim128);
    private static Type Dropout(bool dropout) => dropout ? typeof(WithDropout) : typeof(NoDropout);

    private static KernelSpec Spec(Type host, string method, string name, params Type[] generic) =>
        new(name, host.GetMethod(method)!.MakeGenericMethod(generic));

    private static KernelSpec SimtSpec(string method, string kind, DType dtype) =>
        Spec(typeof(AttentionSimtKernels), method, $"attention_{kind}_{dtype}", Storage(dtype), Element(dtype));

    /// <summary>The tensor-core forward for a format, head dim and dropout; tensorCores false: its plain twin (any accelerator) for <paramref name="warps"/> warps.</summary>
    internal static KernelSpec ForwardSpec(DType dtype, int d, bool dropout, bool tensorCores, int warps = 8)
    {
        var spec = Spec(typeof(AttentionMmaKernels), nameof(AttentionMmaKernels.Forward),
            $"attention_forward_mma_{dtype}_d{d}{(dropout ? "_dropout" : "")}{(tensorCores ? "" : $"_plain{warps}")}",
            Format(dtype), tensorCores ? typeof(TensorCorePath) : typeof(PlainPath), HeadDim(d), Dropout(dropout));
        return spec with { DynamicSharedBytes = AttentionMmaKernels.SharedBytes(d, tensorCores, warps) };
    }

    /// <summary>The tensor-core backward (dk, dv and the dq accumulator in one pass).</summary>
    internal static KernelSpec BackwardSpec(DType dtype, int d, bool dropout, bool tensorCores)
    {
        var spec = Spec(typeof(AttentionMmaBackwardKernels), nameof(AttentionMmaBackwardKernels.Backward),
            $"attention_backward_mma_{dtype}_d{d}{(dropout ? "_dropout" : "")}{(tensorCores ? "" : "_plain")}",
            Format(dtype), tensorCores ? typeof(TensorCorePath) : typeof(PlainPath), HeadDim(d), Dropout(dropout));
        return spec with { DynamicSharedBytes = AttentionMmaBackwardKernels.SharedBytes(d, tensorCores) };
    }

    /// <summary>The decode split kernel for a dtype, head dim (its width: 64, 128 or 256) and dropout.</summary>
    internal static KernelSpec DecodeSpec(DType dtype, int d, bool dropout)
    {
        int width = AttentionDecodeKernels.WidthFor(d);
        var rows = dtype == DType.F32 ? typeof(F32Rows) : typeof(HalfRows<>).MakeGenericType(Format(dtype));
        var widthType = width == 64 ? typeof(DecodeUpTo64) : width == 128 ? typeof(DecodeUpTo128) : typeof(DecodeUpTo256);
        return Spec(typeof(AttentionDecodeKernels), nameof(AttentionDecodeKernels.Split), $"attention_decode_split_{dtype}_w{width}{(dropout ? "_dropout" : "")}",
            Storage(dtype), rows, widthType, Dropout(dropout));
    }

    /// <summary>Every kernel instantiation the launchers above can use on CUDA (for the offline PTX tests and the backend's spec list).</summary>
    public static IEnumerable<KernelSpec> KernelSpecs()
    {
        foreach (var dtype in new[] { DType.F32, DType.BF16, DType.F16 })
        {
            yield return SimtSpec(nameof(AttentionSimtKernels.Forward), "forward_simt", dtype);
            yield return SimtSpec(nameof(AttentionSimtKernels.BackwardDq), "backward_dq_simt", dtype);
            yield return SimtSpec(nameof(AttentionSimtKernels.BackwardDkDv), "backward_dkdv_simt", dtype);
            yield return Spec(typeof(AttentionMmaBackwardKernels), nameof(AttentionMmaBackwardKernels.Delta), $"attention_delta_{dtype}", Storage(dtype), Element(dtype));
            yield return Spec(typeof(AttentionDecodeKernels), nameof(AttentionDecodeKernels.Merge), $"attention_decode_merge_{dtype}", Storage(dtype), Element(dtype));
            foreach (int width in new[] { 64, 128, 256 })
                foreach (bool dropout in new[] { false, true })
                    yield return DecodeSpec(dtype, width, dropout);
            if (dtype == DType.F32) continue;
            yield return Spec(typeof(AttentionMmaBackwardKernels), nameof(AttentionMmaBackwardKernels.FinishDq), $"attention_backward_finish_dq_{dtype}", Format(dtype));
            foreach (int d in new[] { 64, 128 })
            {
                foreach (bool dropout in new[] { false, true })
                {
                    yield return ForwardSpec(dtype, d, dropout, tensorCores: true);
                    yield return BackwardSpec(dtype, d, dropout, tensorCores: true);
                }
            }
        }
    }

    // ---- plumbing ----

    private static int Tiles(int n, int tile) => (n + tile - 1) / tile;

    private static ArrayView<ushort> U16(ArrayView<byte> v) => v.Cast<ushort>();

    private static ulong Address(ArrayView<byte> v) => GemmLaunch.DeviceAddress(v);

    private static bool Aligned(params ArrayView<byte>[] views) => views.All(v => Address(v) % 16 == 0);

    /// <summary>At least <paramref name="floats"/> floats of workspace; a larger buffer replaces a smaller one after the device is idle.</summary>
    private ArrayView<float> Workspace(long floats)
    {
        if (_workspace is null || _workspace.Length < floats)
        {
            if (_workspace is not null)
            {
                accelerator.Synchronize(); // kernels still queued may read the old buffer
                _workspace.Dispose();
            }
            _workspace = accelerator.Allocate1D<float>(Math.Max(floats, 1024));
        }
        return _workspace.View;
    }

    public void Dispose()
    {
        _workspace?.Dispose();
        _workspace = null;
    }
}
