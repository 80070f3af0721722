namespace ManagedTensor;

/// <summary>Elementwise ops: unary, binary with NumPy broadcasting, comparisons, where, casts.</summary>
public sealed partial class Tensor
{
    // ---- unary ----

    private Tensor Unary(Op op, OpAttrs? attrs = null)
    {
        // On PyTorch's autocast float32 list (F16's range ends at 65504, which exp passes at 11.1): 16-bit inputs cast up (Autocast.cs).
        if (op is Op.Exp or Op.Log or Op.Rsqrt or Op.PowScalar && Autocast.Fp32(this) is var wide && wide != this) return wide.Unary(op, attrs);
        if (!DType.IsFloat() && op is not (Op.Neg or Op.Abs or Op.Relu or Op.AddScalar or Op.MulScalar or Op.Clamp))
            throw new NotSupportedException($"{op} needs a floating-point tensor, got {Describe()}");
        var output = EmptyLike();
        Backend.Execute(op, [this], [output], attrs);
        return Record(output, op, attrs, [this]);
    }

    public Tensor Neg() => Unary(Op.Neg);
    public Tensor Abs() => Unary(Op.Abs);
    public Tensor Exp() => Unary(Op.Exp);
    public Tensor Log() => Unary(Op.Log);
    public Tensor Sqrt() => Unary(Op.Sqrt);
    public Tensor Rsqrt() => Unary(Op.Rsqrt);
    public Tensor Tanh() => Unary(Op.Tanh);
    public Tensor Sigmoid() => Unary(Op.Sigmoid);
    public Tensor Relu() => Unary(Op.Relu);

    /// <summary>GELU, exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).</summary>
    public Tensor Gelu() => Unary(Op.Gelu);

    /// <summary>GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2's).</summary>
    public Tensor GeluTanh() => Unary(Op.GeluTanh);

    /// <summary>dy * d gelu(x)/dx, the fused backward of <see cref="Gelu"/> (not recorded: autograd calls it).</summary>
    public static Tensor GeluBackward(Tensor dy, Tensor x)
    {
        if (!x.DType.IsFloat()) throw new NotSupportedException($"GeluBackward needs a floating-point tensor, got {x.Describe()}");
        return dy.Binary(Op.GeluBackward, x);
    }

    /// <summary>SiLU (swish): x * sigmoid(x).</summary>
    public Tensor Silu() => Unary(Op.Silu);

    public Tensor Erf() => Unary(Op.Erf);
    public Tensor AddScalar(double c) => Unary(Op.AddScalar, new ScalarAttrs(c));
    public Tensor MulScalar(double c) => Unary(Op.MulScalar, new ScalarAttrs(c));

    /// <summary>this *= c, in place and not recorded (as torch's mul_; elementwise ops may write over their input, see <see cref="Op"/>).</summary>
    public Tensor MulScalar_(double c)
    {
        if (Numel > 0) Backend.Execute(Op.MulScalar, [this], [this], new ScalarAttrs(c));
        return this;
    }
    public Tensor Pow(double exponent) => Unary(Op.PowScalar, new ScalarAttrs(exponent));
    public Tensor Square() => Mul(this);
    public Tensor Reciprocal() => Pow(-1);
    public Tensor Clamp(double min, double max) => Unary(Op.Clamp, new ClampAttrs(min, max));

    // ---- binary ----

