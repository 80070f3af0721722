using ILGPU;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>
/// How a stored operand holds op(X)'s element (mn, k), mn being the row of op(A) or the column of op(B).
/// A type parameter rather than a flag, so each kernel is compiled once per layout pair with the index
/// math and the choice of vector axis fixed: NN, NT, TN and TT are four instantiations.
/// </summary>
internal interface IOperandLayout
{
    /// <summary>True when k is the contiguous axis (A not transposed, B transposed).</summary>
    bool IsKInner { get; }
}

/// <summary>k contiguous: element (mn, k) at mn * ld + k. A as stored (M x K), or B transposed (stored N x K).</summary>
internal struct KInner : IOperandLayout
{
    public readonly bool IsKInner => true;
}

/// <summary>mn contiguous: element (mn, k) at k * ld + mn. B as stored (K x N), or A transposed (stored K x M).</summary>
internal struct MnInner : IOperandLayout
{
    public readonly bool IsKInner => false;
}

/// <summary>Index helpers for the layouts.</summary>
internal static class OperandLayout
{
    public static int Index<TLayout>(int mn, int k, int ld) where TLayout : struct, IOperandLayout
        => default(TLayout).IsKInner ? mn * ld + k : k * ld + mn;

    /// <summary>The layout of A and of B for a problem's transpose flags.</summary>
    public static (bool AKInner, bool BKInner) Of(in GemmArgs p) => (p.TransA == 0, p.TransB != 0);
}

/// <summary>A 4 x 4 block of accumulators held in registers: R0..R3 are its rows. Value semantics
/// (each update returns a new tile) keep it in SSA registers through ILGPU.</summary>
internal struct Tile4x4
{
    public Float4 R0, R1, R2, R3;

    /// <summary>t + a b^T: the outer product of a column of op(A) (4 rows) and a row of op(B) (4 columns).</summary>
    public static Tile4x4 Fma(Tile4x4 t, Float4 a, Float4 b)
    {
        t.R0 = Fma(t.R0, a.X, b);
        t.R1 = Fma(t.R1, a.Y, b);
        t.R2 = Fma(t.R2, a.Z, b);
        t.R3 = Fma(t.R3, a.W, b);
        return t;
    }

    private static Float4 Fma(Float4 acc, float s, Float4 b)
        => new(acc.X + s * b.X, acc.Y + s * b.Y, acc.Z + s * b.Z, acc.W + s * b.W);

    public readonly Float4 Row(int r) => r == 0 ? R0 : r == 1 ? R1 : r == 2 ? R2 : R3;

    /// <summary>Writes the tile at (row, col) of one batch's C through the epilogue; rows and columns
    /// outside M x N are skipped. <paramref name="vector"/>: C's rows allow 16-byte stores (Ldc % 4 == 0, aligned view).</summary>
    public readonly void Store(ArrayView<float> c, int row, int col, ArrayView<float> bias, in GemmArgs p, bool vector)
    {
        StoreRow(c, row, col, R0, bias, p, vector);
        StoreRow(c, row + 1, col, R1, bias, p, vector);
        StoreRow(c, row + 2, col, R2, bias, p, vector);
        StoreRow(c, row + 3, col, R3, bias, p, vector);
    }

    private static void StoreRow(ArrayView<float> c, int row, int col, Float4 v, ArrayView<float> bias, in GemmArgs p, bool vector)
    {
        if (row >= p.M) return;
        int i = row * p.Ldc + col;
        if (vector && col + 3 < p.N)
        {
            var c4 = c.Cast<Float4>();
            Float4 old = p.Beta != 0f ? c4[i >> 2] : default;
            Float4 b = p.HasBias != 0 ? new Float4(bias[col], bias[col + 1], bias[col + 2], bias[col + 3]) : default;
            c4[i >> 2] = new Float4(
                GemmEpilogue.Apply(v.X, old.X, b.X, p), GemmEpilogue.Apply(v.Y, old.Y, b.Y, p),
                GemmEpilogue.Apply(v.Z, old.Z, b.Z, p), GemmEpilogue.Apply(v.W, old.W, b.W, p));
            return;
        }
        if (col < p.N) GemmEpilogue.StoreF32(c, row, col, v.X, bias, p);
        if (col + 1 < p.N) GemmEpilogue.StoreF32(c, row, col + 1, v.Y, bias, p);
        if (col + 2 < p.N) GemmEpilogue.StoreF32(c, row, col + 2, v.Z, bias, p);
        if (col + 3 < p.N) GemmEpilogue.StoreF32(c, row, col + 3, v.W, bias, p);
    }
}

