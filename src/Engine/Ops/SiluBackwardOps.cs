using System.Numerics;
using System.Numerics.Tensors;
using ManagedTensor.Cpu;

namespace ManagedTensor;

/// <summary>
/// SiLU's backward as one op: dx = dy * s (1 + x (1 - s)), s = sigmoid(x) (d/dx [x s(x)]). Autograd's rule for
/// Op.Silu calls it; written as tensor ops it was five full-size passes (sigmoid, neg, add, mul, mul) plus the
/// gradient product, which made it one of the larger costs of a YOLOv8 training step (every conv is followed by a
/// SiLU). CPU kernel for F32 (one SIMD pass, Cpu/SigmoidFloat.cs) and F64 (TensorPrimitives, a block at a time); elsewhere the composite below,
/// which runs on every backend (the GPU runs it until it has its own kernel).
/// </summary>
internal static class SiluBackwardOps
{
    private static Op _op;

    /// <summary>The op's id, set when the registry registers the op (see <see cref="OpRegistry.Id"/>).</summary>
    public static Op SiluBackward => OpRegistry.Id(ref _op);

    public static void Register()
    {
        _op = OpRegistry.Declare("SiluBackward");
        OpRegistry.Define(new OpDef(_op, "SiluBackward")
        {
            Inputs = ["dy", "x"],
            Outputs = ["dx"],
            Summary = "dx = dy * s (1 + x (1 - s)), s = sigmoid(x)",
            Shapes = (inputs, attrs) =>
            {
                Tensor dy = inputs[0], x = inputs[1];
                if (!x.DType.IsFloat()) throw new NotSupportedException($"SiluBackward needs a floating-point tensor, got {x.Describe()}");
                if (!dy.Shape.AsSpan().SequenceEqual(x.Shape) || dy.DType != x.DType)
                    throw new ArgumentException($"SiluBackward: dy {dy.Describe()} must have the shape and dtype of x {x.Describe()}");
                return [new(x.Shape, x.DType)];
            },
            Fallback = (inputs, attrs) =>
            {
                var s = inputs[1].Sigmoid();
                return [inputs[0] * (s * (inputs[1] * s.Neg().AddScalar(1)).AddScalar(1))];
            },
        });
        CpuBackend.Instance.Kernels.Add(_op, (i, o, a) => Run(i[0], i[1], o[0]), (i, a) => i[0].DType is DType.F32 or DType.F64);
    }

    private static void Run(Tensor dy, Tensor x, Tensor dx)
    {
        if (x.DType == DType.F32)
        {
            (float[] A, int O) g = NnKernels.Buf<float>(dy), xs = NnKernels.Buf<float>(x), d = NnKernels.Buf<float>(dx);
            CpuParallel.For(x.Numel, 1, (s, e) => SigmoidFloat.SiluBackward(g.A.AsSpan(g.O + s, e - s), xs.A.AsSpan(xs.O + s, e - s), d.A.AsSpan(d.O + s, e - s)));
        }
        else Run(NnKernels.Buf<double>(dy), NnKernels.Buf<double>(x), NnKernels.Buf<double>(dx), x.Numel);
    }

    private const int Block = 1024;

    private static void Run<T>((T[] A, int O) dy, (T[] A, int O) x, (T[] A, int O) dx, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        NnKernels.For((n + Block - 1) / Block, Block, (_, b0, b1) =>
        {
            Span<T> s = stackalloc T[Block];
            for (int b = b0; b < b1; b++)
            {
                int start = b * Block, len = Math.Min(Block, n - start);
                var xs = new ReadOnlySpan<T>(x.A, x.O + start, len);
                var gs = new ReadOnlySpan<T>(dy.A, dy.O + start, len);
                var d = new Span<T>(dx.A, dx.O + start, len);
                var sig = s[..len];
                TensorPrimitives.Sigmoid(xs, sig);                   // s
                TensorPrimitives.Subtract(T.One, sig, d);            // 1 - s
                TensorPrimitives.FusedMultiplyAdd(xs, d, T.One, d);  // 1 + x (1 - s)
                TensorPrimitives.Multiply(d, sig, d);                // s (1 + x (1 - s))
                TensorPrimitives.Multiply(d, gs, d);                 // * dy
            }
        });
    }
}
