namespace ManagedTensor;

/// <summary>
/// One backward rule per differentiable built-in op, all in this file, registered into each op's
/// declaration (<see cref="OpRegistry"/>); ops declared in src/Engine/Ops carry their rule in their own
/// declaration. A rule gets the recorded node, the op's output y and dL/dy (<c>g</c>, the shape of y) and returns dL/dx for each input (null where the input
/// has no gradient: indices, masks). Rules are written with tensor ops, so they run on every backend;
/// autograd runs them with recording off. Broadcast inputs get their gradient summed back to their own
/// shape (<see cref="Tensor.SumTo"/>).
/// </summary>
internal static class BackwardRules
{
    /// <summary>Adds every built-in op's rule to its declaration (called once, before the first backward pass).</summary>
    internal static void Register()
    {
        // ---- movement ----
        Rule(Op.Reshape, (x, node, y, g) => [g.Reshape(((ShapeAttrs)node.Attrs!).Shape)]);
        Rule(Op.Permute, (x, node, y, g) => [g.Permute(InversePermutation(((PermuteAttrs)node.Attrs!).Dims))]);
        Rule(Op.Expand, (x, node, y, g) => [g.SumTo(((ShapeAttrs)node.Attrs!).Shape)]);
        Rule(Op.Slice, (x, node, y, g) => [SliceBackward(x[0], g, (SliceAttrs)node.Attrs!)]);
        Rule(Op.Copy, (x, node, y, g) => [g.To(x[0].Device).To(x[0].DType)]); // clone, contiguous, To(dtype), To(device)
        Rule(Op.Cat, (x, node, y, g) => CatBackward(x, g, ((CatAttrs)node.Attrs!).Axis));

        // ---- unary: dL/dx = g * f'(x), written with x or y, whichever is cheaper ----
        Rule(Op.Neg, (x, node, y, g) => [g.Neg()]);
        Rule(Op.Abs, (x, node, y, g) => [g * Sign(x[0])]);
        Rule(Op.Exp, (x, node, y, g) => [g * y]);
        Rule(Op.Log, (x, node, y, g) => [g / x[0]]);
        Rule(Op.Sqrt, (x, node, y, g) => [(g / y).MulScalar(0.5)]);                       // d sqrt(x) = 1 / (2 sqrt(x))
        Rule(Op.Rsqrt, (x, node, y, g) => [(g * y * y * y).MulScalar(-0.5)]);             // d x^-1/2 = -1/2 x^-3/2
        Rule(Op.Tanh, (x, node, y, g) => [g * (y * y).Neg().AddScalar(1)]);               // 1 - tanh^2
        Rule(Op.Sigmoid, (x, node, y, g) => [g * y * y.Neg().AddScalar(1)]);              // s (1 - s)
        Rule(Op.Relu, (x, node, y, g) => [g * Mask(x[0].Gt(0), g)]);
        Rule(Op.Gelu, (x, node, y, g) => [Tensor.GeluBackward(g, x[0])]);
        Rule(Op.GeluTanh, (x, node, y, g) => [g * GeluTanhDerivative(x[0])]);
        Rule(Op.Silu, (x, node, y, g) => [Tensor.Apply(SiluBackwardOps.SiluBackward, null, g, x[0])[0]]); // one fused pass (Ops/SiluBackwardOps.cs)
        Rule(Op.Erf, (x, node, y, g) => [g * (x[0] * x[0]).Neg().Exp().MulScalar(2 / Math.Sqrt(Math.PI))]);
        Rule(Op.AddScalar, (x, node, y, g) => [g]);
        Rule(Op.MulScalar, (x, node, y, g) => [g.MulScalar(Scalar(node))]);
        Rule(Op.PowScalar, (x, node, y, g) => [g * x[0].Pow(Scalar(node) - 1).MulScalar(Scalar(node))]);
        Rule(Op.Clamp, (x, node, y, g) => [g * ClampMask(x[0], (ClampAttrs)node.Attrs!)]);

        // ---- binary, with broadcasting undone ----
        Rule(Op.Add, (x, node, y, g) => [g.SumTo(x[0].Shape), g.SumTo(x[1].Shape)]);
        Rule(Op.Sub, (x, node, y, g) => [g.SumTo(x[0].Shape), g.Neg().SumTo(x[1].Shape)]);
        Rule(Op.Mul, (x, node, y, g) => [(g * x[1]).SumTo(x[0].Shape), (g * x[0]).SumTo(x[1].Shape)]);
        Rule(Op.Div, (x, node, y, g) => [(g / x[1]).SumTo(x[0].Shape), (g * y / x[1]).Neg().SumTo(x[1].Shape)]); // d(a/b)/db = -a/b^2 = -y/b
        Rule(Op.Pow, (x, node, y, g) => PowBackward(x[0], x[1], y, g));
        Rule(Op.Maximum, (x, node, y, g) => ExtremumBackward(x[0], x[1], g, x[0].Gt(x[1])));
        Rule(Op.Minimum, (x, node, y, g) => ExtremumBackward(x[0], x[1], g, x[0].Lt(x[1])));
        Rule(Op.Where, (x, node, y, g) => WhereBackward(x[0], x[1], x[2], g));

        // ---- reductions ----
        Rule(Op.Sum, (x, node, y, g) => [ExpandReduced(g, x[0], (ReduceAttrs)node.Attrs!)]);
        Rule(Op.Mean, (x, node, y, g) => [ExpandReduced(g, x[0], (ReduceAttrs)node.Attrs!).MulScalar(1.0 / ReducedCount(x[0], (ReduceAttrs)node.Attrs!))]);
        Rule(Op.Max, (x, node, y, g) => [ExtremumReduceBackward(x[0], y, g, (ReduceAttrs)node.Attrs!)]);
        Rule(Op.Min, (x, node, y, g) => [ExtremumReduceBackward(x[0], y, g, (ReduceAttrs)node.Attrs!)]);
        Rule(Op.Var, (x, node, y, g) => [VarBackward(x[0], g, (ReduceAttrs)node.Attrs!)]);

        // ---- linear algebra and nn ----
        Rule(Op.MatMul, (x, node, y, g) => MatMulBackward(x[0], x[1], g));
        Rule(Op.Softmax, (x, node, y, g) => [y * (g - (g * y).Sum(-1, keepDim: true))]);      // J^T g of softmax
        Rule(Op.LogSoftmax, (x, node, y, g) => [g - y.Exp() * g.Sum(-1, keepDim: true)]);
        Rule(Op.LayerNorm, (x, node, y, g) => LayerNormBackward(node, g));
        Rule(Op.IndexSelect, (x, node, y, g) => [x[0].ZerosLike().IndexAdd_(((AxisAttrs)node.Attrs!).Axis, x[1], g), null]);
        Rule(Op.Gather, (x, node, y, g) => [x[0].ZerosLike().ScatterAdd_(((AxisAttrs)node.Attrs!).Axis, x[1], g), null]);
        Rule(Op.CrossEntropy, (x, node, y, g) => [Tensor.CrossEntropyBackward(g, x[0], x[1], node.Saved[0], (CrossEntropyAttrs)node.Attrs!), null]);
        Rule(Op.Conv2d, (x, node, y, g) => Conv2dBackward(x[0], x[1], x[2], g, (Conv2dAttrs)node.Attrs!));
        Rule(Op.MaxPool2d, (x, node, y, g) => [Tensor.MaxPool2dBackward(g, node.Saved[0], x[0].Shape, (Pool2dAttrs)node.Attrs!)]);
        Rule(Op.AvgPool2d, (x, node, y, g) => [Tensor.AvgPool2dBackward(g, x[0].Shape, (Pool2dAttrs)node.Attrs!)]);
        Rule(Op.UpsampleNearest2d, (x, node, y, g) => [Tensor.UpsampleNearest2dBackward(g, ((ScaleAttrs)node.Attrs!).Scale)]);
        Rule(Op.Attention, (x, node, y, g) => AttentionBackward(node, y, g));
    }