/// <summary>float4 tile movement shared by versions 4 and 5: global -> registers -> k-major shared tile.</summary>
internal static class VectorTiles
{
    /// <summary>
    /// Float4 number l of a (tileMn x bk) tile of op(X) at (mn0, k0), read along X's contiguous axis.
    /// k-contiguous: l covers row mn = l / (bk / 4), k = 4 (l % (bk / 4)) .. +3.
    /// mn-contiguous: l covers k = l / (tileMn / 4), mn = 4 (l % (tileMn / 4)) .. +3.
    /// Zero outside the matrix; one 16-byte load when all four are inside.
    /// </summary>
    public static Float4 Load<TLayout>(ArrayView<float> x, int l, int mn0, int k0, int mnSize, int kSize, int ld, int tileMn, int bk)
        where TLayout : struct, IOperandLayout
    {
        bool kInner = default(TLayout).IsKInner;
        int mn, k;
        if (kInner) { mn = l / (bk / 4); k = 4 * (l % (bk / 4)); }
        else { k = l / (tileMn / 4); mn = 4 * (l % (tileMn / 4)); }
        int gm = mn0 + mn, gk = k0 + k;
        int index = OperandLayout.Index<TLayout>(gm, gk, ld);
        bool inside = kInner ? gm < mnSize && gk + 3 < kSize : gk < kSize && gm + 3 < mnSize;
        if (inside) return x.Cast<Float4>()[index >> 2];
        // The edge: element e of the float4 is (gm, gk + e) or (gm + e, gk).
        int limit = kInner ? (gm < mnSize ? kSize - gk : 0) : (gk < kSize ? mnSize - gm : 0);
        return new Float4(
            limit > 0 ? x[index] : 0f, limit > 1 ? x[index + 1] : 0f,
            limit > 2 ? x[index + 2] : 0f, limit > 3 ? x[index + 3] : 0f);
    }

    /// <summary>Stores float4 number l (as read by <see cref="Load"/>) into tile[k][mn].</summary>
    public static void Store<TLayout>(ArrayView<float> tile, ArrayView<Float4> tile4, Float4 v, int l, int tileMn, int bk)
        where TLayout : struct, IOperandLayout
    {
        if (default(TLayout).IsKInner)
        {
            int mn = l / (bk / 4), k = 4 * (l % (bk / 4));
            tile[k * tileMn + mn] = v.X;
            tile[(k + 1) * tileMn + mn] = v.Y;
            tile[(k + 2) * tileMn + mn] = v.Z;
            tile[(k + 3) * tileMn + mn] = v.W;
        }
        else
        {
            int k = l / (tileMn / 4), mnq = l % (tileMn / 4);
            tile4[k * (tileMn / 4) + mnq] = v;
        }
    }

    /// <summary>Whether float4 loads and stores are aligned: leading dimensions, batch strides and view offsets multiples of 4 floats.</summary>
    public static bool CanRun(in GemmArgs p, long aOffset, long bOffset, long cOffset) =>
        p.Lda % 4 == 0 && p.Ldb % 4 == 0 && p.Ldc % 4 == 0
        && p.BatchStrideA % 4 == 0 && p.BatchStrideB % 4 == 0 && p.BatchStrideC % 4 == 0
        && aOffset % 4 == 0 && bOffset % 4 == 0 && cOffset % 4 == 0;

    public static void CheckAligned(in GemmArgs p, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, string who)
    {
        long Off(ArrayView<float> v) => v.Length == 0 ? 0 : ((IContiguousArrayView)v).IndexInBytes / sizeof(float);
        if (!CanRun(p, Off(a), Off(b), Off(c)))
            throw new ArgumentException($"{who}: needs leading dimensions, batch strides and view offsets that are multiples of 4 floats " +
                $"(lda {p.Lda}, ldb {p.Ldb}, ldc {p.Ldc}, strides {p.BatchStrideA}/{p.BatchStrideB}/{p.BatchStrideC}, offsets {Off(a)}/{Off(b)}/{Off(c)})");
    }
}