    /// <summary>The NumPy/PyTorch broadcast of two shapes (aligned at the trailing axis).</summary>
    public static int[] BroadcastShapes(int[] a, int[] b)
    {
        int rank = Math.Max(a.Length, b.Length);
        var shape = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int da = i - (rank - a.Length) >= 0 ? a[i - (rank - a.Length)] : 1;
            int db = i - (rank - b.Length) >= 0 ? b[i - (rank - b.Length)] : 1;
            if (da != db && da != 1 && db != 1)
                throw new ArgumentException($"shapes {ShapeString(a)} and {ShapeString(b)} cannot be broadcast (axis {i}: {da} vs {db})");
            shape[i] = da == 1 ? db : da;
        }
        return shape;
    }

    private void CheckSameDeviceAndType(Tensor other, Op op)
    {
        if (other.Device != Device)
            throw new ArgumentException($"{op}: tensors on different devices: {Describe()} and {other.Describe()}");
        if (other.DType != DType)
            throw new ArgumentException($"{op}: dtypes differ: {Describe()} and {other.Describe()}; only float dtypes promote (bf16 + f32 -> f32): cast one with To(DType)");
    }

    /// <summary>
    /// Both operands in the dtype a binary op over them computes in (<see cref="DTypeInfo.PromoteFloat"/>, PyTorch's
    /// bf16 + f32 -> f32): the narrower one cast by the recorded To, whose backward casts its gradient back, so each input
    /// gets its gradient in its own dtype. A cast before the kernel rather than kernels that read two dtypes: one cast op
    /// serves every binary op on every backend (the kernels stay one dtype each), and its cost is one copy of the
    /// narrower operand in the wider dtype, which is what the planner counts (src/Models/Planning/EngineActivations.cs).
    /// </summary>
    private (Tensor A, Tensor B) Promoted(Tensor other)
    {
        if (DTypeInfo.PromoteFloat(DType, other.DType) is not { } common) return (this, other);
        return (To(common), other.To(common));
    }

    private Tensor Binary(Op op, Tensor other)
    {
        if (other.Device == Device && DTypeInfo.PromoteFloat(DType, other.DType) is not null)
        {
            var (a, b) = Promoted(other);
            return a.Binary(op, b);
        }
        CheckSameDeviceAndType(other, op);
        var shape = BroadcastShapes(Shape, other.Shape);
        bool compare = op is Op.Eq or Op.Ne or Op.Lt or Op.Le or Op.Gt or Op.Ge;
        var output = Empty(shape, compare ? DType.U8 : DType, Device);
        Backend.Execute(op, [ExpandUnrecorded(shape), other.ExpandUnrecorded(shape)], [output], null);
        return compare ? output : Record(output, op, null, [this, other]);
    }

    public Tensor Add(Tensor other) => Binary(Op.Add, other);

    /// <summary>
    /// this += src (src broadcast to this shape), in place and not recorded. Elementwise ops may write
    /// over their first input (see <see cref="Op"/>); autograd uses this to sum gradients without a new buffer.
    /// </summary>
    public Tensor AddInPlace_(Tensor src)
    {
        CheckSameDeviceAndType(src, Op.Add);
        if (Numel > 0) Backend.Execute(Op.Add, [this, src.ExpandUnrecorded(Shape)], [this], null);
        return this;
    }
    public Tensor Sub(Tensor other) => Binary(Op.Sub, other);
    public Tensor Mul(Tensor other) => Binary(Op.Mul, other);
    public Tensor Div(Tensor other) => Binary(Op.Div, other);
    public Tensor Pow(Tensor exponent) => Binary(Op.Pow, exponent);
    public Tensor Maximum(Tensor other) => Binary(Op.Maximum, other);
    public Tensor Minimum(Tensor other) => Binary(Op.Minimum, other);

    public Tensor Eq(Tensor other) => Binary(Op.Eq, other);
    public Tensor Ne(Tensor other) => Binary(Op.Ne, other);
    public Tensor Lt(Tensor other) => Binary(Op.Lt, other);
    public Tensor Le(Tensor other) => Binary(Op.Le, other);
    public Tensor Gt(Tensor other) => Binary(Op.Gt, other);
    public Tensor Ge(Tensor other) => Binary(Op.Ge, other);

    private Tensor ScalarLike(double value) => Scalar(value, DType, Device);
    public Tensor Eq(double value) => Eq(ScalarLike(value));
    public Tensor Ne(double value) => Ne(ScalarLike(value));
    public Tensor Lt(double value) => Lt(ScalarLike(value));
    public Tensor Le(double value) => Le(ScalarLike(value));
    public Tensor Gt(double value) => Gt(ScalarLike(value));
    public Tensor Ge(double value) => Ge(ScalarLike(value));

    /// <summary>Elementwise cond ? a : b, broadcasting all three; cond is U8 (nonzero = true).</summary>
    public static Tensor Where(Tensor cond, Tensor a, Tensor b)
    {
        if (cond.DType != DType.U8) throw new ArgumentException($"where: condition must be U8 (a comparison result), got {cond.Describe()}");
        if (a.Device == b.Device && DTypeInfo.PromoteFloat(a.DType, b.DType) is not null)
        {
            var (pa, pb) = a.Promoted(b);
            return Where(cond, pa, pb);
        }
        a.CheckSameDeviceAndType(b, Op.Where);
        if (cond.Device != a.Device) throw new ArgumentException($"where: condition {cond.Describe()} is not on {a.Device}");
        var shape = BroadcastShapes(BroadcastShapes(cond.Shape, a.Shape), b.Shape);
        var output = Empty(shape, a.DType, a.Device);
        a.Backend.Execute(Op.Where, [cond.ExpandUnrecorded(shape), a.ExpandUnrecorded(shape), b.ExpandUnrecorded(shape)], [output], null);
        return Record(output, Op.Where, null, [cond, a, b]);
    }

    /// <summary>A copy converted to <paramref name="dtype"/> (this tensor itself when already of that dtype).</summary>
    public Tensor To(DType dtype)
    {
        if (dtype == DType) return this;
        var output = EmptyLike(dtype: dtype);
        Backend.Execute(Op.Copy, [this], [output], null);
        return Record(output, Op.Copy, null, [this]);
    }

    // ---- operators ----

    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);
    public static Tensor operator -(Tensor a) => a.Neg();
    public static Tensor operator +(Tensor a, double c) => a.AddScalar(c);
    public static Tensor operator +(double c, Tensor a) => a.AddScalar(c);
    public static Tensor operator -(Tensor a, double c) => a.AddScalar(-c);
    public static Tensor operator -(double c, Tensor a) => a.Neg().AddScalar(c);
    public static Tensor operator *(Tensor a, double c) => a.MulScalar(c);
    public static Tensor operator *(double c, Tensor a) => a.MulScalar(c);
    public static Tensor operator /(Tensor a, double c) => a.MulScalar(1.0 / c);
    public static Tensor operator /(double c, Tensor a) => a.Reciprocal().MulScalar(c);
}
