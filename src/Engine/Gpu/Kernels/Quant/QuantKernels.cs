using ILGPU;
using ManagedTensor.Quant;

namespace ManagedTensor.Gpu.Kernels.Quant;

/// <summary>
/// Op.QMatMul on the GPU backend, y (..., N) = x (..., K) W^T with W (N, K) in a block format: the one place that
/// picks a kernel. Up to <see cref="QGemvKernels.MaxRows"/> token rows (decode) run the fused GEMV, which reads W
/// once at memory bandwidth; more rows (prefill, training) run the tensor-core GEMM, which decodes W's tiles into
/// shared memory. Either way W stays in its blocks in device memory. Activations F32, F16 or BF16; y has x's dtype.
/// </summary>
internal static class QuantKernels
{
    /// <summary>The weight formats of the GEMV and the GEMM.</summary>
    public static readonly DType[] WeightFormats = BlockDecoders.Formats;

    /// <summary>Whether the kernels take these operands (the backend's guard; anything else runs QMatMul's fallback).</summary>
    public static bool Supports(Tensor x, Tensor w) =>
        x.DType is DType.F32 or DType.F16 or DType.BF16 && Array.IndexOf(WeightFormats, w.DType) >= 0 && w.Rank == 2
        && w.IsContiguous && w.Offset % BlockFormats.Get(w.DType).BlockSize == 0;

    public static void QMatMul(GpuBackend b, Tensor x, Tensor w, Tensor y)
    {
        int n = w.Shape[0], k = w.Shape[1], m = x.Numel / k;
        if (!y.IsContiguous || y.Numel != m * n || y.DType != x.DType)
            throw new ArgumentException($"QMatMul: output {y.Describe()} must be a contiguous ({m}, {n}) {x.DType} tensor for x {x.Describe()}, w {w.Describe()}");
        if (m == 0 || n == 0) return;
        var ws = (GpuStorage)w.Storage;
        var f = BlockFormats.Get(w.DType);
        var p = new QMatMulArgs
        {
            M = m,
            N = n,
            K = k,
            RowBytes = checked((int)f.ByteCount(k)),
            WOffset = checked((int)f.ByteCount(w.Offset)),
            WBytes = checked((int)ws.SizeInBytes),
        };
        // Activations are read 8 at a time with 16-byte loads: x must be contiguous from a 16-byte boundary
        // (offset a multiple of 8 elements; rows of K, a multiple of 32, keep it). Anything else is copied first.
        using var copy = x.IsContiguous && x.Offset % 8 == 0 ? null : new Tensor(b.Workspace(x.DType, x.Numel), (int[])x.Shape.Clone(), Tensor.ContiguousStrides(x.Shape), 0);
        if (copy is not null) CopyKernels.Copy(b, x, copy);
        var xs = copy ?? x;
        object xv = View(xs), yv = View(y);
        if (m <= QGemvKernels.MaxRows) QGemvKernels.Run(b, w.DType, x.DType, xv, ws.Bytes, yv, p);
        else QGemmMmaKernels.Run(b, w.DType, x.DType, xv, ws.Bytes, yv, p);
    }

    /// <summary>A contiguous float tensor's elements from its offset, as the kernels' storage type.</summary>
    private static object View(Tensor t)
    {
        var s = (GpuStorage)t.Storage;
        return t.DType == DType.F32 ? s.View<float>().SubView(t.Offset, t.Numel) : s.View<ushort>().SubView(t.Offset, t.Numel);
    }

    public static IEnumerable<KernelSpec> Specs() =>
        from format in WeightFormats
        from activation in new[] { DType.F32, DType.F16, DType.BF16 }
        from spec in new[] { QGemvKernels.Spec(format, activation), QGemmMmaKernels.Spec(format, activation) }
        select spec;
}
