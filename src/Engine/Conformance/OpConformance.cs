using System.Diagnostics;

namespace ManagedTensor.Conformance;

/// <summary>How big the cases are: small and odd for the CPU accelerator in CI, realistic for a GPU.</summary>
public enum CaseScale
{
    Small,
    Realistic,
}

/// <summary>|device - reference| &lt;= Atol + Rtol |reference| for every element (NaN matches NaN, equal infinities match).</summary>
public readonly record struct Tolerance(double Rtol, double Atol)
{
    public static readonly Tolerance Exact = new(0, 0);

    /// <summary>
    /// Presets per dtype. F32 leaves room for a different summation order and for the GPU's exp/log
    /// approximations (a few ulp); F16/BF16 for a one-ulp flip of the final rounding; integers are exact.
    /// </summary>
    public static Tolerance For(DType dtype) => dtype switch
    {
        DType.F64 => new(1e-9, 1e-12),
        DType.F32 => new(2e-5, 2e-6),
        DType.F16 => new(2e-3, 1e-3),
        DType.BF16 => new(1.6e-2, 8e-3),
        _ => Exact,
    };
}

/// <summary>
/// One conformance case: inputs made on the CPU from a seeded generator, the same front-end calls run
/// on the CPU reference and on the device under test (inputs copied there first), every output compared.
/// <see cref="Run"/> may build views (transposes, slices, broadcasts) of its inputs, so non-contiguous
/// inputs are exercised exactly as a model would produce them. <see cref="Ops"/> lists every op the case checks.
/// </summary>
public sealed record OpCase(string Name, IReadOnlyList<Op> Ops, DType DType, string Shape, Func<CaseInputs, Tensor[]> Inputs, Func<Tensor[], Device, Tensor[]> Run, Tolerance Tolerance)
{
    /// <summary>The op the case is about (the first of <see cref="Ops"/>; backward cases also run their forward op).</summary>
    public Op Op => Ops[0];
}

/// <summary>Seeded inputs for one case (always on the CPU).</summary>
public sealed class CaseInputs(ulong seed)
{
    private readonly Generator _gen = new(seed);

    public Tensor Uniform(int[] shape, double lo = -1, double hi = 1, DType dtype = DType.F32)
    {
        var t = Tensor.Rand(shape, _gen, lo, hi, dtype == DType.F64 ? DType.F64 : DType.F32);
        return t.To(dtype);
    }

    public Tensor Normal(int[] shape, double std = 1, DType dtype = DType.F32) =>
        Tensor.Randn(shape, _gen, 0, std, dtype == DType.F64 ? DType.F64 : DType.F32).To(dtype);

    /// <summary>
    /// A weight in block format <paramref name="format"/>: uniform values encoded where the format has an encoder,
    /// otherwise random bytes with the format's f16 scales set to small finite values (any such bytes are a valid
    /// block; Q4_K keeps d and dmin in its first two 16-bit words).
    /// </summary>
    public Tensor Blocks(int[] shape, DType format)
    {
        var f = Quant.BlockFormats.Get(format);
        if (f.Encode is not null) return Uniform(shape).To(format);
        int[] scaleWords = format switch
        {
            DType.Q4_K => [0, 1],
            _ => throw new NotSupportedException($"no random {format} blocks: give the format an encoder or its scale offsets here"),
        };
        var bytes = new byte[f.ByteCount(shape.Aggregate(1L, (a, b) => a * b))];
        for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)_gen.NextInt(256);
        for (int b = 0; b < bytes.Length; b += f.BlockBytes)
            foreach (int w in scaleWords)
                System.Buffers.Binary.BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(b + 2 * w), (Half)(0.001 + 0.01 * _gen.NextInt(1000) / 1000.0));
        return Tensor.FromBlocks(bytes, shape, format);
    }

    /// <summary>Integers in [0, n) as <paramref name="dtype"/>.</summary>
    public Tensor Indices(int[] shape, int n, DType dtype = DType.I64)
    {
        var v = new long[shape.Aggregate(1, (a, b) => a * b)];
        for (int i = 0; i < v.Length; i++) v[i] = _gen.NextInt(n);
        return Tensor.FromArray(v, shape).To(dtype);
    }
}

