using System.Numerics;
using System.Reflection;
using ILGPU;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>
/// Leaky ReLU and its backward (Ops/LeakyReluOps.cs), one thread per element in a grid-stride loop over dense views:
///   forward  y  = x > 0 ? x : slope * x
///   backward dx = x > 0 ? dy : slope * dy        (slope at x = 0, as PyTorch)
/// </summary>
internal static class LeakyReluKernels
{
    public static void ForwardKernel<T>(ArrayView<T> x, ArrayView<T> y, int xOffset, int yOffset, int n, T slope)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int step = Grid.DimX * Group.DimX; // the intrinsics read once (each read is costly on the CPU accelerator)
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
        {
            T v = x[xOffset + i];
            y[yOffset + i] = v > T.Zero ? v : v * slope;
        }
    }

    public static void BackwardKernel<T>(ArrayView<T> dy, ArrayView<T> x, ArrayView<T> dx, int dyOffset, int xOffset, int dxOffset, int n, T slope)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
        {
            T g = dy[dyOffset + i];
            dx[dxOffset + i] = x[xOffset + i] > T.Zero ? g : g * slope;
        }
    }

    // ---- launchers ----

    public static void Forward(GpuBackend b, Tensor x, Tensor y, double slope)
    {
        Check("LeakyRelu", x, y);
        if (x.Numel == 0) return;
        b.Launch(ForwardSpec(x.DType), b.Grid(x.Numel), V(x), V(y), x.Offset, y.Offset, x.Numel, Scalar(x.DType, slope));
    }

    public static void Backward(GpuBackend b, Tensor dy, Tensor x, Tensor dx, double slope)
    {
        Check("LeakyReluBackward", x, dy, dx);
        if (x.Numel == 0) return;
        b.Launch(BackwardSpec(x.DType), b.Grid(x.Numel), V(dy), V(x), V(dx), dy.Offset, x.Offset, dx.Offset, x.Numel, Scalar(x.DType, slope));
    }

    private static void Check(string op, Tensor x, params Tensor[] others)
    {
        if (x.DType is not (DType.F32 or DType.F64))
            throw new NotSupportedException($"the GPU backend has no {op} kernel for dtype {x.DType} (F32 and F64 only)");
        foreach (var t in others.Prepend(x))
        {
            if (!t.IsContiguous) throw new ArgumentException($"{op}: the GPU kernel needs dense inputs (the front end makes them), got {t.Describe()}");
            if (t.DType != x.DType || t.Numel != x.Numel) throw new ArgumentException($"{op}: {t.Describe()} must match {x.Describe()}");
        }
    }

    private static object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);

    private static object Scalar(DType t, double v) => t == DType.F32 ? (object)(float)v : v;

    // ---- specs ----

    private static KernelSpec ForwardSpec(DType t) => t == DType.F32 ? new("LeakyRelu_F32", Fwd<float>()) : new("LeakyRelu_F64", Fwd<double>());
    private static KernelSpec BackwardSpec(DType t) => t == DType.F32 ? new("LeakyReluBackward_F32", Bwd<float>()) : new("LeakyReluBackward_F64", Bwd<double>());

    private static MethodInfo Fwd<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, int, int, int, T>)ForwardKernel<T>).Method;

    private static MethodInfo Bwd<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, int, int, int, int, T>)BackwardKernel<T>).Method;

    public static IEnumerable<KernelSpec> Specs() => [ForwardSpec(DType.F32), ForwardSpec(DType.F64), BackwardSpec(DType.F32), BackwardSpec(DType.F64)];
}
