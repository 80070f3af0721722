using System.Numerics;
using System.Numerics.Tensors;
using ManagedTensor.Cpu;

namespace ManagedTensor;

/// <summary>
/// Binary cross-entropy on logits, elementwise, as one op (PyTorch's binary_cross_entropy_with_logits with
/// reduction "none"): for a logit x and a target t in [0, 1],
///   l = -[t log s + (1 - t) log(1 - s)],  s = sigmoid(x)
///     = max(x, 0) - x t + log(1 + e^-|x|)          (the form that neither overflows nor loses log s for large |x|)
/// Backward: dl/dx = s - t, dl/dt = -x. The YOLO loss takes it over every cell and class ([N, 8400, 80] at 640 x 640);
/// written as tensor ops (relu, mul, sub, abs, neg, exp, add, log, add) it was nine full-size passes and as many
/// stored tensors forward, and about as many again backward (relu's and abs's masks, the products), which made the
/// class loss a visible part of a YOLOv8 training step. The op BceWithLogitsBackward gives dx = g (s - t) in one pass.
/// CPU kernels for F32 and F64 (a block of 1,024 elements at a time through TensorPrimitives, so each pass stays in
/// L1); elsewhere the composites below, which run on every backend.
/// </summary>
internal static class BceWithLogitsOps
{
    private static Op _op, _backward;

    /// <summary>The op's id, set when the registry registers the op (see <see cref="OpRegistry.Id"/>).</summary>
    public static Op BceWithLogits => OpRegistry.Id(ref _op);

    /// <summary>The backward op's id: dx = g (sigmoid(x) - t).</summary>
    public static Op BceWithLogitsBackward => OpRegistry.Id(ref _backward);

    public static void Register()
    {
        _op = OpRegistry.Declare("BceWithLogits");
        OpRegistry.Define(new OpDef(_op, "BceWithLogits")
        {
            Inputs = ["x", "target"],
            Outputs = ["loss"],
            Summary = "loss = max(x, 0) - x target + log(1 + exp(-|x|)), elementwise (BCE on logits)",
            Shapes = (inputs, attrs) => Shapes("BceWithLogits", inputs[0], inputs[1], "target"),
            Backward = Backward,
            Fallback = (inputs, attrs) =>
            {
                Tensor x = inputs[0], t = inputs[1];
                return [x.Relu() - x * t + x.Abs().Neg().Exp().AddScalar(1).Log()];
            },
        });
        CpuBackend.Instance.Kernels.Add(_op, (i, o, a) => Run(i[0], i[1], null, o[0]), (i, a) => i[0].DType is DType.F32 or DType.F64);

        _backward = OpRegistry.Declare("BceWithLogitsBackward");
        OpRegistry.Define(new OpDef(_backward, "BceWithLogitsBackward")
        {
            Inputs = ["x", "target", "dloss"],
            Outputs = ["dx"],
            Summary = "dx = dloss (sigmoid(x) - target)",
            Shapes = (inputs, attrs) =>
            {
                Shapes("BceWithLogitsBackward", inputs[0], inputs[1], "target");
                return Shapes("BceWithLogitsBackward", inputs[0], inputs[2], "dloss");
            },
            Fallback = (inputs, attrs) => [inputs[2] * (inputs[0].Sigmoid() - inputs[1])],
        });
        CpuBackend.Instance.Kernels.Add(_backward, (i, o, a) => Run(i[0], i[1], i[2], o[0]), (i, a) => i[0].DType is DType.F32 or DType.F64);
    }

    private static TensorSpec[] Shapes(string op, Tensor x, Tensor other, string name)
    {
        if (!x.DType.IsFloat()) throw new NotSupportedException($"{op} needs floating-point logits, got x {x.Describe()}");
        if (!other.Shape.AsSpan().SequenceEqual(x.Shape) || other.DType != x.DType)
            throw new ArgumentException($"{op}: {name} {other.Describe()} must have the shape and dtype of x {x.Describe()}");
        return [new(x.Shape, x.DType)];
    }

    private static Tensor?[] Backward(OpNode node, Tensor loss, Tensor g)
    {
        Tensor x = node.Inputs[0], t = node.Inputs[1];
        var dx = Tensor.Apply(BceWithLogitsBackward, null, x, t, g)[0];
        return [dx, t.RequiresGrad ? (g * x).Neg() : null]; // targets are usually constants: no pass for them then
    }

    /// <summary>The loss (dloss null) or its gradient at x (dloss given), over contiguous tensors.</summary>
    private static void Run(Tensor x, Tensor t, Tensor? dloss, Tensor result)
    {
        if (x.DType == DType.F32) Run(NnKernels.Buf<float>(x), NnKernels.Buf<float>(t), dloss is null ? null : NnKernels.Buf<float>(dloss), NnKernels.Buf<float>(result), x.Numel);
        else Run(NnKernels.Buf<double>(x), NnKernels.Buf<double>(t), dloss is null ? null : NnKernels.Buf<double>(dloss), NnKernels.Buf<double>(result), x.Numel);
    }

    private const int Block = 1024;

    private static void Run<T>((T[] A, int O) x, (T[] A, int O) t, (T[] A, int O)? dloss, (T[] A, int O) result, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        NnKernels.For((n + Block - 1) / Block, Block, (_, b0, b1) =>
        {
            Span<T> buffer = stackalloc T[Block];
            for (int b = b0; b < b1; b++)
            {
                int start = b * Block, len = Math.Min(Block, n - start);
                var xs = new ReadOnlySpan<T>(x.A, x.O + start, len);
                var ts = new ReadOnlySpan<T>(t.A, t.O + start, len);
                var r = new Span<T>(result.A, result.O + start, len);
                var e = buffer[..len];
                if (dloss is { } d)
                {
                    TensorPrimitives.Sigmoid(xs, e);                                             // s
                    TensorPrimitives.Subtract(e, ts, e);                                         // s - t
                    TensorPrimitives.Multiply(e, new ReadOnlySpan<T>(d.A, d.O + start, len), r); // g (s - t)
                    continue;
                }
                TensorPrimitives.Abs(xs, e);
                TensorPrimitives.Negate(e, e);
                TensorPrimitives.Exp(e, e);                                    // e^-|x|, in (0, 1]
                TensorPrimitives.Add(e, T.One, e);
                TensorPrimitives.Log(e, e);                                    // log(1 + e^-|x|)
                TensorPrimitives.Multiply(xs, ts, r);                          // x t
                TensorPrimitives.Subtract(e, r, r);                            // log(1 + e^-|x|) - x t
                TensorPrimitives.Max(xs, T.Zero, e);                           // max(x, 0)
                TensorPrimitives.Add(r, e, r);
            }
        });
    }
}

public sealed partial class Tensor
{
    /// <summary>
    /// Binary cross-entropy of logits (this) against targets in [0, 1], elementwise, as one op (Ops/BceWithLogitsOps.cs):
    /// max(x, 0) - x t + log(1 + e^-|x|), the same as -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))].
    /// </summary>
    public Tensor BceWithLogits(Tensor target) => Apply(BceWithLogitsOps.BceWithLogits, null, this, target)[0];
}
