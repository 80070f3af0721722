using System.Numerics;
using System.Reflection;
using ILGPU;
using ManagedTensor.Cpu;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>
/// Unary, binary, comparison and where ops. Each kernel is generic over the storage type TS, the type
/// the op computes in TC (float for F16/BF16, as the CPU does), the element codec and the op itself:
/// the op is the CPU backend's own scalar struct (NegOp, ExpOp, AddOp, ...: src/Engine/Cpu/ScalarOps.cs)
/// wherever ILGPU can compile it, so CPU and GPU share one formula per op; GpuScalarOps.cs has the few
/// GPU versions (erf, GELU, tanh). Inputs are views of the output's shape (stride 0 where broadcast).
/// </summary>
internal static class ElementwiseKernels
{
    // ---- kernels ----

    public static void UnaryKernel<TS, TC, TE, TOp>(ArrayView<TS> x, ArrayView<TS> y, StridedLayout layout, TOp op, int n)
        where TS : unmanaged where TC : unmanaged where TE : struct, IElement<TS, TC> where TOp : struct, IUnaryOp<TC>
    {
        TE e = default;
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
        {
            layout.Offsets2(i, out int oy, out int ox);
            y[oy] = e.Store(op.Apply(e.Load(x[ox])));
        }
    }

    public static void BinaryKernel<TS, TC, TE, TOp>(ArrayView<TS> a, ArrayView<TS> b, ArrayView<TS> y, StridedLayout layout, TOp op, int n)
        where TS : unmanaged where TC : unmanaged where TE : struct, IElement<TS, TC> where TOp : struct, IBinaryOp<TC>
    {
        TE e = default;
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
        {
            layout.Offsets3(i, out int oy, out int oa, out int ob);
            y[oy] = e.Store(op.Apply(e.Load(a[oa]), e.Load(b[ob])));
        }
    }

    public static void CompareKernel<TS, TC, TE, TOp>(ArrayView<TS> a, ArrayView<TS> b, ArrayView<byte> y, StridedLayout layout, TOp op, int n)
        where TS : unmanaged where TC : unmanaged where TE : struct, IElement<TS, TC> where TOp : struct, ICompareOp<TC>
    {
        TE e = default;
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
        {
            layout.Offsets3(i, out int oy, out int oa, out int ob);
            y[oy] = op.Apply(e.Load(a[oa]), e.Load(b[ob])) ? (byte)1 : (byte)0;
        }
    }

    public static void WhereKernel<T>(ArrayView<byte> c, ArrayView<T> a, ArrayView<T> b, ArrayView<T> y, StridedLayout layout, int n) where T : unmanaged
    {
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
        {
            layout.Offsets4(i, out int oy, out int oc, out int oa, out int ob);
            y[oy] = c[oc] != 0 ? a[oa] : b[ob];
        }
    }

    // ---- launchers ----

    public static void Unary(GpuBackend b, Op op, Tensor x, Tensor y, OpAttrs? attrs)
    {
        CheckShapes(op, y, x);
        var (spec, opArg) = UnaryFor(op, x.DType, attrs);
        if (y.Numel == 0) return;
        var layout = StridedLayout.Create(y.Shape, y, x);
        b.Launch(spec, b.Grid(y.Numel), CopyKernels.View((GpuStorage)x.Storage), CopyKernels.View((GpuStorage)y.Storage), layout, opArg, y.Numel);
    }

    public static void Binary(GpuBackend b, Op op, Tensor x1, Tensor x2, Tensor y)
    {
        CheckShapes(op, y, x1, x2);
        if (x1.DType != x2.DType) throw new ArgumentException($"{op}: dtypes differ: {x1.Describe()} and {x2.Describe()}");
        bool compare = op is Op.Eq or Op.Ne or Op.Lt or Op.Le or Op.Gt or Op.Ge;
        if (compare && y.DType != DType.U8) throw new ArgumentException($"{op}: output must be U8, got {y.Describe()}");
        var (spec, opArg) = compare ? CompareFor(op, x1.DType) : BinaryFor(op, x1.DType);
        if (y.Numel == 0) return;
        var layout = StridedLayout.Create(y.Shape, y, x1, x2);
        b.Launch(spec, b.Grid(y.Numel), CopyKernels.View((GpuStorage)x1.Storage), CopyKernels.View((GpuStorage)x2.Storage),
            CopyKernels.View((GpuStorage)y.Storage), layout, opArg, y.Numel);
    }

