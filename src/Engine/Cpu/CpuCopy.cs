namespace ManagedTensor.Cpu;

/// <summary>
/// Data movement: strided copy with dtype conversion (also the cast op), fill, and counter-based random
/// numbers. A copy walks both tensors with <see cref="StridedLoop"/>; rows where both sides are
/// contiguous go to <see cref="ElementCast.Span"/> (memcpy or a vectorized conversion). Transposes
/// (src contiguous along another axis than dst) are copied in cache-sized tiles.
/// </summary>
internal static class CpuCopy
{
    public static void Copy(Tensor src, Tensor dst)
    {
        if (!src.Shape.AsSpan().SequenceEqual(dst.Shape))
            throw new ArgumentException($"copy: source {src.Describe()} and destination {dst.Describe()} differ in shape");
        if (src.DType.IsQuantized() || dst.DType.IsQuantized())
        {
            CpuQuant.Copy(src, dst); // decode or encode blocks
            return;
        }
        switch (src.DType)
        {
            case DType.F32: CopyFrom<float>(src, dst); break;
            case DType.F64: CopyFrom<double>(src, dst); break;
            case DType.F16: CopyFrom<Half>(src, dst); break;
            case DType.BF16: CopyFrom<BFloat16>(src, dst); break;
            case DType.I32: CopyFrom<int>(src, dst); break;
            case DType.I64: CopyFrom<long>(src, dst); break;
            case DType.I8: CopyFrom<sbyte>(src, dst); break;
            case DType.U8: CopyFrom<byte>(src, dst); break;
            default: throw new NotSupportedException($"copy from {src.Describe()}");
        }
    }

    private static void CopyFrom<TFrom>(Tensor src, Tensor dst) where TFrom : unmanaged
    {
        switch (dst.DType)
        {
            case DType.F32: CopyTyped<TFrom, float>(src, dst); break;
            case DType.F64: CopyTyped<TFrom, double>(src, dst); break;
            case DType.F16: CopyTyped<TFrom, Half>(src, dst); break;
            case DType.BF16: CopyTyped<TFrom, BFloat16>(src, dst); break;
            case DType.I32: CopyTyped<TFrom, int>(src, dst); break;
            case DType.I64: CopyTyped<TFrom, long>(src, dst); break;
            case DType.I8: CopyTyped<TFrom, sbyte>(src, dst); break;
            case DType.U8: CopyTyped<TFrom, byte>(src, dst); break;
            default: throw new NotSupportedException($"copy to {dst.Describe()}");
        }
    }

    private static void CopyTyped<TFrom, TTo>(Tensor src, Tensor dst) where TFrom : unmanaged where TTo : unmanaged
    {
        if (TransposeAxis(src, dst) is int k)
        {
            TiledTranspose<TFrom, TTo>(src, dst, k);
            return;
        }
        var loop = new StridedLoop(dst.Shape, dst, src);
        loop.Run(new CopyKernel<TFrom, TTo>(src.Data<TFrom>(), dst.Data<TTo>(), loop.InnerStride(1), loop.InnerStride(0)));
    }

    private readonly struct CopyKernel<TFrom, TTo>(TFrom[] src, TTo[] dst, int srcStride, int dstStride) : IRowKernel
        where TFrom : unmanaged where TTo : unmanaged
    {
        public void Row(int n, int oDst, int oSrc, int o2, int o3)
        {
            if (srcStride == 1 && dstStride == 1)
            {
                ElementCast.Span<TFrom, TTo>(src.AsSpan(oSrc, n), dst.AsSpan(oDst, n));
            }
            else if (srcStride == 0 && dstStride == 1)
            {
                dst.AsSpan(oDst, n).Fill(ElementCast.Cast<TFrom, TTo>(src[oSrc]));
            }
            else
            {
                for (int i = 0; i < n; i++) dst[oDst + i * dstStride] = ElementCast.Cast<TFrom, TTo>(src[oSrc + i * srcStride]);
            }
        }
    }

