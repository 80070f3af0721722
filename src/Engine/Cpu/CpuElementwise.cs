using System.Numerics;
using System.Runtime.CompilerServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// Unary, binary, comparison and where ops. Inputs arrive as views of the output's shape (stride 0 on
/// broadcast axes). <see cref="StridedLoop"/> merges axes and hands each row to a kernel, which picks:
///   all inner strides 1          -> the op's span routine (TensorPrimitives, vectorized)
///   one input with inner stride 0 -> the op's scalar-operand span routine (x + c, bias rows)
///   a strided input (a transpose) -> unary: copied dense first (CpuCopy's tiled transpose), then one span call;
///                                    binary, or a small unary: gathered a piece at a time into a dense buffer
///   anything else (short rows)    -> a scalar strided loop.
/// F32, F64 and the integer types run natively; F16 and BF16 compute in float32 and round once at the end.
/// </summary>
internal static class CpuElementwise
{
    // ---- unary ----

    public static void Unary(Op op, Tensor x, Tensor y, OpAttrs? attrs)
    {
        CheckShapes(op, y, x);
        switch (x.DType)
        {
            case DType.F32: UnaryFloat<float>(op, x, y, attrs); break;
            case DType.F64: UnaryFloat<double>(op, x, y, attrs); break;
            case DType.F16 or DType.BF16: ViaFloat32(y, [x], (ins, o) => UnaryFloat<float>(op, ins[0], o, attrs)); break;
            case DType.I32: UnaryNumber<int>(op, x, y, attrs); break;
            case DType.I64: UnaryNumber<long>(op, x, y, attrs); break;
            case DType.I8: UnaryNumber<sbyte>(op, x, y, attrs); break;
            case DType.U8: UnaryNumber<byte>(op, x, y, attrs); break;
            default: throw Unsupported(op, x);
        }
    }

