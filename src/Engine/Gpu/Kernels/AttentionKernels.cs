using ILGPU;
using ManagedTensor.Gpu.Kernels.Attention;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>
/// The GPU backend's entry to fused attention (Op.Attention, Op.AttentionBackward): it checks the
/// tensors, cuts their byte views out of the storages and hands them to the backend's
/// <see cref="GpuAttention"/> launchers with a workspace block from the backend's allocator (counted
/// as workspace). The kernels themselves live in Kernels/Attention/.
/// </summary>
internal static class AttentionKernels
{
    /// <summary>How many forward calls on this thread copied strided k and v into dense tensors (for tests: decode must not).</summary>
    [ThreadStatic] internal static int KvCopies;

    /// <summary>
    /// The decode kernel (one new token against a KV cache) reads k and v through their strides, so a cache's
    /// filled positions (a view narrowed from its buffer) are attended in place, as on the CPU: a copy would move
    /// the whole cache, 2 S D elements per layer and head, for every token. The other kernels take dense k and v:
    /// strided views are copied for them here.
    /// </summary>
    public static void Forward(GpuBackend b, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, AttentionAttrs a)
    {
        var dense = new AttentionParams(q.Shape[0], q.Shape[1], k.Shape[1], q.Shape[2], k.Shape[2], q.Shape[3], a);
        bool strided = GpuAttention.ChooseForward(q.DType, dense) == AttentionPath.Decode 
            && RowsAligned(q) && RowsAligned(k) && RowsAligned(v) && k.Strides.AsSpan().SequenceEqual(v.Strides);
        Tensor k0 = k, v0 = v;
        if (!strided) (k, v) = (k.Contiguous(), v.Contiguous());
        if (!ReferenceEquals(k, k0) || !ReferenceEquals(v, v0)) KvCopies++;
        try
        {
            var p = Params("Attention", q, k, [o], lse, a, strided ? v : null);
            long need = b.Attention.ForwardWorkspaceFloats(q.DType, p);
            using var ws = need > 0 ? b.Workspace(DType.F32, checked((int)need)) : null;
            b.Attention.Forward(q.DType, Bytes(q), Bytes(k), Bytes(v), Bytes(o), Floats(lse), p, workspace: ws?.View<float>() ?? default);
        }
        finally
        {
            if (!ReferenceEquals(k, k0)) k.Dispose(); // copies made here
            if (!ReferenceEquals(v, v0)) v.Dispose();
        }
    }

    public static void Backward(GpuBackend b, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor dq, Tensor dk, Tensor dv, AttentionAttrs a)
    {
        var p = Params("AttentionBackward", q, k, [v, o, dout, dq, dk, dv], lse, a);
        using var ws = b.Workspace(DType.F32, checked((int)GpuAttention.BackwardWorkspaceFloats(q.DType, p)));
        b.Attention.Backward(q.DType, Bytes(dout), Bytes(q), Bytes(k), Bytes(v), Bytes(o), Floats(lse), Bytes(dq), Bytes(dk), Bytes(dv), p, ws.View<float>());
    }

    /// <param name="stridedV">v, when k and v may be strided views (same strides, last axis contiguous); null: all dense</param>
    private static AttentionParams Params(string op, Tensor q, Tensor k, Tensor[] others, Tensor lse, AttentionAttrs a, Tensor? stridedV = null)
    {
        if (q.DType is not (DType.F32 or DType.F16 or DType.BF16))
            throw new NotSupportedException($"{op}: the GPU backend computes attention in F32, F16 or BF16, got {q.Describe()}; cast with To(DType.F32)");
        foreach (var t in stridedV is null ? others.Append(k) : others)
        {
            if (t.DType != q.DType) throw new ArgumentException($"{op}: {t.Describe()} must have the dtype of {q.Describe()}");
            if (!t.IsContiguous) throw new ArgumentException($"{op}: the GPU kernels need dense tensors (the front end makes them), got {t.Describe()}");
        }
        if (lse.DType != DType.F32 || !lse.IsContiguous) throw new ArgumentException($"{op}: lse must be a dense F32 tensor, got {lse.Describe()}");
        (long, long, long)? kvStrides = null;
        if (stridedV is { } v)
        {
            if (k.DType != q.DType || v.DType != q.DType) throw new ArgumentException($"{op}: k {k.Describe()} and v {v.Describe()} must have the dtype of {q.Describe()}");
            if (!k.Strides.AsSpan().SequenceEqual(v.Strides) || (k.Shape[3] > 1 && k.Strides[3] != 1))
                throw new ArgumentException($"{op}: k and v must share strides with the last axis contiguous, got [{string.Join(", ", k.Strides)}] and [{string.Join(", ", v.Strides)}]");
            kvStrides = (k.Strides[0], k.Strides[1], k.Strides[2]);
        }
        return new AttentionParams(q.Shape[0], q.Shape[1], k.Shape[1], q.Shape[2], k.Shape[2], q.Shape[3], a, kvStrides);
    }

    /// <summary>
    /// Whether the decode kernel's 16-byte loads can read <paramref name="t"/> in place: its start and its batch,
    /// head and row strides whole 16-byte steps, its last axis contiguous.
    /// </summary>
    private static bool RowsAligned(Tensor t)
    {
        long size = t.DType.SizeOf();
        if (t.Rank != 4 || (t.Shape[3] > 1 && t.Strides[3] != 1) || t.Offset * size % 16 != 0) return false;
        for (int axis = 0; axis < 3; axis++)
            if (t.Shape[axis] > 1 && t.Strides[axis] * size % 16 != 0) return false;
        return true;
    }

    /// <summary>The bytes a tensor's elements span, from its offset to its last element (all of them when dense).</summary>
    private static ArrayView<byte> Bytes(Tensor t)
    {
        int size = t.DType.SizeOf();
        long extent = 1;
        if (t.Numel == 0) extent = 0;
        else for (int i = 0; i < t.Rank; i++) extent += (long)(t.Shape[i] - 1) * t.Strides[i];
        return ((GpuStorage)t.Storage).Bytes.SubView((long)t.Offset * size, extent * size);
    }

    private static ArrayView<float> Floats(Tensor t) => Bytes(t).Cast<float>();

    /// <summary>Every attention kernel, for the backend's offline PTX test and `mt selftest`.</summary>
    public static IEnumerable<KernelSpec> Specs() => GpuAttention.KernelSpecs();
}
