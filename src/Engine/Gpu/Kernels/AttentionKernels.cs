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
    public static void Forward(GpuBackend b, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, AttentionAttrs a)
    {
        var p = Params("Attention", q, k, [v, o], lse, a);
        long need = b.Attention.ForwardWorkspaceFloats(q.DType, p);
        using var ws = need > 0 ? b.Workspace(DType.F32, checked((int)need)) : null;
        b.Attention.Forward(q.DType, Bytes(q), Bytes(k), Bytes(v), Bytes(o), Floats(lse), p, workspace: ws?.View<float>() ?? default);
    }

    public static void Backward(GpuBackend b, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor dq, Tensor dk, Tensor dv, AttentionAttrs a)
    {
        var p = Params("AttentionBackward", q, k, [v, o, dout, dq, dk, dv], lse, a);
        using var ws = b.Workspace(DType.F32, checked((int)GpuAttention.BackwardWorkspaceFloats(q.DType, p)));
        b.Attention.Backward(q.DType, Bytes(dout), Bytes(q), Bytes(k), Bytes(v), Bytes(o), Floats(lse), Bytes(dq), Bytes(dk), Bytes(dv), p, ws.View<float>());
    }

    private static AttentionParams Params(string op, Tensor q, Tensor k, Tensor[] others, Tensor lse, AttentionAttrs a)
    {
        if (q.DType is not (DType.F32 or DType.F16 or DType.BF16))
            throw new NotSupportedException($"{op}: the GPU backend computes attention in F32, F16 or BF16, got {q.Describe()}; cast with To(DType.F32)");
        foreach (var t in others.Append(k))
        {
            if (t.DType != q.DType) throw new ArgumentException($"{op}: {t.Describe()} must have the dtype of {q.Describe()}");
            if (!t.IsContiguous) throw new ArgumentException($"{op}: the GPU kernels need dense tensors (the front end makes them), got {t.Describe()}");
        }
        if (lse.DType != DType.F32 || !lse.IsContiguous) throw new ArgumentException($"{op}: lse must be a dense F32 tensor, got {lse.Describe()}");
        return new AttentionParams(q.Shape[0], q.Shape[1], k.Shape[1], q.Shape[2], k.Shape[2], q.Shape[3], a);
    }

    private static ArrayView<byte> Bytes(Tensor t)
    {
        int size = t.DType.SizeOf();
        return ((GpuStorage)t.Storage).Bytes.SubView((long)t.Offset * size, (long)t.Numel * size);
    }

    private static ArrayView<float> Floats(Tensor t) => Bytes(t).Cast<float>();

    /// <summary>Every attention kernel, for the backend's offline PTX test and `mt selftest`.</summary>
    public static IEnumerable<KernelSpec> Specs() => GpuAttention.KernelSpecs();
}