    /// <summary>A rule written over the inputs x, the node, the output y and its gradient g.</summary>
    private static void Rule(Op op, Func<Tensor[], OpNode, Tensor, Tensor, Tensor?[]> rule) =>
        OpRegistry.Update(op, d => d with { Backward = (node, y, g) => rule(node.Inputs, node, y, g) });

    private static double Scalar(OpNode node) => ((ScalarAttrs)node.Attrs!).Value;

    /// <summary>A 0/1 tensor of <paramref name="like"/>'s dtype from a U8 comparison result.</summary>
    private static Tensor Mask(Tensor condition, Tensor like) => condition.To(like.DType);

    private static Tensor Sign(Tensor x) => Mask(x.Gt(0), x) - Mask(x.Lt(0), x);

    private static int[] InversePermutation(int[] dims)
    {
        var inverse = new int[dims.Length];
        for (int i = 0; i < dims.Length; i++) inverse[dims[i]] = i;
        return inverse;
    }

    private static Tensor SliceBackward(Tensor x, Tensor g, SliceAttrs a)
    {
        var dx = x.ZerosLike();
        dx.Narrow(a.Axis, a.Start, a.Length).CopyFrom_(g);
        return dx;
    }

    private static Tensor?[] CatBackward(Tensor[] inputs, Tensor g, int axis)
    {
        var grads = new Tensor?[inputs.Length];
        int start = 0;
        for (int i = 0; i < inputs.Length; i++)
        {
            int n = inputs[i].Shape[axis];
            grads[i] = g.Narrow(axis, start, n);
            start += n;
        }
        return grads;
    }

