using System.Collections.Concurrent;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu.Kernels.Attention;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Gpu;

/// <summary>Which attention kernel family runs (Auto picks; the others are for tests and benchmarks).</summary>
public enum AttentionPath
{
    Auto,
    Simt,    // any head dim up to 256, any float dtype (AttentionSimtKernels)
    Mma,     // tensor cores: F16/BF16, head dim 64 or 128 forward, 64 backward (AttentionMma*Kernels)
    Decode,  // T = 1: split over the cache, then a merge (AttentionDecodeKernels)
}

/// <summary>
/// Launchers of the attention kernels on one accelerator (the GPU backend keeps one per device).
/// Buffers come as byte views of contiguous tensors in the op's layout (see <see cref="Op.Attention"/>);
/// lse is float32. Kernels are loaded on first use and cached ({kernel}_{element}). The backward and
/// the decode path need a float32 workspace (<see cref="BackwardWorkspaceFloats"/>,
/// <see cref="ForwardWorkspaceFloats"/>): the caller may pass one (the GPU backend passes a block of
/// its allocator); otherwise one is kept and grown here, so steady-state calls allocate nothing.
/// Group sizes follow the accelerator (ILGPU's CPU accelerator may allow fewer threads than a GPU).
/// </summary>
public sealed class GpuAttention(Accelerator accelerator) : IDisposable
{
    private readonly ConcurrentDictionary<string, Delegate> _kernels = new();
    private MemoryBuffer1D<float, Stride1D.Dense>? _workspace;

    public Accelerator Accelerator => accelerator;

    /// <summary>Bytes of workspace held here now (the "extra memory" of attention beyond inputs and outputs).</summary>
    public long WorkspaceBytes => (_workspace?.Length ?? 0) * sizeof(float);

    private int SimtThreads => Math.Min(AttentionSimtKernels.GroupSize, accelerator.MaxNumThreadsPerGroup);
    private int MmaThreads => 32 * Math.Clamp(accelerator.MaxNumThreadsPerGroup / 32, 1, AttentionMmaKernels.GroupSize / 32);
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

    /// <summary>Workspace floats <see cref="Backward"/> needs: Di = dout . out per query row.</summary>
    public static long BackwardWorkspaceFloats(AttentionParams p) => (long)p.B * p.H * p.T;

    /// <summary>The kernel family <see cref="Forward"/> uses for these sizes.</summary>
    public static AttentionPath ChooseForward(DType dtype, AttentionParams p)
    {
        if (p.T == 1 && p.D <= AttentionDecodeKernels.MaxD) return AttentionPath.Decode;
        if (dtype is DType.F16 or DType.BF16 && AttentionMmaKernels.Supports(p.D)) return AttentionPath.Mma;
        return AttentionPath.Simt;
    }

    /// <summary>The kernel family <see cref="Backward"/> uses: tensor cores for F16/BF16 with head dim 64, else SIMT.</summary>
    public static AttentionPath ChooseBackward(DType dtype, AttentionParams p)
        => dtype is DType.F16 or DType.BF16 && AttentionMmaBackwardKernels.Supports(p.D) ? AttentionPath.Mma : AttentionPath.Simt;

    /// <summary>out and lse from q, k, v.</summary>
    public void Forward(DType dtype, ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o, ArrayView<float> lse,
        AttentionParams p, AttentionPath path = AttentionPath.Auto, int decodeSplits = 0, ArrayView<float> workspace = default)
    {
        if (path == AttentionPath.Auto) path = ChooseForward(dtype, p);
        Check(dtype, p, path);
        switch (path)
        {
            case AttentionPath.Mma when dtype == DType.BF16 && TensorCores: ForwardMma<BF16AsFloat, TensorCoreMath<BF16AsFloat>>(q, k, v, o, lse, p); break;
            case AttentionPath.Mma when dtype == DType.BF16: ForwardMma<BF16AsFloat, PlainMath<BF16AsFloat>>(q, k, v, o, lse, p); break;
            case AttentionPath.Mma when TensorCores: ForwardMma<F16AsFloat, TensorCoreMath<F16AsFloat>>(q, k, v, o, lse, p); break;
            case AttentionPath.Mma: ForwardMma<F16AsFloat, PlainMath<F16AsFloat>>(q, k, v, o, lse, p); break;
            case AttentionPath.Decode:
                switch (dtype)
                {
                    case DType.F32: Decode<float, Same<float>>(q, k, v, o, lse, p, decodeSplits, workspace); break;
                    case DType.BF16: Decode<ushort, BF16AsFloat>(q, k, v, o, lse, p, decodeSplits, workspace); break;
                    default: Decode<ushort, F16AsFloat>(q, k, v, o, lse, p, decodeSplits, workspace); break;
                }
                break;
            default:
                switch (dtype)
                {
                    case DType.F32: ForwardSimt<float, Same<float>>(q, k, v, o, lse, p); break;
                    case DType.BF16: ForwardSimt<ushort, BF16AsFloat>(q, k, v, o, lse, p); break;
                    default: ForwardSimt<ushort, F16AsFloat>(q, k, v, o, lse, p); break;
                }
                break;
        }
    }

