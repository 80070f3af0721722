namespace ManagedTensor;

/// <summary>
/// QMatMul, y = x W^T with W in a block format (a quantized Linear): declared here with its output rule,
/// its backward (to x only: a quantized weight is frozen; dL/dx = dL/dy W, with W decoded to the
/// gradient's dtype, as bitsandbytes' 4-bit matmul does, so QLoRA trains through it) and its fallback
/// (decode W and run MatMul; where the device cannot decode, W is decoded on the host and copied over).
/// Kernels: CPU (src/Engine/Cpu/CpuQuant.cs) for F32 activations, other activation dtypes going through F32; GPU
/// (src/Engine/Gpu/Kernels/Quant: a fused GEMV for decode, a tensor-core GEMM for prefill) for F32, F16 and BF16.
/// W may also be a 16-bit float (F16, BF16) kept as stored for float32 activations: a Linear over half weights
/// (src/Engine/Cpu/CpuHalfWeights.cs widens W a tile at a time instead of copying it whole to float32).
/// </summary>
internal static class QuantOps
{
    public static void Register()
    {
        OpRegistry.Define(new OpDef(Op.QMatMul, nameof(Op.QMatMul))
        {
            Inputs = ["x", "w"],
            Outputs = ["y"],
            Summary = "y = x W^T, W (N, K) in a block format (Q8_0, Q4_0, ...) or 16-bit float, x (..., K) float",
            Shapes = QMatMulShapes,
            Backward = (node, y, g) =>
            {
                Tensor x = node.Inputs[0], w = node.Inputs[1];
                var decoded = Decoded(w, g.DType);
                var dx = g.Reshape(-1, w.Shape[0]).MatMul(decoded);     // (M, N) (N, K) -> (M, K)
                // The float copy of W is as big as a float weight: freed now (the allocator reuses it in stream order)
                // instead of when the micro-batch's memory scope ends, so a backward holds one decoded W, not one per
                // quantized Linear (a 7B QLoRA step without checkpointing would otherwise keep 26 GB of them).
                if (!ReferenceEquals(decoded.Storage, w.Storage)) decoded.Dispose();
                return [dx.Reshape(x.Shape), null];
            },
            Fallback = (inputs, attrs) =>
            {
                Tensor x = inputs[0], w = inputs[1];
                if (x.DType != DType.F32 && Tensor.HasKernel(Op.QMatMul, x.Device, null, x.To(DType.F32), w))
                    return [x.To(DType.F32).QMatMul(w).To(x.DType)];
                return [x.MatMul(Decoded(w, x.DType).MT)];
            },
        });
        Cpu.CpuBackend.Instance.Kernels.Add(Op.QMatMul, (i, o, a) => Cpu.CpuQuant.QMatMul(i[0], i[1], o[0]), (i, a) => i[0].DType == DType.F32 && i[1].DType.IsQuantized());
        Cpu.CpuBackend.Instance.Kernels.Add(Op.QMatMul, (i, o, a) => Cpu.CpuHalfWeights.MatMul(i[0], i[1], o[0]), (i, a) => Cpu.CpuHalfWeights.Handles(i));
    }

    private static TensorSpec[] QMatMulShapes(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[0], w = inputs[1];
        if (!w.DType.IsQuantized() && w.DType is not (DType.F16 or DType.BF16))
            throw new ArgumentException($"QMatMul: weight {w.Describe()} must be in a block format (Q8_0, Q4_0, ...) or 16-bit (F16, BF16); for other float weights use MatMul");
        if (!x.DType.IsFloat()) throw new ArgumentException($"QMatMul: activations {x.Describe()} must be floating point");
        if (w.Rank != 2) throw new ArgumentException($"QMatMul: weight {w.Describe()} must be 2-D (out, in)");
        if (x.Rank == 0 || x.Shape[^1] != w.Shape[1])
            throw new ArgumentException($"QMatMul: inner sizes differ: x {x.Describe()} has {(x.Rank == 0 ? 0 : x.Shape[^1])} features, weight {w.Describe()} takes {w.Shape[1]}");
        return [new([.. x.Shape[..^1], w.Shape[0]], x.DType)];
    }

    /// <summary>W decoded to <paramref name="dtype"/> on W's device (through the host where the device has no decoding kernel).</summary>
    internal static Tensor Decoded(Tensor w, DType dtype)
    {
        using var noGrad = GradMode.NoGrad();
        if (Backends.For(w.Device).Kernels.Has(Op.Copy, [w], null)) return w.To(dtype);
        return w.To(Device.Cpu).To(DType.F32).To(dtype).To(w.Device);
    }
}

public sealed partial class Tensor
{
    /// <summary>
    /// x W^T with this tensor as x (..., K) and <paramref name="w"/> (N, K) in a block format: (..., N). The
    /// quantized Linear's product: W stays in its blocks (4.5 bits per value for Q4_0) on every device. Under autocast x
    /// is cast to the 16-bit dtype and the product is 16-bit, as MatMul's (QLoRA's bf16 compute dtype; Autocast.cs).
    /// </summary>
    public Tensor QMatMul(Tensor w) =>
        Autocast.Target(DType) is { } low && DType != low ? To(low).QMatMul(w) : Apply(Op.QMatMul, null, this, w)[0];

    /// <summary>
    /// A tensor of block format <paramref name="format"/> over <paramref name="bytes"/> (copied), holding
    /// <paramref name="shape"/> values. The byte count must be exactly what the shape takes in that format.
    /// </summary>
    public static Tensor FromBlocks(byte[] bytes, int[] shape, DType format, Device? device = null, string? name = null)
    {
        if (!format.IsQuantized()) throw new ArgumentException($"FromBlocks: {format} is not a block format");
        var t = Empty(shape, format, device);
        t.Name = name;
        long need = format.ByteCount(t.Numel);
        if (bytes.LongLength != need)
            throw new ArgumentException($"tensor {(name is null ? "" : $"'{name}' ")}{ShapeString(shape)} {format}: {bytes.LongLength} bytes given, the shape takes {need} in {format}");
        t.Storage.CopyFromHost(bytes, 0);
        return t;
    }

    /// <summary>This block-format tensor's bytes (whole blocks, row-major), as they are stored.</summary>
    public byte[] ToBlockBytes()
    {
        if (!DType.IsQuantized()) throw new InvalidOperationException($"ToBlockBytes: {Describe()} is not in a block format");
        var c = Contiguous();
        return (byte[])c.Storage.ToHostArray(c.Offset, c.Numel);
    }
}