    // ---- activations ----

    /// <summary>
    /// GELU(tanh) = x/2 (1 + t), t = tanh(u), u = sqrt(2/pi) (x + 0.044715 x^3):
    /// derivative (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    /// </summary>
    private static Tensor GeluTanhDerivative(Tensor x)
    {
        double k = Math.Sqrt(2 / Math.PI);
        var x2 = x * x;
        var t = (x * x2.MulScalar(0.044715).AddScalar(1)).MulScalar(k).Tanh();
        var du = x2.MulScalar(3 * 0.044715).AddScalar(1).MulScalar(k);
        return t.AddScalar(1).MulScalar(0.5) + x.MulScalar(0.5) * (t * t).Neg().AddScalar(1) * du;
    }

    /// <summary>PyTorch's clamp gradient: 1 where lo &lt;= x &lt;= hi (boundaries included), else 0.</summary>
    private static Tensor ClampMask(Tensor x, ClampAttrs a)
        => Mask(x.Ge(Tensor.Scalar(a.Min, x.DType, x.Device)), x) * Mask(x.Le(Tensor.Scalar(a.Max, x.DType, x.Device)), x);

    // ---- binary ----

    /// <summary>d(a^b)/da = b a^(b-1); d(a^b)/db = a^b ln a (taken as 0 where a = 0, as PyTorch does).</summary>
    private static Tensor?[] PowBackward(Tensor a, Tensor b, Tensor y, Tensor g)
    {
        var da = (g * b * a.Pow(b - b.OnesLike())).SumTo(a.Shape);
        var zero = Tensor.Scalar(0, a.DType, a.Device);
        var logA = Tensor.Where(a.Eq(zero), zero, a.Log());
        var db = (g * y * logA).SumTo(b.Shape);
        return [da, db];
    }

    /// <summary>Maximum/minimum: the gradient goes to the winner; ties split it evenly (as PyTorch).</summary>
    private static Tensor?[] ExtremumBackward(Tensor a, Tensor b, Tensor g, Tensor aWins)
    {
        var win = Mask(aWins, g);
        var tie = Mask(a.Eq(b), g).MulScalar(0.5);
        var shareA = win + tie;
        var shareB = (win + tie).Neg().AddScalar(1);
        return [(g * shareA).SumTo(a.Shape), (g * shareB).SumTo(b.Shape)];
    }

    private static Tensor?[] WhereBackward(Tensor cond, Tensor a, Tensor b, Tensor g)
    {
        var zero = Tensor.Scalar(0, g.DType, g.Device);
        return [null, Tensor.Where(cond, g, zero).SumTo(a.Shape), Tensor.Where(cond, zero, g).SumTo(b.Shape)];
    }

    // ---- reductions ----

    /// <summary>g with the reduced axes put back (size 1) and broadcast to x's shape, as a view.</summary>
    private static Tensor ExpandReduced(Tensor g, Tensor x, ReduceAttrs a)
        => g.Reshape(x.KeepDimShape(a.Axes)).Expand(x.Shape);

    private static int ReducedCount(Tensor x, ReduceAttrs a) => a.Axes.Aggregate(1, (n, axis) => n * x.Shape[axis]);