    /// <summary>dq, dk, dv (the scores are recomputed from lse; Di = dout . out goes to the workspace).</summary>
    public void Backward(DType dtype, ArrayView<byte> dout, ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o,
        ArrayView<float> lse, ArrayView<byte> dq, ArrayView<byte> dk, ArrayView<byte> dv, AttentionParams p, ArrayView<float> workspace = default,
        AttentionPath path = AttentionPath.Auto)
    {
        if (path == AttentionPath.Auto) path = ChooseBackward(dtype, p);
        if (path == AttentionPath.Mma && (dtype == DType.F32 || !AttentionMmaBackwardKernels.Supports(p.D)))
            throw new NotSupportedException($"the tensor-core attention backward takes F16/BF16 with head dim 64, not {dtype} with head dim {p.D}");
        Check(dtype, p, AttentionPath.Simt);
        long rows = BackwardWorkspaceFloats(p);
        var delta = (workspace.Length >= rows ? workspace : Workspace(rows)).SubView(0, rows);
        if (path == AttentionPath.Mma)
        {
            switch (dtype)
            {
                case DType.BF16 when TensorCores: BackwardMma<BF16AsFloat, TensorCoreMath<BF16AsFloat>>(dout, q, k, v, o, lse, dq, dk, dv, delta, p); break;
                case DType.BF16: BackwardMma<BF16AsFloat, PlainMath<BF16AsFloat>>(dout, q, k, v, o, lse, dq, dk, dv, delta, p); break;
                case DType.F16 when TensorCores: BackwardMma<F16AsFloat, TensorCoreMath<F16AsFloat>>(dout, q, k, v, o, lse, dq, dk, dv, delta, p); break;
                default: BackwardMma<F16AsFloat, PlainMath<F16AsFloat>>(dout, q, k, v, o, lse, dq, dk, dv, delta, p); break;
            }
            return;
        }
        switch (dtype)
        {
            case DType.F32: BackwardSimt<float, Same<float>>(dout, q, k, v, o, lse, dq, dk, dv, delta, p); break;
            case DType.BF16: BackwardSimt<ushort, BF16AsFloat>(dout, q, k, v, o, lse, dq, dk, dv, delta, p); break;
            default: BackwardSimt<ushort, F16AsFloat>(dout, q, k, v, o, lse, dq, dk, dv, delta, p); break;
        }
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
            case AttentionPath.Decode when p.T != 1 || p.D > AttentionDecodeKernels.MaxD:
                throw new NotSupportedException($"the decode attention kernel takes one query (T = 1) and head dim <= {AttentionDecodeKernels.MaxD}, not T = {p.T}, D = {p.D}");
            case AttentionPath.Simt when p.D > AttentionSimtKernels.MaxD:
                throw new NotSupportedException($"GPU attention supports head dims up to {AttentionSimtKernels.MaxD}, not {p.D}");
        }
    }

    // ---- launchers ----

    private void ForwardSimt<TS, TE>(ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o, ArrayView<float> lse, AttentionParams p)
        where TS : unmanaged where TE : struct, IElement<TS, float>
    {
        var kernel = Kernel<Action<KernelConfig, ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<float>, AttentionParams>>(
            $"attention_forward_simt_{typeof(TE).Name}", () => accelerator.LoadStreamKernel<ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<float>, AttentionParams>(AttentionSimtKernels.Forward<TS, TE>));
        int threads = SimtThreads;
        kernel(new KernelConfig(new Index2D(Tiles(p.T, threads), p.B * p.H), new Index2D(threads, 1)), q.Cast<TS>(), k.Cast<TS>(), v.Cast<TS>(), o.Cast<TS>(), lse, p);
    }

    /// <summary>The tensor-core kernels run mma.sync on CUDA and their plain twin elsewhere (<see cref="IMmaMath{TE}"/>).</summary>
    private bool TensorCores => accelerator.AcceleratorType == AcceleratorType.Cuda;

    private void ForwardMma<TE, TM>(ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o, ArrayView<float> lse, AttentionParams p)
        where TE : struct, IHalfFormat where TM : struct, IMmaMath<TE>
    {
        var kernel = Kernel<Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, AttentionParams>>(
            $"attention_forward_mma_{typeof(TE).Name}_{typeof(TM).Name}", () => accelerator.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, AttentionParams>(AttentionMmaKernels.Forward<TE, TM>));
        int threads = MmaThreads; // 16 query rows per warp
        kernel(new KernelConfig(new Index2D(Tiles(p.T, threads / 2), p.B * p.H), new Index2D(threads, 1)), q.Cast<ushort>(), k.Cast<ushort>(), v.Cast<ushort>(), o.Cast<ushort>(), lse, p);
    }

    private void Decode<TS, TE>(ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o, ArrayView<float> lse, AttentionParams p,
        int splits, ArrayView<float> workspace)
        where TS : unmanaged where TE : struct, IElement<TS, float>
    {
        int heads = p.B * p.H;
        if (splits <= 0) splits = DecodeSplits(p);
        long slots = (long)splits * heads;
        var ws = workspace.Length >= slots * (p.D + 2) ? workspace : Workspace(slots * (p.D + 2));
        var partialO = ws.SubView(0, slots * p.D);
        var partialM = ws.SubView(slots * p.D, slots);
        var partialL = ws.SubView(slots * (p.D + 1), slots);
        var split = Kernel<Action<KernelConfig, ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, AttentionParams>>(
            $"attention_decode_split_{typeof(TE).Name}", () => accelerator.LoadStreamKernel<ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, AttentionParams>(AttentionDecodeKernels.Split<TS, TE>));
        split(new KernelConfig(new Index2D(splits, heads), new Index2D(DecodeThreads, 1)), q.Cast<TS>(), k.Cast<TS>(), v.Cast<TS>(), partialO, partialM, partialL, splits, p);
        var merge = Kernel<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<TS>, ArrayView<float>, int, int>>(
            $"attention_decode_merge_{typeof(TE).Name}", () => accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<TS>, ArrayView<float>, int, int>(AttentionDecodeKernels.Merge<TS, TE>));
        merge(heads * p.D, partialO, partialM, partialL, o.Cast<TS>(), lse, splits, p.D);
    }

    private void BackwardSimt<TS, TE>(ArrayView<byte> dout, ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o,
        ArrayView<float> lse, ArrayView<byte> dq, ArrayView<byte> dk, ArrayView<byte> dv, ArrayView<float> delta, AttentionParams p)
        where TS : unmanaged where TE : struct, IElement<TS, float>
    {
        Delta<TS, TE>(dout, o, delta, p);

        var dqKernel = Kernel<Action<KernelConfig, ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<float>, ArrayView<float>, ArrayView<TS>, AttentionParams>>(
            $"attention_backward_dq_simt_{typeof(TE).Name}", () => accelerator.LoadStreamKernel<ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<float>, ArrayView<float>, ArrayView<TS>, AttentionParams>(AttentionSimtKernels.BackwardDq<TS, TE>));
        int threads = SimtThreads;
        var group = new Index2D(threads, 1);
        dqKernel(new KernelConfig(new Index2D(Tiles(p.T, threads), p.B * p.H), group),
            q.Cast<TS>(), k.Cast<TS>(), v.Cast<TS>(), dout.Cast<TS>(), lse, delta, dq.Cast<TS>(), p);

        var dkdvKernel = Kernel<Action<KernelConfig, ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<float>, ArrayView<float>, ArrayView<TS>, ArrayView<TS>, AttentionParams>>(
            $"attention_backward_dkdv_simt_{typeof(TE).Name}", () => accelerator.LoadStreamKernel<ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, ArrayView<float>, ArrayView<float>, ArrayView<TS>, ArrayView<TS>, AttentionParams>(AttentionSimtKernels.BackwardDkDv<TS, TE>));
        dkdvKernel(new KernelConfig(new Index2D(Tiles(p.S, threads), p.B * p.Hkv), group),
            q.Cast<TS>(), k.Cast<TS>(), v.Cast<TS>(), dout.Cast<TS>(), lse, delta, dk.Cast<TS>(), dv.Cast<TS>(), p);
    }

    private void BackwardMma<TE, TM>(ArrayView<byte> dout, ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> o,
        ArrayView<float> lse, ArrayView<byte> dq, ArrayView<byte> dk, ArrayView<byte> dv, ArrayView<float> delta, AttentionParams p)
        where TE : struct, IHalfFormat where TM : struct, IMmaMath<TE>
    {
        Delta<ushort, TE>(dout, o, delta, p);
        int threads = MmaThreads; // 16 keys (dk/dv) or query rows (dq) per warp
        var group = new Index2D(threads, 1);
        var dkdv = Kernel<Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, ArrayView<ushort>, AttentionParams>>(
            $"attention_backward_dkdv_mma_{typeof(TE).Name}_{typeof(TM).Name}", () => accelerator.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, ArrayView<ushort>, AttentionParams>(AttentionMmaBackwardKernels.BackwardDkDv<TE, TM>));
        dkdv(new KernelConfig(new Index2D(Tiles(p.S, threads / 2), p.B * p.Hkv), group),
            q.Cast<ushort>(), k.Cast<ushort>(), v.Cast<ushort>(), dout.Cast<ushort>(), lse, delta, dk.Cast<ushort>(), dv.Cast<ushort>(), p);
        var dqKernel = Kernel<Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, AttentionParams>>(
            $"attention_backward_dq_mma_{typeof(TE).Name}_{typeof(TM).Name}", () => accelerator.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, AttentionParams>(AttentionMmaBackwardKernels.BackwardDq<TE, TM>));
        dqKernel(new KernelConfig(new Index2D(Tiles(p.T, threads / 2), p.B * p.H), group),
            q.Cast<ushort>(), k.Cast<ushort>(), v.Cast<ushort>(), dout.Cast<ushort>(), lse, delta, dq.Cast<ushort>(), p);
    }

    private void Delta<TS, TE>(ArrayView<byte> dout, ArrayView<byte> o, ArrayView<float> delta, AttentionParams p)
        where TS : unmanaged where TE : struct, IElement<TS, float>
    {
        var deltaKernel = Kernel<Action<Index1D, ArrayView<TS>, ArrayView<TS>, ArrayView<float>, int>>(
            $"attention_delta_{typeof(TE).Name}", () => accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<TS>, ArrayView<TS>, ArrayView<float>, int>(AttentionSimtKernels.Delta<TS, TE>));
        deltaKernel(p.B * p.H * p.T, dout.Cast<TS>(), o.Cast<TS>(), delta, p.D);
    }

    // ---- the kernel list (offline PTX tests, the backend's KernelSpecs) ----

    /// <summary>Every kernel instantiation the launchers above can use, named {kernel}_{element}.</summary>
    public static IEnumerable<(string Name, MethodInfo Method)> KernelMethods()
    {
        static MethodInfo Closed(Type type, string name, params Type[] args) => type.GetMethod(name)!.MakeGenericMethod(args);
        var elements = new (string Name, Type Storage, Type Element)[]
        {
            ("F32", typeof(float), typeof(Same<float>)), ("BF16", typeof(ushort), typeof(BF16AsFloat)), ("F16", typeof(ushort), typeof(F16AsFloat)),
        };
        foreach (var (name, ts, te) in elements)
        {
            yield return ($"attention_forward_simt_{name}", Closed(typeof(AttentionSimtKernels), nameof(AttentionSimtKernels.Forward), ts, te));
            yield return ($"attention_delta_{name}", Closed(typeof(AttentionSimtKernels), nameof(AttentionSimtKernels.Delta), ts, te));
            yield return ($"attention_backward_dq_simt_{name}", Closed(typeof(AttentionSimtKernels), nameof(AttentionSimtKernels.BackwardDq), ts, te));
            yield return ($"attention_backward_dkdv_simt_{name}", Closed(typeof(AttentionSimtKernels), nameof(AttentionSimtKernels.BackwardDkDv), ts, te));
            yield return ($"attention_decode_split_{name}", Closed(typeof(AttentionDecodeKernels), nameof(AttentionDecodeKernels.Split), ts, te));
            yield return ($"attention_decode_merge_{name}", Closed(typeof(AttentionDecodeKernels), nameof(AttentionDecodeKernels.Merge), ts, te));
            if (ts != typeof(ushort)) continue;
            // On CUDA the tensor-core kernels run with TensorCoreMath (their plain twins run only on the CPU accelerator).
            var math = typeof(TensorCoreMath<>).MakeGenericType(te);
            yield return ($"attention_forward_mma_{name}", Closed(typeof(AttentionMmaKernels), nameof(AttentionMmaKernels.Forward), te, math));
            yield return ($"attention_backward_dkdv_mma_{name}", Closed(typeof(AttentionMmaBackwardKernels), nameof(AttentionMmaBackwardKernels.BackwardDkDv), te, math));
            yield return ($"attention_backward_dq_mma_{name}", Closed(typeof(AttentionMmaBackwardKernels), nameof(AttentionMmaBackwardKernels.BackwardDq), te, math));
        }
    }

    // ---- plumbing ----

    private static int Tiles(int n, int tile) => (n + tile - 1) / tile;

    private TKernel Kernel<TKernel>(string name, Func<TKernel> load) where TKernel : Delegate
        => (TKernel)_kernels.GetOrAdd(name, _ => load());

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
