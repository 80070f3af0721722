using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>A compile-time head dim: each tensor-core attention kernel is instantiated per head dim, so every loop over D is unrolled code.</summary>
internal interface IHeadDim
{
    int D { get; }
}

internal struct HeadDim64 : IHeadDim
{
    public readonly int D => 64;
}

internal struct HeadDim128 : IHeadDim
{
    public readonly int D => 128;
}

/// <summary>Dropout on the attention weights, at compile time: the kernel without it has no Philox code in its loop.</summary>
internal interface IDropout
{
    bool Enabled { get; }
}

internal struct NoDropout : IDropout
{
    public readonly bool Enabled => false;
}

internal struct WithDropout : IDropout
{
    public readonly bool Enabled => true;
}

/// <summary>
/// Which code an attention tensor-core kernel holds (a type parameter, so each instantiation holds one path:
/// ILGPU compiles both sides of a CudaAsm.IsSupported test): cp.async + ldmatrix + mma on CUDA, or plain copies
/// and float dot products over the same shared tiles on any accelerator (the CPU one in tests), which runs
/// everything else (staging, masking, the softmax on fragments, the output) in CI.
/// </summary>
internal interface IAttentionPath
{
    bool TensorCores { get; }
}

internal struct TensorCorePath : IAttentionPath
{
    public readonly bool TensorCores => true;
}

internal struct PlainPath : IAttentionPath
{
    public readonly bool TensorCores => false;
}

/// <summary>
/// One lane's share of a 16 x 8 float32 tile in the mma.m16n8k16 layout: with g = lane / 4 and
/// t = lane % 4, C0 and C1 are (row g, columns 2t and 2t + 1), C2 and C3 the same columns of row g + 8.
/// Passed by value so ILGPU keeps every field in a register.
/// </summary>
internal struct Frag
{
    public float C0, C1, C2, C3;
}

/// <summary>Eight 16 x 8 fragments: a 16 x 64 tile of one warp (scores of a key tile, or 64 output columns).</summary>
internal struct Frags8
{
    public Frag F0, F1, F2, F3, F4, F5, F6, F7;
}

/// <summary>A 16 x D operand held as mma A fragments, one U32x4 per 16 of D (D = 64 uses X0..X3).</summary>
internal struct AFrags
{
    public U32x4 X0, X1, X2, X3, X4, X5, X6, X7;
}

/// <summary>
/// The warp-level pieces the tensor-core attention kernels share. Shared tiles hold 16-bit rows of D
/// elements (D * 2 bytes) with their 16-byte chunks XOR-swizzled by the row (chunk c of row r is stored
/// at c ^ (r % 8)): the 8 rows an ldmatrix reads, D * 2 bytes apart, then fall in 8 different bank groups.
/// Fragment layouts: see <see cref="IHalfFormat.Mma"/>; ldmatrix.x4: lane l gives the row address of
/// row l % 8 of matrix l / 8.
/// </summary>
internal static class AttentionTiles
{
    /// <summary>Byte offset of (row, 16-byte chunk) in a swizzled tile of <paramref name="rowBytes"/>-byte rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Offset(int row, int chunk, int rowBytes) => row * rowBytes + ((chunk ^ (row & 7)) << 4);

    /// <summary>
    /// This lane's ldmatrix address (bytes from the tile start) for a 16-row block read as mma A fragments
    /// (or, equally, as two n8 B fragments of a k-contiguous operand): matrices j = lane / 8 are (rows (j % 2) * 8..,
    /// columns (j / 2) * 8.. of the 16-column step), for 16-column step 0. Step s is chunk XOR 2 s: since the row part
    /// is a multiple of 128 bytes and chunk bits sit above bit 4, that is the address XOR 32 s.
    /// </summary>
    public static uint RowsAddress(int row0, int lane, int rowBytes, bool bLayout)
    {
        int j = lane >> 3, r = lane & 7;
        // A: matrix j is (rows (j & 1) * 8, k (j >> 1) * 8); B (two n8 tiles of a k-contiguous operand): (n (j >> 1) * 8, k (j & 1) * 8).
        int row = row0 + (bLayout ? (j >> 1) : (j & 1)) * 8 + r;
        int chunk = bLayout ? (j & 1) : (j >> 1);
        return (uint)Offset(row, chunk, rowBytes);
    }

