namespace ManagedTensor.Conformance;

/// <summary>
/// The cases of <see cref="OpConformance"/>, grouped by op family. Small shapes are odd (7, 13, 29, ...)
/// so that no kernel can rely on sizes being multiples of its group or tile; realistic shapes are those
/// of a small transformer step (4M-element activations, 1024-cubed matmuls, a 32k-class loss).
/// </summary>
internal sealed class CaseList(CaseScale scale)
{
    private readonly List<OpCase> _cases = [];

    private int S(int small, int realistic) => scale == CaseScale.Small ? small : realistic;

    private void Add(string name, Op op, DType dtype, string shape, Func<CaseInputs, Tensor[]> inputs, Func<Tensor[], Device, Tensor[]> run, Tolerance? tol = null) =>
        Add(name, [op], dtype, shape, inputs, run, tol);

    private void Add(string name, Op[] ops, DType dtype, string shape, Func<CaseInputs, Tensor[]> inputs, Func<Tensor[], Device, Tensor[]> run, Tolerance? tol = null) =>
        _cases.Add(new OpCase(name, ops, dtype, shape, inputs, run, tol ?? Tolerance.For(dtype)));

    private static string Str(params int[][] shapes) => string.Join(" ", shapes.Select(s => Tensor.ShapeString(s)));

    public IReadOnlyList<OpCase> Build()
    {
        CopyCases();
        FillAndRandomCases();
        UnaryCases();
        BinaryCases();
        ReduceCases();
        MatMulCases();
        NnCases();
        DetectorCases();
        ScanCases();
        IndexCases();
        LossCases();
        ConvPoolCases();
        AttentionCases();
        OptimCases();
        QuantCases();
        return _cases;
    }

    // ---- data movement ----

    private void CopyCases()
    {
        int r = S(13, 1024), c = S(7, 4096);
        int[] shape = [r, c];
        Add("copy transposed F32", Op.Copy, DType.F32, Str([c, r]) + " .MT", g => [g.Uniform([c, r])], (x, _) => [x[0].MT.Contiguous()]);
        Add("copy narrowed+expanded F64", Op.Copy, DType.F64, Str([1, c]), g => [g.Uniform([3, c], dtype: DType.F64)],
            (x, _) => [x[0].Narrow(0, 1, 1).Expand(r, c).Contiguous()]);
        Add("copy into slice F32", Op.Copy, DType.F32, Str(shape), g => [g.Uniform([c, 5])], (x, d) =>
        {
            var dst = Tensor.Zeros([9, c], DType.F32, d);
            dst.Narrow(0, 2, 5).CopyFrom_(x[0].MT);
            return [dst];
        });
        Add("cat axis 1 F32", Op.Cat, DType.F32, Str([5, 3], [5, 1], [5, 6]), g => [g.Uniform([5, 3]), g.Uniform([5, 1]), g.Uniform([6, 5])],
            (x, _) => [Tensor.Cat([x[0], x[1], x[2].MT], 1)]);
        var casts = new (DType From, DType To, double Lo, double Hi)[]
        {
            (DType.F32, DType.F16, -70000, 70000), (DType.F16, DType.F32, -4, 4), (DType.F32, DType.BF16, -1e6, 1e6), (DType.BF16, DType.F32, -4, 4),
            (DType.F64, DType.F32, -1e3, 1e3), (DType.F32, DType.F64, -1, 1), (DType.F32, DType.I32, -100, 100), (DType.F64, DType.I64, -1e12, 1e12),
            (DType.I64, DType.F32, -1000, 1000), (DType.I32, DType.I8, -300, 300), (DType.I32, DType.U8, -300, 300), (DType.U8, DType.F16, 0, 255),
            (DType.F16, DType.BF16, -100, 100), (DType.BF16, DType.I64, -100, 100), (DType.F64, DType.F16, -1e-4, 1e-4), (DType.I64, DType.I32, -1e10, 1e10),
            (DType.F32, DType.U8, -10, 300), (DType.I8, DType.F64, -100, 100),
        };
        foreach (var (from, to, lo, hi) in casts)
            Add($"cast {from}->{to}", Op.Copy, to, Str(shape) + " .MT", g => [MakeOf(g, [c, r], lo, hi, from)], (x, _) => [x[0].MT.To(to)], Tolerance.Exact);
    }

    /// <summary>Values in [lo, hi) of any dtype (integers rounded toward zero, then wrapped by the cast, as any cast does).</summary>
    private static Tensor MakeOf(CaseInputs g, int[] shape, double lo, double hi, DType dtype) =>
        dtype.IsFloat() ? g.Uniform(shape, lo, hi, DType.F64).To(dtype) : g.Uniform(shape, lo, hi, DType.F64).To(DType.I64).To(dtype);

    private void FillAndRandomCases()
    {
        int n = S(37, 1 << 22);
        foreach (var (t, v) in new[] { (DType.F32, 2.5), (DType.F16, 0.1), (DType.BF16, -1.7), (DType.I64, -3.7), (DType.U8, 300.0), (DType.F64, Math.PI) })
            Add($"fill {t}", Op.Fill, t, Str([n]), _ => [], (_, d) => [Tensor.Full([n], v, t, d)], Tolerance.Exact);
        Add("fill transposed view F32", Op.Fill, DType.F32, Str([7, 5]), _ => [], (_, d) =>
        {
            var z = Tensor.Zeros([7, 5], DType.F32, d);
            z.MT.Narrow(0, 1, 3).Fill_(4);
            return [z];
        }, Tolerance.Exact);
        foreach (var t in new[] { DType.F32, DType.F64, DType.F16, DType.BF16 })
            Add($"rand uniform {t}", Op.RandUniform, t, Str([n]), _ => [], (_, d) => [Tensor.Rand([n], new Generator(5, 3), -2, 3, t, d)], Tolerance.Exact);
        // Normal numbers go through log, sqrt and cos: a GPU's approximations differ from the CPU's by a few ulp.
        foreach (var t in new[] { DType.F32, DType.F64 })
            Add($"rand normal {t}", Op.RandNormal, t, Str([n]), _ => [], (_, d) => [Tensor.Randn([n], new Generator(6, 7), 1, 2, t, d)], new Tolerance(1e-5, 2e-5));
    }

    // ---- elementwise ----

