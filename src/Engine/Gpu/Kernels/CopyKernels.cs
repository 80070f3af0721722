using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>
/// Copy (strided, with dtype conversion: also the cast op), fill and counter-based random numbers.
/// Every kernel walks its output in row-major order through a <see cref="StridedLayout"/>, so any
/// view works on either side without a staging copy. Random numbers are Philox4x32-10 at counter
/// Offset + i for element i, the CPU backend's stream: uniform numbers are bit for bit the same on
/// every device; normal numbers use log, sqrt and cos, which the GPU computes with its own
/// approximations (identical on the CPU accelerator, within a few ulp on CUDA).
/// </summary>
internal static class CopyKernels
{
    // ---- kernels ----

    public static void CopySameKernel<T>(ArrayView<T> src, ArrayView<T> dst, StridedLayout layout, int n) where T : unmanaged
    {
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
        {
            layout.Offsets2(i, out int od, out int os);
            dst[od] = src[os];
        }
    }

    /// <summary>The cast modes, in the order of the CPU's ElementCast.Cast.</summary>
    public const int IntToInt = 0, FloatToInt = 1, FromFloat32 = 2, ViaDouble = 3;

    public static void CastKernel<TFrom, TTo, CFrom, CTo>(ArrayView<TFrom> src, ArrayView<TTo> dst, StridedLayout layout, int mode, int n)
        where TFrom : unmanaged where TTo : unmanaged where CFrom : struct, ICodec<TFrom> where CTo : struct, ICodec<TTo>
    {
        CFrom from = default;
        CTo to = default;
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
        {
            layout.Offsets2(i, out int od, out int os);
            TFrom x = src[os];
            dst[od] = mode switch
            {
                IntToInt => to.FromLong(from.ToLong(x)),
                FloatToInt => to.FromLong((long)from.ToDouble(x)),
                FromFloat32 => to.FromFloat(from.ToFloat(x)),
                _ => to.FromDouble(from.ToDouble(x)),
            };
        }
    }

