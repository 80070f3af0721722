using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Cpu;

/// <summary>
/// Float convolution with dilation 1 as an implicit GEMM: no im2col matrix, no B packing.
/// The im2col path (CpuConv) writes a K x L column matrix (K = Cg*KH*KW, L = OH*OW) that the GEMM then
/// packs again, two more passes over K*L floats; with few output channels each packed float feeds only
/// 2*Og flops, so those passes, not the FMAs, set the time. Here each image is zero-padded once into
/// (Cg, Hp, Wp), Hp = H + 2*PadH, Wp = W + 2*PadW, and output pixels are indexed "wide", l = oh*Wp + ow
/// (ow up to Wp, the last KW-1 columns of each wide row being garbage): then im2col row k = (c, kh, kw) is
/// the contiguous run padded[off[k] + l], off[k] = (c*Hp + kh)*Wp + kw, and the register micro-kernels of
/// ConvKernels read it in place. A strided convolution reads the image split into stride phases (see Plane),
/// where the same holds.
///
///   forward          y (Og, L) = w (Og, K) . col (K, L)           A = w packed once, B = rows of the image
///   backward input   dx = the same product on dy, with the weights flipped and transposed (the adjoint of a
///                    correlation); a strided conv's dx is split into stride phases, each a stride-1 product with a
///                    sub-kernel (CpuConvDirectBackwardInput.cs)
///   backward weight  dw^T (K, Og) += col (K, L) . dy^T (L, Og)      A = rows of the image (MR streams),
///                    B = dy transposed and packed once per image (Og*L floats, not K*L)
/// Images run in at most 8 chunks (so backward weight sums its per-chunk partials in an order that depends
/// only on the shape); one image alone is cut into blocks of output rows (forward) or rows of dw^T (backward
/// weight) for the threads. Measured per shape by `ManagedTensor.Bench conv` (bench/ConvRunner.cs).
/// </summary>
internal static unsafe partial class CpuConvDirect
{
    /// <summary>Whether the direct path takes this convolution: dilation 1, any kernel and stride, and a SIMD
    /// micro-kernel. A 1x1 conv takes it too: its backward weight, dw = dy . x^T, would otherwise pack x
    /// transposed for the GEMM, a gather as slow as the product at YOLOv8n's shapes.</summary>
    public static bool Applies(CpuConv.Geometry g, SgemmIsa isa)
        => isa != SgemmIsa.Scalar && g.A.DilationH == 1 && g.A.DilationW == 1;

    /// <summary>Backward input takes the direct path wherever the forward does: any stride, by stride phases, and
    /// any padding (see CpuConvDirectBackwardInput.cs).</summary>
    public static bool AppliesBackwardInput(CpuConv.Geometry g, SgemmIsa isa) => Applies(g, isa);