    /// <summary>
    /// This lane's ldmatrix.trans address for the B fragments of an mn-contiguous operand ([k][n] rows, as V in
    /// P V or Q in dS^T Q): matrices j are (n (j / 2) * 8.., k (j % 2) * 8..), for n-pair 0 and k step 0. n-pair q
    /// is chunk XOR 2 q (address XOR 32 q); k step s adds 16 rows.
    /// </summary>
    public static uint TransAddress(int lane, int rowBytes)
    {
        int j = lane >> 3, r = lane & 7;
        return (uint)Offset((j & 1) * 8 + r, j >> 1, rowBytes);
    }

    /// <summary>ldmatrix.x4 at a shared address.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static U32x4 Ld(uint address) => Ptx.LdMatrixX4(address);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static U32x4 LdT(uint address) => Ptx.LdMatrixX4Trans(address);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Frag Mma<TE>(Frag c, U32x4 a, uint b0, uint b1) where TE : struct, IHalfFormat
    {
        var d = default(TE).Mma(a, new U32x2 { X = b0, Y = b1 }, new Float4(c.C0, c.C1, c.C2, c.C3));
        return new Frag { C0 = d.X, C1 = d.Y, C2 = d.Z, C3 = d.W };
    }

    /// <summary>
    /// S (16 x 64) += A (16 x 16, step s of the row operand) B^T for the 64 rows of a k-contiguous tile: four
    /// ldmatrix.x4 (two n8 tiles each, 16 tile rows = 16 rowBytes apart) and 8 mma.
    /// </summary>
    public static Frags8 RowsStep<TE>(Frags8 s, U32x4 a, uint bAddress, int rowBytes) where TE : struct, IHalfFormat
    {
        var b0 = Ld(bAddress);
        var b1 = Ld(bAddress + (uint)(16 * rowBytes));
        var b2 = Ld(bAddress + (uint)(32 * rowBytes));
        var b3 = Ld(bAddress + (uint)(48 * rowBytes));
        s.F0 = Mma<TE>(s.F0, a, b0.X, b0.Y); s.F1 = Mma<TE>(s.F1, a, b0.Z, b0.W);
        s.F2 = Mma<TE>(s.F2, a, b1.X, b1.Y); s.F3 = Mma<TE>(s.F3, a, b1.Z, b1.W);
        s.F4 = Mma<TE>(s.F4, a, b2.X, b2.Y); s.F5 = Mma<TE>(s.F5, a, b2.Z, b2.W);
        s.F6 = Mma<TE>(s.F6, a, b3.X, b3.Y); s.F7 = Mma<TE>(s.F7, a, b3.Z, b3.W);
        return s;
    }

    /// <summary>
    /// o (16 x 64 columns: n-pairs q0..q0+3) += A (16 x 16) B for k step s of an mn-contiguous tile ([k][n]):
    /// four ldmatrix.x4.trans (n-pair q: address XOR 32 q) and 8 mma.
    /// </summary>
    public static Frags8 TransStep<TE>(Frags8 o, U32x4 a, uint stepAddress, int q0) where TE : struct, IHalfFormat
    {
        var b0 = LdT(stepAddress ^ (uint)(32 * q0));
        var b1 = LdT(stepAddress ^ (uint)(32 * (q0 + 1)));
        var b2 = LdT(stepAddress ^ (uint)(32 * (q0 + 2)));
        var b3 = LdT(stepAddress ^ (uint)(32 * (q0 + 3)));
        o.F0 = Mma<TE>(o.F0, a, b0.X, b0.Y); o.F1 = Mma<TE>(o.F1, a, b0.Z, b0.W);
        o.F2 = Mma<TE>(o.F2, a, b1.X, b1.Y); o.F3 = Mma<TE>(o.F3, a, b1.Z, b1.W);
        o.F4 = Mma<TE>(o.F4, a, b2.X, b2.Y); o.F5 = Mma<TE>(o.F5, a, b2.Z, b2.W);
        o.F6 = Mma<TE>(o.F6, a, b3.X, b3.Y); o.F7 = Mma<TE>(o.F7, a, b3.Z, b3.W);
        return o;
    }

