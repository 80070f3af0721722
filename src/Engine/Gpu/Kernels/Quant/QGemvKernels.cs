using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Kernels.Quant;

/// <summary>The sizes of y (M, N) = x (M, K) W^T for the quantized kernels, passed by value.</summary>
internal struct QMatMulArgs
{
    public int M, N, K;
    /// <summary>Bytes of one row of W (K / BlockSize blocks).</summary>
    public int RowBytes;
    /// <summary>Byte offset of W's first block in its storage (even: blocks are whole).</summary>
    public int WOffset;
    /// <summary>Bytes of W's storage from its start: 16-byte loads stop at this bound.</summary>
    public int WBytes;
    /// <summary>GEMM only: warps of a block along M (1 or 2); the rest of the block's warps go along N.</summary>
    public int WarpsM;
}

/// <summary>
/// The fused dequantizing GEMV of decode: y (M, N) = x (M, K) W^T for M = 1..<see cref="MaxRows"/> token rows, with W
/// (N, K) in a block format read exactly once, as it is stored. Decoding a token is this product for every weight
/// matrix, so the bytes of W are the bytes moved per token, and the kernel's job is to stream them at the memory's
/// bandwidth: at Q4_0 (4.5 bits per weight) a 1.1B model moves ~0.6 GB per token, a bound of ~800 tokens/s at
/// 504 GB/s (RTX 4070) before anything else runs (src/Engine/Gpu/Kernels/Quant/README.md has the table).
///
/// Each warp owns a row n of W at a time (grid-stride over rows) and streams it through a 1 KB shared stage:
/// 1. lane l loads 16-byte chunks l and l + 32 of the row's next span (one 512-byte coalesced read per
///    instruction; spans start on a 16-byte boundary, so a Q4_0 row whose bytes start mid-chunk costs at most
///    one extra chunk), into registers one span ahead of use (the prefetch overlaps the next span's latency
///    with this span's arithmetic), then into the warp's stage;
/// 2. the lanes split the span's groups of eight values (lane l takes groups l, l + 32, ...): each decodes its
///    eight weights in registers (<see cref="IBlockDecoder.Decode8"/>: one OR and one FADD per value, the
///    block scale applied once per group) and multiplies them by the eight activations of each token row
///    (two 16- or 8-byte loads per row, contiguous across lanes, served by L1 after the first warp);
/// 3. at the row's end a butterfly sum over the warp gives y[m, n] for every m; lane 0 writes them.
/// Spans hold a whole number of blocks (at most 1024 - 30 bytes, so the aligned span fits 64 chunks) and a row is
/// cut into equal spans (a 2048-wide Q4_0 row, 1152 bytes, is two spans of 32 blocks).
///
/// The M accumulators are eight named registers, guarded by M at run time (a loop over an indexed array
/// would go to local memory). Activations stay in float32 arithmetic whatever their dtype.
/// </summary>
internal static class QGemvKernels
{
    /// <summary>Token rows one launch handles.</summary>
    public const int MaxRows = 8;

    /// <summary>16-byte chunks in a warp's stage (1 KB) and the most warps a group has.</summary>
    private const int StageChunks = 64, MaxWarps = 8;

    // ---- kernel ----

