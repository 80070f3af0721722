using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ManagedTensor.Cpu;

// Each elementwise op is written once as a small struct: the scalar formula (used on strided rows) and
// a span routine (used on contiguous rows; System.Numerics.Tensors.TensorPrimitives where it has the op,
// vectorized for float and double). Loops take the op as a generic struct parameter, so the JIT inlines
// Apply into the loop body: no delegates, no virtual calls.

/// <summary>y = f(x).</summary>
internal interface IUnaryOp<T>
{
    T Apply(T x);
    void Apply(ReadOnlySpan<T> x, Span<T> y);
}

/// <summary>y = f(a, b), with variants for a broadcast scalar on either side.</summary>
internal interface IBinaryOp<T>
{
    T Apply(T a, T b);
    void Apply(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y);
    void Apply(ReadOnlySpan<T> a, T b, Span<T> y);
    void Apply(T a, ReadOnlySpan<T> b, Span<T> y);
}

/// <summary>A comparison; the result is stored as a U8 0 or 1. Any comparison with NaN is false except Ne.</summary>
internal interface ICompareOp<T>
{
    bool Apply(T a, T b);
}

/// <summary>Scalar loops for ops that have no span routine of their own.</summary>
internal static class ScalarLoop
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Map<T, TOp>(TOp op, ReadOnlySpan<T> x, Span<T> y) where TOp : struct, IUnaryOp<T>
    {
        for (int i = 0; i < x.Length; i++) y[i] = op.Apply(x[i]);
    }

    /// <summary>erf for float (through the double routine) and double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Erf<T>(T x) where T : IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) { float r = ErfMath.Erf(Unsafe.As<T, float>(ref x)); return Unsafe.As<float, T>(ref r); }
        return T.CreateTruncating(ErfMath.Erf(double.CreateTruncating(x)));
    }
}

// ---- unary ops valid for every numeric type ----

internal readonly struct NegOp<T> : IUnaryOp<T> where T : INumber<T>
{
    public T Apply(T x) => -x;
    public void Apply(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Negate(x, y);
}

internal readonly struct AbsOp<T> : IUnaryOp<T> where T : INumber<T>
{
    public T Apply(T x) => T.IsNegative(x) ? -x : x; // int.MinValue stays int.MinValue, as in PyTorch

    // TensorPrimitives.Abs throws on int.MinValue, so integers take the scalar loop.
    public void Apply(ReadOnlySpan<T> x, Span<T> y)
    {
        if (typeof(T) == typeof(float) || typeof(T) == typeof(double)) TensorPrimitives.Abs(x, y);
        else ScalarLoop.Map<T, AbsOp<T>>(this, x, y);
    }
}

/// <summary>max(x, 0); NaN stays NaN (PyTorch's relu).</summary>
internal readonly struct ReluOp<T> : IUnaryOp<T> where T : INumber<T>
{
    public T Apply(T x) => x > T.Zero || T.IsNaN(x) ? x : T.Zero;
    public void Apply(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Max(x, T.Zero, y);
}

internal readonly struct AddScalarOp<T>(T c) : IUnaryOp<T> where T : INumber<T>
{
    public T Apply(T x) => x + c;
    public void Apply(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Add(x, c, y);
}

internal readonly struct MulScalarOp<T>(T c) : IUnaryOp<T> where T : INumber<T>
{
    public T Apply(T x) => x * c;
    public void Apply(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Multiply(x, c, y);
}

/// <summary>min(max(x, lo), hi); NaN stays NaN.</summary>
internal readonly struct ClampOp<T>(T lo, T hi) : IUnaryOp<T> where T : INumber<T>
{
    public T Apply(T x) => T.IsNaN(x) ? x : x < lo ? lo : x > hi ? hi : x;
    public void Apply(ReadOnlySpan<T> x, Span<T> y)
    {
        TensorPrimitives.Max(x, lo, y);
        TensorPrimitives.Min(y, hi, y);
    }
}

// ---- unary ops for float and double ----

internal readonly struct ExpOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T x) => T.Exp(x);
    public void Apply(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Exp(x, y);
}

internal readonly struct LogOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T x) => T.Log(x);
    public void Apply(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Log(x, y);
}

internal readonly struct SqrtOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T x) => T.Sqrt(x);
    public void Apply(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Sqrt(x, y);
}

/// <summary>1 / sqrt(x), correctly rounded division (not the hardware estimate).</summary>
internal readonly struct RsqrtOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T x) => T.One / T.Sqrt(x);
    public void Apply(ReadOnlySpan<T> x, Span<T> y)
    {
        TensorPrimitives.Sqrt(x, y);
        TensorPrimitives.Divide(T.One, y, y);
    }
}