    /// <summary>
    /// The A fragment of k step <paramref name="step"/> (columns 16 step..) of a 16 x 64 accumulator tile, rounded
    /// to 16 bits: the C layout of two adjacent 16 x 8 tiles is the A layout of one 16 x 16 tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static U32x4 AsA<TE>(Frags8 s, int step) where TE : struct, IHalfFormat
    {
        var e = default(TE);
        Frag lo = step == 0 ? s.F0 : step == 1 ? s.F2 : step == 2 ? s.F4 : s.F6;
        Frag hi = step == 0 ? s.F1 : step == 1 ? s.F3 : step == 2 ? s.F5 : s.F7;
        return new U32x4 { X = e.Pack(lo.C0, lo.C1), Y = e.Pack(lo.C2, lo.C3), Z = e.Pack(hi.C0, hi.C1), W = e.Pack(hi.C2, hi.C3) };
    }

    /// <summary>16 rows x D of a row-major tile as A fragments (ldmatrix.x4 per 16 columns).</summary>
    public static AFrags LoadA(uint address, bool d128)
    {
        AFrags f = default;
        f.X0 = Ld(address);
        f.X1 = Ld(address ^ 32u);
        f.X2 = Ld(address ^ 64u);
        f.X3 = Ld(address ^ 96u);
        if (d128)
        {
            f.X4 = Ld(address ^ 128u);
            f.X5 = Ld(address ^ 160u);
            f.X6 = Ld(address ^ 192u);
            f.X7 = Ld(address ^ 224u);
        }
        return f;
    }

    /// <summary>S (16 x 64) = A (16 x D, fragments) B^T for the 64 rows of a k-contiguous tile at <paramref name="bAddress"/>.</summary>
    public static Frags8 Product<TE>(AFrags a, uint bAddress, int rowBytes, bool d128) where TE : struct, IHalfFormat
    {
        Frags8 s = default;
        s = RowsStep<TE>(s, a.X0, bAddress, rowBytes);
        s = RowsStep<TE>(s, a.X1, bAddress ^ 32u, rowBytes);
        s = RowsStep<TE>(s, a.X2, bAddress ^ 64u, rowBytes);
        s = RowsStep<TE>(s, a.X3, bAddress ^ 96u, rowBytes);
        if (d128)
        {
            s = RowsStep<TE>(s, a.X4, bAddress ^ 128u, rowBytes);
            s = RowsStep<TE>(s, a.X5, bAddress ^ 160u, rowBytes);
            s = RowsStep<TE>(s, a.X6, bAddress ^ 192u, rowBytes);
            s = RowsStep<TE>(s, a.X7, bAddress ^ 224u, rowBytes);
        }
        return s;
    }

    // ---- cp.async ----

    /// <summary>16 bytes global -> shared; src-size 0 zero-fills without reading.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void CopyAsync(uint dst, ulong src, uint bytes) => CudaAsm.Emit("cp.async.cg.shared.global [%0], [%1], 16, %2;", dst, src, bytes);

    public static void Commit() => CudaAsm.Emit("cp.async.commit_group;");

    public static void WaitAll() => CudaAsm.Emit("cp.async.wait_all;");

    /// <summary>Waits until at most one commit group of this thread is pending.</summary>
    public static void WaitAllButNewest() => CudaAsm.Emit("cp.async.wait_group 1;");

    // ---- the plain path (any accelerator) ----

