using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Quant;

namespace ManagedTensor.Gpu.Kernels.Quant;

/// <summary>
/// Op.Copy from a block format: decoding on the device (w.To(DType.F32), .To(F16), ...), what QMatMul's backward
/// (dL/dx = dL/dy W, W decoded to the gradient's dtype) and quantized embeddings (rows of a block tensor,
/// w.Narrow(0, token, 1).To(dtype)) need without a round trip through the host.
///
/// One thread per eight values (a <see cref="Group8"/>): thread i decodes values 8 i .. 8 i + 7 of the tensor,
/// group i % (BlockSize / 8) of block i / (BlockSize / 8), and writes them with the CPU's arithmetic (Scale * raw - Min
/// in float, then the cast to the output dtype), so the result is the CPU backend's bit for bit. Neighbouring
/// threads read neighbouring words of the same block, so the reads coalesce; the kernel is bound by the writes
/// (8 or 4 output bytes per 0.56 input bytes for Q4_0).
/// </summary>
internal static class QuantDecodeKernels
{
    // ---- kernel ----

    /// <summary>dst[0 .. 8 groups) = the values of the blocks starting at 16-bit word <paramref name="wordOffset"/> of <paramref name="w"/>.</summary>
    public static void DecodeKernel<TW, T, C>(ArrayView<ushort> w, ArrayView<T> dst, int wordOffset, int groups)
        where TW : struct, IBlockDecoder where T : unmanaged where C : struct, ICodec<T>
    {
        TW f = default;
        C c = default;
        int perBlock = f.BlockSize / 8, words = f.BlockBytes / 2;
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < groups; i += step)
        {
            int block = i / perBlock, j = i - block * perBlock;
            var g = f.Decode8(w, wordOffset + block * words, j);
            int o = 8 * i;
            dst[o] = c.FromFloat(g.Scale * g.Lo.X - g.Min);
            dst[o + 1] = c.FromFloat(g.Scale * g.Lo.Y - g.Min);
            dst[o + 2] = c.FromFloat(g.Scale * g.Lo.Z - g.Min);
            dst[o + 3] = c.FromFloat(g.Scale * g.Lo.W - g.Min);
            dst[o + 4] = c.FromFloat(g.Scale * g.Hi.X - g.Min);
            dst[o + 5] = c.FromFloat(g.Scale * g.Hi.Y - g.Min);
            dst[o + 6] = c.FromFloat(g.Scale * g.Hi.Z - g.Min);
            dst[o + 7] = c.FromFloat(g.Scale * g.Hi.W - g.Min);
        }
    }

    // ---- launchers ----

    /// <summary>The block formats with a device decoder.</summary>
    public static bool Decodes(DType format) => BlockDecoders.Has(format);

    /// <summary>
    /// Op.Copy with a block-format source: the same format (a byte copy), a float dtype (decoded in place when the
    /// destination is contiguous, else decoded to a float32 workspace and copied through the strided cast kernel),
    /// or another block format (re-encoded on the host: the device has no encoders).
    /// </summary>
    public static void Copy(GpuBackend b, Tensor src, Tensor dst)
    {
        if (!src.Shape.AsSpan().SequenceEqual(dst.Shape))
            throw new ArgumentException($"copy: source {src.Describe()} and destination {dst.Describe()} differ in shape");
        RequireWholeBlocks(src, "copy");
        if (dst.Numel == 0) return;
        var s = (GpuStorage)src.Storage;
        if (dst.DType == src.DType)
        {
            RequireWholeBlocks(dst, "copy");
            long bytes = src.DType.ByteCount(src.Numel);
            s.Bytes.SubView(src.DType.ByteCount(src.Offset), bytes).CopyTo(b.Stream, ((GpuStorage)dst.Storage).Bytes.SubView(dst.DType.ByteCount(dst.Offset), bytes));
            return;
        }
        if (dst.DType.IsQuantized())
        {
            EncodeOnHost(src, dst);
            return;
        }
        if (dst.IsContiguous && dst.DType is DType.F32 or DType.F64 or DType.F16 or DType.BF16)
        {
            Decode(b, src, dst);
            return;
        }
        using var f32 = new Tensor(b.Workspace(DType.F32, src.Numel), (int[])src.Shape.Clone(), Tensor.ContiguousStrides(src.Shape), 0);
        Decode(b, src, f32);
        CopyKernels.Copy(b, f32, dst);
    }

    /// <summary>
    /// Op.Copy into a block format (quantizing, w.To(DType.Q4_0) on a device): the source is copied to the host, encoded
    /// there by the CPU backend's encoders (ggml's reference rounding) and the blocks copied back.
    /// </summary>
    public static void EncodeOnHost(Tensor src, Tensor dst)
    {
        RequireWholeBlocks(dst, "copy");
        using var noGrad = GradMode.NoGrad();
        var encoded = src.To(Device.Cpu).To(dst.DType);
        dst.Storage.CopyFromHost(encoded.ToBlockBytes(), dst.Offset);
    }

    /// <summary>Decodes <paramref name="src"/> (whole blocks) into the contiguous float tensor <paramref name="dst"/>.</summary>
    private static void Decode(GpuBackend b, Tensor src, Tensor dst)
    {
        int groups = src.Numel / 8;
        int wordOffset = checked((int)(src.DType.ByteCount(src.Offset) / 2));
        var w = ((GpuStorage)src.Storage).Bytes.Cast<ushort>();
        var d = (GpuStorage)dst.Storage;
        object view = dst.DType switch
        {
            DType.F32 => d.View<float>().SubView(dst.Offset, dst.Numel),
            DType.F64 => d.View<double>().SubView(dst.Offset, dst.Numel),
            _ => d.View<ushort>().SubView(dst.Offset, dst.Numel),
        };
        b.Launch(Spec(src.DType, dst.DType), b.Grid(groups), w, view, wordOffset, groups);
    }

    /// <summary>Block-format views must be whole blocks in row-major order (as on the CPU backend).</summary>
    internal static void RequireWholeBlocks(Tensor t, string op)
    {
        var f = BlockFormats.Get(t.DType);
        if (!t.IsContiguous || t.Offset % f.BlockSize != 0)
            throw new NotSupportedException($"{op}: {t.Describe()} is a strided view of a block format; block formats are read whole rows of blocks at a time");
    }

    /// <summary>Decode_{format}_{dtype}.</summary>
    public static KernelSpec Spec(DType format, DType to) => new($"Decode_{format}_{to}", BlockDecoders.Visit<MethodInfo, Method>(format, new Method(to)));

    private readonly record struct Method(DType To) : IDecoderVisitor<MethodInfo>
    {
        public MethodInfo Visit<TW>() where TW : struct, IBlockDecoder => To switch
        {
            DType.F32 => Of<TW, float, F32Codec>(),
            DType.F64 => Of<TW, double, F64Codec>(),
            DType.F16 => Of<TW, ushort, F16Codec>(),
            DType.BF16 => Of<TW, ushort, BF16Codec>(),
            _ => throw new NotSupportedException($"decoding to {To}"),
        };

        private static MethodInfo Of<TW, T, C>() where TW : struct, IBlockDecoder where T : unmanaged where C : struct, ICodec<T> =>
            ((Action<ArrayView<ushort>, ArrayView<T>, int, int>)DecodeKernel<TW, T, C>).Method;
    }

    public static IEnumerable<KernelSpec> Specs() =>
        from format in BlockDecoders.Formats
        from to in new[] { DType.F32, DType.F64, DType.F16, DType.BF16 }
        select Spec(format, to);
}