    public static void Where(GpuBackend b, Tensor cond, Tensor x1, Tensor x2, Tensor y)
    {
        CheckShapes(Op.Where, y, cond, x1, x2);
        if (cond.DType != DType.U8) throw new ArgumentException($"where: condition must be U8, got {cond.Describe()}");
        if (x1.DType != y.DType || x2.DType != y.DType)
            throw new ArgumentException($"where: dtypes differ: {x1.Describe()}, {x2.Describe()} -> {y.Describe()}");
        if (y.Numel == 0) return;
        var layout = StridedLayout.Create(y.Shape, y, cond, x1, x2);
        b.Launch(WhereSpec(y.DType), b.Grid(y.Numel), ((GpuStorage)cond.Storage).View<byte>(), CopyKernels.View((GpuStorage)x1.Storage),
            CopyKernels.View((GpuStorage)x2.Storage), CopyKernels.View((GpuStorage)y.Storage), layout, y.Numel);
    }

    private static void CheckShapes(Op op, Tensor y, params Tensor[] inputs)
    {
        foreach (var x in inputs)
            if (!x.Shape.AsSpan().SequenceEqual(y.Shape))
                throw new ArgumentException($"{op}: input {x.Describe()} does not have the output's shape {y.Describe()} (the front end broadcasts first)");
    }

    private static NotSupportedException Unsupported(Op op, DType t) => new($"the GPU backend has no {op} kernel for dtype {t}");

    // ---- which kernel: (op, dtype) -> spec and op struct ----

    private static readonly Op[] FloatUnaryOps =
    [
        Op.Neg, Op.Abs, Op.Exp, Op.Log, Op.Sqrt, Op.Rsqrt, Op.Tanh, Op.Sigmoid, Op.Relu, Op.Gelu, Op.GeluTanh, Op.Silu, Op.Erf,
        Op.AddScalar, Op.MulScalar, Op.PowScalar, Op.Clamp,
    ];

    private static readonly Op[] IntegerUnaryOps = [Op.Neg, Op.Abs, Op.Relu, Op.AddScalar, Op.MulScalar, Op.Clamp];
    private static readonly Op[] FloatBinaryOps = [Op.Add, Op.Sub, Op.Mul, Op.Div, Op.Pow, Op.Maximum, Op.Minimum];
    private static readonly Op[] IntegerBinaryOps = [Op.Add, Op.Sub, Op.Mul, Op.Maximum, Op.Minimum];
    private static readonly Op[] CompareOps = [Op.Eq, Op.Ne, Op.Lt, Op.Le, Op.Gt, Op.Ge];

    private static (KernelSpec, object) UnaryFor(Op op, DType t, OpAttrs? attrs)
    {
        double c = (attrs as ScalarAttrs)?.Value ?? 0;
        var clamp = attrs as ClampAttrs ?? new ClampAttrs(0, 0);
        string name = $"{op}_{t}";
        return t switch
        {
            DType.F32 => UnaryFloat<float, Same<float>>(op, t, name, c, clamp),
            DType.F16 => UnaryFloat<ushort, F16AsFloat>(op, t, name, c, clamp),
            DType.BF16 => UnaryFloat<ushort, BF16AsFloat>(op, t, name, c, clamp),
            DType.F64 => UnaryDouble(op, t, name, c, clamp),
            DType.I32 => UnaryInteger<int>(op, t, name, c, clamp),
            DType.I64 => UnaryInteger<long>(op, t, name, c, clamp),
            DType.I8 => UnaryInteger<sbyte>(op, t, name, c, clamp),
            DType.U8 => UnaryInteger<byte>(op, t, name, c, clamp),
            _ => throw Unsupported(op, t),
        };
    }

    private static (KernelSpec, object) UnaryFloat<TS, TE>(Op op, DType t, string name, double c, ClampAttrs clamp)
        where TS : unmanaged where TE : struct, IElement<TS, float> => op switch
    {
        Op.Tanh => U<TS, float, TE, TanhF32Op>(name, new()),
        Op.Gelu => U<TS, float, TE, GeluF32Op>(name, new()),
        Op.GeluTanh => U<TS, float, TE, GeluTanhF32Op>(name, new()),
        Op.Erf => U<TS, float, TE, ErfF32Op>(name, new()),
        _ => UnaryIeee<TS, float, TE>(op, t, name, c, clamp),
    };

    private static (KernelSpec, object) UnaryDouble(Op op, DType t, string name, double c, ClampAttrs clamp) => op switch
    {
        Op.Tanh => U<double, double, Same<double>, TanhF64Op>(name, new()),
        Op.Gelu => U<double, double, Same<double>, GeluF64Op>(name, new()),
        Op.GeluTanh => U<double, double, Same<double>, GeluTanhF64Op>(name, new()),
        Op.Erf => U<double, double, Same<double>, ErfF64Op>(name, new()),
        _ => UnaryIeee<double, double, Same<double>>(op, t, name, c, clamp),
    };