    /// <summary>Element (row, col) of a swizzled 16-bit tile, as float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float At<TE>(ArrayView<ushort> smem, int tileBytes, int row, int col, int rowBytes) where TE : struct, IHalfFormat
        => default(TE).Load(smem[(tileBytes + Offset(row, col >> 3, rowBytes)) / 2 + (col & 7)]);

    /// <summary>
    /// Copies rows [0, rows) x D of a row-major global block (element offset <paramref name="first"/>) into a swizzled
    /// tile; rows at or past <paramref name="valid"/> are zero. Every thread of the group takes chunks tid, tid + threads, ...
    /// </summary>
    public static void StagePlain(ArrayView<ushort> src, long first, int valid, int rows, int d, ArrayView<ushort> smem, int tileBytes, int tid, int threads)
    {
        int chunks = d >> 3, rowBytes = d * 2;
        for (int x = tid; x < rows * chunks; x += threads)
        {
            int row = x / chunks, chunk = x - row * chunks;
            int dst = (tileBytes + Offset(row, chunk, rowBytes)) / 2;
            for (int e = 0; e < 8; e++) smem[dst + e] = row < valid ? src[first + (long)row * d + chunk * 8 + e] : (ushort)0;
        }
    }

    /// <summary>The plain twin of <see cref="Product{TE}"/>: the lane's fragment entries of A B^T as float dot products.</summary>
    public static Frags8 ProductPlain<TE>(ArrayView<ushort> smem, int aTile, int aRow, int bTile, int rowBytes, int d, int g, int t)
        where TE : struct, IHalfFormat
    {
        Frags8 s;
        s.F0 = DotFrag<TE>(smem, aTile, aRow + g, bTile, 2 * t, rowBytes, d);
        s.F1 = DotFrag<TE>(smem, aTile, aRow + g, bTile, 8 + 2 * t, rowBytes, d);
        s.F2 = DotFrag<TE>(smem, aTile, aRow + g, bTile, 16 + 2 * t, rowBytes, d);
        s.F3 = DotFrag<TE>(smem, aTile, aRow + g, bTile, 24 + 2 * t, rowBytes, d);
        s.F4 = DotFrag<TE>(smem, aTile, aRow + g, bTile, 32 + 2 * t, rowBytes, d);
        s.F5 = DotFrag<TE>(smem, aTile, aRow + g, bTile, 40 + 2 * t, rowBytes, d);
        s.F6 = DotFrag<TE>(smem, aTile, aRow + g, bTile, 48 + 2 * t, rowBytes, d);
        s.F7 = DotFrag<TE>(smem, aTile, aRow + g, bTile, 56 + 2 * t, rowBytes, d);
        return s;
    }

    private static Frag DotFrag<TE>(ArrayView<ushort> smem, int aTile, int row, int bTile, int col, int rowBytes, int d) where TE : struct, IHalfFormat
    {
        Frag f = default;
        for (int k = 0; k < d; k++)
        {
            float a0 = At<TE>(smem, aTile, row, k, rowBytes), a1 = At<TE>(smem, aTile, row + 8, k, rowBytes);
            float b0 = At<TE>(smem, bTile, col, k, rowBytes), b1 = At<TE>(smem, bTile, col + 1, k, rowBytes);
            f.C0 += a0 * b0;
            f.C1 += a0 * b1;
            f.C2 += a1 * b0;
            f.C3 += a1 * b1;
        }
        return f;
    }

