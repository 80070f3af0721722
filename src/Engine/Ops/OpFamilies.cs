namespace ManagedTensor;

/// <summary>Ops that share one kernel per backend, which switches on the op (elementwise and reduction families).</summary>
public static class OpFamilies
{
    public static readonly Op[] Unary =
    [
        Op.Neg, Op.Abs, Op.Exp, Op.Log, Op.Sqrt, Op.Rsqrt, Op.Tanh, Op.Sigmoid, Op.Relu, Op.Gelu, Op.GeluTanh, Op.Silu, Op.Erf,
        Op.AddScalar, Op.MulScalar, Op.PowScalar, Op.Clamp,
    ];

    public static readonly Op[] Binary =
    [
        Op.Add, Op.Sub, Op.Mul, Op.Div, Op.Pow, Op.Maximum, Op.Minimum, Op.GeluBackward, Op.Eq, Op.Ne, Op.Lt, Op.Le, Op.Gt, Op.Ge,
    ];

    public static readonly Op[] Reduce = [Op.Sum, Op.Mean, Op.Max, Op.Min, Op.ArgMax, Op.Var];
}