    /// <summary>The unary ops whose CPU struct works in a kernel for float and double alike.</summary>
    private static (KernelSpec, object) UnaryIeee<TS, TC, TE>(Op op, DType t, string name, double c, ClampAttrs clamp)
        where TS : unmanaged where TC : unmanaged, IFloatingPointIeee754<TC> where TE : struct, IElement<TS, TC> => op switch
    {
        Op.Exp => U<TS, TC, TE, ExpOp<TC>>(name, new()),
        Op.Log => U<TS, TC, TE, LogOp<TC>>(name, new()),
        Op.Sqrt => U<TS, TC, TE, SqrtOp<TC>>(name, new()),
        Op.Rsqrt => U<TS, TC, TE, RsqrtOp<TC>>(name, new()),
        Op.Sigmoid => U<TS, TC, TE, SigmoidOp<TC>>(name, new()),
        Op.Silu => U<TS, TC, TE, SiluOp<TC>>(name, new()),
        Op.PowScalar => U<TS, TC, TE, PowScalarOp<TC>>(name, new(TC.CreateTruncating(c))),
        _ => UnaryNumber<TS, TC, TE>(op, t, name, c, clamp),
    };

    private static (KernelSpec, object) UnaryInteger<T>(Op op, DType t, string name, double c, ClampAttrs clamp) where T : unmanaged, INumber<T>
        => UnaryNumber<T, T, Same<T>>(op, t, name, c, clamp);

    /// <summary>The unary ops defined for every numeric type; constants converted as the CPU backend converts them.</summary>
    private static (KernelSpec, object) UnaryNumber<TS, TC, TE>(Op op, DType t, string name, double c, ClampAttrs clamp)
        where TS : unmanaged where TC : unmanaged, INumber<TC> where TE : struct, IElement<TS, TC> => op switch
    {
        Op.Neg => U<TS, TC, TE, NegOp<TC>>(name, new()),
        Op.Abs => U<TS, TC, TE, AbsOp<TC>>(name, new()),
        Op.Relu => U<TS, TC, TE, ReluOp<TC>>(name, new()),
        Op.AddScalar => U<TS, TC, TE, AddScalarOp<TC>>(name, new(TC.CreateTruncating(c))),
        Op.MulScalar => U<TS, TC, TE, MulScalarOp<TC>>(name, new(TC.CreateTruncating(c))),
        Op.Clamp => U<TS, TC, TE, ClampOp<TC>>(name, new(TC.CreateSaturating(clamp.Min), TC.CreateSaturating(clamp.Max))),
        _ => throw Unsupported(op, t),
    };

    private static (KernelSpec, object) U<TS, TC, TE, TOp>(string name, TOp op)
        where TS : unmanaged where TC : unmanaged where TE : struct, IElement<TS, TC> where TOp : struct, IUnaryOp<TC> =>
        (new KernelSpec(name, ((Action<ArrayView<TS>, ArrayView<TS>, StridedLayout, TOp, int>)UnaryKernel<TS, TC, TE, TOp>).Method), op);

    private static (KernelSpec, object) BinaryFor(Op op, DType t)
    {
        string name = $"{op}_{t}";
        return t switch
        {
            DType.F32 => BinaryFloat<float, float, Same<float>>(op, t, name),
            DType.F64 => BinaryFloat<double, double, Same<double>>(op, t, name),
            DType.F16 => BinaryFloat<ushort, float, F16AsFloat>(op, t, name),
            DType.BF16 => BinaryFloat<ushort, float, BF16AsFloat>(op, t, name),
            DType.I32 => BinaryNumber<int, int, Same<int>>(op, t, name),
            DType.I64 => BinaryNumber<long, long, Same<long>>(op, t, name),
            DType.I8 => BinaryNumber<sbyte, sbyte, Same<sbyte>>(op, t, name),
            DType.U8 => BinaryNumber<byte, byte, Same<byte>>(op, t, name),
            _ => throw Unsupported(op, t),
        };
    }

    private static (KernelSpec, object) BinaryFloat<TS, TC, TE>(Op op, DType t, string name)
        where TS : unmanaged where TC : unmanaged, IFloatingPointIeee754<TC> where TE : struct, IElement<TS, TC> => op switch
    {
        Op.Div => B<TS, TC, TE, DivOp<TC>>(name),
        Op.Pow => B<TS, TC, TE, PowOp<TC>>(name),
        _ => BinaryNumber<TS, TC, TE>(op, t, name),
    };

