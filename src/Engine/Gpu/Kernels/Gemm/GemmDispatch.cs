using ILGPU;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>
/// Op.MatMul on the GPU backend through the GEMM kernels: maps tensors (shape, strides, offset) to a
/// <see cref="GemmArgs"/> problem and runs <see cref="GemmSelect"/>'s pick. A matrix whose last axis is at
/// unit stride is row-major (op = X), one whose second-last axis is, is the transpose of a row-major one
/// (op = X^T, as a.MT gives); the batch axes must flatten to one stride per operand (0 when broadcast).
/// Anything else (gathered strides, mixed broadcast batch axes) returns false and the backend's tiled
/// kernel handles it.
/// </summary>
internal static class GemmDispatch
{
    /// <summary>The kernel the last successful <see cref="TryRun"/> on this thread used (for tests).</summary>
    [ThreadStatic] internal static GemmKernel? LastKernel;

    public static bool TryRun(GpuBackend backend, Tensor a, Tensor b, Tensor c, int m, int n, int k)
    {
        if (c.DType is not (DType.F32 or DType.BF16 or DType.F16) || !c.IsContiguous) return false;
        // The kernels run 256-thread groups; the backend's CPU accelerator is shaped smaller (GpuDevices.CpuAcceleratorShape).
        if (backend.Accelerator.MaxNumThreadsPerGroup < 256) return false;
        if (Layout(m, k, a.Strides[^2], a.Strides[^1]) is not { } al || Layout(k, n, b.Strides[^2], b.Strides[^1]) is not { } bl) return false;
        if (BatchStride(a) is not { } sa || BatchStride(b) is not { } sb) return false;
        int batch = c.Numel / (m * n);
        if (batch > 65535) return false;
        var p = new GemmArgs
        {
            M = m, N = n, K = k,
            TransA = al.Trans ? 1 : 0, Lda = al.Ld, TransB = bl.Trans ? 1 : 0, Ldb = bl.Ld, Ldc = n,
            BatchStrideA = batch > 1 ? sa : 0, BatchStrideB = batch > 1 ? sb : 0, BatchStrideC = (long)m * n,
            Alpha = 1f, Beta = 0f,
        };
        var acc = backend.Accelerator;
        var (sa0, sb0, sc0) = ((GpuStorage)a.Storage, (GpuStorage)b.Storage, (GpuStorage)c.Storage);
        LastKernel = c.DType == DType.F32
            ? GemmSelect.Run(acc, sa0.View<float>().SubView(a.Offset), sb0.View<float>().SubView(b.Offset), sc0.View<float>().SubView(c.Offset), default, p, batch)
            : GemmSelect.Run(acc, c.DType, sa0.View<ushort>().SubView(a.Offset), sb0.View<ushort>().SubView(b.Offset), sc0.View<ushort>().SubView(c.Offset), default, p, batch);
        return true;
    }

    /// <summary>(transposed, leading dimension) of a rows x cols matrix with strides (rs, cs), or null.</summary>
    private static (bool Trans, int Ld)? Layout(int rows, int cols, int rs, int cs)
    {
        // A size-1 axis may carry any stride; give it the one a dense matrix would have.
        if ((cs == 1 || cols == 1) && (rows == 1 || rs >= cols)) return (false, rows == 1 ? Math.Max(cols, 1) : rs);
        if ((rs == 1 || rows == 1) && (cols == 1 || cs >= rows)) return (true, cols == 1 ? Math.Max(rows, 1) : cs);
        return null;
    }

    /// <summary>The one stride of the flattened batch index (0 when broadcast), or null when the batch axes do not flatten.</summary>
    private static long? BatchStride(Tensor t)
    {
        long stride = -1, expectedNext = -1;
        for (int d = t.Rank - 3; d >= 0; d--)
        {
            if (t.Shape[d] == 1) continue;
            long s = t.Strides[d];
            if (stride < 0) stride = s;                 // innermost batch axis of size > 1
            else if (s != expectedNext) return null;    // outer axes must continue it (0 continues 0)
            expectedNext = s * t.Shape[d];
        }
        return stride < 0 ? 0 : stride;
    }
}