    private static readonly (string Name, Op Op, Func<Tensor, Tensor> Run, double Lo, double Hi)[] FloatUnary =
    [
        ("neg", Op.Neg, x => x.Neg(), -3, 3), ("abs", Op.Abs, x => x.Abs(), -3, 3), ("exp", Op.Exp, x => x.Exp(), -10, 10),
        ("log", Op.Log, x => x.Log(), 0.01, 100), ("sqrt", Op.Sqrt, x => x.Sqrt(), 0, 100), ("rsqrt", Op.Rsqrt, x => x.Rsqrt(), 0.01, 100),
        ("tanh", Op.Tanh, x => x.Tanh(), -4, 4), ("tanh large", Op.Tanh, x => x.Tanh(), -60, 60), ("sigmoid", Op.Sigmoid, x => x.Sigmoid(), -20, 20),
        ("relu", Op.Relu, x => x.Relu(), -3, 3), ("gelu", Op.Gelu, x => x.Gelu(), -6, 6), ("gelu tanh", Op.GeluTanh, x => x.GeluTanh(), -6, 6),
        ("gelu tanh large", Op.GeluTanh, x => x.GeluTanh(), -60, 60), ("silu", Op.Silu, x => x.Silu(), -20, 20), ("erf", Op.Erf, x => x.Erf(), -4, 4),
        ("add scalar", Op.AddScalar, x => x.AddScalar(2.5), -3, 3), ("mul scalar", Op.MulScalar, x => x.MulScalar(-1.5), -3, 3),
        ("pow 2", Op.PowScalar, x => x.Pow(2), -3, 3), ("pow 0.5", Op.PowScalar, x => x.Pow(0.5), 0, 9), ("pow -1", Op.PowScalar, x => x.Pow(-1), 0.1, 3),
        ("pow 3", Op.PowScalar, x => x.Pow(3), -3, 3), ("pow 1.7", Op.PowScalar, x => x.Pow(1.7), 0, 5), ("clamp", Op.Clamp, x => x.Clamp(-0.3, 0.4), -1, 1),
    ];

    private void UnaryCases()
    {
        int r = S(13, 1024), c = S(7, 4096);
        foreach (var (name, op, run, lo, hi) in FloatUnary)
            Add($"{name} F32", op, DType.F32, Str([r, c]) + " .MT", g => [g.Uniform([c, r], lo, hi)], (x, _) => [run(x[0].MT)]);
        foreach (var (name, op, run, lo, hi) in FloatUnary.Where(u => u.Name is "exp" or "log" or "tanh" or "tanh large" or "gelu" or "gelu tanh" or "erf" or "sigmoid" or "pow 1.7" or "rsqrt"))
            Add($"{name} F64", op, DType.F64, Str([r, c]), g => [g.Uniform([r, c], lo, hi, DType.F64)], (x, _) => [run(x[0])]);
        foreach (var t in new[] { DType.F16, DType.BF16 })
            foreach (var (name, op, run, lo, hi) in FloatUnary.Where(u => u.Name is "exp" or "gelu" or "silu" or "add scalar" or "tanh" or "neg"))
                Add($"{name} {t}", op, t, Str([r, c]) + " .MT", g => [g.Uniform([c, r], lo, Math.Min(hi, 5), t)], (x, _) => [run(x[0].MT)]);
        foreach (var t in new[] { DType.F32, DType.F64 })
            Add($"gelu backward {t}", Op.GeluBackward, t, Str([r, c], [r, c]), g => [g.Uniform([r, c], -2, 2, t), g.Uniform([r, c], -6, 6, t)],
                (x, _) => [Tensor.GeluBackward(x[0], x[1])]);
        var ints = new (string Name, Op Op, Func<Tensor, Tensor> Run, DType T)[]
        {
            ("neg", Op.Neg, x => x.Neg(), DType.I32), ("abs", Op.Abs, x => x.Abs(), DType.I32), ("relu", Op.Relu, x => x.Relu(), DType.I32),
            ("add scalar", Op.AddScalar, x => x.AddScalar(3.9), DType.I32), ("mul scalar", Op.MulScalar, x => x.MulScalar(-2), DType.I32),
            ("clamp", Op.Clamp, x => x.Clamp(-20, 30), DType.I32), ("abs", Op.Abs, x => x.Abs(), DType.I64), ("clamp", Op.Clamp, x => x.Clamp(-5, 1e30), DType.I64),
            ("neg", Op.Neg, x => x.Neg(), DType.I8), ("add scalar", Op.AddScalar, x => x.AddScalar(250), DType.U8),
        };
        foreach (var (name, op, run, t) in ints)
            Add($"{name} {t}", op, t, Str([r, c]) + " .MT", g => [MakeOf(g, [c, r], -100, 100, t)], (x, _) => [run(x[0].MT)]);
    }

    private void BinaryCases()
    {
        int a0 = S(3, 16), b0 = S(5, 256), c0 = S(13, 1024);
        string shape = Str([a0, 1, c0], [b0, 1]);
        var floatOps = new (string Name, Op Op, Func<Tensor, Tensor, Tensor> Run, double BLo, double BHi)[]
        {
            ("add", Op.Add, (a, b) => a + b, -1, 1), ("sub", Op.Sub, (a, b) => a - b, -1, 1), ("mul", Op.Mul, (a, b) => a * b, -1, 1),
            ("div", Op.Div, (a, b) => a / b, 0.5, 2), ("pow", Op.Pow, (a, b) => a.Abs().Pow(b), -2, 2),
            ("maximum", Op.Maximum, (a, b) => a.Maximum(b), -1, 1), ("minimum", Op.Minimum, (a, b) => a.Minimum(b), -1, 1),
        };
        foreach (var t in new[] { DType.F32, DType.F64, DType.F16, DType.BF16 })
            foreach (var (name, op, run, lo, hi) in floatOps)
            {
                if (t != DType.F32 && name is not ("add" or "div" or "mul" or "maximum")) continue;
                Add($"{name} broadcast {t}", op, t, shape, g => [g.Uniform([a0, 1, c0], -2, 2, t), g.Uniform([b0, 1], lo, hi, t)], (x, _) => [run(x[0], x[1])]);
            }
        // In place (output 0 is input 0, as autograd's gradient sums use it), into a strided window.
        Add("add in place F32", Op.Add, DType.F32, Str([a0, b0, c0 + 3], [b0, 1]), g => [g.Uniform([a0, b0, c0 + 3], -2, 2), g.Uniform([b0, 1], -1, 1)],
            (x, _) => [x[0].Clone().Narrow(2, 1, c0).AddInPlace_(x[1])]);
        var intOps = new (string Name, Op Op, Func<Tensor, Tensor, Tensor> Run, DType T)[]
        {
            ("add", Op.Add, (a, b) => a + b, DType.I32), ("sub", Op.Sub, (a, b) => a - b, DType.I32), ("mul", Op.Mul, (a, b) => a * b, DType.I32),
            ("maximum", Op.Maximum, (a, b) => a.Maximum(b), DType.I32), ("minimum", Op.Minimum, (a, b) => a.Minimum(b), DType.I64),
            ("add", Op.Add, (a, b) => a + b, DType.I64), ("add", Op.Add, (a, b) => a + b, DType.U8), ("mul", Op.Mul, (a, b) => a * b, DType.I8),
        };
        foreach (var (name, op, run, t) in intOps)
            Add($"{name} broadcast {t}", op, t, shape, g => [MakeOf(g, [a0, 1, c0], -100, 200, t), MakeOf(g, [b0, 1], -100, 200, t)], (x, _) => [run(x[0], x[1])]);
        var compares = new (string Name, Op Op, Func<Tensor, Tensor, Tensor> Run, DType T)[]
        {
            ("eq", Op.Eq, (a, b) => a.Eq(b), DType.F32), ("ne", Op.Ne, (a, b) => a.Ne(b), DType.F32), ("lt", Op.Lt, (a, b) => a.Lt(b), DType.F32),
            ("le", Op.Le, (a, b) => a.Le(b), DType.F32), ("gt", Op.Gt, (a, b) => a.Gt(b), DType.F32), ("ge", Op.Ge, (a, b) => a.Ge(b), DType.F32),
            ("lt", Op.Lt, (a, b) => a.Lt(b), DType.I64), ("ge", Op.Ge, (a, b) => a.Ge(b), DType.F16), ("eq", Op.Eq, (a, b) => a.Eq(b), DType.BF16),
            ("ne", Op.Ne, (a, b) => a.Ne(b), DType.U8), ("le", Op.Le, (a, b) => a.Le(b), DType.F64), ("gt", Op.Gt, (a, b) => a.Gt(b), DType.I32),
        };
        // Small integers, so that equal values (the edge of every comparison) are common.
        foreach (var (name, op, run, t) in compares)
            Add($"{name} {t}", op, DType.U8, shape, g => [g.Indices([a0, 1, c0], 5, t), g.Indices([b0, 1], 5, t)], (x, _) => [run(x[0], x[1])]);
        foreach (var t in new[] { DType.F32, DType.I64, DType.F16 })
            Add($"where broadcast {t}", Op.Where, t, Str([a0, b0, c0], [c0], [b0, 1]),
                g => [g.Indices([a0, b0, c0], 2, DType.U8), MakeOf(g, [c0], -50, 50, t), MakeOf(g, [b0, 1], -50, 50, t)],
                (x, _) => [Tensor.Where(x[0], x[1], x[2])]);
    }

