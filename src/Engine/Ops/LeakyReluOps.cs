using ManagedTensor.Cpu;

namespace ManagedTensor;

/// <summary>
/// Leaky ReLU, y = x for x > 0, slope * x otherwise (torch.nn.functional.leaky_relu; YOLOv2-era detectors use
/// slope 0.1). dy/dx = 1 for x > 0, slope otherwise (slope at 0, as PyTorch). CPU kernel for F32/F64; elsewhere
/// the composite relu(x) - slope * relu(-x), which runs on every backend.
/// </summary>
internal static class LeakyReluOps
{
    private static Op _op;

    /// <summary>The op's id. Assigned when the registry registers the op (a static initializer calling Declare would
    /// run inside that registration whenever this class is touched first, and read the id before it is set).</summary>
    public static Op LeakyRelu
    {
        get
        {
            OpRegistry.EnsureBuilt();
            return _op;
        }
    }

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
            Backward = (node, y, g) =>
            {
                double slope = ((ScalarAttrs)node.Attrs!).Value;
                var positive = node.Inputs[0].Gt(0).To(g.DType);                 // 1 where x > 0
                return [g * (positive * (1 - slope) + slope)];
            },
            Fallback = (inputs, attrs) => [inputs[0].Relu() - inputs[0].Neg().Relu() * ((ScalarAttrs)attrs!).Value],
        });
        CpuBackend.Instance.Kernels.Add(_op, (i, o, a) => Run(i[0], o[0], ((ScalarAttrs)a!).Value),
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
}

public sealed partial class Tensor
{
    /// <summary>Leaky ReLU: x for x > 0, <paramref name="slope"/> * x otherwise (declared in Ops/LeakyReluOps.cs).</summary>
    public Tensor LeakyRelu(double slope = 0.01) => Apply(LeakyReluOps.LeakyRelu, new ScalarAttrs(slope), this)[0];
}