    /// <summary>
    /// One correlation of an image of Cin channels, H x W, zero-padded by PH, PW to Hp x Wp, with a KH x KW
    /// kernel and strides SH, SW. A strided image is stored split into SH*SW phases, (Cin, SH, SW, Hq, Wq) with
    /// phase (a, b)[i, j] = padded[c, i*SH + a, j*SW + b], so that tap (kh, kw) of output (oh, ow) is element
    /// (oh + kh/SH, ow + kw/SW) of phase (kh%SH, kw%SW): again a contiguous run along the wide row l = oh*Wq + ow.
    /// With stride 1 there is one phase, the padded image itself (Hq = Hp, Wq = Wp).
    /// </summary>
    private readonly record struct Plane(int Cin, int H, int W, int KH, int KW, int PH, int PW, int SH = 1, int SW = 1)
    {
        public int Hp => H + 2 * PH;
        public int Wp => W + 2 * PW;
        public int Hq => (Hp + SH - 1) / SH;
        /// <summary>The width of a phase plane, and of a wide output row.</summary>
        public int Wq => (Wp + SW - 1) / SW;
        public int OH => (Hp - KH) / SH + 1;
        public int OW => (Wp - KW) / SW + 1;
        public int K => Cin * KH * KW;
        /// <summary>Wide output pixels rounded up to whole slivers of nr columns.</summary>
        public int Lp(int nr) => (OH * Wq + nr - 1) / nr * nr;
        /// <summary>The padded image plus slack: the last sliver reads up to nr + KW floats past it (Pad may clear 2*PW).</summary>
        public int PaddedFloats(int nr) => Cin * SH * SW * Hq * Wq + nr + KW + 2 * PW;

        /// <summary>off[k] for k = (c*KH + kh)*KW + kw, then count - K more entries repeating the last (rows of a padded tile).</summary>
        public int[] Offsets(int count)
        {
            var off = new int[Math.Max(count, K)];
            for (int c = 0; c < Cin; c++)
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++)
                        off[(c * KH + kh) * KW + kw] = ((c * SH + kh % SH) * SW + kw % SW) * Hq * Wq + kh / SH * Wq + kw / SW;
            for (int k = K; k < off.Length; k++) off[k] = off[K - 1];
            return off;
        }
    }

    public static void Forward(Tensor xt, Tensor wt, Tensor bt, Tensor yt, CpuConv.Geometry g, SgemmIsa isa, bool silu = false)
    {
        var (mr, _) = ConvKernels.Tile(isa, rows: false);
        var x = NnKernels.Buf<float>(xt);
        var w = NnKernels.Buf<float>(wt);
        var y = NnKernels.Buf<float>(yt);
        float[]? bias = bt.Numel > 0 ? bt.ElementSpan<float>().ToArray() : null; // (O)
        var pl = new Plane(g.Cg, g.H, g.W, g.KH, g.KW, g.A.PadH, g.A.PadW, g.A.StrideH, g.A.StrideW);
        int mPad = (g.Og + mr - 1) / mr * mr;
        using var packed = new Scratch<float>(g.G * mPad * g.K); // per group: w (Og, K) in slivers of MR rows
        fixed (float* pw = w.Data, pp = packed.Array)
            for (int grp = 0; grp < g.G; grp++)
                PackRows(pw + w.Offset + grp * g.Og * g.K, g.Og, g.K, mr, pp + grp * mPad * g.K);
        var pass = new Pass(pl.K, 0, pl.OH, pl.OW, 0, pl.OW, 1, g.L);
        Run(pl, packed.Array, pl.Offsets(pl.K), [pass], g.Og, g.G, g.N, x.Data, x.Offset, g.C * g.H * g.W, y.Data, y.Offset, g.O * g.L, bias, isa, silu);
    }

    /// <summary>
    /// One product of Run, for every image and group: out (m, OH, OW) = A (m, K) . col (K, OH*OW), A = group grp's
    /// rows of packed from APacked + grp*mPad*K, col row k = the run padded[Base + off[OffStart + k] + l] of the padded
    /// input at wide pixel l = oh*Wq + ow. Output pixel (oh, ow) of channel o goes to
    /// out[o*DstPlane + DstOffset + oh*DstRow + ow*DstCol]. The forward and a stride-1 backward input are one pass over
    /// the whole plane (DstRow = OW, DstCol = 1); a strided backward input is one pass per stride phase.
    /// </summary>
    private readonly record struct Pass(int K, int Base, int OH, int OW, int DstOffset, int DstRow, int DstCol, int DstPlane,
        int APacked = 0, int OffStart = 0);

    /// <summary>
    /// out[n, grp] = the passes' products over in[n, grp] for every image and group; in is (N, G*Cin, H, W) with
    /// imageIn floats per image, padded as pl says, once per image and group for all passes; out (N, G*m, ...) with
    /// imageOut floats per image; (+ bias, silu) for the forward.
    /// </summary>
    private static void Run(Plane pl, float[] packed, int[] off, Pass[] passes, int m, int groups, int n, float[] inData, int inOffset,
        int imageIn, float[] outData, int outOffset, int imageOut, float[]? bias, SgemmIsa isa, bool silu = false)
    {
        var (mr, nr) = ConvKernels.Tile(isa, rows: false);
        int mPad = (m + mr - 1) / mr * mr, wq = pl.Wq;
        long flops = 0;
        int padFloats = pl.PaddedFloats(nr);
        foreach (var p in passes)
        {
            flops += 2L * groups * m * p.K * p.OH * p.OW;
            // the last sliver of a pass reads up to nr floats past its last wide row, at the largest offset
            int maxOff = 0;
            for (int k = 0; k < p.K; k++) maxOff = Math.Max(maxOff, off[p.OffStart + k]);
            padFloats = Math.Max(padFloats, p.Base + maxOff + p.OH * wq + nr);
        }
        int chunks = Chunks(n);
        bool inside = chunks == 1 && Environment.ProcessorCount > 1 && flops >= 2 * Sgemm.ParallelLimit;
        NnKernels.ForChunks(chunks, n, (_, n0, n1) =>
        {
            using var padBuf = new Scratch<float>(padFloats);
            fixed (float* pad = padBuf.Array, pp = packed, pin = inData, pout = outData)
            fixed (int* poff = off)
            {
                nint xPad = (nint)pad, xPp = (nint)pp, xOff = (nint)poff;
                for (int img = n0; img < n1; img++)
                    for (int grp = 0; grp < groups; grp++)
                    {
                        Pad(pl, pin + inOffset + (nint)img * imageIn + (nint)grp * pl.Cin * pl.H * pl.W, pad, padFloats);
                        foreach (var p in passes)
                        {
                            nint xA = xPp + ((nint)p.APacked + (nint)grp * mPad * p.K) * sizeof(float);
                            nint xOut = (nint)(pout + outOffset + (nint)img * imageOut + (nint)grp * m * p.DstPlane + p.DstOffset);
                            nint xIn = xPad + (nint)p.Base * sizeof(float), xPassOff = xOff + (nint)p.OffStart * sizeof(int);
                            // The wide output is made a block of output rows at a time, into a C block that stays in L2 until
                            // CopyOut moves it to out (the whole (mPad, Lp) wide output of a 320 x 320 map would be ~7 MB).
                            int rows = Math.Clamp(CBlockFloats / (mPad * wq), 1, p.OH);
                            if (inside) rows = Math.Min(rows, (p.OH + 4 * Environment.ProcessorCount - 1) / (4 * Environment.ProcessorCount));
                            int blocks = (p.OH + rows - 1) / rows, ldc = (rows * wq + nr - 1) / nr * nr;
                            int biasStart = grp * m;
                            ForItems(blocks, inside, block =>
                            {
                                int r0 = block * rows, r1 = Math.Min(p.OH, r0 + rows);
                                int cols = ((r1 - r0) * wq + nr - 1) / nr * nr;
                                using var cBuf = new Scratch<float>(mPad * ldc); // (mPad, ldc): wide rows r0..r1
                                fixed (float* c = cBuf.Array)
                                {
                                    ForwardColumns(isa, p.K, (float*)xA, mPad, (float*)xIn + (nint)r0 * wq, (int*)xPassOff, c, ldc, 0, cols);
                                    CopyOut(c, ldc, wq, m, r0, r1, p, bias, biasStart, (float*)xOut, silu);
                                }
                            });
                        }
                    }
            }
        });
    }

    /// <summary>Floats of the C block of Run: 256 KiB, a quarter of L2.</summary>
    private const int CBlockFloats = 64 * 1024;

    /// <summary>
    /// Drops the wide garbage columns and adds the bias for output rows r0..r1 of pass p:
    /// dst[o*DstPlane + i*DstRow + j*DstCol] = C[o, (i - r0)*Wq + j] + bias[bias0 + o], then silu(dst) in place when
    /// asked (Conv2dSilu: the row is still in L1, so SiLU costs its arithmetic and no pass over memory). A stride
    /// phase's row (DstCol = SW) is scattered.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CopyOut(float* c, int ldc, int wq, int m, int r0, int r1, Pass p, float[]? bias, int bias0, float* dst, bool silu)
    {
        int ow = p.OW;
        for (int o = 0; o < m; o++)
        {
            float bo = bias is null ? 0f : bias[bias0 + o];
            for (int i = r0; i < r1; i++)
            {
                float* s = c + (nint)o * ldc + (i - r0) * wq;
                float* drow = dst + (nint)o * p.DstPlane + (nint)i * p.DstRow;
                if (p.DstCol != 1) // a stride phase of backward input: no bias
                {
                    int j = p.DstCol == 2 && Avx512F.IsSupported ? ScatterEven(s, drow, ow) : 0;
                    for (; j < ow; j++) drow[(nint)j * p.DstCol] = s[j];
                    continue;
                }
                var src = new ReadOnlySpan<float>(s, ow);
                var d = new Span<float>(drow, ow);
                if (bias is null) src.CopyTo(d);
                else TensorPrimitives.Add(src, bo, d);
                if (silu) SigmoidFloat.Silu(d, d);
            }
        }
    }

    /// <summary>
    /// C[:, j0..j1] = A (mPad x K, packed in MR-row slivers) . col[:, j0..j1], col read from the padded image
    /// through off; k blocks of KC outermost so that an A block of mPad x KC stays in L2 while the columns pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardColumns(SgemmIsa isa, int k, float* a, int mPad, float* pad, int* off, float* c, int ldc, int j0, int j1)
    {
        var (mr, nr) = ConvKernels.Tile(isa, rows: false);
        for (int pc = 0; pc < k; pc += Sgemm.KC)
        {
            int kc = Math.Min(Sgemm.KC, k - pc);
            for (int j = j0; j < j1; j += nr)
                for (int s = 0; s < mPad; s += mr)
                {
                    float* aSliver = a + (nint)s * k + (nint)pc * mr;
                    float* cTile = c + (nint)s * ldc + j;
                    if (isa == SgemmIsa.Avx512) ConvKernels.Avx512Indirect8x48(kc, aSliver, pad + j, off + pc, cTile, ldc, pc > 0);
                    else ConvKernels.Avx2Indirect6x16(kc, aSliver, pad + j, off + pc, cTile, ldc, pc > 0);
                }
        }
    }

    public static void BackwardWeight(Tensor dyt, Tensor xt, Tensor dwt, CpuConv.Geometry g, SgemmIsa isa)
    {
        var (mr, nr) = ConvKernels.RowsTile(isa, g.Og);
        var dy = NnKernels.Buf<float>(dyt);
        var x = NnKernels.Buf<float>(xt);
        var pl = new Plane(g.Cg, g.H, g.W, g.KH, g.KW, g.A.PadH, g.A.PadW, g.A.StrideH, g.A.StrideW);
        int k = g.K, kPad = (k + mr - 1) / mr * mr, oPad = (g.Og + nr - 1) / nr * nr, lp = pl.Lp(nr);
        int tile = kPad * oPad; // dw^T of one group, (kPad, oPad)
        int[] off = pl.Offsets(kPad);
        long flops = 2L * g.O * k * g.L;
        int chunks = Chunks(g.N);
        bool inside = chunks == 1 && Environment.ProcessorCount > 1 && flops >= 2 * Sgemm.ParallelLimit;
        using var partialBuf = new Scratch<float>(chunks * g.G * tile); // (chunks, G, kPad, oPad), added in chunk order
        partialBuf.Clear();
        var partial = partialBuf.Array;
        NnKernels.ForChunks(chunks, g.N, (chunk, n0, n1) =>
        {
            using var padBuf = new Scratch<float>(pl.PaddedFloats(nr));
            using var dyBuf = new Scratch<float>(oPad * lp); // dy^T of one image and group in slivers of NR channels
            fixed (float* pad = padBuf.Array, dyT = dyBuf.Array, px = x.Data, pdy = dy.Data, pdw = partial)
            fixed (int* poff = off)
            {
                nint xPad = (nint)pad, xDyT = (nint)dyT, xOff = (nint)poff;
                for (int img = n0; img < n1; img++)
                    for (int grp = 0; grp < g.G; grp++)
                    {
                        Pad(pl, px + x.Offset + ((nint)img * g.C + grp * g.Cg) * g.H * g.W, pad, pl.PaddedFloats(nr));
                        PackDyT(pdy + dy.Offset + ((nint)img * g.O + grp * g.Og) * g.L, g.Og, g.OH, g.OW, pl.Wq, lp, nr, dyT);
                        nint xDw = (nint)(pdw + ((nint)chunk * g.G + grp) * tile);
                        int rowBlocks = kPad / mr;
                        int items = inside ? Math.Min(rowBlocks, 4 * Environment.ProcessorCount) : 1;
                        ForItems(items, inside, item =>
                        {
                            var (b0, b1) = NnKernels.ChunkRange(item, items, rowBlocks);
                            WeightRows(isa, mr, nr, (float*)xPad, (int*)xOff, (float*)xDyT, lp, oPad, (float*)xDw, b0 * mr, b1 * mr);
                        });
                    }
            }
        });
        // dw[grp*Og + o, kk] = sum over chunks (in chunk order) of dw^T[chunk, grp, kk, o]
        var sum = partial.AsSpan(0, g.G * tile);
        for (int ch = 1; ch < chunks; ch++) TensorPrimitives.Add(sum, partial.AsSpan(ch * g.G * tile, g.G * tile), sum);
        var dw = dwt.ElementSpan<float>();
        for (int grp = 0; grp < g.G; grp++)
            for (int o = 0; o < g.Og; o++)
                for (int kk = 0; kk < k; kk++) dw[(grp * g.Og + o) * k + kk] = sum[grp * tile + kk * oPad + o];
    }

    /// <summary>
    /// Chunks of images: at most MaxChunks (a constant, so that backward weight's sum over chunk partials
    /// does not depend on the machine), enough to keep 2-8 cores busy; one image alone is cut between the threads.
    /// </summary>
    private static int Chunks(int n) => Math.Min(n, MaxChunks);

    private const int MaxChunks = 8;

    /// <summary>dw^T[r0..r1, :] += col[r0..r1, :] . dy^T, the rows of col read from the padded image; l blocks of KC outermost.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightRows(SgemmIsa isa, int mr, int nr, float* pad, int* off, float* dyT, int lp, int oPad, float* dwT, int r0, int r1)
    {
        for (int lc = 0; lc < lp; lc += Sgemm.KC)
        {
            int kc = Math.Min(Sgemm.KC, lp - lc);
            for (int t = 0; t < oPad; t += nr)
            {
                float* b = dyT + (nint)t * lp + (nint)lc * nr;
                for (int r = r0; r < r1; r += mr)
                {
                    float* cTile = dwT + (nint)r * oPad + t;
                    if (isa == SgemmIsa.Avx2) ConvKernels.Avx2Rows6x16(kc, pad + lc, off + r, b, cTile, oPad);
                    else if (nr == 16) ConvKernels.Avx512Rows12x16(kc, pad + lc, off + r, b, cTile, oPad);
                    else ConvKernels.Avx512Rows12x32(kc, pad + lc, off + r, b, cTile, oPad);
                }
            }
        }
    }

    /// <summary>
    /// dyT[t][l, j] = dy[t*NR + j, oh, ow] at wide pixel l = oh*Wq + ow, zero where ow &gt;= OW, l &gt;= OH*Wq or the
    /// channel is past Og: sliver t of NR channels is (Lp, NR), row by row, as the Rows kernel reads it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackDyT(float* dy, int og, int oh, int ow, int wq, int lp, int nr, float* dst)
    {
        for (int t = 0; t < og; t += nr)
        {
            int cols = Math.Min(nr, og - t);
            float* sliver = dst + (nint)t * lp;
            new Span<float>(sliver, lp * nr).Clear();
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                {
                    float* d = sliver + ((nint)i * wq + j) * nr;
                    float* s = dy + (nint)t * oh * ow + i * ow + j;
                    for (int q = 0; q < cols; q++) d[q] = s[(nint)q * oh * ow];
                }
        }
    }

    /// <summary>
    /// The padded image (see Plane) from x (Cin, H, W), then zeros of slack: with stride 1, (Cin, Hp, Wp) = x with
    /// PH, PW zeros around; with strides, each phase gathers every SH-th row and SW-th column. Zeros up to
    /// <paramref name="floats"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pad(Plane pl, float* x, float* padded, int floats)
    {
        if (pl.SH == 1 && pl.SW == 1) PadUnstrided(pl, x, padded);
        else
        {
            int hq = pl.Hq, wq = pl.Wq;
            for (int c = 0; c < pl.Cin; c++)
                for (int a = 0; a < pl.SH; a++)
                    for (int b = 0; b < pl.SW; b++)
                    {
                        float* phase = padded + (((nint)c * pl.SH + a) * pl.SW + b) * hq * wq;
                        // columns j with iw = j*SW + b - PW in [0, W): j in [jLo, jHi)
                        int jLo = Math.Min(wq, Math.Max(0, (pl.PW - b + pl.SW - 1) / pl.SW));
                        int last = pl.W - 1 + pl.PW - b; // the largest j*SW with iw < W
                        int jHi = last < 0 ? jLo : Math.Max(jLo, Math.Min(wq, last / pl.SW + 1));
                        for (int i = 0; i < hq; i++)
                        {
                            float* row = phase + (nint)i * wq;
                            int ih = i * pl.SH + a - pl.PH;
                            if (ih < 0 || ih >= pl.H)
                            {
                                new Span<float>(row, wq).Clear();
                                continue;
                            }
                            float* src = x + ((nint)c * pl.H + ih) * pl.W + b - pl.PW;
                            for (int j = 0; j < jLo; j++) row[j] = 0f;
                            int jv = pl.SW == 2 && Avx512F.IsSupported ? GatherEven(src, row, jLo, jHi, pl.W - b + pl.PW) : jLo;
                            for (int j = jv; j < jHi; j++) row[j] = src[j * pl.SW];
                            for (int j = jHi; j < wq; j++) row[j] = 0f;
                        }
                    }
        }
        int used = pl.Cin * pl.SH * pl.SW * pl.Hq * pl.Wq;
        new Span<float>(padded + used, floats - used).Clear();
    }

    /// <summary>
    /// dst[j] = src[2j] for j from j0, 16 at a time (two loads and one two-source permute) while j + 16 &lt;= j1 and
    /// the 32 floats read stay below src[avail]; returns the j where it stopped (the rest is the caller's scalar
    /// loop). The stride-2 phase split was a scalar gather that cost more than the convolution it fed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int GatherEven(float* src, float* dst, int j0, int j1, int avail)
    {
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        int j = j0;
        for (; j + 16 <= j1 && 2 * j + 32 <= avail; j += 16)
            Avx512F.PermuteVar16x32x2(Vector512.Load(src + 2 * j), even, Vector512.Load(src + 2 * j + 16)).Store(dst + j);
        return j;
    }

    /// <summary>
    /// dst[2j] = src[j], 16 at a time, the odd entries of dst kept (one load of dst and a two-source permute per 16
    /// floats), while j + 17 &lt;= count (so the last odd entry read and written back, dst[2j + 31], lies before
    /// dst[2*count - 1] and thus inside the row); returns the j where it stopped. GatherEven's mirror: it writes a
    /// stride-2 phase of backward input into dx.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ScatterEven(float* src, float* dst, int count)
    {
        var lo = Vector512.Create(0, 17, 1, 19, 2, 21, 3, 23, 4, 25, 5, 27, 6, 29, 7, 31);   // even lanes src, odd lanes dst
        var hi = Vector512.Create(8, 17, 9, 19, 10, 21, 11, 23, 12, 25, 13, 27, 14, 29, 15, 31);
        int j = 0;
        for (; j + 17 <= count; j += 16)
        {
            var v = Vector512.Load(src + j);
            float* d = dst + 2 * j;
            Avx512F.PermuteVar16x32x2(v, lo, Vector512.Load(d)).Store(d);
            Avx512F.PermuteVar16x32x2(v, hi, Vector512.Load(d + 16)).Store(d + 16);
        }
        return j;
    }

    /// <summary>padded (Cin, Hp, Wp) = x (Cin, H, W) with PH, PW zeros around.</summary>
    private static void PadUnstrided(Plane pl, float* x, float* padded)
    {
        int hp = pl.Hp, wp = pl.Wp;
        for (int c = 0; c < pl.Cin; c++)
        {
            float* plane = padded + (nint)c * hp * wp;
            new Span<float>(plane, pl.PH * wp + pl.PW).Clear();
            for (int i = 0; i < pl.H; i++)
            {
                float* row = plane + (nint)(i + pl.PH) * wp + pl.PW;
                new ReadOnlySpan<float>(x + ((nint)c * pl.H + i) * pl.W, pl.W).CopyTo(new Span<float>(row, pl.W));
                new Span<float>(row + pl.W, 2 * pl.PW).Clear(); // right border of this row, left border of the next
            }
            new Span<float>(plane + (nint)(pl.H + pl.PH) * wp + pl.PW, Math.Max(0, pl.PH * wp - pl.PW)).Clear();
        }
    }

    /// <summary>a (m, k), row-major, into slivers of mr rows stored column by column (dst[s*k + p*mr + r]), zero rows past m.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackRows(float* a, int m, int k, int mr, float* dst)
    {
        for (int s = 0; s < m; s += mr)
        {
            float* sliver = dst + (nint)s * k;
            for (int r = 0; r < mr; r++)
            {
                float* src = a + (nint)(s + r) * k;
                if (s + r < m) for (int p = 0; p < k; p++) sliver[p * mr + r] = src[p];
                else for (int p = 0; p < k; p++) sliver[p * mr + r] = 0f;
            }
        }
    }

    private static void ForItems(int items, bool parallel, Action<int> body)
    {
        if (items <= 1 || !parallel)
        {
            for (int i = 0; i < items; i++) body(i);
            return;
        }
        Parallel.For(0, items, body);
    }
}