internal readonly struct TanhOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T x) => T.Tanh(x);
    public void Apply(ReadOnlySpan<T> x, Span<T> y) => TensorPrimitives.Tanh(x, y);
}

/// <summary>1 / (1 + exp(-x)); float in one SIMD pass (<see cref="SigmoidFloat"/>).</summary>
internal readonly struct SigmoidOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T x) => T.One / (T.One + T.Exp(-x));

    public void Apply(ReadOnlySpan<T> x, Span<T> y)
    {
        if (typeof(T) == typeof(float))
            SigmoidFloat.Sigmoid(
                MemoryMarshal.CreateReadOnlySpan(ref Unsafe.As<T, float>(ref MemoryMarshal.GetReference(x)), x.Length),
                MemoryMarshal.CreateSpan(ref Unsafe.As<T, float>(ref MemoryMarshal.GetReference(y)), y.Length));
        else TensorPrimitives.Sigmoid(x, y);
    }
}

/// <summary>x * sigmoid(x); float in one SIMD pass (<see cref="SigmoidFloat"/>).</summary>
internal readonly struct SiluOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T x) => x / (T.One + T.Exp(-x));
    public void Apply(ReadOnlySpan<T> x, Span<T> y)
    {
        if (typeof(T) == typeof(float))
        {
            SigmoidFloat.Silu(
                MemoryMarshal.CreateReadOnlySpan(ref Unsafe.As<T, float>(ref MemoryMarshal.GetReference(x)), x.Length),
                MemoryMarshal.CreateSpan(ref Unsafe.As<T, float>(ref MemoryMarshal.GetReference(y)), y.Length));
            return;
        }
        TensorPrimitives.Sigmoid(x, y);
        TensorPrimitives.Multiply(x, y, y);
    }
}

internal readonly struct ErfOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T x) => ScalarLoop.Erf(x);
    public void Apply(ReadOnlySpan<T> x, Span<T> y) => ScalarLoop.Map<T, ErfOp<T>>(this, x, y);
}

/// <summary>
/// Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). Double uses the fdlibm erf everywhere; float
/// uses <see cref="GeluFloat"/>, a SIMD form with erf good to 1.5e-7 absolute (PyTorch's CPU kernel
/// makes the same choice), about 5x faster than the scalar erf.
/// </summary>
internal readonly struct GeluOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T x)
    {
        if (typeof(T) == typeof(float)) { float r = GeluFloat.Apply(Unsafe.As<T, float>(ref x)); return Unsafe.As<float, T>(ref r); }
        return T.CreateTruncating(0.5) * x * (T.One + ScalarLoop.Erf(x * T.CreateTruncating(0.70710678118654752440)));
    }

    public void Apply(ReadOnlySpan<T> x, Span<T> y)
    {
        if (typeof(T) == typeof(float))
            GeluFloat.Apply(
                MemoryMarshal.CreateReadOnlySpan(ref Unsafe.As<T, float>(ref MemoryMarshal.GetReference(x)), x.Length),
                MemoryMarshal.CreateSpan(ref Unsafe.As<T, float>(ref MemoryMarshal.GetReference(y)), y.Length));
        else ScalarLoop.Map<T, GeluOp<T>>(this, x, y);
    }
}

/// <summary>
/// Float32 GELU with Abramowitz and Stegun's erf (formula 7.1.26, |error| &lt;= 1.5e-7):
///   z = |x| / sqrt 2,  t = 1 / (1 + p z),  q = t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-z^2) ~ erfc(z)
///   Phi(x) = 1 - q / 2 for x >= 0,  q / 2 for x &lt; 0      (no cancellation on the negative side)
///   gelu(x) = x Phi(x)
/// exp(-z^2) is <see cref="VectorExp"/>'s, set to 0 where z^2 >= 87 (|x| >= 13.2), where it would give its floor
/// exp(-87) instead of a subnormal: gelu and its gradient there are 0, where exact float arithmetic leaves values
/// under 1e-37 in size (the floor would leave x exp(-87), up to 1e-8 for x = -1e30).
/// </summary>
internal static class GeluFloat
{
    private const float P = 0.3275911f, A1 = 0.254829592f, A2 = -0.284496736f, A3 = 1.421413741f, A4 = -1.453152027f, A5 = 1.061405429f;
    private const float InvSqrt2 = 0.70710678118654752440f;
    private const float InvSqrt2Pi = 0.39894228040143267794f;

