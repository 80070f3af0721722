using System.Numerics;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>
/// out[o, i] = Σ_p parts[o, p, i] for parts laid out (outer, count, inner), one thread per output element summing
/// its partials in order p = 0, 1, ...: the deterministic second half of a reduction whose first half wrote one
/// partial per thread group (the scan and WKV backward kernels' parameter gradients, which sum over batch rows or
/// channel tiles). No atomics, so a gradient does not depend on the order groups ran in.
/// </summary>
internal static class PartSumKernels
{
    public static void SumKernel<T>(ArrayView<T> parts, ArrayView<T> output, int partsOffset, int outOffset, int outer, int count, int inner)
        where T : unmanaged, INumber<T>
    {
        int step = Grid.DimX * Group.DimX, total = outer * inner;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < total; e += step)
        {
            int o = e / inner, i = e - o * inner;
            T acc = T.Zero;
            for (int p = 0; p < count; p++) acc += parts[partsOffset + (o * count + p) * inner + i];
            output[outOffset + e] = acc;
        }
    }

    /// <summary>Sums <paramref name="count"/> partials of (outer, ·, inner) from <paramref name="parts"/> (starting at element <paramref name="partsOffset"/>) into the dense tensor <paramref name="output"/>.</summary>
    public static void Sum(GpuBackend b, GpuStorage parts, int partsOffset, Tensor output, int outer, int count, int inner)
    {
        if (output.Numel != outer * inner) throw new ArgumentException($"partial sums: {output.Describe()} must hold {outer} x {inner} elements");
        if (output.Numel == 0) return;
        b.Launch(Spec(output.DType), b.Grid(output.Numel), CopyKernels.View(parts), CopyKernels.View((GpuStorage)output.Storage),
            partsOffset, output.Offset, outer, count, inner);
    }

    private static KernelSpec Spec(DType t) => t == DType.F32 ? new("PartSum_F32", M<float>()) : new("PartSum_F64", M<double>());

    private static MethodInfo M<T>() where T : unmanaged, INumber<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, int, int, int, int, int>)SumKernel<T>).Method;

    public static IEnumerable<KernelSpec> Specs() => [Spec(DType.F32), Spec(DType.F64)];
}