    // ---- reductions ----

    private void ReduceCases()
    {
        int a = S(5, 64), b = S(7, 256), c = S(9, 257);
        int[] s = [a, b, c];
        string shape = Str(s);
        // Sums of many float32 values: the CPU and the GPU both accumulate in double.
        var sumTol = new Tolerance(1e-5, 1e-5);
        Add("sum rows F32", Op.Sum, DType.F32, shape, g => [g.Uniform(s)], (x, _) => [x[0].Sum(2)], sumTol);
        Add("sum outer F32", Op.Sum, DType.F32, shape, g => [g.Uniform(s)], (x, _) => [x[0].Sum(0)], sumTol);
        Add("sum axes 0,2 F32", Op.Sum, DType.F32, shape, g => [g.Uniform(s)], (x, _) => [x[0].Sum([0, 2], keepDim: true)], sumTol);
        Add("sum all F32", Op.Sum, DType.F32, shape, g => [g.Uniform(s)], (x, _) => [x[0].Sum()], sumTol);
        Add("sum transposed F32", Op.Sum, DType.F32, shape + " .T(0,2)", g => [g.Uniform(s)], (x, _) => [x[0].Transpose(0, 2).Sum(1)], sumTol);
        Add("mean F32", Op.Mean, DType.F32, shape, g => [g.Uniform(s)], (x, _) => [x[0].Mean(1)], sumTol);
        Add("max rows F32", Op.Max, DType.F32, shape, g => [g.Uniform(s)], (x, _) => [x[0].Max(2)], Tolerance.Exact);
        Add("min outer F32", Op.Min, DType.F32, shape, g => [g.Uniform(s)], (x, _) => [x[0].Min(0)], Tolerance.Exact);
        Add("max with NaN F32", Op.Max, DType.F32, shape, g => [g.Uniform(s, -0.05, 1)], (x, _) => [x[0].Log().Max(2), x[0].Log().Min(0)]); // log: a few ulp apart
        Add("var rows F32", Op.Var, DType.F32, shape, g => [g.Uniform(s)], (x, _) => [x[0].Var(2)], sumTol);
        Add("var all biased F32", Op.Var, DType.F32, shape, g => [g.Uniform(s)], (x, _) => [x[0].Var(correction: 0)], sumTol);
        Add("argmax rows F32", Op.ArgMax, DType.I64, shape, g => [g.Uniform(s)], (x, _) => [x[0].ArgMax(2)], Tolerance.Exact);
        Add("argmax outer F32", Op.ArgMax, DType.I64, shape, g => [g.Uniform(s)], (x, _) => [x[0].ArgMax(0)], Tolerance.Exact);
        Add("argmax with NaN and ties F32", Op.ArgMax, DType.I64, shape, g => [g.Uniform(s, -0.02, 1)],
            (x, _) => [x[0].Log().ArgMax(2), x[0].Clamp(0, 0.5).ArgMax(1)], Tolerance.Exact);
        Add("sum F64", Op.Sum, DType.F64, shape, g => [g.Uniform(s, dtype: DType.F64)], (x, _) => [x[0].Sum(1)]);
        Add("sum F16", Op.Sum, DType.F16, shape, g => [g.Uniform(s, dtype: DType.F16)], (x, _) => [x[0].Sum(2)]);
        Add("mean BF16", Op.Mean, DType.BF16, shape, g => [g.Uniform(s, dtype: DType.BF16)], (x, _) => [x[0].Mean(0)]);
        Add("sum I32", Op.Sum, DType.I32, shape, g => [g.Indices(s, 100, DType.I32)], (x, _) => [x[0].Sum(0), x[0].Sum(2)]);
        Add("max I64", Op.Max, DType.I64, shape, g => [g.Indices(s, 1000)], (x, _) => [x[0].Max(1), x[0].Min(2)]);
        Add("argmax I32", Op.ArgMax, DType.I64, shape, g => [g.Indices(s, 10, DType.I32)], (x, _) => [x[0].ArgMax(2)]);
    }

    // ---- matmul ----

    private void MatMulCases()
    {
        int m = S(37, 1024), k = S(29, 1024), n = S(23, 1024);
        var tol = new Tolerance(1e-4, 1e-4);
        Add("matmul F32", Op.MatMul, DType.F32, Str([m, k], [k, n]), g => [g.Uniform([m, k]), g.Uniform([k, n])], (x, _) => [x[0].MatMul(x[1])], tol);
        Add("matmul transposed F32", Op.MatMul, DType.F32, Str([k, m], [n, k]) + " .MT .MT", g => [g.Uniform([k, m]), g.Uniform([n, k])],
            (x, _) => [x[0].MT.MatMul(x[1].MT)], tol);
        int bm = S(9, 256), bk = S(17, 512), bn = S(11, 128);
        Add("matmul batched broadcast F32", Op.MatMul, DType.F32, Str([3, 1, bm, bk], [2, bk, bn]), g => [g.Uniform([3, 1, bm, bk]), g.Uniform([2, bk, bn])],
            (x, _) => [x[0].MatMul(x[1])], tol);
        Add("matmul vector F32", Op.MatMul, DType.F32, Str([k], [k, n]), g => [g.Uniform([k]), g.Uniform([k, n])], (x, _) => [x[0].MatMul(x[1])], tol);
        Add("matmul F64", Op.MatMul, DType.F64, Str([m, k], [k, n]), g => [g.Uniform([m, k], dtype: DType.F64), g.Uniform([k, n], dtype: DType.F64)],
            (x, _) => [x[0].MatMul(x[1])]);
    }

