using ManagedTensor.Cpu;

namespace ManagedTensor;

/// <summary>
/// Leaky ReLU, y = x for x > 0, slope * x otherwise (torch.nn.functional.leaky_relu; YOLOv2-era detectors use
/// slope 0.1). dy/dx = 1 for x > 0, slope otherwise (slope at 0, as PyTorch), applied by the op LeakyReluBackward
/// (dy, x -> dx) in one pass. Kernels for both: CPU and GPU (src/Engine/Gpu/Kernels/LeakyReluKernels.cs), F32/F64;
/// elsewhere the composites relu(x) - slope * relu(-x) and dy * ((x > 0) (1 - slope) + slope), which run on every backend.
/// </summary>
internal static class LeakyReluOps
{
    private static Op _op, _backward;

    /// <summary>The op's id, set when the registry registers the op (see <see cref="OpRegistry.Id"/>).</summary>
    public static Op LeakyRelu => OpRegistry.Id(ref _op);

    /// <summary>The backward op's id (see <see cref="LeakyRelu"/>).</summary>
    public static Op LeakyReluBackward => OpRegistry.Id(ref _backward);

    public static void Register()
    {
        _op = OpRegistry.Declare("LeakyRelu");
        OpRegistry.Define(new OpDef(_op, "LeakyRelu")
        {
            Inputs = ["x"],
            Outputs = ["y"],
            Attrs = typeof(ScalarAttrs),
            Summary = "y = x if x > 0 else slope * x",
            Shapes = (inputs, attrs) =>
            {
                var x = inputs[0];
                if (!x.DType.IsFloat()) throw new NotSupportedException($"LeakyRelu needs a floating-point tensor, got {x.Describe()}");
                if (attrs is not ScalarAttrs) throw new ArgumentException("LeakyRelu takes ScalarAttrs(slope)");
                return [new(x.Shape, x.DType)];
            },
            Backward = (node, y, g) => [Tensor.Apply(LeakyReluBackward, node.Attrs, g, node.Inputs[0])[0]],
            Fallback = (inputs, attrs) => [inputs[0].Relu() - inputs[0].Neg().Relu() * ((ScalarAttrs)attrs!).Value],
        });
        CpuBackend.Instance.Kernels.Add(_op, (i, o, a) => Run(i[0], o[0], ((ScalarAttrs)a!).Value),
            (i, a) => i[0].DType is DType.F32 or DType.F64);

        _backward = OpRegistry.Declare("LeakyReluBackward");
        OpRegistry.Define(new OpDef(_backward, "LeakyReluBackward")
        {
            Inputs = ["dy", "x"],
            Outputs = ["dx"],
            Attrs = typeof(ScalarAttrs),
            Summary = "dx = dy if x > 0 else slope * dy",
            Shapes = (inputs, attrs) =>
            {
                Tensor dy = inputs[0], x = inputs[1];
                if (!dy.Shape.AsSpan().SequenceEqual(x.Shape) || dy.DType != x.DType)
                    throw new ArgumentException($"LeakyReluBackward: dy {dy.Describe()} must have the shape and dtype of x {x.Describe()}");
                if (attrs is not ScalarAttrs) throw new ArgumentException("LeakyReluBackward takes ScalarAttrs(slope)");
                return [new(x.Shape, x.DType)];
            },
            Fallback = (inputs, attrs) =>
            {
                double slope = ((ScalarAttrs)attrs!).Value;
                var positive = inputs[1].Gt(0).To(inputs[0].DType);             // 1 where x > 0
                return [inputs[0] * (positive * (1 - slope) + slope)];
            },
        });
        CpuBackend.Instance.Kernels.Add(_backward, (i, o, a) => RunBackward(i[0], i[1], o[0], ((ScalarAttrs)a!).Value),
            (i, a) => i[0].DType is DType.F32 or DType.F64);
    }

    private static void Run(Tensor x, Tensor y, double slope)
    {
        if (x.DType == DType.F32) Run(NnKernels.Buf<float>(x), NnKernels.Buf<float>(y), x.Numel, (float)slope);
        else Run(NnKernels.Buf<double>(x), NnKernels.Buf<double>(y), x.Numel, slope);
    }

    private static void Run<T>((T[] A, int O) x, (T[] A, int O) y, int n, T slope) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        NnKernels.For(n, 1, (_, i0, i1) =>
        {
            for (int i = i0; i < i1; i++)
            {
                T v = x.A[x.O + i];
                y.A[y.O + i] = v > T.Zero ? v : v * slope;
            }
        });
    }

    private static void RunBackward(Tensor dy, Tensor x, Tensor dx, double slope)
    {
        if (x.DType == DType.F32) RunBackward(NnKernels.Buf<float>(dy), NnKernels.Buf<float>(x), NnKernels.Buf<float>(dx), x.Numel, (float)slope);
        else RunBackward(NnKernels.Buf<double>(dy), NnKernels.Buf<double>(x), NnKernels.Buf<double>(dx), x.Numel, slope);
    }

    private static void RunBackward<T>((T[] A, int O) dy, (T[] A, int O) x, (T[] A, int O) dx, int n, T slope) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        NnKernels.For(n, 1, (_, i0, i1) =>
        {
            for (int i = i0; i < i1; i++)
            {
                T g = dy.A[dy.O + i];
                dx.A[dx.O + i] = x.A[x.O + i] > T.Zero ? g : g * slope;
            }
        });
    }
}

public sealed partial class Tensor
{
    /// <summary>Leaky ReLU: x for x > 0, <paramref name="slope"/> * x otherwise (declared in Ops/LeakyReluOps.cs).</summary>
    public Tensor LeakyRelu(double slope = 0.01) => Apply(LeakyReluOps.LeakyRelu, new ScalarAttrs(slope), this)[0];
}
