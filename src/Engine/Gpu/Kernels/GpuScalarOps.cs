using ManagedTensor.Cpu;

namespace ManagedTensor.Gpu.Kernels;

// Scalar ops for the GPU kernels where the CPU's generic structs (src/Engine/Cpu/ScalarOps.cs) cannot
// be used as they are. Every other elementwise op runs the CPU's own struct inside the kernel.
//  - erf and exact GELU: the CPU structs pick the float or double routine with typeof tests, which ILGPU
//    cannot compile; these call the same routines (ErfMath, GeluFloat) directly.
//  - tanh and tanh-GELU: ILGPU's PTX tanh is (e^2x - 1) / (e^2x + 1), which is NaN once e^2x overflows
//    (|x| > 44 in float) and loses all relative precision near 0. GpuMath.Tanh is Cephes' tanh: an odd
//    polynomial (float) or rational function (double) for |x| < 0.625, 1 - 2 / (e^2|x| + 1) beyond.

internal readonly struct ErfF32Op : IUnaryOp<float>
{
    public float Apply(float x) => (float)ErfMath.Erf((double)x);
    public void Apply(ReadOnlySpan<float> x, Span<float> y) => ScalarLoop.Map<float, ErfF32Op>(this, x, y);
}

internal readonly struct ErfF64Op : IUnaryOp<double>
{
    public double Apply(double x) => ErfMath.Erf(x);
    public void Apply(ReadOnlySpan<double> x, Span<double> y) => ScalarLoop.Map<double, ErfF64Op>(this, x, y);
}

/// <summary>Exact GELU in float: the CPU's <see cref="GeluFloat"/> formula (A&amp;S erf, 1.5e-7).</summary>
internal readonly struct GeluF32Op : IUnaryOp<float>
{
    public float Apply(float x) => GeluFloat.Apply(x);
    public void Apply(ReadOnlySpan<float> x, Span<float> y) => ScalarLoop.Map<float, GeluF32Op>(this, x, y);
}

/// <summary>Exact GELU in double: 0.5 x (1 + erf(x / sqrt 2)), as the CPU's GeluOp&lt;double&gt;.</summary>
internal readonly struct GeluF64Op : IUnaryOp<double>
{
    public double Apply(double x) => 0.5 * x * (1 + ErfMath.Erf(x * 0.70710678118654752440));
    public void Apply(ReadOnlySpan<double> x, Span<double> y) => ScalarLoop.Map<double, GeluF64Op>(this, x, y);
}

internal readonly struct TanhF32Op : IUnaryOp<float>
{
    public float Apply(float x) => GpuMath.Tanh(x);
    public void Apply(ReadOnlySpan<float> x, Span<float> y) => ScalarLoop.Map<float, TanhF32Op>(this, x, y);
}

internal readonly struct TanhF64Op : IUnaryOp<double>
{
    public double Apply(double x) => GpuMath.Tanh(x);
    public void Apply(ReadOnlySpan<double> x, Span<double> y) => ScalarLoop.Map<double, TanhF64Op>(this, x, y);
}

/// <summary>GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).</summary>
internal readonly struct GeluTanhF32Op : IUnaryOp<float>
{
    public float Apply(float x) => 0.5f * x * (1 + GpuMath.Tanh(0.7978845608f * (x + 0.044715f * x * x * x)));
    public void Apply(ReadOnlySpan<float> x, Span<float> y) => ScalarLoop.Map<float, GeluTanhF32Op>(this, x, y);
}

internal readonly struct GeluTanhF64Op : IUnaryOp<double>
{
    public double Apply(double x) => 0.5 * x * (1 + GpuMath.Tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
    public void Apply(ReadOnlySpan<double> x, Span<double> y) => ScalarLoop.Map<double, GeluTanhF64Op>(this, x, y);
}

/// <summary>Math routines whose ILGPU PTX versions are not good enough.</summary>
internal static class GpuMath
{
    /// <summary>tanh in float (Cephes tanhf, about 2 ulp).</summary>
    public static float Tanh(float x)
    {
        float ax = Math.Abs(x);
        if (ax >= 0.625f)
        {
            float r = 1 - 2 / (MathF.Exp(2 * ax) + 1); // e^2|x| = inf gives 1
            return x < 0 ? -r : r;
        }
        if (float.IsNaN(x)) return x;
        float z = x * x;
        return ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    }

    /// <summary>tanh in double (Cephes tanh: rational approximation near 0).</summary>
    public static double Tanh(double x)
    {
        double ax = Math.Abs(x);
        if (ax >= 0.625)
        {
            double r = 1 - 2 / (Math.Exp(2 * ax) + 1);
            return x < 0 ? -r : r;
        }
        if (double.IsNaN(x)) return x;
        double z = x * x;
        double p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z - 1.61468768441708447952e3;
        double q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3;
        return x + x * z * (p / q);
    }
}