    // ---- transposes ----

    private const int Tile = 16;

    /// <summary>
    /// The axis k along which src is contiguous when the copy is a transpose: dst runs contiguously along its
    /// last axis while src jumps there, and src runs contiguously along k. Row by row such a copy reads one
    /// element per cache line; copying 16 x 16 tiles of the (k, last) plane touches each line once.
    /// </summary>
    private static int? TransposeAxis(Tensor src, Tensor dst)
    {
        int r = dst.Rank;
        if (r < 2 || dst.Numel < 4096 || dst.Strides[r - 1] != 1 || src.Strides[r - 1] is 0 or 1 || dst.Shape[r - 1] < Tile / 4) return null;
        for (int k = r - 2; k >= 0; k--)
            if (src.Strides[k] == 1 && dst.Shape[k] >= Tile / 4) return k;
        return null;
    }

    private static void TiledTranspose<TFrom, TTo>(Tensor src, Tensor dst, int k) where TFrom : unmanaged where TTo : unmanaged
    {
        int r = dst.Rank, nk = dst.Shape[k], nj = dst.Shape[r - 1];
        int dk = dst.Strides[k], sj = src.Strides[r - 1];
        // Offsets of element (.., 0 at k, .., 0 at last) for every index of the other axes.
        var outer = Enumerable.Range(0, r).Where(d => d != k && d != r - 1).ToArray();
        int outerCount = outer.Aggregate(1, (p, d) => p * dst.Shape[d]);
        var dstBase = new int[outerCount];
        var srcBase = new int[outerCount];
        for (int o = 0; o < outerCount; o++)
        {
            int rem = o, dOff = dst.Offset, sOff = src.Offset;
            for (int i = outer.Length - 1; i >= 0; i--)
            {
                int d = outer[i], idx = rem % dst.Shape[d];
                rem /= dst.Shape[d];
                dOff += idx * dst.Strides[d];
                sOff += idx * src.Strides[d];
            }
            dstBase[o] = dOff;
            srcBase[o] = sOff;
        }
        TFrom[] s = src.Data<TFrom>();
        TTo[] t = dst.Data<TTo>();
        int tileRows = (nk + Tile - 1) / Tile;
        CpuParallel.For(outerCount * tileRows, (long)Tile * nj, (start, end) =>
        {
            for (int u = start; u < end; u++)
            {
                int o = u / tileRows, k0 = u % tileRows * Tile, k1 = Math.Min(k0 + Tile, nk);
                for (int j0 = 0; j0 < nj; j0 += Tile)
                {
                    int j1 = Math.Min(j0 + Tile, nj);
                    // Inside a tile: src reads run along k (contiguous), dst writes land in 16 cached lines.
                    for (int j = j0; j < j1; j++)
                    {
                        int sRow = srcBase[o] + j * sj, dCol = dstBase[o] + j;
                        for (int kk = k0; kk < k1; kk++) t[dCol + kk * dk] = ElementCast.Cast<TFrom, TTo>(s[sRow + kk]);
                    }
                }
            }
        });
    }

    /// <summary>Sets every element of <paramref name="dst"/> (any strides) to <paramref name="value"/> converted to its dtype.</summary>
    public static void Fill(Tensor dst, double value)
    {
        switch (dst.DType)
        {
            case DType.F32: FillTyped<float>(dst, value); break;
            case DType.F64: FillTyped<double>(dst, value); break;
            case DType.F16: FillTyped<Half>(dst, value); break;
            case DType.BF16: FillTyped<BFloat16>(dst, value); break;
            case DType.I32: FillTyped<int>(dst, value); break;
            case DType.I64: FillTyped<long>(dst, value); break;
            case DType.I8: FillTyped<sbyte>(dst, value); break;
            case DType.U8: FillTyped<byte>(dst, value); break;
            default: throw new NotSupportedException($"fill {dst.Describe()}");
        }
    }

