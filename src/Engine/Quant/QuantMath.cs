using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Quant;

/// <summary>
/// The helpers ggml's reference quantizers share (ggml-quants.c): rounding, the scale searches of the K-quants
/// and the 6-bit (scale, min) packing of Q4_K and Q5_K. Every float operation is written in ggml's order, one
/// rounding per operation (the JIT contracts nothing into fused multiply-adds), so encoders built on these
/// give ggml's bytes bit for bit.
/// </summary>
internal static class QuantMath
{
    /// <summary>
    /// ggml's nearest_int: round to nearest, ties to even, for |v| &lt; 2^22. Adding 1.5 * 2^23 pushes the
    /// fraction out of the mantissa (the FPU rounds to even there), and the low 23 bits then hold the integer
    /// plus 2^22.
    /// </summary>
    public static int NearestInt(float v) => (BitConverter.SingleToInt32Bits(v + 12582912f) & 0x007FFFFF) - 0x00400000;

    public static float ReadHalf(ReadOnlySpan<byte> b, int at) => (float)BinaryPrimitives.ReadHalfLittleEndian(b[at..]);

    /// <summary>
    /// f16 bits to float32 without a call ((float)Half is one, out of line, in .NET 10, and a call in a SIMD loop makes the
    /// JIT spill every vector register around it): the 15 magnitude bits shifted into float32's exponent and mantissa
    /// give the value times 2^-112, exactly (f16 subnormals land on float32 subnormals), so one multiply by 2^112
    /// finishes; infinities and NaNs (exponent 31) take float32's top exponent instead; the sign is or-ed back.
    /// Equal to (float)Half for every value.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfToFloat(ushort h)
    {
        uint shifted = (uint)(h & 0x7FFF) << 13;
        uint bits = BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle(shifted) * 5.192296858534828e33f); // * 2^112
        if ((h & 0x7C00) == 0x7C00) bits = 0x7F800000 | shifted;
        return BitConverter.UInt32BitsToSingle(bits | ((uint)(h & 0x8000) << 16));
    }

    /// <summary>
    /// Eight f16 values <paramref name="stride"/> bytes apart from <paramref name="first"/> (the scales of 8 consecutive
    /// blocks) as float32, with <see cref="HalfToFloat"/>'s arithmetic in 8 lanes: a block loop converts its scales 8 at
    /// a time instead of two scalar conversions per block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Halves8(ref byte first, int stride)
    {
        var h = Vector128.Create(
            U16(ref first, 0), U16(ref first, stride), U16(ref first, 2 * stride), U16(ref first, 3 * stride),
            U16(ref first, 4 * stride), U16(ref first, 5 * stride), U16(ref first, 6 * stride), U16(ref first, 7 * stride));
        var u = Avx2.ConvertToVector256Int32(h).AsUInt32();                      // (8) zero-extended
        var shifted = Vector256.ShiftLeft(u & Vector256.Create(0x7FFFu), 13);
        var bits = (shifted.AsSingle() * Vector256.Create(5.192296858534828e33f)).AsUInt32();
        var special = Vector256.Equals(u & Vector256.Create(0x7C00u), Vector256.Create(0x7C00u));
        bits = Vector256.ConditionalSelect(special, shifted | Vector256.Create(0x7F800000u), bits);
        return (bits | Vector256.ShiftLeft(u & Vector256.Create(0x8000u), 16)).AsSingle();

        static ushort U16(ref byte r, int at) => Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref r, at));
    }

    /// <summary>The f16 at <paramref name="r"/>, through <see cref="HalfToFloat"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfAt(ref byte r) => HalfToFloat(Unsafe.ReadUnaligned<ushort>(ref r));

    public static void WriteHalf(Span<byte> b, int at, float v) => BinaryPrimitives.WriteHalfLittleEndian(b[at..], (Half)v);

    /// <summary>A value that rounds through f16, as stored and read back: what the decoder will see.</summary>
    public static float ThroughHalf(float v) => (float)(Half)v;

    /// <summary>
    /// ggml's make_qx_quants for the symmetric K-quants (Q6_K uses rmse_type 1, no importance weights): the
    /// scale s minimizing sum w (x - s q)^2 with w = x^2 and q in [-nmax, nmax - 1], tried at 19 nearby inverse
    /// scales; L receives q + nmax.
    /// </summary>
    public static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<byte> L)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < 1e-15f)
        {
            L[..n].Clear();
            return 0f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            L[i] = (byte)(l + nmax);
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0f;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
                float w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; i++) L[i] = (byte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    /// <summary>
    /// ggml's make_qkx2_quants for the asymmetric K-quants: x ~ scale * q - theMin with q in [0, nmax]. Starts
    /// from the (min, max) range, then tries nstep + 1 inverse scales (rmin + rdelta * step + nmax) / range, each
    /// with the weighted least-squares (scale, min) for its rounding, and keeps the one of least weighted squared
    /// error. Returns the scale; <paramref name="theMin"/> receives -min (so a non-negative offset).
    /// </summary>
    public static float MakeQkx2Quants(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> L,
                                       out float theMin, Span<byte> Laux, float rmin, float rdelta, int nstep)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0], sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            L[..n].Clear();
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestMad = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
            L[i] = (byte)l;
            float diff = scale * L[i] + min - x[i];
            bestMad += weights[i] * (diff * diff);
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
                Laux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float D = sumW * sumL2 - sumL * sumL;
            if (D > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / D;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / D;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float mad = 0;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * Laux[i] + thisMin - x[i];
                    mad += weights[i] * (diff * diff);
                }
                if (mad < bestMad)
                {
                    Laux[..n].CopyTo(L);
                    bestMad = mad;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>
    /// ggml's get_scale_min_k4: the j-th of eight 6-bit (scale, min) pairs packed in 12 bytes. Pairs 0-3 sit in the
    /// low 6 bits of bytes 0-3 (scales) and 4-7 (mins); pairs 4-7 keep their low 4 bits in bytes 8-11 and their top
    /// 2 bits in the spare top bits of bytes 0-7.
    /// </summary>
    public static (int Scale, int Min) ScaleMinK4(int j, ReadOnlySpan<byte> q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    /// <summary>The inverse of <see cref="ScaleMinK4"/>: packs pair j (each 0..63) into the 12 bytes (zeroed before pair 0).</summary>
    public static void PackScaleMinK4(int j, int ls, int lm, Span<byte> q)
    {
        if (j < 4)
        {
            q[j] = (byte)ls;
            q[j + 4] = (byte)lm;
        }
        else
        {
            q[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
            q[j - 4] |= (byte)((ls >> 4) << 6);
            q[j] |= (byte)((lm >> 4) << 6);
        }
    }

    /// <summary>
    /// The first steps of ggml's quantize_row_q4_K_ref / q5_K_ref for one super-block of 256: a (scale, min) per
    /// sub-block of 32 from <see cref="MakeQkx2Quants"/> with weights av_x + |x|, both rounded to 6 bits against
    /// the largest, written to bytes 0..15 of the block (d, dmin, the 12 scale bytes). Returns the decoded
    /// per-sub-block (d * sc, dmin * m) the values are then rounded against, and in <paramref name="L"/> (256) the
    /// first-pass quants (kept by ggml for a sub-block whose decoded scale is 0).
    /// </summary>
    public static void KQuantScales(ReadOnlySpan<float> x, Span<byte> blk, int nmax, float rmin, float rdelta, int nstep,
                                    Span<float> subScale, Span<float> subMin, Span<byte> L)
    {
        Span<float> scales = stackalloc float[8], mins = stackalloc float[8], weights = stackalloc float[32];
        Span<byte> Laux = stackalloc byte[32];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            var xs = x.Slice(32 * j, 32);
            float sumX2 = 0;
            for (int l = 0; l < 32; l++) sumX2 += xs[l] * xs[l];
            float avX = MathF.Sqrt(sumX2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = avX + MathF.Abs(xs[l]);
            scales[j] = MakeQkx2Quants(32, nmax, xs, weights, L.Slice(32 * j, 32), out mins[j], Laux, rmin, rdelta, nstep);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        float invScale = maxScale > 0 ? 63f / maxScale : 0f;
        float invMin = maxMin > 0 ? 63f / maxMin : 0f;
        var packed = blk.Slice(4, 12);
        packed.Clear();
        for (int j = 0; j < 8; j++)
        {
            // nearest_int's result goes through uint8_t before MIN(63, .) in ggml.
            int ls = Math.Min(63, (int)(byte)NearestInt(invScale * scales[j]));
            int lm = Math.Min(63, (int)(byte)NearestInt(invMin * mins[j]));
            PackScaleMinK4(j, ls, lm, packed);
        }
        WriteHalf(blk, 0, maxScale / 63f);
        WriteHalf(blk, 2, maxMin / 63f);
        float d = ReadHalf(blk, 0), dmin = ReadHalf(blk, 2);
        for (int j = 0; j < 8; j++)
        {
            var (sc, m) = ScaleMinK4(j, packed);
            subScale[j] = d * sc;
            subMin[j] = dmin * m;
        }
    }
}