    public static void Kernel<TX, TA, TW>(ArrayView<TX> x, ArrayView<byte> w, ArrayView<TX> y, QMatMulArgs p)
        where TX : unmanaged where TA : struct, IActivation<TX> where TW : struct, IBlockDecoder
    {
        TW f = default;
        TA act = default;
        int tid = Group.IdxX, warps = Group.DimX >> 5;
        int lane = tid & 31, warp = tid >> 5;
        int firstRow = Grid.IdxX * warps + warp, rowStep = Grid.DimX * warps;
        var stages = SharedMemory.Allocate<U32x4>(MaxWarps * StageChunks);
        var stage = stages.SubView(warp * StageChunks, StageChunks);
        var stageWords = stage.Cast<ushort>();
        var chunks = w.AsAligned(16).Cast<U32x4>();

        int bs = f.BlockSize, bb = f.BlockBytes, groupsPerBlock = bs / 8;
        int blocksPerRow = p.K / bs;
        int spansPerRow = (blocksPerRow * bb + 1023 - 30) / (1024 - 30);          // ceil(row bytes / usable span bytes)
        int spanBlocks = (blocksPerRow + spansPerRow - 1) / spansPerRow;
        spansPerRow = (blocksPerRow + spanBlocks - 1) / spanBlocks;
        int myRows = firstRow < p.N ? (p.N - firstRow + rowStep - 1) / rowStep : 0;
        int tiles = myRows * spansPerRow;

        // Prefetch the first span into registers: chunks lane and lane + 32.
        var next = tiles > 0 ? Prefetch(w, chunks, p, SpanStart(p, firstRow, 0, spanBlocks, bb), SpanEnd(p, firstRow, 0, spanBlocks, blocksPerRow, bb), lane) : default;

        float a0 = 0f, a1 = 0f, a2 = 0f, a3 = 0f, a4 = 0f, a5 = 0f, a6 = 0f, a7 = 0f;
        for (int t = 0; t < tiles; t++)
        {
            int rowIndex = t / spansPerRow, span = t - rowIndex * spansPerRow;
            int n = firstRow + rowIndex * rowStep;
            int start = SpanStart(p, n, span, spanBlocks, bb);
            int b0 = span * spanBlocks, nb = blocksPerRow - b0 < spanBlocks ? blocksPerRow - b0 : spanBlocks;
            stage[lane] = next.A;
            stage[lane + 32] = next.B;
            Warp.Barrier();
            if (t + 1 < tiles)
            {
                int tn = t + 1, nextRow = tn / spansPerRow, nextSpan = tn - nextRow * spansPerRow;
                int nn = firstRow + nextRow * rowStep;
                next = Prefetch(w, chunks, p, SpanStart(p, nn, nextSpan, spanBlocks, bb), SpanEnd(p, nn, nextSpan, spanBlocks, blocksPerRow, bb), lane);
            }

            // This span's groups of eight values: word offset of the span's first block inside the stage, then per group.
            int firstWord = (start & 15) >> 1;
            int items = nb * groupsPerBlock;
            for (int it = lane; it < items; it += 32)
            {
                int blk = it / groupsPerBlock, j = it - blk * groupsPerBlock;
                var g = f.Decode8(stageWords, firstWord + blk * (bb >> 1), j);
                int k = (b0 + blk) * bs + 8 * j;
                a0 += Dot(g, act, x, k);
                if (p.M > 1) a1 += Dot(g, act, x, p.K + k);
                if (p.M > 2) a2 += Dot(g, act, x, 2 * p.K + k);
                if (p.M > 3) a3 += Dot(g, act, x, 3 * p.K + k);
                if (p.M > 4) a4 += Dot(g, act, x, 4 * p.K + k);
                if (p.M > 5) a5 += Dot(g, act, x, 5 * p.K + k);
                if (p.M > 6) a6 += Dot(g, act, x, 6 * p.K + k);
                if (p.M > 7) a7 += Dot(g, act, x, 7 * p.K + k);
            }
            Warp.Barrier(); // the stage is rewritten by the next span

            if (span == spansPerRow - 1)
            {
                a0 = WarpSum(a0);
                if (p.M > 1) a1 = WarpSum(a1);
                if (p.M > 2) a2 = WarpSum(a2);
                if (p.M > 3) a3 = WarpSum(a3);
                if (p.M > 4) a4 = WarpSum(a4);
                if (p.M > 5) a5 = WarpSum(a5);
                if (p.M > 6) a6 = WarpSum(a6);
                if (p.M > 7) a7 = WarpSum(a7);
                if (lane == 0)
                {
                    y[n] = act.Store(a0);
                    if (p.M > 1) y[p.N + n] = act.Store(a1);
                    if (p.M > 2) y[2 * p.N + n] = act.Store(a2);
                    if (p.M > 3) y[3 * p.N + n] = act.Store(a3);
                    if (p.M > 4) y[4 * p.N + n] = act.Store(a4);
                    if (p.M > 5) y[5 * p.N + n] = act.Store(a5);
                    if (p.M > 6) y[6 * p.N + n] = act.Store(a6);
                    if (p.M > 7) y[7 * p.N + n] = act.Store(a7);
                }
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0f;
            }
        }
    }

    /// <summary>Byte offset in W's storage of span <paramref name="span"/> of row <paramref name="n"/>.</summary>
    private static int SpanStart(in QMatMulArgs p, int n, int span, int spanBlocks, int bb) => p.WOffset + n * p.RowBytes + span * spanBlocks * bb;

    private static int SpanEnd(in QMatMulArgs p, int n, int span, int spanBlocks, int blocksPerRow, int bb)
    {
        int endBlock = (span + 1) * spanBlocks;
        return p.WOffset + n * p.RowBytes + (endBlock < blocksPerRow ? endBlock : blocksPerRow) * bb;
    }