/// <summary>The outcome of one case on one device.</summary>
public sealed record CaseResult(OpCase Case, bool Passed, double MaxAbsError, double MaxRelError, TimeSpan DeviceTime, string? Error);

/// <summary>
/// The op conformance suite: every op of the op set (src/Engine/Op.cs), on the dtypes each backend
/// supports, at odd shapes, with broadcasting and non-contiguous inputs, GPU against the CPU reference.
/// The xunit tests run it on ILGPU's CPU accelerator (<see cref="CaseScale.Small"/>); `mt selftest
/// --device cuda` runs it on a GPU at realistic sizes.
/// </summary>
public static class OpConformance
{
    public static IReadOnlyList<OpCase> Cases(CaseScale scale) => new CaseList(scale).Build();

    /// <summary>Runs <paramref name="c"/> on the CPU and on <paramref name="device"/> and compares every output.</summary>
    public static CaseResult Run(OpCase c, Device device)
    {
        var sw = new Stopwatch();
        try
        {
            using var noGrad = GradMode.NoGrad();
            using var gpuShaped = Gpu.GpuBackend.GpuShapedOnCpu(); // on ILGPU's CPU accelerator, the kernels as a GPU runs them
            var inputs = c.Inputs(new CaseInputs(Seed(c.Name)));
            var expected = c.Run(inputs, Device.Cpu);
            var onDevice = inputs.Select(t => t.To(device)).ToArray();
            sw.Start();
            var actual = c.Run(onDevice, device);
            var actualHost = actual.Select(t => t.To(Device.Cpu)).ToArray(); // synchronizes
            sw.Stop();
            if (actual.Length != expected.Length) return new(c, false, double.NaN, double.NaN, sw.Elapsed, $"{actual.Length} outputs, expected {expected.Length}");
            double maxAbs = 0, maxRel = 0;
            string? error = null;
            for (int k = 0; k < expected.Length && error is null; k++)
            {
                if (!expected[k].Shape.AsSpan().SequenceEqual(actualHost[k].Shape) || expected[k].DType != actualHost[k].DType)
                {
                    error = $"output {k}: {actualHost[k].Describe()}, expected {expected[k].Describe()}";
                    break;
                }
                var e = expected[k].ToDoubleArray();
                var a = actualHost[k].ToDoubleArray();
                for (int i = 0; i < e.Length; i++)
                {
                    if (double.IsNaN(e[i]) && double.IsNaN(a[i])) continue;
                    if (double.IsInfinity(e[i]) && e[i] == a[i]) continue;
                    double abs = Math.Abs(a[i] - e[i]);
                    if (double.IsNaN(abs)) abs = double.PositiveInfinity;
                    double rel = abs / Math.Max(Math.Abs(e[i]), 1e-30);
                    maxAbs = Math.Max(maxAbs, abs);
                    maxRel = Math.Max(maxRel, Math.Min(rel, abs == 0 ? 0 : rel));
                    if (abs > c.Tolerance.Atol + c.Tolerance.Rtol * Math.Abs(e[i]))
                        error ??= $"output {k} element {i}: {a[i]:G9}, expected {e[i]:G9} (rtol {c.Tolerance.Rtol:G2}, atol {c.Tolerance.Atol:G2})";
                }
            }
            return new(c, error is null, maxAbs, maxRel, sw.Elapsed, error);
        }
        catch (Exception e)
        {
            return new(c, false, double.NaN, double.NaN, sw.Elapsed, $"{e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>A seed from the case name (stable across runs and processes, unlike string.GetHashCode).</summary>
    private static ulong Seed(string name)
    {
        ulong h = 1469598103934665603UL;
        foreach (char ch in name) h = (h ^ ch) * 1099511628211UL;
        return h;
    }
}