    public static void FillKernel<T>(ArrayView<T> dst, StridedLayout layout, T value, int n) where T : unmanaged
    {
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step) dst[layout.Offset0(i)] = value;
    }

    /// <summary>Element i = shift + scale * sample_i (in double), rounded to T directly (F64) or through float (as the CPU does).</summary>
    public static void RandomKernel<T, C>(ArrayView<T> dst, StridedLayout layout, ulong seed, ulong offset, double shift, double scale, int normal, int wide, int n)
        where T : unmanaged where C : struct, ICodec<T>
    {
        C codec = default;
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
        {
            ulong counter = offset + (ulong)i;
            float sample = normal != 0 ? Philox.Normal(seed, counter) : Philox.Uniform(seed, counter);
            double v = shift + scale * sample;
            dst[layout.Offset0(i)] = wide != 0 ? codec.FromDouble(v) : codec.FromFloat((float)v);
        }
    }

    // ---- launchers ----

    public static void Copy(GpuBackend b, Tensor src, Tensor dst)
    {
        if (!src.Shape.AsSpan().SequenceEqual(dst.Shape))
            throw new ArgumentException($"copy: source {src.Describe()} and destination {dst.Describe()} differ in shape");
        if (dst.Numel == 0) return;
        var layout = StridedLayout.Create(dst.Shape, dst, src);
        var spec = CopySpec(src.DType, dst.DType, out int mode);
        var s = (GpuStorage)src.Storage;
        var d = (GpuStorage)dst.Storage;
        b.Launch(spec, b.Grid(dst.Numel), View(s), View(d), layout, mode, dst.Numel);
    }

    /// <summary>A storage's elements as its dtype's device type (boxed, as kernel arguments are).</summary>
    internal static object View(GpuStorage s) => s.DType switch
    {
        DType.F32 => s.View<float>(),
        DType.F64 => s.View<double>(),
        DType.F16 or DType.BF16 => s.View<ushort>(),
        DType.I32 => s.View<int>(),
        DType.I64 => s.View<long>(),
        DType.I8 => s.View<sbyte>(),
        DType.U8 => s.View<byte>(),
        _ => throw new NotSupportedException($"no device view for {s.DType}"),
    };

    private static KernelSpec CopySpec(DType from, DType to, out int mode)
    {
        mode = from.IsInteger() && to.IsInteger() ? IntToInt
            : to.IsInteger() ? FloatToInt
            : from == DType.F32 ? FromFloat32
            : ViaDouble;
        return from == to ? SameSpec(from) : CastSpec(from, to);
    }

    private static KernelSpec SameSpec(DType t) => new($"Copy_{t}", t switch
    {
        DType.F32 => Same<float>(),
        DType.F64 => Same<double>(),
        DType.F16 or DType.BF16 => Same<ushort>(),
        DType.I32 => Same<int>(),
        DType.I64 => Same<long>(),
        DType.I8 => Same<sbyte>(),
        DType.U8 => Same<byte>(),
        _ => throw new NotSupportedException($"copy of {t}"),
    });

    // Same-dtype copies take a mode argument too (ignored), so every copy launches with the same arguments.
    public static void CopySameWithModeKernel<T>(ArrayView<T> src, ArrayView<T> dst, StridedLayout layout, int mode, int n) where T : unmanaged
        => CopySameKernel(src, dst, layout, n);

    private static MethodInfo Same<T>() where T : unmanaged =>
        ((Action<ArrayView<T>, ArrayView<T>, StridedLayout, int, int>)CopySameWithModeKernel<T>).Method;

    private static KernelSpec CastSpec(DType from, DType to) => new($"Copy_{from}_{to}", from switch
    {
        DType.F32 => CastFrom<float, F32Codec>(to),
        DType.F64 => CastFrom<double, F64Codec>(to),
        DType.F16 => CastFrom<ushort, F16Codec>(to),
        DType.BF16 => CastFrom<ushort, BF16Codec>(to),
        DType.I32 => CastFrom<int, I32Codec>(to),
        DType.I64 => CastFrom<long, I64Codec>(to),
        DType.I8 => CastFrom<sbyte, I8Codec>(to),
        DType.U8 => CastFrom<byte, U8Codec>(to),
        _ => throw new NotSupportedException($"copy from {from}"),
    });

    private static MethodInfo CastFrom<TF, CF>(DType to) where TF : unmanaged where CF : struct, ICodec<TF> => to switch
    {
        DType.F32 => Cast<TF, float, CF, F32Codec>(),
        DType.F64 => Cast<TF, double, CF, F64Codec>(),
        DType.F16 => Cast<TF, ushort, CF, F16Codec>(),
        DType.BF16 => Cast<TF, ushort, CF, BF16Codec>(),
        DType.I32 => Cast<TF, int, CF, I32Codec>(),
        DType.I64 => Cast<TF, long, CF, I64Codec>(),
        DType.I8 => Cast<TF, sbyte, CF, I8Codec>(),
        DType.U8 => Cast<TF, byte, CF, U8Codec>(),
        _ => throw new NotSupportedException($"copy to {to}"),
    };

    private static MethodInfo Cast<TF, TT, CF, CT>() where TF : unmanaged where TT : unmanaged where CF : struct, ICodec<TF> where CT : struct, ICodec<TT> =>
        ((Action<ArrayView<TF>, ArrayView<TT>, StridedLayout, int, int>)CastKernel<TF, TT, CF, CT>).Method;

    public static void Fill(GpuBackend b, Tensor dst, double value)
    {
        if (dst.Numel == 0) return;
        var layout = StridedLayout.Create(dst.Shape, dst);
        var d = (GpuStorage)dst.Storage;
        var (spec, bits) = FillSpec(dst.DType, value);
        b.Launch(spec, b.Grid(dst.Numel), View(d), layout, bits, dst.Numel);
    }

    /// <summary>The fill kernel and the value as the device type's bits (converted on the host with the CPU's rules).</summary>
    private static (KernelSpec, object) FillSpec(DType t, double v) => t switch
    {
        DType.F32 => (FillSpec<float>(t), (object)(float)v),
        DType.F64 => (FillSpec<double>(t), (object)v),
        DType.F16 => (FillSpec<ushort>(t), (object)BitConverter.HalfToUInt16Bits((System.Half)v)),
        DType.BF16 => (FillSpec<ushort>(t), (object)BFloat16.FromFloat((float)v).Bits),
        DType.I32 => (FillSpec<int>(t), (object)new I32Codec().FromDouble(v)),
        DType.I64 => (FillSpec<long>(t), (object)new I64Codec().FromDouble(v)),
        DType.I8 => (FillSpec<sbyte>(t), (object)new I8Codec().FromDouble(v)),
        DType.U8 => (FillSpec<byte>(t), (object)new U8Codec().FromDouble(v)),
        _ => throw new NotSupportedException($"fill of {t}"),
    };

    private static KernelSpec FillSpec<T>(DType t) where T : unmanaged =>
        new($"Fill_{t}", ((Action<ArrayView<T>, StridedLayout, T, int>)FillKernel<T>).Method);

    public static void Random(GpuBackend b, Tensor dst, RandomAttrs a, bool normal)
    {
        if (!dst.DType.IsFloat()) throw new NotSupportedException($"random numbers need a floating-point tensor, got {dst.Describe()}");
        if (dst.Numel == 0) return;
        double shift = a.A, scale = normal ? a.B : a.B - a.A;
        var layout = StridedLayout.Create(dst.Shape, dst);
        var spec = RandomSpec(dst.DType, normal);
        b.Launch(spec, b.Grid(dst.Numel), View((GpuStorage)dst.Storage), layout, a.Seed, a.Offset, shift, scale, normal ? 1 : 0, dst.DType == DType.F64 ? 1 : 0, dst.Numel);
    }

    private static KernelSpec RandomSpec(DType t, bool normal) => new($"{(normal ? "RandNormal" : "RandUniform")}_{t}", t switch
    {
        DType.F32 => Rand<float, F32Codec>(),
        DType.F64 => Rand<double, F64Codec>(),
        DType.F16 => Rand<ushort, F16Codec>(),
        DType.BF16 => Rand<ushort, BF16Codec>(),
        _ => throw new NotSupportedException($"random numbers of {t}"),
    });

    private static MethodInfo Rand<T, C>() where T : unmanaged where C : struct, ICodec<T> =>
        ((Action<ArrayView<T>, StridedLayout, ulong, ulong, double, double, int, int, int>)RandomKernel<T, C>).Method;

    private static readonly DType[] AllTypes = DTypeInfo.ElementTypes;

    public static IEnumerable<KernelSpec> Specs()
    {
        foreach (var from in AllTypes)
            foreach (var to in AllTypes)
                yield return CopySpec(from, to, out _);
        foreach (var t in AllTypes) yield return FillSpec(t, 0).Item1;
        foreach (var t in new[] { DType.F32, DType.F64, DType.F16, DType.BF16 })
        {
            yield return RandomSpec(t, normal: false);
            yield return RandomSpec(t, normal: true);
        }
    }
}
