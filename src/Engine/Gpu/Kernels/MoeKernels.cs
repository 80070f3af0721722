using System.Numerics;
using System.Reflection;
using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>
/// The mixture-of-experts combine on the GPU (op <see cref="MoeOps.MoeCombine"/>, the CPU's <see cref="Cpu.CpuMoe"/>):
///   y[t, ch] = Σ_j gate[t, j] expertOut[slot[t, j], ch]
/// one thread per output element, j in order (the CPU's order), so the gather, the scale and the sum are one pass and
/// nothing of size (T, k, C) is made. A slot outside the expert rows is reported through <see cref="KernelStatus"/>
/// (the host throws at the next synchronization) and contributes nothing. Its backward is ops with kernels already
/// (IndexAdd, IndexSelect, Mul, Sum).
/// </summary>
internal static class MoeKernels
{
    public static void CombineKernel<T, TI, CI>(ArrayView<T> rows, ArrayView<TI> slot, ArrayView<T> gate, ArrayView<T> y, ArrayView<int> status,
        int opCode, int rowsOffset, int slotOffset, int gateOffset, int yOffset, int tokens, int k, int s, int c)
        where T : unmanaged, INumber<T> where TI : unmanaged where CI : struct, ICodec<TI>
    {
        var ci = default(CI);
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < tokens * c; e += step)
        {
            int t = e / c, ch = e - t * c;
            T acc = T.Zero;
            for (int j = 0; j < k; j++)
            {
                long row = ci.ToLong(slot[slotOffset + t * k + j]);
                if (row < 0 || row >= s)
                {
                    KernelStatus.Report(status, (Op)opCode, row, s);
                    continue;
                }
                acc += gate[gateOffset + t * k + j] * rows[rowsOffset + (int)row * c + ch];
            }
            y[yOffset + e] = acc;
        }
    }

    public static bool Supports(ReadOnlySpan<Tensor> i) =>
        i[0].DType is DType.F32 or DType.F64 && i[2].DType == i[0].DType && i[1].DType is DType.I32 or DType.I64;

    public static void Combine(GpuBackend b, Tensor rows, Tensor slot, Tensor gate, Tensor y)
    {
        foreach (var t in new[] { rows, slot, gate })
            if (!t.IsContiguous) throw new ArgumentException($"MoeCombine: the GPU kernel needs dense inputs (the front end makes them), got {t.Describe()}");
        if (y.Numel == 0) return;
        int tokens = slot.Shape[0], k = slot.Shape[1], s = rows.Shape[0], c = rows.Shape[1];
        static object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);
        b.Launch(Spec(rows.DType, slot.DType), b.Grid(y.Numel), V(rows), V(slot), V(gate), V(y), b.Status,
            (int)MoeOps.MoeCombine, rows.Offset, slot.Offset, gate.Offset, y.Offset, tokens, k, s, c);
    }

    private static KernelSpec Spec(DType t, DType idx) => (t, idx) switch
    {
        (DType.F32, DType.I32) => new("MoeCombine_F32_I32", M<float, int, I32Codec>()),
        (DType.F32, _) => new("MoeCombine_F32_I64", M<float, long, I64Codec>()),
        (DType.F64, DType.I32) => new("MoeCombine_F64_I32", M<double, int, I32Codec>()),
        _ => new("MoeCombine_F64_I64", M<double, long, I64Codec>()),
    };

    private static MethodInfo M<T, TI, CI>() where T : unmanaged, INumber<T> where TI : unmanaged where CI : struct, ICodec<TI> =>
        ((Action<ArrayView<T>, ArrayView<TI>, ArrayView<T>, ArrayView<T>, ArrayView<int>, int, int, int, int, int, int, int, int, int>)CombineKernel<T, TI, CI>).Method;

    public static IEnumerable<KernelSpec> Specs() =>
        from t in new[] { DType.F32, DType.F64 } from idx in new[] { DType.I32, DType.I64 } select Spec(t, idx);
}