    /// <summary>exp(-z^2), 0 where z^2 >= 87.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Gauss(Vector512<float> z)
    {
        var zz = z * z;
        return VectorExp.Exp(-zz) & Vector512.LessThan(zz, Vector512.Create(87f));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Gauss(Vector256<float> z)
    {
        var zz = z * z;
        return VectorExp.Exp(-zz) & Vector256.LessThan(zz, Vector256.Create(87f));
    }

    public static float Apply(float x)
    {
        float z = MathF.Abs(x) * InvSqrt2;
        float t = 1 / (1 + P * z);
        float halfQ = 0.5f * (t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5)))) * MathF.Exp(-z * z));
        return x * (x >= 0 ? 1 - halfQ : halfQ);
    }

    /// <summary>dy * (Phi(x) + x phi(x)) with the same erfc approximation.</summary>
    public static float Backward(float dy, float x)
    {
        float z = MathF.Abs(x) * InvSqrt2;
        float t = 1 / (1 + P * z);
        float e = MathF.Exp(-z * z);
        float halfQ = 0.5f * (t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5)))) * e);
        return dy * ((x >= 0 ? 1 - halfQ : halfQ) + x * e * InvSqrt2Pi);
    }

    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            ref float dr = ref MemoryMarshal.GetReference(dy);
            ref float xr = ref MemoryMarshal.GetReference(x);
            ref float yr = ref MemoryMarshal.GetReference(dx);
            var one = Vector512<float>.One;
            for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var v = Vector512.LoadUnsafe(ref xr, (nuint)i);
                var z = Vector512.Abs(v) * InvSqrt2;
                var t = one / (one + z * P);
                var e = Gauss(z);
                var poly = t * (Vector512.Create(A1) + t * (Vector512.Create(A2) + t * (Vector512.Create(A3) + t * (Vector512.Create(A4) + t * A5))));
                var halfQ = poly * e * 0.5f;
                var cdf = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(v, Vector512<float>.Zero), one - halfQ, halfQ);
                (Vector512.LoadUnsafe(ref dr, (nuint)i) * (cdf + v * e * InvSqrt2Pi)).StoreUnsafe(ref yr, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            ref float dr = ref MemoryMarshal.GetReference(dy);
            ref float xr = ref MemoryMarshal.GetReference(x);
            ref float yr = ref MemoryMarshal.GetReference(dx);
            var one = Vector256<float>.One;
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var v = Vector256.LoadUnsafe(ref xr, (nuint)i);
                var z = Vector256.Abs(v) * InvSqrt2;
                var t = one / (one + z * P);
                var e = Gauss(z);
                var poly = t * (Vector256.Create(A1) + t * (Vector256.Create(A2) + t * (Vector256.Create(A3) + t * (Vector256.Create(A4) + t * A5))));
                var halfQ = poly * e * 0.5f;
                var cdf = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(v, Vector256<float>.Zero), one - halfQ, halfQ);
                (Vector256.LoadUnsafe(ref dr, (nuint)i) * (cdf + v * e * InvSqrt2Pi)).StoreUnsafe(ref yr, (nuint)i);
            }
        }
        for (; i < x.Length; i++) dx[i] = Backward(dy[i], x[i]);
    }

    public static void Apply(ReadOnlySpan<float> x, Span<float> y)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) // the same steps 16 wide (AVX-512), the rest 8 wide below
        {
            ref float xr = ref MemoryMarshal.GetReference(x);
            ref float yr = ref MemoryMarshal.GetReference(y);
            var one = Vector512<float>.One;
            for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var v = Vector512.LoadUnsafe(ref xr, (nuint)i);
                var z = Vector512.Abs(v) * InvSqrt2;
                var t = one / (one + z * P);
                var poly = t * (Vector512.Create(A1) + t * (Vector512.Create(A2) + t * (Vector512.Create(A3) + t * (Vector512.Create(A4) + t * A5))));
                var halfQ = poly * Gauss(z) * 0.5f;
                var phi = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(v, Vector512<float>.Zero), one - halfQ, halfQ);
                (v * phi).StoreUnsafe(ref yr, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            ref float xr = ref MemoryMarshal.GetReference(x);
            ref float yr = ref MemoryMarshal.GetReference(y);
            var one = Vector256<float>.One;
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var v = Vector256.LoadUnsafe(ref xr, (nuint)i);
                var z = Vector256.Abs(v) * InvSqrt2;
                var t = one / (one + z * P);
                var poly = t * (Vector256.Create(A1) + t * (Vector256.Create(A2) + t * (Vector256.Create(A3) + t * (Vector256.Create(A4) + t * A5))));
                var halfQ = poly * Gauss(z) * 0.5f;
                var phi = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(v, Vector256<float>.Zero), one - halfQ, halfQ);
                (v * phi).StoreUnsafe(ref yr, (nuint)i);
            }
        }
        for (; i < x.Length; i++) y[i] = Apply(x[i]);
    }
}