    /// <summary>amax/amin: the gradient is shared evenly by the elements equal to the extremum.</summary>
    private static Tensor ExtremumReduceBackward(Tensor x, Tensor y, Tensor g, ReduceAttrs a)
    {
        var keep = x.KeepDimShape(a.Axes);
        var hit = Mask(x.Eq(y.Reshape(keep)), x);
        return hit / hit.Sum(a.Axes, keepDim: true) * g.Reshape(keep);
    }

    /// <summary>d var / dx = 2 (x - mean) / (N - correction).</summary>
    private static Tensor VarBackward(Tensor x, Tensor g, ReduceAttrs a)
    {
        int n = ReducedCount(x, a);
        var centered = x - x.Mean(a.Axes, keepDim: true);
        return centered.MulScalar(2.0 / (n - a.Correction)) * g.Reshape(x.KeepDimShape(a.Axes));
    }

    // ---- linear algebra ----

    /// <summary>
    /// C = A B: dA = dC B^T, dB = A^T dC, summed over broadcast batch axes. When B is a plain matrix
    /// (a Linear weight) the batch is folded into the rows so dB is one GEMM, not a batch then a sum.
    /// Each gradient is produced in its input's layout: for a transposed view such as Linear's W^T,
    /// dB is computed as (dC^T A)^T, so the result is W-shaped and contiguous underneath, and the leaf
    /// keeps it without a transposing copy.
    /// </summary>
    private static Tensor?[] MatMulBackward(Tensor a, Tensor b, Tensor g)
    {
        Tensor? da = null, db = null;
        if (a.RequiresGrad)
            da = IsTransposedMatrix(a) && b.Rank == 2 ? b.MatMul(g.MT).MT : g.MatMul(b.MT).SumTo(a.Shape);
        if (b.RequiresGrad)
        {
            if (b.Rank == 2 && a.Rank > 2)
            {
                int k = a.Shape[^1], n = g.Shape[^1];
                var a2 = a.Reshape(-1, k);
                var g2 = g.Reshape(-1, n);
                db = IsTransposedMatrix(b) ? g2.MT.MatMul(a2).MT : a2.MT.MatMul(g2);
            }
            else db = IsTransposedMatrix(b) ? g.MT.MatMul(a).SumTo(b.MT.Shape).MT : a.MT.MatMul(g).SumTo(b.Shape);
        }
        return [da, db];
    }

    /// <summary>A 2-D view whose transpose is contiguous (column-major storage), e.g. W.MT.</summary>
    private static bool IsTransposedMatrix(Tensor t) => t.Rank == 2 && !t.IsContiguous && t.MT.IsContiguous;

    // ---- fused nn ops: their backward ops are ops too ----

    private static Tensor?[] LayerNormBackward(OpNode node, Tensor g)
    {
        Tensor x = node.Inputs[0], w = node.Inputs[1], b = node.Inputs[2];
        var (dx, dw, db) = Tensor.LayerNormBackward(g, x, w, node.Saved[0], node.Saved[1], (NormAttrs)node.Attrs!);
        // The fused op returns dbias only alongside dweight; a bias without a weight gets sum(g) here.
        if (b.Numel > 0 && db.Numel == 0) db = g.Reshape(-1, x.Shape[^1]).Sum(0);
        return [dx, w.Numel > 0 ? dw : null, b.Numel > 0 ? db : null];
    }

    /// <summary>One fused op gives dq, dk, dv (the scores are recomputed from the saved row log-sum-exp).</summary>
    private static Tensor?[] AttentionBackward(OpNode node, Tensor y, Tensor g)
    {
        Tensor q = node.Inputs[0], k = node.Inputs[1], v = node.Inputs[2];
        var (dq, dk, dv) = Tensor.AttentionBackward(g, q, k, v, y, node.Saved[0], (AttentionAttrs)node.Attrs!);
        return [dq, dk, dv];
    }

    private static Tensor?[] Conv2dBackward(Tensor x, Tensor w, Tensor bias, Tensor g, Conv2dAttrs a)
    {
        var dx = x.RequiresGrad ? Tensor.Conv2dBackwardInput(g, w, x.Shape, a) : null;
        var dw = w.RequiresGrad ? Tensor.Conv2dBackwardWeight(g, x, w.Shape, a) : null;
        var db = bias.Numel > 0 && bias.RequiresGrad ? g.Sum([0, 2, 3]) : null;
        return [dx, dw, db];
    }
}