    private static void UnaryFloat<T>(Op op, Tensor x, Tensor y, OpAttrs? attrs) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case Op.Exp: RunUnary<T, ExpOp<T>>(x, y, new()); break;
            case Op.Log: RunUnary<T, LogOp<T>>(x, y, new()); break;
            case Op.Sqrt: RunUnary<T, SqrtOp<T>>(x, y, new()); break;
            case Op.Rsqrt: RunUnary<T, RsqrtOp<T>>(x, y, new()); break;
            case Op.Tanh: RunUnary<T, TanhOp<T>>(x, y, new()); break;
            case Op.Sigmoid: RunUnary<T, SigmoidOp<T>>(x, y, new()); break;
            case Op.Gelu: RunUnary<T, GeluOp<T>>(x, y, new()); break;
            case Op.GeluTanh: RunUnary<T, GeluTanhOp<T>>(x, y, new()); break;
            case Op.Silu: RunUnary<T, SiluOp<T>>(x, y, new()); break;
            case Op.Erf: RunUnary<T, ErfOp<T>>(x, y, new()); break;
            case Op.PowScalar: RunUnary<T, PowScalarOp<T>>(x, y, new(T.CreateTruncating(((ScalarAttrs)attrs!).Value))); break;
            default: UnaryNumber<T>(op, x, y, attrs); break;
        }
    }

    /// <summary>The unary ops defined for every numeric type (integers too).</summary>
    private static void UnaryNumber<T>(Op op, Tensor x, Tensor y, OpAttrs? attrs) where T : unmanaged, INumber<T>
    {
        switch (op)
        {
            case Op.Neg: RunUnary<T, NegOp<T>>(x, y, new()); break;
            case Op.Abs: RunUnary<T, AbsOp<T>>(x, y, new()); break;
            case Op.Relu: RunUnary<T, ReluOp<T>>(x, y, new()); break;
            case Op.AddScalar: RunUnary<T, AddScalarOp<T>>(x, y, new(T.CreateTruncating(((ScalarAttrs)attrs!).Value))); break;
            case Op.MulScalar: RunUnary<T, MulScalarOp<T>>(x, y, new(T.CreateTruncating(((ScalarAttrs)attrs!).Value))); break;
            case Op.Clamp:
                var c = (ClampAttrs)attrs!;
                RunUnary<T, ClampOp<T>>(x, y, new(T.CreateSaturating(c.Min), T.CreateSaturating(c.Max)));
                break;
            default: throw Unsupported(op, x);
        }
    }

    private static void RunUnary<T, TOp>(Tensor x, Tensor y, TOp op) where T : unmanaged where TOp : struct, IUnaryOp<T>
    {
        var loop = new StridedLoop(y.Shape, y, x);
        if (loop.InnerStride(1) is not (0 or 1) && x.Numel >= DenseCopyMin && x.DType == y.DType)
        {
            // A transposed view (YOLO's loss takes the sigmoid of (B, 8400, 80) scores stored as (B, 80, 8400)): its rows
            // step through memory, so gathering them costs a cache line and a TLB entry per element. CpuCopy transposes
            // it in cache-sized tiles into a dense tensor, over which the op's SIMD routine runs as one row.
            var dense = Tensor.Empty(x.Shape, x.DType);
            CpuCopy.Copy(x, dense);
            (x, loop) = (dense, new StridedLoop(y.Shape, y, dense));
        }
        loop.Run(new UnaryKernel<T, TOp>(op, x.Elements<T>(), y.Elements<T>(), loop.InnerStride(1), loop.InnerStride(0)));
    }

    private readonly struct UnaryKernel<T, TOp>(TOp op, T[] x, T[] y, int sx, int sy) : IRowKernel
        where T : unmanaged where TOp : struct, IUnaryOp<T>
    {
        [SkipLocalsInit] // the gather buffer is written before it is read
        public void Row(int n, int oy, int ox, int o2, int o3)
        {
            if (sx == 1 && sy == 1) op.Apply(x.AsSpan(ox, n), y.AsSpan(oy, n));
            else if (sx == 0 && sy == 1) y.AsSpan(oy, n).Fill(op.Apply(x[ox]));
            else if (n < GatherMin) for (int i = 0; i < n; i++) y[oy + i * sy] = op.Apply(x[ox + i * sx]);
            else
            {
                // A strided row (a transposed view): gather a piece into a dense buffer, run the op's SIMD routine on
                // it, store it back; a scalar T.Exp per element was 5x slower than Sigmoid's vector routine.
                Span<T> buf = stackalloc T[GatherPiece];
                for (int p = 0; p < n; p += GatherPiece)
                {
                    var b = buf[..Math.Min(GatherPiece, n - p)];
                    Strided.Gather(x, ox + p * sx, sx, b);
                    if (sy == 1) op.Apply(b, y.AsSpan(oy + p, b.Length));
                    else
                    {
                        op.Apply(b, b);
                        Strided.Scatter(b, y, oy + p * sy, sy);
                    }
                }
            }
        }
    }

    // ---- binary ----

    public static void Binary(Op op, Tensor a, Tensor b, Tensor y)
    {
        CheckShapes(op, y, a, b);
        if (a.DType != b.DType) throw new ArgumentException($"{op}: dtypes differ: {a.Describe()} and {b.Describe()}");
        if (op is Op.Eq or Op.Ne or Op.Lt or Op.Le or Op.Gt or Op.Ge)
        {
            Compare(op, a, b, y);
            return;
        }
        switch (a.DType)
        {
            case DType.F32: BinaryFloat<float>(op, a, b, y); break;
            case DType.F64: BinaryFloat<double>(op, a, b, y); break;
            case DType.F16 or DType.BF16: ViaFloat32(y, [a, b], (ins, o) => BinaryFloat<float>(op, ins[0], ins[1], o)); break;
            case DType.I32: BinaryNumber<int>(op, a, b, y); break;
            case DType.I64: BinaryNumber<long>(op, a, b, y); break;
            case DType.I8: BinaryNumber<sbyte>(op, a, b, y); break;
            case DType.U8: BinaryNumber<byte>(op, a, b, y); break;
            default: throw Unsupported(op, a);
        }
    }

    private static void BinaryFloat<T>(Op op, Tensor a, Tensor b, Tensor y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case Op.Div: RunBinary<T, DivOp<T>>(a, b, y, new()); break;
            case Op.Pow: RunBinary<T, PowOp<T>>(a, b, y, new()); break;
            case Op.GeluBackward: RunBinary<T, GeluBackwardOp<T>>(a, b, y, new()); break;
            default: BinaryNumber<T>(op, a, b, y); break;
        }
    }

    private static void BinaryNumber<T>(Op op, Tensor a, Tensor b, Tensor y) where T : unmanaged, INumber<T>
    {
        switch (op)
        {
            case Op.Add: RunBinary<T, AddOp<T>>(a, b, y, new()); break;
            case Op.Sub: RunBinary<T, SubOp<T>>(a, b, y, new()); break;
            case Op.Mul: RunBinary<T, MulOp<T>>(a, b, y, new()); break;
            case Op.Maximum: RunBinary<T, MaximumOp<T>>(a, b, y, new()); break;
            case Op.Minimum: RunBinary<T, MinimumOp<T>>(a, b, y, new()); break;
            default: throw Unsupported(op, a);
        }
    }

    private static void RunBinary<T, TOp>(Tensor a, Tensor b, Tensor y, TOp op) where T : unmanaged where TOp : struct, IBinaryOp<T>
    {
        var loop = new StridedLoop(y.Shape, y, a, b);
        loop.Run(new BinaryKernel<T, TOp>(op, a.Elements<T>(), b.Elements<T>(), y.Elements<T>(), loop.InnerStride(1), loop.InnerStride(2), loop.InnerStride(0)));
    }

    private readonly struct BinaryKernel<T, TOp>(TOp op, T[] a, T[] b, T[] y, int sa, int sb, int sy) : IRowKernel
        where T : unmanaged where TOp : struct, IBinaryOp<T>
    {
        [SkipLocalsInit] // the gather buffer is written before it is read
        public void Row(int n, int oy, int oa, int ob, int o3)
        {
            if (sy == 1)
            {
                if (sa == 1 && sb == 1) { op.Apply(a.AsSpan(oa, n), b.AsSpan(ob, n), y.AsSpan(oy, n)); return; }
                if (sa == 1 && sb == 0) { op.Apply(a.AsSpan(oa, n), b[ob], y.AsSpan(oy, n)); return; }
                if (sa == 0 && sb == 1) { op.Apply(a[oa], b.AsSpan(ob, n), y.AsSpan(oy, n)); return; }
                if (n >= GatherMin && (sa == 1 || sb == 1))
                {
                    // One operand is a strided view (a transpose): gather it a piece at a time into a dense buffer so
                    // the op's SIMD routine runs on two dense spans.
                    Span<T> buf = stackalloc T[GatherPiece];
                    for (int p = 0; p < n; p += GatherPiece)
                    {
                        var g = buf[..Math.Min(GatherPiece, n - p)];
                        if (sa == 1)
                        {
                            Strided.Gather(b, ob + p * sb, sb, g);
                            op.Apply(a.AsSpan(oa + p, g.Length), g, y.AsSpan(oy + p, g.Length));
                        }
                        else
                        {
                            Strided.Gather(a, oa + p * sa, sa, g);
                            op.Apply(g, b.AsSpan(ob + p, g.Length), y.AsSpan(oy + p, g.Length));
                        }
                    }
                    return;
                }
            }
            for (int i = 0; i < n; i++) y[oy + i * sy] = op.Apply(a[oa + i * sa], b[ob + i * sb]);
        }
    }

    /// <summary>A strided unary input with at least this many elements is first copied dense (a tiled transpose).</summary>
    private const int DenseCopyMin = 4096;

    /// <summary>Strided rows shorter than this take the scalar loop (a gather would not pay for its call).</summary>
    private const int GatherMin = 16;

    /// <summary>Elements gathered at a time from a strided row (a stack buffer of at most 2 KB).</summary>
    private const int GatherPiece = 256;

    // ---- comparisons ----

    private static void Compare(Op op, Tensor a, Tensor b, Tensor y)
    {
        if (y.DType != DType.U8) throw new ArgumentException($"{op}: output must be U8, got {y.Describe()}");
        switch (a.DType)
        {
            case DType.F32: CompareTyped<float>(op, a, b, y); break;
            case DType.F64: CompareTyped<double>(op, a, b, y); break;
            case DType.F16: CompareTyped<Half>(op, a, b, y); break;
            case DType.BF16: ViaFloat32(y, [a, b], (ins, o) => CompareTyped<float>(op, ins[0], ins[1], o)); break;
            case DType.I32: CompareTyped<int>(op, a, b, y); break;
            case DType.I64: CompareTyped<long>(op, a, b, y); break;
            case DType.I8: CompareTyped<sbyte>(op, a, b, y); break;
            case DType.U8: CompareTyped<byte>(op, a, b, y); break;
            default: throw Unsupported(op, a);
        }
    }

    private static void CompareTyped<T>(Op op, Tensor a, Tensor b, Tensor y) where T : unmanaged, INumber<T>
    {
        switch (op)
        {
            case Op.Eq: RunCompare<T, EqOp<T>>(a, b, y, new()); break;
            case Op.Ne: RunCompare<T, NeOp<T>>(a, b, y, new()); break;
            case Op.Lt: RunCompare<T, LtOp<T>>(a, b, y, new()); break;
            case Op.Le: RunCompare<T, LeOp<T>>(a, b, y, new()); break;
            case Op.Gt: RunCompare<T, GtOp<T>>(a, b, y, new()); break;
            case Op.Ge: RunCompare<T, GeOp<T>>(a, b, y, new()); break;
            default: throw Unsupported(op, a);
        }
    }

    private static void RunCompare<T, TOp>(Tensor a, Tensor b, Tensor y, TOp op) where T : unmanaged where TOp : struct, ICompareOp<T>
    {
        var loop = new StridedLoop(y.Shape, y, a, b);
        loop.Run(new CompareKernel<T, TOp>(op, a.Elements<T>(), b.Elements<T>(), y.Elements<byte>(), loop.InnerStride(1), loop.InnerStride(2), loop.InnerStride(0)));
    }

    private readonly struct CompareKernel<T, TOp>(TOp op, T[] a, T[] b, byte[] y, int sa, int sb, int sy) : IRowKernel
        where T : unmanaged where TOp : struct, ICompareOp<T>
    {
        public void Row(int n, int oy, int oa, int ob, int o3)
        {
            for (int i = 0; i < n; i++) y[oy + i * sy] = op.Apply(a[oa + i * sa], b[ob + i * sb]) ? (byte)1 : (byte)0;
        }
    }

    // ---- where ----

    /// <summary>y = cond != 0 ? a : b, for any dtype (a pure selection, no arithmetic).</summary>
    public static void Where(Tensor cond, Tensor a, Tensor b, Tensor y)
    {
        CheckShapes(Op.Where, y, cond, a, b);
        if (cond.DType != DType.U8) throw new ArgumentException($"where: condition must be U8, got {cond.Describe()}");
        if (a.DType != y.DType || b.DType != y.DType)
            throw new ArgumentException($"where: dtypes differ: {a.Describe()}, {b.Describe()} -> {y.Describe()}");
        switch (y.DType)
        {
            case DType.F32: WhereTyped<float>(cond, a, b, y); break;
            case DType.F64: WhereTyped<double>(cond, a, b, y); break;
            case DType.F16: WhereTyped<Half>(cond, a, b, y); break;
            case DType.BF16: WhereTyped<BFloat16>(cond, a, b, y); break;
            case DType.I32: WhereTyped<int>(cond, a, b, y); break;
            case DType.I64: WhereTyped<long>(cond, a, b, y); break;
            case DType.I8: WhereTyped<sbyte>(cond, a, b, y); break;
            case DType.U8: WhereTyped<byte>(cond, a, b, y); break;
            default: throw Unsupported(Op.Where, a);
        }
    }

    private static void WhereTyped<T>(Tensor cond, Tensor a, Tensor b, Tensor y) where T : unmanaged
    {
        var loop = new StridedLoop(y.Shape, y, cond, a, b);
        loop.Run(new WhereKernel<T>(cond.Elements<byte>(), a.Elements<T>(), b.Elements<T>(), y.Elements<T>(),
            loop.InnerStride(1), loop.InnerStride(2), loop.InnerStride(3), loop.InnerStride(0)));
    }

    private readonly struct WhereKernel<T>(byte[] c, T[] a, T[] b, T[] y, int sc, int sa, int sb, int sy) : IRowKernel where T : unmanaged
    {
        public void Row(int n, int oy, int oc, int oa, int ob)
        {
            for (int i = 0; i < n; i++) y[oy + i * sy] = c[oc + i * sc] != 0 ? a[oa + i * sa] : b[ob + i * sb];
        }
    }

    // ---- helpers ----

    /// <summary>
    /// Runs an op on float32 copies of the 16-bit float inputs and rounds the result into
    /// <paramref name="output"/> once (PyTorch's CPU kernels for half types also compute in float).
    /// </summary>
    private static void ViaFloat32(Tensor output, Tensor[] inputs, Action<Tensor[], Tensor> run)
    {
        var wide = inputs.Select(t => t.DType is DType.F16 or DType.BF16 ? Widen(t) : t).ToArray();
        var result = output.DType is DType.F16 or DType.BF16 ? Tensor.Empty(output.Shape, DType.F32) : output;
        run(wide, result);
        if (!ReferenceEquals(result, output)) CpuCopy.Copy(result, output);
    }

    private static Tensor Widen(Tensor t)
    {
        var f = Tensor.Empty(t.Shape, DType.F32);
        CpuCopy.Copy(t, f);
        return f;
    }

    private static void CheckShapes(Op op, Tensor y, params Tensor[] inputs)
    {
        foreach (var x in inputs)
            if (!x.Shape.AsSpan().SequenceEqual(y.Shape))
                throw new ArgumentException($"{op}: input {x.Describe()} does not have the output's shape {y.Describe()} (the front end broadcasts first)");
    }

    private static NotSupportedException Unsupported(Op op, Tensor x) =>
        new($"the CPU backend has no {op} kernel for dtype {x.DType} (tensor {x.Describe()})");
}