/// <summary>
/// d/dx of exact GELU times the incoming gradient: dy * (Phi(x) + x phi(x)), phi(x) = exp(-x^2/2) / sqrt(2 pi),
/// one pass instead of the eight a composition of ops would take. Float uses the same A&amp;S erfc as
/// <see cref="GeluFloat"/> (whose exp(-z^2) with z = |x|/sqrt 2 is exactly exp(-x^2/2)).
/// </summary>
internal readonly struct GeluBackwardOp<T> : IBinaryOp<T> where T : IFloatingPointIeee754<T>
{
    private static T InvSqrt2Pi => T.CreateTruncating(0.39894228040143267794);

    public T Apply(T dy, T x)
    {
        if (typeof(T) == typeof(float))
        {
            float r = GeluFloat.Backward(Unsafe.As<T, float>(ref dy), Unsafe.As<T, float>(ref x));
            return Unsafe.As<float, T>(ref r);
        }
        T cdf = T.CreateTruncating(0.5) * (T.One + ScalarLoop.Erf(x * T.CreateTruncating(0.70710678118654752440)));
        T pdf = T.Exp(-x * x * T.CreateTruncating(0.5)) * InvSqrt2Pi;
        return dy * (cdf + x * pdf);
    }

    public void Apply(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, Span<T> y)
    {
        if (typeof(T) == typeof(float))
            GeluFloat.Backward(As<float>(dy), As<float>(x), MemoryMarshal.CreateSpan(ref Unsafe.As<T, float>(ref MemoryMarshal.GetReference(y)), y.Length));
        else for (int i = 0; i < y.Length; i++) y[i] = Apply(dy[i], x[i]);
    }

    public void Apply(ReadOnlySpan<T> dy, T x, Span<T> y) { for (int i = 0; i < y.Length; i++) y[i] = Apply(dy[i], x); }
    public void Apply(T dy, ReadOnlySpan<T> x, Span<T> y) { for (int i = 0; i < y.Length; i++) y[i] = Apply(dy, x[i]); }

    private static ReadOnlySpan<TTo> As<TTo>(ReadOnlySpan<T> s) where TTo : struct =>
        MemoryMarshal.CreateReadOnlySpan(ref Unsafe.As<T, TTo>(ref MemoryMarshal.GetReference(s)), s.Length);
}

/// <summary>GELU, tanh form (GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).</summary>
internal readonly struct GeluTanhOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    private static T K => T.CreateTruncating(0.79788456080286535588); // sqrt(2/pi)
    private static T C => T.CreateTruncating(0.044715);
    private static T Half => T.CreateTruncating(0.5);

    public T Apply(T x) => Half * x * (T.One + T.Tanh(K * (x + C * x * x * x)));

    /// <summary>The same formula as passes of vector routines writing through y: u = x (K + K C x^2), y = 0.5 x (1 + tanh u).</summary>
    public void Apply(ReadOnlySpan<T> x, Span<T> y)
    {
        TensorPrimitives.Multiply(x, x, y);      // x^2
        TensorPrimitives.Multiply(y, K * C, y);
        TensorPrimitives.Add(y, K, y);           // K + K C x^2
        TensorPrimitives.Multiply(y, x, y);      // u
        TensorPrimitives.Tanh(y, y);
        TensorPrimitives.Add(y, T.One, y);
        TensorPrimitives.Multiply(y, x, y);
        TensorPrimitives.Multiply(y, Half, y);
    }
}