    private static (KernelSpec, object) BinaryNumber<TS, TC, TE>(Op op, DType t, string name)
        where TS : unmanaged where TC : unmanaged, INumber<TC> where TE : struct, IElement<TS, TC> => op switch
    {
        Op.Add => B<TS, TC, TE, AddOp<TC>>(name),
        Op.Sub => B<TS, TC, TE, SubOp<TC>>(name),
        Op.Mul => B<TS, TC, TE, MulOp<TC>>(name),
        Op.Maximum => B<TS, TC, TE, MaximumOp<TC>>(name),
        Op.Minimum => B<TS, TC, TE, MinimumOp<TC>>(name),
        _ => throw Unsupported(op, t),
    };

    private static (KernelSpec, object) B<TS, TC, TE, TOp>(string name)
        where TS : unmanaged where TC : unmanaged where TE : struct, IElement<TS, TC> where TOp : struct, IBinaryOp<TC> =>
        (new KernelSpec(name, ((Action<ArrayView<TS>, ArrayView<TS>, ArrayView<TS>, StridedLayout, TOp, int>)BinaryKernel<TS, TC, TE, TOp>).Method), default(TOp));

    private static (KernelSpec, object) CompareFor(Op op, DType t)
    {
        string name = $"{op}_{t}";
        return t switch
        {
            DType.F32 => CompareTyped<float, float, Same<float>>(op, t, name),
            DType.F64 => CompareTyped<double, double, Same<double>>(op, t, name),
            DType.F16 => CompareTyped<ushort, float, F16AsFloat>(op, t, name),
            DType.BF16 => CompareTyped<ushort, float, BF16AsFloat>(op, t, name),
            DType.I32 => CompareTyped<int, int, Same<int>>(op, t, name),
            DType.I64 => CompareTyped<long, long, Same<long>>(op, t, name),
            DType.I8 => CompareTyped<sbyte, sbyte, Same<sbyte>>(op, t, name),
            DType.U8 => CompareTyped<byte, byte, Same<byte>>(op, t, name),
            _ => throw Unsupported(op, t),
        };
    }

    private static (KernelSpec, object) CompareTyped<TS, TC, TE>(Op op, DType t, string name)
        where TS : unmanaged where TC : unmanaged, INumber<TC> where TE : struct, IElement<TS, TC> => op switch
    {
        Op.Eq => C<TS, TC, TE, EqOp<TC>>(name),
        Op.Ne => C<TS, TC, TE, NeOp<TC>>(name),
        Op.Lt => C<TS, TC, TE, LtOp<TC>>(name),
        Op.Le => C<TS, TC, TE, LeOp<TC>>(name),
        Op.Gt => C<TS, TC, TE, GtOp<TC>>(name),
        Op.Ge => C<TS, TC, TE, GeOp<TC>>(name),
        _ => throw Unsupported(op, t),
    };

    private static (KernelSpec, object) C<TS, TC, TE, TOp>(string name)
        where TS : unmanaged where TC : unmanaged where TE : struct, IElement<TS, TC> where TOp : struct, ICompareOp<TC> =>
        (new KernelSpec(name, ((Action<ArrayView<TS>, ArrayView<TS>, ArrayView<byte>, StridedLayout, TOp, int>)CompareKernel<TS, TC, TE, TOp>).Method), default(TOp));

    private static KernelSpec WhereSpec(DType t) => new($"Where_{t}", t switch
    {
        DType.F32 => W<float>(),
        DType.F64 => W<double>(),
        DType.F16 or DType.BF16 => W<ushort>(),
        DType.I32 => W<int>(),
        DType.I64 => W<long>(),
        DType.I8 => W<sbyte>(),
        DType.U8 => W<byte>(),
        _ => throw Unsupported(Op.Where, t),
    });

    private static MethodInfo W<T>() where T : unmanaged =>
        ((Action<ArrayView<byte>, ArrayView<T>, ArrayView<T>, ArrayView<T>, StridedLayout, int>)WhereKernel<T>).Method;

    public static IEnumerable<KernelSpec> Specs()
    {
        var floats = new[] { DType.F32, DType.F64, DType.F16, DType.BF16 };
        var integers = new[] { DType.I32, DType.I64, DType.I8, DType.U8 };
        foreach (var t in floats)
        {
            foreach (var op in FloatUnaryOps) yield return UnaryFor(op, t, null).Item1;
            foreach (var op in FloatBinaryOps) yield return BinaryFor(op, t).Item1;
        }
        foreach (var t in integers)
        {
            foreach (var op in IntegerUnaryOps) yield return UnaryFor(op, t, null).Item1;
            foreach (var op in IntegerBinaryOps) yield return BinaryFor(op, t).Item1;
        }
        foreach (var t in floats.Concat(integers))
        {
            foreach (var op in CompareOps) yield return CompareFor(op, t).Item1;
            yield return WhereSpec(t);
        }
    }
}