    private static void FillTyped<T>(Tensor dst, double value) where T : unmanaged
    {
        var loop = new StridedLoop(dst.Shape, dst);
        loop.Run(new FillKernel<T>(dst.Data<T>(), ElementCast.FromDouble<T>(value), loop.InnerStride(0)));
    }

    private readonly struct FillKernel<T>(T[] dst, T value, int stride) : IRowKernel where T : unmanaged
    {
        public void Row(int n, int o0, int o1, int o2, int o3)
        {
            if (stride == 1) dst.AsSpan(o0, n).Fill(value);
            else for (int i = 0; i < n; i++) dst[o0 + i * stride] = value;
        }
    }

    /// <summary>Element i (row-major) = A + (B - A) * U_i, U_i = Philox.Uniform(seed, offset + i) in [0, 1).</summary>
    public static void RandUniform(Tensor dst, RandomAttrs a) => Random(dst, a, normal: false);

    /// <summary>Element i (row-major) = A + B * Z_i, Z_i = Philox.Normal(seed, offset + i) ~ N(0, 1).</summary>
    public static void RandNormal(Tensor dst, RandomAttrs a) => Random(dst, a, normal: true);

    private static void Random(Tensor dst, RandomAttrs a, bool normal)
    {
        if (!dst.DType.IsFloat()) throw new NotSupportedException($"random numbers need a floating-point tensor, got {dst.Describe()}");
        // y = shift + scale * sample, in double, rounded once to the output type.
        double shift = a.A, scale = normal ? a.B : a.B - a.A;
        if (dst.DType == DType.F64 && dst.IsContiguous)
        {
            double[] d = dst.Data<double>();
            int off = dst.Offset;
            Samples(dst.Numel, a, normal, (i, s) => d[off + i] = shift + scale * s);
            return;
        }
        // F32 directly into a contiguous destination; other dtypes and strided views through a float32 buffer.
        var f32 = dst.DType == DType.F32 && dst.IsContiguous ? dst : Tensor.Empty(dst.Shape, DType.F32);
        float[] data = f32.Data<float>();
        int fOff = f32.Offset;
        Samples(f32.Numel, a, normal, (i, s) => data[fOff + i] = (float)(shift + scale * s));
        if (!ReferenceEquals(f32, dst)) Copy(f32, dst);
    }

    /// <summary>
    /// Calls <paramref name="store"/>(i, sample i) for i in [0, n), in parallel. Sample i is Philox.Uniform or
    /// Philox.Normal at counter Offset + i, bit for bit; a Philox block (4 words) is computed once and gives
    /// 4 uniforms or 2 normals.
    /// </summary>
    private static void Samples(int n, RandomAttrs a, bool normal, Action<int, float> store)
    {
        ulong seed = a.Seed, first = a.Offset;
        CpuParallel.For(n, 32, (start, end) =>
        {
            int i = start;
            if (normal)
            {
                // Normal j reads words 2j, 2j + 1: an even j starts a block that also holds normal j + 1.
                while (i < end)
                {
                    ulong j = first + (ulong)i;
                    if ((j & 1) == 0 && i + 1 < end)
                    {
                        var (w0, w1, w2, w3) = Philox.Block(seed, j >> 1);
                        store(i, Philox.ToNormal(w0, w1));
                        store(i + 1, Philox.ToNormal(w2, w3));
                        i += 2;
                    }
                    else store(i++, Philox.Normal(seed, j));
                }
            }
            else
            {
                while (i < end)
                {
                    ulong j = first + (ulong)i;
                    if ((j & 3) == 0 && i + 3 < end)
                    {
                        var (w0, w1, w2, w3) = Philox.Block(seed, j >> 2);
                        store(i, Philox.ToUniform(w0));
                        store(i + 1, Philox.ToUniform(w1));
                        store(i + 2, Philox.ToUniform(w2));
                        store(i + 3, Philox.ToUniform(w3));
                        i += 4;
                    }
                    else store(i++, Philox.Uniform(seed, j));
                }
            }
        });
    }
}