/// <summary>
/// x^c, with PyTorch's special cases (c = 2, 0.5, 1, -1) done by cheaper exact routines. The case is
/// picked once, in the constructor (on the host), so the GPU kernels can use this struct too: ILGPU
/// cannot compile the T.CreateTruncating comparisons inside a kernel.
/// </summary>
internal readonly struct PowScalarOp<T> : IUnaryOp<T> where T : IFloatingPointIeee754<T>
{
    private const int General = 0, Square = 1, SquareRoot = 2, Identity = 3, Reciprocal = 4;
    private readonly T _c;
    private readonly int _case;

    public PowScalarOp(T c)
    {
        _c = c;
        _case = c == T.CreateTruncating(2) ? Square
            : c == T.CreateTruncating(0.5) ? SquareRoot
            : c == T.One ? Identity
            : c == -T.One ? Reciprocal
            : General;
    }

    public T Apply(T x) => _case switch
    {
        Square => x * x,
        SquareRoot => T.Sqrt(x),
        Identity => x,
        Reciprocal => T.One / x,
        _ => T.Pow(x, _c),
    };

    public void Apply(ReadOnlySpan<T> x, Span<T> y)
    {
        switch (_case)
        {
            case Square: TensorPrimitives.Multiply(x, x, y); break;
            case SquareRoot: TensorPrimitives.Sqrt(x, y); break;
            case Identity: x.CopyTo(y); break;
            case Reciprocal: TensorPrimitives.Divide(T.One, x, y); break;
            default: TensorPrimitives.Pow(x, _c, y); break;
        }
    }
}

// ---- binary ops ----

internal readonly struct AddOp<T> : IBinaryOp<T> where T : INumber<T>
{
    public T Apply(T a, T b) => a + b;
    public void Apply(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Add(a, b, y);
    public void Apply(ReadOnlySpan<T> a, T b, Span<T> y) => TensorPrimitives.Add(a, b, y);
    public void Apply(T a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Add(b, a, y);
}

internal readonly struct SubOp<T> : IBinaryOp<T> where T : INumber<T>
{
    public T Apply(T a, T b) => a - b;
    public void Apply(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Subtract(a, b, y);
    public void Apply(ReadOnlySpan<T> a, T b, Span<T> y) => TensorPrimitives.Subtract(a, b, y);
    public void Apply(T a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Subtract(a, b, y);
}

internal readonly struct MulOp<T> : IBinaryOp<T> where T : INumber<T>
{
    public T Apply(T a, T b) => a * b;
    public void Apply(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Multiply(a, b, y);
    public void Apply(ReadOnlySpan<T> a, T b, Span<T> y) => TensorPrimitives.Multiply(a, b, y);
    public void Apply(T a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Multiply(b, a, y);
}

internal readonly struct DivOp<T> : IBinaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T a, T b) => a / b;
    public void Apply(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Divide(a, b, y);
    public void Apply(ReadOnlySpan<T> a, T b, Span<T> y) => TensorPrimitives.Divide(a, b, y);
    public void Apply(T a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Divide(a, b, y);
}

internal readonly struct PowOp<T> : IBinaryOp<T> where T : IFloatingPointIeee754<T>
{
    public T Apply(T a, T b) => T.Pow(a, b);
    public void Apply(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Pow(a, b, y);
    public void Apply(ReadOnlySpan<T> a, T b, Span<T> y) => new PowScalarOp<T>(b).Apply(a, y);
    public void Apply(T a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Pow(a, b, y);
}

/// <summary>Elementwise maximum; NaN wins (torch.maximum).</summary>
internal readonly struct MaximumOp<T> : IBinaryOp<T> where T : INumber<T>
{
    public T Apply(T a, T b) => T.Max(a, b);
    public void Apply(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Max(a, b, y);
    public void Apply(ReadOnlySpan<T> a, T b, Span<T> y) => TensorPrimitives.Max(a, b, y);
    public void Apply(T a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Max(b, a, y);
}

/// <summary>Elementwise minimum; NaN wins (torch.minimum).</summary>
internal readonly struct MinimumOp<T> : IBinaryOp<T> where T : INumber<T>
{
    public T Apply(T a, T b) => T.Min(a, b);
    public void Apply(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Min(a, b, y);
    public void Apply(ReadOnlySpan<T> a, T b, Span<T> y) => TensorPrimitives.Min(a, b, y);
    public void Apply(T a, ReadOnlySpan<T> b, Span<T> y) => TensorPrimitives.Min(b, a, y);
}

// ---- comparisons ----

internal readonly struct EqOp<T> : ICompareOp<T> where T : INumber<T> { public bool Apply(T a, T b) => a == b; }
internal readonly struct NeOp<T> : ICompareOp<T> where T : INumber<T> { public bool Apply(T a, T b) => a != b; }
internal readonly struct LtOp<T> : ICompareOp<T> where T : INumber<T> { public bool Apply(T a, T b) => a < b; }
internal readonly struct LeOp<T> : ICompareOp<T> where T : INumber<T> { public bool Apply(T a, T b) => a <= b; }
internal readonly struct GtOp<T> : ICompareOp<T> where T : INumber<T> { public bool Apply(T a, T b) => a > b; }
internal readonly struct GeOp<T> : ICompareOp<T> where T : INumber<T> { public bool Apply(T a, T b) => a >= b; }