    // ---- block formats (quantized weights) ----

    private void QuantCases()
    {
        // Decoding (a cast from a block format): the CPU's values bit for bit, up to the fused multiply-add a GPU
        // may use for d sc q - dmin m; two rows of blocks are an embedding lookup.
        int r = S(13, 1024), c = S(256, 4096);
        foreach (var format in Quant.BlockFormats.All.Select(f => f.DType).Where(Gpu.Kernels.Quant.QuantDecodeKernels.Decodes))
        {
            Add($"decode {format}->F32", Op.Copy, DType.F32, Str([r, c]) + " " + format, g => [g.Blocks([r, c], format)],
                (x, _) => [x[0].To(DType.F32), x[0].Narrow(0, 3, 2).To(DType.F32)], new Tolerance(1e-6, 1e-6));
            if (format is DType.Q4_0 or DType.Q4_K)
                foreach (var to in new[] { DType.F16, DType.BF16 })
                    Add($"decode {format}->{to}", Op.Copy, to, Str([r, c]) + " " + format, g => [g.Blocks([r, c], format)], (x, _) => [x[0].To(to)]);
        }

        // QMatMul: up to 8 token rows run the GPU's GEMV, more its tensor-core GEMM; every weight format in float32 at
        // one row and at qm rows, the three 16-bit-or-not activation dtypes and the GEMV's row counts on Q4_0, Q8_0 and
        // Q4_K. The CPU rounds activations to 8 bits for its integer dot products (uniform inputs in [-1, 1): an error
        // of std ~0.0013 per product, so ~0.0013 sqrt(K) per output) and the GEMM rounds operands to bf16/f16, so the
        // tolerance is that rounding's, not float32's: 0.01 sqrt(K) absolute is about 7 standard deviations.
        int qm = S(21, 512), qk = S(96, 4096), qn = S(23, 4096);
        foreach (var format in Quant.BlockFormats.All)
        {
            int k = (qk + format.BlockSize - 1) / format.BlockSize * format.BlockSize;
            var tol = new Tolerance(3e-2, 0.01 * Math.Sqrt(k));
            var runs = format.DType switch
            {
                DType.Q4_0 => new (DType DType, int Rows)[] { (DType.F32, 1), (DType.F32, 3), (DType.F32, 8), (DType.F32, qm), (DType.F16, 1), (DType.F16, qm), (DType.BF16, 1), (DType.BF16, qm) },
                DType.Q8_0 or DType.Q4_K => [(DType.F32, 1), (DType.F32, qm), (DType.F16, 1), (DType.BF16, qm)],
                _ => [(DType.F32, 1), (DType.F32, qm)],
            };
            foreach (var (dtype, rows) in runs)
                Add($"qmatmul {format.Name} {dtype} M={rows}", Op.QMatMul, dtype, Str([rows, k], [qn, k]) + " " + format.Name,
                    g => [g.Uniform([rows, k], dtype: dtype), g.Blocks([qn, k], format.DType)], (x, _) => [x[0].QMatMul(x[1])], tol);
        }
        // 16-bit weights kept as stored (a Linear over F16/BF16 weights with float32 activations): float32 products.
        var halfTol = new Tolerance(3e-2, 0.01 * Math.Sqrt(qk));
        foreach (var half in new[] { DType.F16, DType.BF16 })
            foreach (int rows in new[] { 1, qm })
                Add($"qmatmul {half} M={rows}", Op.QMatMul, DType.F32, Str([rows, qk], [qn, qk]) + " " + half,
                    g => [g.Uniform([rows, qk]), g.Uniform([qn, qk]).To(half)], (x, _) => [x[0].QMatMul(x[1])], halfTol);
    }

    // ---- softmax and norms ----

