using System.Numerics;
using System.Reflection;
using ILGPU;
using ManagedTensor.Cpu;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>
/// The fused AdamW step, one thread per element, running the CPU's own per-element update
/// (<see cref="AdamWFactors{T}.Update"/>: same scalars rounded on the host, same operation order).
/// </summary>
internal static class OptimKernels
{
    public static void AdamWKernel<T>(ArrayView<T> p, ArrayView<T> g, ArrayView<T> m, ArrayView<T> v, AdamWFactors<T> f,
        int pOffset, int gOffset, int mOffset, int vOffset, int n)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
            f.Update(ref p[pOffset + i], g[gOffset + i], ref m[mOffset + i], ref v[vOffset + i]);
    }

    public static void AdamWStep(GpuBackend b, Tensor param, Tensor grad, Tensor m, Tensor v, AdamWAttrs a)
    {
        foreach (var t in new[] { grad, m, v })
            if (!t.Shape.AsSpan().SequenceEqual(param.Shape) || t.DType != param.DType)
                throw new ArgumentException($"AdamW: {t.Describe()} does not match the parameter {param.Describe()}");
        foreach (var t in new[] { param, grad, m, v })
            if (!t.IsContiguous) throw new ArgumentException($"AdamW: {t.Describe()} must be contiguous");
        if (a.Step < 1) throw new ArgumentOutOfRangeException(nameof(a), a.Step, "AdamW: step is 1-based");
        if (param.Numel == 0) return;
        object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);
        object factors = param.DType switch
        {
            DType.F32 => new AdamWFactors<float>(a),
            DType.F64 => new AdamWFactors<double>(a),
            _ => throw new NotSupportedException($"the GPU backend's AdamW needs F32 or F64 parameters, got {param.Describe()}"),
        };
        b.Launch(Spec(param.DType), b.Grid(param.Numel), V(param), V(grad), V(m), V(v), factors, param.Offset, grad.Offset, m.Offset, v.Offset, param.Numel);
    }

    private static KernelSpec Spec(DType t) => t == DType.F32 ? new("AdamWStep_F32", M<float>()) : new("AdamWStep_F64", M<double>());

    private static MethodInfo M<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, AdamWFactors<T>, int, int, int, int, int>)AdamWKernel<T>).Method;

    public static IEnumerable<KernelSpec> Specs() => [Spec(DType.F32), Spec(DType.F64)];
}