    /// <summary>
    /// The plain twin of a P V step over 64 keys: o (16 x 64 columns from <paramref name="col0"/>) += P V with P (the
    /// warp's 16 x 64 weights, 16-bit) read from a per-warp row-major scratch tile and V from a swizzled [key][D] tile.
    /// </summary>
    public static Frags8 AccumulatePlain<TE>(Frags8 o, ArrayView<ushort> smem, int pTile, int vTile, int rowBytes, int col0, int g, int t)
        where TE : struct, IHalfFormat
    {
        int c = col0 + 2 * t;
        o.F0 = PvFrag<TE>(o.F0, smem, pTile, vTile, rowBytes, g, c);
        o.F1 = PvFrag<TE>(o.F1, smem, pTile, vTile, rowBytes, g, c + 8);
        o.F2 = PvFrag<TE>(o.F2, smem, pTile, vTile, rowBytes, g, c + 16);
        o.F3 = PvFrag<TE>(o.F3, smem, pTile, vTile, rowBytes, g, c + 24);
        o.F4 = PvFrag<TE>(o.F4, smem, pTile, vTile, rowBytes, g, c + 32);
        o.F5 = PvFrag<TE>(o.F5, smem, pTile, vTile, rowBytes, g, c + 40);
        o.F6 = PvFrag<TE>(o.F6, smem, pTile, vTile, rowBytes, g, c + 48);
        o.F7 = PvFrag<TE>(o.F7, smem, pTile, vTile, rowBytes, g, c + 56);
        return o;
    }

    private static Frag PvFrag<TE>(Frag f, ArrayView<ushort> smem, int pTile, int vTile, int rowBytes, int g, int col) where TE : struct, IHalfFormat
    {
        var e = default(TE);
        int pa = pTile / 2 + g * 64, pb = pa + 8 * 64;
        for (int key = 0; key < 64; key++)
        {
            float wa = e.Load(smem[pa + key]), wb = e.Load(smem[pb + key]);
            float v0 = At<TE>(smem, vTile, key, col, rowBytes), v1 = At<TE>(smem, vTile, key, col + 1, rowBytes);
            f.C0 += wa * v0;
            f.C1 += wa * v1;
            f.C2 += wb * v0;
            f.C3 += wb * v1;
        }
        return f;
    }

    /// <summary>Writes the lane's 16-bit weights (rows g, g + 8; keys 8 n + 2t, + 1) into a per-warp row-major [16][64] scratch tile.</summary>
    public static void StoreWeights<TE>(Frags8 s, ArrayView<ushort> smem, int pTile, int g, int t) where TE : struct, IHalfFormat
    {
        StoreWeight<TE>(s.F0, smem, pTile, g, 2 * t); StoreWeight<TE>(s.F1, smem, pTile, g, 8 + 2 * t);
        StoreWeight<TE>(s.F2, smem, pTile, g, 16 + 2 * t); StoreWeight<TE>(s.F3, smem, pTile, g, 24 + 2 * t);
        StoreWeight<TE>(s.F4, smem, pTile, g, 32 + 2 * t); StoreWeight<TE>(s.F5, smem, pTile, g, 40 + 2 * t);
        StoreWeight<TE>(s.F6, smem, pTile, g, 48 + 2 * t); StoreWeight<TE>(s.F7, smem, pTile, g, 56 + 2 * t);
    }

    private static void StoreWeight<TE>(Frag f, ArrayView<ushort> smem, int pTile, int g, int key) where TE : struct, IHalfFormat
    {
        var e = default(TE);
        int a = pTile / 2 + g * 64 + key, b = a + 8 * 64;
        smem[a] = e.Store(f.C0);
        smem[a + 1] = e.Store(f.C1);
        smem[b] = e.Store(f.C2);
        smem[b + 1] = e.Store(f.C3);
    }

    // ---- the online softmax on fragments ----