    private void NnCases()
    {
        int r = S(9, 1024), c = S(131, 4096);
        Add("softmax F32", Op.Softmax, DType.F32, Str([r, c]), g => [g.Uniform([r, c], -8, 8)], (x, _) => [x[0].Softmax()]);
        int r0 = S(37, 1024), c0 = S(5, 4096);
        Add("log softmax axis 0 F32", Op.LogSoftmax, DType.F32, Str([r0, c0]), g => [g.Uniform([r0, c0], -8, 8)], (x, _) => [x[0].LogSoftmax(0)]);
        Add("softmax F64", Op.Softmax, DType.F64, Str([r, c]), g => [g.Uniform([r, c], -8, 8, DType.F64)], (x, _) => [x[0].Softmax(), x[0].LogSoftmax()]);
        foreach (var t in new[] { DType.F32, DType.F64 })
        {
            Add($"layer norm {t}", Op.LayerNorm, t, Str([r, c], [c], [c]), g => [g.Uniform([r, c], -2, 3, t), g.Uniform([c], 0.5, 1.5, t), g.Uniform([c], -1, 1, t)],
                (x, _) => [x[0].LayerNorm(x[1], x[2]), x[0].MT.MT.LayerNorm(null, null)]);
            Add($"rms norm {t}", Op.RmsNorm, t, Str([r, c], [c]), g => [g.Uniform([r, c], -2, 3, t), g.Uniform([c], 0.5, 1.5, t)],
                (x, _) => [x[0].RmsNorm(x[1]), x[0].RmsNorm(null)]);
            // Backward ops take the forward's saved statistics; they are recomputed here with reductions.
            Add($"layer norm backward {t}", Op.LayerNormBackward, t, Str([r, c], [c]), g => [g.Uniform([r, c], -1, 1, t), g.Uniform([r, c], -2, 3, t), g.Uniform([c], 0.5, 1.5, t)],
                (x, _) =>
                {
                    var mean = x[1].Mean(-1);
                    var rstd = x[1].Var(-1, correction: 0).AddScalar(1e-5).Rsqrt();
                    var (dx, dw, db) = Tensor.LayerNormBackward(x[0], x[1], x[2], mean, rstd, new NormAttrs(1e-5));
                    var (dx0, _, _) = Tensor.LayerNormBackward(x[0], x[1], x[1].None(), mean, rstd, new NormAttrs(1e-5));
                    return [dx, dw, db, dx0];
                }, t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
            Add($"rms norm backward {t}", Op.RmsNormBackward, t, Str([r, c], [c]), g => [g.Uniform([r, c], -1, 1, t), g.Uniform([r, c], -2, 3, t), g.Uniform([c], 0.5, 1.5, t)],
                (x, _) =>
                {
                    var rstd = x[1].Square().Mean(-1).AddScalar(1e-5).Rsqrt();
                    var (dx, dw) = Tensor.RmsNormBackward(x[0], x[1], x[2], rstd, new NormAttrs(1e-5));
                    return [dx, dw];
                }, t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
        }
    }

    // ---- detector blocks (leaky ReLU, batch norm): a GPU without their kernels runs the composites ----

    private void DetectorCases()
    {
        int n = S(3, 16), c = S(5, 64), h = S(7, 80), w = S(9, 80);
        foreach (var t in new[] { DType.F32, DType.F64 })
        {
            Add($"leaky relu {t}", LeakyReluOps.LeakyRelu, t, Str([n, c, h, w]), g => [g.Uniform([n, c, h, w], -3, 3, t)],
                (x, _) => [x[0].LeakyRelu(0.1), x[0].LeakyRelu(0.01)]);
            Add($"batch norm 2d {t}", BatchNormOps.BatchNorm2d, t, Str([n, c, h, w], [c], [c]),
                g => [g.Uniform([n, c, h, w], -2, 3, t), g.Uniform([c], 0.5, 1.5, t), g.Uniform([c], -1, 1, t)],
                (x, _) =>
                {
                    var (y, mean, invstd) = x[0].BatchNorm2d(x[1], x[2]);
                    return [y, mean, invstd, x[0].BatchNorm2d(null, null).Y];
                }, t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
            Add($"leaky relu backward {t}", LeakyReluOps.LeakyReluBackward, t, Str([n, c, h, w], [n, c, h, w]),
                g => [g.Uniform([n, c, h, w], -1, 1, t), g.Uniform([n, c, h, w], -3, 3, t)],
                (x, _) => [Tensor.Apply(LeakyReluOps.LeakyReluBackward, new ScalarAttrs(0.1), x[0], x[1])[0]]);
            Add($"silu backward {t}", SiluBackwardOps.SiluBackward, t, Str([n, c, h, w], [n, c, h, w]),
                g => [g.Uniform([n, c, h, w], -1, 1, t), g.Uniform([n, c, h, w], -8, 8, t)],
                (x, _) => [Tensor.Apply(SiluBackwardOps.SiluBackward, null, x[0], x[1])[0]], t == DType.F32 ? new Tolerance(1e-5, 1e-6) : null);
            Add($"bce with logits {t}", BceWithLogitsOps.BceWithLogits, t, Str([n, c, h, w], [n, c, h, w]),
                g => [g.Uniform([n, c, h, w], -20, 20, t), g.Uniform([n, c, h, w], 0, 1, t)],
                (x, _) => [x[0].BceWithLogits(x[1])], t == DType.F32 ? new Tolerance(1e-5, 1e-6) : null);
            Add($"bce with logits backward {t}", BceWithLogitsOps.BceWithLogitsBackward, t, Str([n, c, h, w], [n, c, h, w], [n, c, h, w]),
                g => [g.Uniform([n, c, h, w], -20, 20, t), g.Uniform([n, c, h, w], 0, 1, t), g.Uniform([n, c, h, w], -1, 1, t)],
                (x, _) => [Tensor.Apply(BceWithLogitsOps.BceWithLogitsBackward, null, x[0], x[1], x[2])[0]], t == DType.F32 ? new Tolerance(1e-5, 1e-6) : null);
            Add($"batch norm 2d backward {t}", BatchNormOps.BatchNorm2dBackward, t, Str([n, c, h, w], [n, c, h, w], [c]),
                g => [g.Uniform([n, c, h, w], -1, 1, t), g.Uniform([n, c, h, w], -2, 3, t), g.Uniform([c], 0.5, 1.5, t)],
                (x, _) =>
                {
                    var (_, mean, invstd) = x[1].BatchNorm2d(null, null);
                    var r = Tensor.Apply(BatchNormOps.BatchNorm2dBackward, null, x[0], x[1], x[2], mean, invstd);
                    var plain = Tensor.Apply(BatchNormOps.BatchNorm2dBackward, null, x[0], x[1], x[1].None(), mean, invstd);
                    return [r[0], r[1], r[2], plain[0]];
                }, t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
            // Batch norm fused with SiLU (YOLO's conv block): bias alone, no affine, and the backward with and without weight and bias.
            Add($"batch norm silu 2d {t}", BatchNormSiluOps.BatchNormSilu2d, t, Str([n, c, h, w], [c], [c]),
                g => [g.Uniform([n, c, h, w], -2, 3, t), g.Uniform([c], 0.5, 1.5, t), g.Uniform([c], -1, 1, t)],
                (x, _) =>
                {
                    var (z, mean, invstd) = x[0].BatchNormSilu2d(x[1], x[2]);
                    return [z, mean, invstd, x[0].BatchNormSilu2d(null, x[2]).Z, x[0].BatchNormSilu2d(null, null).Z];
                }, t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
            Add($"batch norm silu 2d backward {t}", BatchNormSiluOps.BatchNormSilu2dBackward, t, Str([n, c, h, w], [n, c, h, w], [c], [c]),
                g => [g.Uniform([n, c, h, w], -1, 1, t), g.Uniform([n, c, h, w], -2, 3, t), g.Uniform([c], 0.5, 1.5, t), g.Uniform([c], -1, 1, t)],
                (x, _) =>
                {
                    var (_, mean, invstd) = x[1].BatchNorm2d(null, null);
                    var r = Tensor.Apply(BatchNormSiluOps.BatchNormSilu2dBackward, null, x[0], x[1], x[2], x[3], mean, invstd);
                    var plain = Tensor.Apply(BatchNormSiluOps.BatchNormSilu2dBackward, null, x[0], x[1], x[1].None(), x[1].None(), mean, invstd);
                    return [r[0], r[1], r[2], plain[0]];
                }, t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
            // Group norm (the diffusion U-Net's): 3 groups of an odd channel count, and a 3-D (N, C, L) input.
            int gc = 3 * S(3, 8);
            Add($"group norm {t}", GroupNormOps.GroupNorm, t, Str([n, gc, h, w], [gc], [gc]),
                g => [g.Uniform([n, gc, h, w], -2, 3, t), g.Uniform([gc], 0.5, 1.5, t), g.Uniform([gc], -1, 1, t)],
                (x, _) => [x[0].GroupNorm(3, x[1], x[2]), x[0].GroupNorm(gc, null, null), x[0].Reshape(n, gc, -1).GroupNorm(1, x[1], null)],
                t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
            Add($"group norm backward {t}", GroupNormOps.GroupNormBackward, t, Str([n, gc, h, w], [n, gc, h, w], [gc]),
                g => [g.Uniform([n, gc, h, w], -1, 1, t), g.Uniform([n, gc, h, w], -2, 3, t), g.Uniform([gc], 0.5, 1.5, t)],
                (x, _) =>
                {
                    var stats = Tensor.Apply(GroupNormOps.GroupNorm, new GroupNormAttrs(3), x[1], x[1].None(), x[1].None());
                    var r = Tensor.Apply(GroupNormOps.GroupNormBackward, null, x[0], x[1], x[2], stats[1], stats[2]);
                    var plain = Tensor.Apply(GroupNormOps.GroupNormBackward, null, x[0], x[1], x[1].None(), stats[1], stats[2]);
                    return [r[0], r[1], r[2], plain[0]];
                }, t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
            // Conv + SiLU (YOLO's folded conv block): 3x3 stride 2 with a bias, 1x1 without, grouped 3x3.
            Add($"conv2d silu {t}", ConvSiluOps.Conv2dSilu, t, Str([n, 4, h, w], [6, 4, 3, 3], [6]),
                g => [g.Uniform([n, 4, h, w], -2, 2, t), g.Uniform([6, 4, 3, 3], -0.5, 0.5, t), g.Uniform([6], -1, 1, t), g.Uniform([6, 2, 3, 3], -0.5, 0.5, t)],
                (x, _) => [Tensor.Conv2dSilu(x[0], x[1], x[2], new Conv2dAttrs(2, 2, 1, 1)), Tensor.Conv2dSilu(x[0], x[1].Narrow(2, 1, 1).Narrow(3, 1, 1).Contiguous(), null, new Conv2dAttrs(1, 1, 0, 0)),
                    Tensor.Conv2dSilu(x[0], x[3], x[2], new Conv2dAttrs(1, 1, 1, 1, Groups: 2))],
                t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
            // Group norm fused with SiLU (the U-Net's pre-activation): 3 groups, a 3-D input, and the backward with and without weight and bias.
            Add($"group norm silu {t}", GroupNormSiluOps.GroupNormSilu, t, Str([n, gc, h, w], [gc], [gc]),
                g => [g.Uniform([n, gc, h, w], -2, 3, t), g.Uniform([gc], 0.5, 1.5, t), g.Uniform([gc], -1, 1, t)],
                (x, _) => [x[0].GroupNormSilu(3, x[1], x[2]), x[0].GroupNormSilu(gc, null, null), x[0].Reshape(n, gc, -1).GroupNormSilu(1, x[1], x[2])],
                t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
            Add($"group norm silu backward {t}", GroupNormSiluOps.GroupNormSiluBackward, t, Str([n, gc, h, w], [n, gc, h, w], [gc], [gc]),
                g => [g.Uniform([n, gc, h, w], -1, 1, t), g.Uniform([n, gc, h, w], -2, 3, t), g.Uniform([gc], 0.5, 1.5, t), g.Uniform([gc], -1, 1, t)],
                (x, _) =>
                {
                    var stats = Tensor.Apply(GroupNormOps.GroupNorm, new GroupNormAttrs(3), x[1], x[1].None(), x[1].None());
                    var r = Tensor.Apply(GroupNormSiluOps.GroupNormSiluBackward, null, x[0], x[1], x[2], x[3], stats[1], stats[2]);
                    var plain = Tensor.Apply(GroupNormSiluOps.GroupNormSiluBackward, null, x[0], x[1], x[1].None(), x[1].None(), stats[1], stats[2]);
                    return [r[0], r[1], r[2], plain[0]];
                }, t == DType.F32 ? new Tolerance(1e-4, 2e-5) : null);
        }
    }

    // ---- sequence scans (Mamba's selective scan, RWKV-6's WKV) ----

    private void ScanCases()
    {
        // Lengths not a multiple of the chunk, odd state and head sizes; Δ > 0 and A < 0, logw < 0, as the models give them.
        int b = 2, l = S(19, 256), d = S(7, 512), n = S(5, 16);
        foreach (var t in new[] { DType.F32, DType.F64 })
            Add($"selective scan {t}", ScanOps.SelectiveScan, t, Str([b, l, d], [d, n], [b, l, n], [d]),
                g => [g.Uniform([b, l, d], dtype: t), g.Uniform([b, l, d], 0.01, 0.5, t), g.Uniform([d, n], -2, -0.1, t), g.Uniform([b, l, n], dtype: t),
                      g.Uniform([b, l, n], dtype: t), g.Uniform([d], dtype: t)],
                (x, _) => [Tensor.SelectiveScan(x[0], x[1], x[2], x[3], x[4], x[5], chunk: 8)], t == DType.F32 ? new Tolerance(1e-4, 1e-5) : null);
        foreach (var t in new[] { DType.F32, DType.F64 })
            Add($"selective scan backward {t}", [ScanOps.SelectiveScanBackward], t, Str([b, l, d], [d, n], [b, l, n], [d]),
                g => [g.Uniform([b, l, d], dtype: t), g.Uniform([b, l, d], 0.01, 0.5, t), g.Uniform([d, n], -2, -0.1, t), g.Uniform([b, l, n], dtype: t),
                      g.Uniform([b, l, n], dtype: t), g.Uniform([d], dtype: t), g.Uniform([b, l, d], dtype: t)],
                (x, _) =>
                {
                    var fwd = Tensor.Apply(ScanOps.SelectiveScan, new SelectiveScanAttrs(8), x[..6]);
                    return Tensor.Apply(ScanOps.SelectiveScanBackward, new SelectiveScanAttrs(8), [x[6], .. x[..6], fwd[1]]);
                }, t == DType.F32 ? new Tolerance(1e-4, 1e-4) : null);
        int h = S(3, 8), k = S(5, 64), tt = S(13, 256);
        foreach (var t in new[] { DType.F32, DType.F64 })
            Add($"wkv6 {t}", WkvOps.Wkv6, t, Str([b, tt, h, k], [h, k]),
                g => [g.Uniform([b, tt, h, k], dtype: t), g.Uniform([b, tt, h, k], dtype: t), g.Uniform([b, tt, h, k], dtype: t),
                      g.Uniform([b, tt, h, k], -2, -0.01, t), g.Uniform([h, k], dtype: t)],
                (x, _) => [Tensor.Wkv6(x[0], x[1], x[2], x[3], x[4], chunk: 4)], t == DType.F32 ? new Tolerance(1e-4, 1e-5) : null);
        foreach (var t in new[] { DType.F32, DType.F64 })
            Add($"wkv6 backward {t}", [WkvOps.Wkv6Backward], t, Str([b, tt, h, k], [h, k]),
                g => [g.Uniform([b, tt, h, k], dtype: t), g.Uniform([b, tt, h, k], dtype: t), g.Uniform([b, tt, h, k], dtype: t),
                      g.Uniform([b, tt, h, k], -2, -0.01, t), g.Uniform([h, k], dtype: t), g.Uniform([b, tt, h, k], dtype: t)],
                (x, _) =>
                {
                    var fwd = Tensor.Apply(WkvOps.Wkv6, new WkvAttrs(4), x[..5]);
                    return Tensor.Apply(WkvOps.Wkv6Backward, new WkvAttrs(4), [x[5], .. x[..5], fwd[1]]);
                }, t == DType.F32 ? new Tolerance(1e-4, 1e-4) : null);
    }

    // ---- indexing ----

    private void IndexCases()
    {
        int v = S(11, 50257), d = S(6, 768), n = S(13, 4096);
        Add("index select axis 0 F32", Op.IndexSelect, DType.F32, Str([v, d], [n]), g => [g.Uniform([v, d]), g.Indices([n], v)], (x, _) => [x[0].IndexSelect(0, x[1])]);
        Add("index select axis 1 F16 I32", Op.IndexSelect, DType.F16, Str([d, v], [n]), g => [g.Uniform([d, v], dtype: DType.F16), g.Indices([n], v, DType.I32)],
            (x, _) => [x[0].IndexSelect(1, x[1])]);
        Add("embedding I64 ids", Op.IndexSelect, DType.F32, Str([v, d], [2, n]), g => [g.Uniform([v, d]), g.Indices([2, n], v)], (x, _) => [Tensor.Embedding(x[0], x[1])]);
        Add("index add repeated F32", Op.IndexAdd, DType.F32, Str([v, d], [n], [n, d]), g => [g.Uniform([v, d]), g.Indices([n], Math.Min(v, 5)), g.Uniform([n, d])],
            (x, _) => [x[0].Clone().IndexAdd_(0, x[1], x[2])]);
        Add("index add axis 1 F64 I32", Op.IndexAdd, DType.F64, Str([d, v], [n], [d, n]), g => [g.Uniform([d, v], dtype: DType.F64), g.Indices([n], v, DType.I32), g.Uniform([d, n], dtype: DType.F64)],
            (x, _) => [x[0].Clone().IndexAdd_(1, x[1], x[2])]);
        int r = S(5, 512), c = S(9, 1000), k = S(4, 300);
        Add("gather axis 1 F32", Op.Gather, DType.F32, Str([r, c], [r, k]), g => [g.Uniform([r, c]), g.Indices([r, k], c)], (x, _) => [x[0].Gather(1, x[1])]);
        Add("gather axis 0 I64 I32", Op.Gather, DType.I64, Str([r, c], [3, c]), g => [g.Indices([r, c], 1000), g.Indices([3, c], r, DType.I32)], (x, _) => [x[0].Gather(0, x[1])]);
        Add("scatter add axis 1 F32", Op.ScatterAdd, DType.F32, Str([r, c], [r, k]), g => [g.Uniform([r, c]), g.Indices([r, k], c), g.Uniform([r, k])],
            (x, _) => [x[0].Clone().ScatterAdd_(1, x[1], x[2])]);
        Add("scatter add axis 0 F64", Op.ScatterAdd, DType.F64, Str([r, c], [3, c]), g => [g.Uniform([r, c], dtype: DType.F64), g.Indices([3, c], r), g.Uniform([3, c], dtype: DType.F64)],
            (x, _) => [x[0].Clone().ScatterAdd_(0, x[1], x[2])]);
        // Mixture-of-experts combine: T tokens, k = 3 choices each, gathered from S expert rows (repeats allowed).
        int tokens = S(11, 4096), experts = S(7, 1024), width = S(5, 768);
        foreach (var t in new[] { DType.F32, DType.F64 })
            Add($"moe combine k=3 {t}", MoeOps.MoeCombine, t, Str([3 * experts, width], [tokens, 3], [tokens, 3]),
                g => [g.Uniform([3 * experts, width], dtype: t), g.Indices([tokens, 3], 3 * experts, DType.I32), g.Uniform([tokens, 3], 0, 1, t)],
                (x, _) => [x[0].MoeCombine(x[1], x[2])]);
    }

    // ---- loss ----

    private void LossCases()
    {
        int n = S(13, 2048), c = S(29, 32000);
        // Every fifth target is the ignore index.
        Tensor Targets(CaseInputs g, DType t)
        {
            var ids = g.Indices([n], c).ToArray<long>();
            for (int i = 0; i < n; i += 5) ids[i] = -100;
            return Tensor.FromArray(ids).To(t);
        }
        foreach (var (t, idx) in new[] { (DType.F32, DType.I64), (DType.F64, DType.I32) })
        {
            Add($"cross entropy {t} {idx}", Op.CrossEntropy, t, Str([n, c], [n]), g => [g.Uniform([n, c], -4, 4, t), Targets(g, idx)],
                (x, _) => [Tensor.CrossEntropy(x[0], x[1])], t == DType.F32 ? new Tolerance(1e-5, 1e-5) : null);
            Add($"cross entropy backward {t} {idx}", Op.CrossEntropyBackward, t, Str([n, c], [n]), g => [g.Uniform([n, c], -4, 4, t), Targets(g, idx)],
                (x, d) =>
                {
                    var lse = x[0].Exp().Sum(1).Log();
                    var dloss = Tensor.Scalar(1.7, t, d);
                    return [Tensor.CrossEntropyBackward(dloss, x[0], x[1], lse, new CrossEntropyAttrs())];
                });
        }
    }

    // ---- convolution and pooling ----

    private void ConvPoolCases()
    {
        int batch = S(2, 8), ch = S(4, 64), h = S(9, 56), w = S(7, 56), o = S(6, 64);
        var convs = new (string Name, int[] X, int[] W, Conv2dAttrs A, bool Bias)[]
        {
            ("conv stride 2 pad 1 groups 2", [batch, ch, h, w], [o, ch / 2, 3, 3], new Conv2dAttrs(2, 2, 1, 1, 1, 1, 2), true),
            ("conv dilation 2", [batch, ch, h, w], [o, ch, 3, 2], new Conv2dAttrs(1, 1, 2, 1, 2, 1, 1), false),
            ("conv pointwise", [batch, ch, h, w], [o, ch, 1, 1], new Conv2dAttrs(1, 1, 0, 0), true),
        };
        var tol = new Tolerance(1e-4, 1e-4);
        foreach (var (name, xs, ws, a, bias) in convs)
        {
            foreach (var t in new[] { DType.F32, DType.F64 })
            {
                if (t == DType.F64 && name != "conv stride 2 pad 1 groups 2") continue;
                var tl = t == DType.F32 ? tol : Tolerance.For(t);
                Add($"{name} {t}", Op.Conv2d, t, Str(xs, ws), g => [g.Uniform(xs, dtype: t), g.Uniform(ws, dtype: t), g.Uniform([ws[0]], dtype: t)],
                    (x, _) => [Tensor.Conv2d(x[0], x[1], bias ? x[2] : null, a)], tl);
                Add($"{name} backward {t}", [Op.Conv2dBackwardInput, Op.Conv2dBackwardWeight], t, Str(xs, ws), g => [g.Uniform(xs, dtype: t), g.Uniform(ws, dtype: t)],
                    (x, d) =>
                    {
                        var y = Tensor.Conv2d(x[0], x[1], null, a);
                        var dy = Tensor.Rand(y.Shape, new Generator(99), -1, 1, t, Device.Cpu).To(d);
                        return [Tensor.Conv2dBackwardInput(dy, x[1], xs, a), Tensor.Conv2dBackwardWeight(dy, x[0], ws, a)];
                    }, tl);
            }
        }
        int[] ps = [batch, S(3, 64), S(9, 56), S(8, 56)];
        foreach (var t in new[] { DType.F32, DType.F64 })
        {
            foreach (var p in new[] { new Pool2dAttrs(3, 3, 2, 2, 1, 1), new Pool2dAttrs(2, 2, 2, 2, 0, 0) })
            {
                string tag = $"k{p.KernelH} s{p.StrideH} p{p.PadH}";
                Add($"max pool {tag} {t}", [Op.MaxPool2d, Op.MaxPool2dBackward], t, Str(ps), g => [g.Uniform(ps, dtype: t)], (x, d) =>
                {
                    var (y, argmax) = MaxPool(x[0], p);
                    var dy = Tensor.Rand(y.Shape, new Generator(98), -1, 1, t, Device.Cpu).To(d);
                    return [y, argmax, Tensor.MaxPool2dBackward(dy, argmax, ps, p)];
                });
                Add($"avg pool {tag} {t}", [Op.AvgPool2d, Op.AvgPool2dBackward], t, Str(ps), g => [g.Uniform(ps, dtype: t)], (x, d) =>
                {
                    var y = x[0].AvgPool2d(p);
                    var dy = Tensor.Rand(y.Shape, new Generator(97), -1, 1, t, Device.Cpu).To(d);
                    return [y, Tensor.AvgPool2dBackward(dy, ps, p)];
                });
            }
            foreach (int s in new[] { 2, 3 })
                Add($"upsample x{s} {t}", [Op.UpsampleNearest2d, Op.UpsampleNearest2dBackward], t, Str(ps), g => [g.Uniform(ps, dtype: t)], (x, d) =>
                {
                    var y = x[0].UpsampleNearest2d(s);
                    var dy = Tensor.Rand(y.Shape, new Generator(96), -1, 1, t, Device.Cpu).To(d);
                    return [y, Tensor.UpsampleNearest2dBackward(dy, s)];
                });
        }
    }

    /// <summary>Max pooling through the backend, to get the argmax output that the front end keeps for autograd.</summary>
    private static (Tensor Y, Tensor Argmax) MaxPool(Tensor x, Pool2dAttrs p)
    {
        var shape = x.MaxPool2d(p).Shape;
        var y = Tensor.Empty(shape, x.DType, x.Device);
        var argmax = Tensor.Empty(shape, DType.I32, x.Device);
        x.Backend.Execute(Op.MaxPool2d, [x], [y, argmax], p);
        return (y, argmax);
    }

    // ---- optimizer ----

    // ---- fused attention ----

    private void AttentionCases()
    {
        int b = S(2, 4), h = S(4, 16), t = S(13, 1024), d = S(16, 64);
        foreach (var (hkv, causal) in new[] { (h, true), (h / 2, true), (h, false) })
            Add($"attention {(causal ? "causal" : "full")} GQA {h / hkv} F32", Op.Attention, DType.F32, Str([b, h, t, d], [b, hkv, t + 3, d]),
                g => [g.Uniform([b, h, t, d]), g.Uniform([b, hkv, t + 3, d]), g.Uniform([b, hkv, t + 3, d])],
                (x, _) => [Tensor.Attention(x[0], x[1], x[2], causal)]);
        int cache = S(37, 4096);
        Add("attention decode (one query, long cache) F32", Op.Attention, DType.F32, Str([b, h, 1, d], [b, h / 2, cache, d]),
            g => [g.Uniform([b, h, 1, d]), g.Uniform([b, h / 2, cache, d]), g.Uniform([b, h / 2, cache, d])],
            (x, _) => [Tensor.Attention(x[0], x[1], x[2], causal: true)]);
        // The backward takes the forward's row log-sum-exp; it is recomputed here with plain ops.
        Add("attention backward causal F32", Op.AttentionBackward, DType.F32, Str([b, h, t, d]),
            g => [g.Uniform([b, h, t, d]), g.Uniform([b, h, t, d]), g.Uniform([b, h, t, d]), g.Uniform([b, h, t, d])],
            (x, dev) =>
            {
                var (q, k, v, dout) = (x[0], x[1], x[2], x[3]);
                double scale = 1 / Math.Sqrt(d);
                var mask = new double[t * t];
                for (int i = 0; i < t; i++) for (int j = i + 1; j < t; j++) mask[i * t + j] = double.NegativeInfinity;
                var scores = q.MatMul(k.MT).MulScalar(scale) + Tensor.FromArray(mask, [t, t]).To(DType.F32).To(dev);
                var max = scores.Max(-1, keepDim: true);
                var lse = ((scores - max).Exp().Sum(-1, keepDim: true).Log() + max).Reshape(b, h, t);
                var output = Tensor.Attention(q, k, v, causal: true);
                var (dq, dk, dv) = Tensor.AttentionBackward(dout, q, k, v, output, lse, new AttentionAttrs(true, scale, 0, 0, 0));
                return [dq, dk, dv];
            }, new Tolerance(1e-4, 2e-5));
        // Attention straight from a packed (B, T, 3C) projection, forward and backward.
        int c = h * d;
        Add("qkv attention causal F32", QkvAttentionOps.QkvAttention, DType.F32, Str([b, t, 3 * c]),
            g => [g.Uniform([b, t, 3 * c])],
            (x, _) => [Tensor.QkvAttention(x[0], h, causal: true)]);
        Add("qkv attention backward causal F32", QkvAttentionOps.QkvAttentionBackward, DType.F32, Str([b, t, 3 * c], [b, t, c]),
            g => [g.Uniform([b, t, 3 * c]), g.Uniform([b, t, c])],
            (x, _) =>
            {
                var attrs = new QkvAttentionAttrs(h, new AttentionAttrs(true, 1 / Math.Sqrt(d)));
                var outputs = Tensor.Apply(QkvAttentionOps.QkvAttention, attrs, x[0]); // y and lse
                return [Tensor.QkvAttentionBackward(x[1], x[0], outputs[0], outputs[1], attrs)];
            }, new Tolerance(1e-4, 2e-5));
    }

    private void OptimCases()
    {
        int n = S(37, 1 << 22);
        foreach (var t in new[] { DType.F32, DType.F64 })
            Add($"adamw step {t}", Op.AdamWStep, t, Str([n]), g => [g.Uniform([n], dtype: t), g.Uniform([n], dtype: t), g.Uniform([n], -0.1, 0.1, t), g.Uniform([n], 0, 0.01, t)],
                (x, _) =>
                {
                    var (p, m, v) = (x[0].Clone(), x[2].Clone(), x[3].Clone());
                    Tensor.AdamWStep_(p, x[1], m, v, new AdamWAttrs(1e-3, 0.9, 0.999, 1e-8, 0.01, 3));
                    return [p, m, v];
                });
    }
}