    /// <summary>A lane's two chunks of a span.</summary>
    private struct ChunkPair
    {
        public U32x4 A, B;
    }

    /// <summary>Chunks lane and lane + 32 of the 16-byte-aligned span holding bytes [start, end).</summary>
    private static ChunkPair Prefetch(ArrayView<byte> w, ArrayView<U32x4> chunks, in QMatMulArgs p, int start, int end, int lane)
    {
        int first = start >> 4, count = (end + 15 - (start & ~15)) >> 4;
        return new ChunkPair
        {
            A = lane < count ? Chunk(w, chunks, first + lane, p.WBytes) : default,
            B = lane + 32 < count ? Chunk(w, chunks, first + lane + 32, p.WBytes) : default,
        };
    }

    /// <summary>16-byte chunk <paramref name="c"/> of W's storage; the storage's last chunk may be partial (read byte by byte).</summary>
    private static U32x4 Chunk(ArrayView<byte> w, ArrayView<U32x4> chunks, int c, int bytes)
    {
        if ((c << 4) + 16 <= bytes) return chunks[c];
        return new U32x4 { X = Word(w, (c << 4) + 0, bytes), Y = Word(w, (c << 4) + 4, bytes), Z = Word(w, (c << 4) + 8, bytes), W = Word(w, (c << 4) + 12, bytes) };
    }

    private static uint Word(ArrayView<byte> w, int at, int bytes)
    {
        uint v = 0;
        for (int e = 0; e < 4; e++)
            if (at + e < bytes) v |= (uint)w[at + e] << (8 * e);
        return v;
    }

    /// <summary>Sum of the group's eight values times x[i..i+7]: Scale * sum raw x - Min * sum x.</summary>
    private static float Dot<TX, TA>(in Group8 g, TA act, ArrayView<TX> x, int i) where TX : unmanaged where TA : struct, IActivation<TX>
    {
        Float4 lo = act.Load4(x, i), hi = act.Load4(x, i + 4);
        float s = g.Lo.X * lo.X + g.Lo.Y * lo.Y + g.Lo.Z * lo.Z + g.Lo.W * lo.W + g.Hi.X * hi.X + g.Hi.Y * hi.Y + g.Hi.Z * hi.Z + g.Hi.W * hi.W;
        float r = g.Scale * s;
        if (g.Min != 0f) r -= g.Min * (lo.X + lo.Y + lo.Z + lo.W + hi.X + hi.Y + hi.Z + hi.W);
        return r;
    }

    /// <summary>Butterfly sum over the warp's 32 lanes.</summary>
    private static float WarpSum(float v)
    {
        v += Warp.ShuffleXor(v, 16);
        v += Warp.ShuffleXor(v, 8);
        v += Warp.ShuffleXor(v, 4);
        v += Warp.ShuffleXor(v, 2);
        v += Warp.ShuffleXor(v, 1);
        return v;
    }

    // ---- launcher ----

    /// <summary>y = x W^T for x (M &lt;= 8, K) and y (M, N) contiguous, x aligned (see QuantKernels), W whole blocks.</summary>
    public static void Run(GpuBackend b, DType format, DType activation, object x, ArrayView<byte> w, object y, QMatMulArgs p)
    {
        int warps = b.GroupSize / 32;
        int groups = (int)Math.Min((p.N + warps - 1L) / warps, 65535);
        b.Launch(Spec(format, activation), new KernelConfig(groups, warps * 32), x, w, y, p);
    }

    /// <summary>QGemv_{format}_{activation}.</summary>
    public static KernelSpec Spec(DType format, DType activation) => new($"QGemv_{format}_{activation}", BlockDecoders.Visit<MethodInfo, Method>(format, new Method(activation)));

    private readonly record struct Method(DType Activation) : IDecoderVisitor<MethodInfo>
    {
        public MethodInfo Visit<TW>() where TW : struct, IBlockDecoder => Activation switch
        {
            DType.F32 => Of<float, F32Activation, TW>(),
            DType.F16 => Of<ushort, F16Activation, TW>(),
            DType.BF16 => Of<ushort, BF16Activation, TW>(),
            _ => throw new NotSupportedException($"QMatMul activations must be F32, F16 or BF16, got {Activation}"),
        };

        private static MethodInfo Of<TX, TA, TW>() where TX : unmanaged where TA : struct, IActivation<TX> where TW : struct, IBlockDecoder =>
            ((Action<ArrayView<TX>, ArrayView<byte>, ArrayView<TX>, QMatMulArgs>)Kernel<TX, TA, TW>).Method;
    }
}