    /// <summary>Keys at or past a row's visible end become -inf (row A: C0, C1; row B: C2, C3).</summary>
    public static Frags8 Mask(Frags8 s, int key0, int endA, int endB)
    {
        s.F0 = Mask(s.F0, key0, endA, endB); s.F1 = Mask(s.F1, key0 + 8, endA, endB);
        s.F2 = Mask(s.F2, key0 + 16, endA, endB); s.F3 = Mask(s.F3, key0 + 24, endA, endB);
        s.F4 = Mask(s.F4, key0 + 32, endA, endB); s.F5 = Mask(s.F5, key0 + 40, endA, endB);
        s.F6 = Mask(s.F6, key0 + 48, endA, endB); s.F7 = Mask(s.F7, key0 + 56, endA, endB);
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Frag Mask(Frag f, int key, int endA, int endB)
    {
        f.C0 = key >= endA ? float.NegativeInfinity : f.C0;
        f.C1 = key + 1 >= endA ? float.NegativeInfinity : f.C1;
        f.C2 = key >= endB ? float.NegativeInfinity : f.C2;
        f.C3 = key + 1 >= endB ? float.NegativeInfinity : f.C3;
        return f;
    }

    public static float RowMaxA(Frags8 s)
        => Max(Max(Max(Max(s.F0.C0, s.F0.C1), Max(s.F1.C0, s.F1.C1)), Max(Max(s.F2.C0, s.F2.C1), Max(s.F3.C0, s.F3.C1))),
            Max(Max(Max(s.F4.C0, s.F4.C1), Max(s.F5.C0, s.F5.C1)), Max(Max(s.F6.C0, s.F6.C1), Max(s.F7.C0, s.F7.C1))));

    public static float RowMaxB(Frags8 s)
        => Max(Max(Max(Max(s.F0.C2, s.F0.C3), Max(s.F1.C2, s.F1.C3)), Max(Max(s.F2.C2, s.F2.C3), Max(s.F3.C2, s.F3.C3))),
            Max(Max(Max(s.F4.C2, s.F4.C3), Max(s.F5.C2, s.F5.C3)), Max(Max(s.F6.C2, s.F6.C3), Max(s.F7.C2, s.F7.C3))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(float a, float b) => XMath.Max(a, b);

    /// <summary>Max over the 4 lanes of a quad (the lanes that share a row).</summary>
    public static float QuadMax(float x)
    {
        x = XMath.Max(x, Warp.ShuffleXor(x, 1));
        return XMath.Max(x, Warp.ShuffleXor(x, 2));
    }

    /// <summary>Sum over the 4 lanes of a quad.</summary>
    public static float QuadSum(float x)
    {
        x += Warp.ShuffleXor(x, 1);
        return x + Warp.ShuffleXor(x, 2);
    }

    public static float RowSumA(Frags8 s)
        => s.F0.C0 + s.F0.C1 + s.F1.C0 + s.F1.C1 + s.F2.C0 + s.F2.C1 + s.F3.C0 + s.F3.C1
         + s.F4.C0 + s.F4.C1 + s.F5.C0 + s.F5.C1 + s.F6.C0 + s.F6.C1 + s.F7.C0 + s.F7.C1;

    public static float RowSumB(Frags8 s)
        => s.F0.C2 + s.F0.C3 + s.F1.C2 + s.F1.C3 + s.F2.C2 + s.F2.C3 + s.F3.C2 + s.F3.C3
         + s.F4.C2 + s.F4.C3 + s.F5.C2 + s.F5.C3 + s.F6.C2 + s.F6.C3 + s.F7.C2 + s.F7.C3;

    /// <summary>exp2(s scale - base) per row (row A: C0, C1; row B: C2, C3), one FFMA and one ex2 each; -inf gives 0.</summary>
    public static Frags8 Exp2(Frags8 s, float scale, float baseA, float baseB)
    {
        s.F0 = Exp2(s.F0, scale, baseA, baseB); s.F1 = Exp2(s.F1, scale, baseA, baseB);
        s.F2 = Exp2(s.F2, scale, baseA, baseB); s.F3 = Exp2(s.F3, scale, baseA, baseB);
        s.F4 = Exp2(s.F4, scale, baseA, baseB); s.F5 = Exp2(s.F5, scale, baseA, baseB);
        s.F6 = Exp2(s.F6, scale, baseA, baseB); s.F7 = Exp2(s.F7, scale, baseA, baseB);
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Frag Exp2(Frag f, float scale, float baseA, float baseB)
    {
        f.C0 = FastExp2(f.C0 * scale - baseA);
        f.C1 = FastExp2(f.C1 * scale - baseA);
        f.C2 = FastExp2(f.C2 * scale - baseB);
        f.C3 = FastExp2(f.C3 * scale - baseB);
        return f;
    }

    /// <summary>2^x: one ex2.approx.ftz (MUFU.EX2, relative error 2^-22) on CUDA, XMath elsewhere. -inf gives 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FastExp2(float x) => CudaAsm.IsSupported ? Ptx.Exp2Approx(x) : XMath.Exp2(x);

    /// <summary>Both rows' halves of a tile times their factors.</summary>
    public static Frags8 Scale(Frags8 o, float a, float b)
    {
        o.F0 = Scale(o.F0, a, b); o.F1 = Scale(o.F1, a, b); o.F2 = Scale(o.F2, a, b); o.F3 = Scale(o.F3, a, b);
        o.F4 = Scale(o.F4, a, b); o.F5 = Scale(o.F5, a, b); o.F6 = Scale(o.F6, a, b); o.F7 = Scale(o.F7, a, b);
        return o;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Frag Scale(Frag f, float a, float b)
    {
        f.C0 *= a; f.C1 *= a; f.C2 *= b; f.C3 *= b;
        return f;
    }

    /// <summary>The dropout multipliers of the tile's weights (rows A and B, keys key0 + 8 n + {0, 1}).</summary>
    public static Frags8 Drop(Frags8 s, AttentionParams p, int bh, int rowA, int rowB, int key0)
    {
        s.F0 = Drop(s.F0, p, bh, rowA, rowB, key0); s.F1 = Drop(s.F1, p, bh, rowA, rowB, key0 + 8);
        s.F2 = Drop(s.F2, p, bh, rowA, rowB, key0 + 16); s.F3 = Drop(s.F3, p, bh, rowA, rowB, key0 + 24);
        s.F4 = Drop(s.F4, p, bh, rowA, rowB, key0 + 32); s.F5 = Drop(s.F5, p, bh, rowA, rowB, key0 + 40);
        s.F6 = Drop(s.F6, p, bh, rowA, rowB, key0 + 48); s.F7 = Drop(s.F7, p, bh, rowA, rowB, key0 + 56);
        return s;
    }

    private static Frag Drop(Frag f, AttentionParams p, int bh, int rowA, int rowB, int key)
    {
        // Masked entries are already 0; rows and keys past the ends are never stored.
        if (f.C0 != 0f) f.C0 *= p.Keep(bh, rowA, key);
        if (f.C1 != 0f) f.C1 *= p.Keep(bh, rowA, key + 1);
        if (f.C2 != 0f) f.C2 *= p.Keep(bh, rowB, key);
        if (f.C3 != 0f) f.C3 *= p.Keep(bh, rowB, key + 1);
        return f;
    }

    /// <summary>Row A (C0, C1) or row B (C2, C3) of 8 fragments times <paramref name="factor"/>, packed: 32-bit words t + 4 n of the row.</summary>
    public static void StoreRow<TE>(Frags8 o, ArrayView<uint> o32, long word, float factor, bool rowB) where TE : struct, IHalfFormat
    {
        o32[word] = PackRow<TE>(o.F0, factor, rowB);
        o32[word + 4] = PackRow<TE>(o.F1, factor, rowB);
        o32[word + 8] = PackRow<TE>(o.F2, factor, rowB);
        o32[word + 12] = PackRow<TE>(o.F3, factor, rowB);
        o32[word + 16] = PackRow<TE>(o.F4, factor, rowB);
        o32[word + 20] = PackRow<TE>(o.F5, factor, rowB);
        o32[word + 24] = PackRow<TE>(o.F6, factor, rowB);
        o32[word + 28] = PackRow<TE>(o.F7, factor, rowB);
    }

    /// <summary>Two values rounded and packed with the CPU's rounding (outputs are compared bit for bit with it; one cvt on CUDA, see CudaFormats).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint PackRow<TE>(Frag f, float factor, bool rowB) where TE : struct, IHalfFormat
        => rowB ? default(TE).PackBits(f.C2 * factor, f.C3 * factor) : default(TE).PackBits(f.C0 * factor, f.C1 * factor);
}
