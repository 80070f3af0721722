using System.Numerics;

namespace ManagedTensor.Cpu;

/// <summary>The CPU kernel of <see cref="MoeOps"/>: the gated gather-sum of a mixture of experts, one token per row.</summary>
internal static class CpuMoe
{
    public static void Combine(Tensor rows, Tensor slot, Tensor gate, Tensor y)
    {
        switch (rows.DType)
        {
            case DType.F32: Combine<float>(rows, slot, gate, y); break;
            case DType.F64: Combine<double>(rows, slot, gate, y); break;
            default: throw NnKernels.Unsupported("MoeCombine", rows);
        }
    }

    private static void Combine<T>(Tensor rowsT, Tensor slotT, Tensor gateT, Tensor yT) where T : unmanaged, INumber<T>
    {
        int tokens = slotT.Shape[0], k = slotT.Shape[1], s = rowsT.Shape[0], c = rowsT.Shape[1];
        long[] slot = NnKernels.ReadIndices(slotT, "MoeCombine");  // (T, k)
        foreach (long i in slot)
            if (i < 0 || i >= s) throw new IndexOutOfRangeException($"MoeCombine: slot {i} is outside the {s} expert rows");
        var rows = NnKernels.Buf<T>(rowsT);  // (S, C)
        var gate = NnKernels.Buf<T>(gateT);  // (T, k)
        var y = NnKernels.Buf<T>(yT);        // (T, C)
        NnKernels.For(tokens, (long)k * c, (_, t0, t1) =>
        {
            for (int t = t0; t < t1; t++)
            {
                var yr = new Span<T>(y.Data, y.Offset + t * c, c);
                yr.Clear();
                for (int j = 0; j < k; j++)
                {
                    T gj = gate.Data[gate.Offset + t * k + j];
                    var src = new ReadOnlySpan<T>(rows.Data, rows.Offset + (int)slot[t * k + j] * c, c);
                    for (int ch = 0; ch < c; ch++) yr[ch] += gj * src[ch];
                }
            }
        });
    }
}
