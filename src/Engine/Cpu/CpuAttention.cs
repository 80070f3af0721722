using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// Fused attention on the CPU, flash-attention style (Dao et al. 2022; Dao 2023), the reference the GPU
/// kernels are tested against and the attention of CPU training.
///
/// Forward, for a tile of BlockQ query rows: walk the visible keys in tiles of BlockK, with
/// s = scale q k^T, keep per row the running max m and sum l of exp(s - m) (online softmax): a new tile
/// with max m' rescales the output accumulator and l by exp(m - m'). At the end out = acc / l and
/// lse = m + log l, the only thing saved for the backward.
///
/// Backward, for a tile of BlockK keys (dk, dv accumulate in the tile): for every query tile that sees it,
/// recompute P = exp(s - lse) and, with Di = rowsum(dout * out) (= rowsum(P * dP), precomputed),
/// dv += P^T dout, dP = dout v^T, dS = P * (dP - Di), dk += scale dS^T q, dq += scale dS k.
/// With dropout, P is replaced by P * keep / (1 - p) in dv and dP by dP * keep / (1 - p) in dS (Di is
/// unchanged: rowsum(P * dP_dropped) = dout . out still holds).
///
/// Work is split over (batch, kv head, part): a part takes every split-th query tile (forward) or key
/// tile (backward), which balances causal work; one kv head serves its whole group of query heads, so
/// a key tile is transposed once for all of them. The partition depends only on the shapes, so results
/// do not depend on the machine. Memory beyond the inputs and outputs is O(T D) per task.
///
/// Every operand is addressed by rows (<see cref="HeadRows"/>): the D values of one (batch, head, position)
/// are contiguous, and the rows may lie anywhere. So the same kernels read q, k and v straight out of a
/// packed (B, T, 3C) projection and write the output in (B, T, C) order (<see cref="QkvForward"/>), where
/// the (B, H, T, D) form would need a transposing copy of each of them, both ways.
/// </summary>
internal static unsafe class CpuAttention
{
    private const int BlockQ = 32;   // query rows per tile
    private const int BlockK = 64;   // keys per tile
    private const int TargetTasks = 32; // split a (batch, kv head) when there are fewer of them than this

    /// <summary>Sizes, and which keys each query row sees.</summary>
    private readonly record struct Dims(int B, int H, int Hkv, int T, int S, int D, bool Causal)
    {
        public int Group => H / Hkv;

        /// <summary>Query row i sees keys [0, VisibleEnd(i)): all of them, or j &lt;= i + S - T when causal.</summary>
        public int VisibleEnd(int i) => Causal ? Math.Clamp(i + S - T + 1, 0, S) : S;

        /// <summary>The first query row that sees key j (causal), else 0.</summary>
        public int FirstRowSeeing(int j) => Causal ? Math.Max(0, j - (S - T)) : 0;

        public static Dims Of(Tensor q, Tensor k, bool causal)
            => new(q.Shape[0], q.Shape[1], k.Shape[1], q.Shape[2], k.Shape[2], q.Shape[3], causal);
    }

    /// <summary>
    /// Where an operand's rows are: the D values of position t of flat head h (h = b * Heads + head) start at
    /// Offset + b * BatchStride + head * HeadStride + t * RowStride and are contiguous. A dense (B, H, T, D)
    /// tensor has strides (H T D, T D, D); q in a packed (B, T, 3C) projection has (3 T C, D, 3C) from offset
    /// 0, k the same from C, v from 2C; an output in (B, T, C) order has (T C, D, C).
    /// </summary>
    private readonly record struct HeadRows(long Offset, long BatchStride, long HeadStride, int RowStride, int Heads)
    {
        public long At(int flatHead, int t)
        {
            int b = flatHead / Heads, head = flatHead - b * Heads;
            return Offset + b * BatchStride + head * HeadStride + (long)t * RowStride;
        }

        /// <summary>The rows of a (B, H, T, D) tensor whose last axis is at unit stride.</summary>
        public static HeadRows Of(Tensor t)
        {
            if (t.Shape[3] > 1 && t.Strides[3] != 1)
                throw new ArgumentException($"attention: the last axis of {t.Describe()} must be contiguous");
            return new(t.Offset, t.Strides[0], t.Strides[1], t.Strides[2], Math.Max(t.Shape[1], 1));
        }

        /// <summary>Head block <paramref name="part"/> (0: q, 1: k, 2: v) of a packed (B, T, parts * H * D) tensor.</summary>
        public static HeadRows Packed(Tensor t, int part, int heads, int d)
            => new(t.Offset + (long)part * heads * d, t.Strides[0], d, t.Strides[1], heads);
    }

    /// <summary>An operand: its array and where its rows are.</summary>
    private readonly record struct Rows<T>(T[] Data, HeadRows Layout) where T : unmanaged
    {
        public static Rows<T> Of(Tensor t) => new(t.Elements<T>(), HeadRows.Of(t));
    }

    // ---- forward ----

    public static void Forward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, AttentionAttrs a)
    {
        NnKernels.CheckSameDType("Attention", q, k, v, o);
        NnKernels.CheckSameDType("Attention", lse, q);
        var dims = Dims.Of(q, k, a.Causal);
        switch (q.DType)
        {
            case DType.F32: Forward(dims, Rows<float>.Of(q), Rows<float>.Of(k), Rows<float>.Of(v), Rows<float>.Of(o), NnKernels.Buf<float>(lse), a); break;
            case DType.F64: Forward(dims, Rows<double>.Of(q), Rows<double>.Of(k), Rows<double>.Of(v), Rows<double>.Of(o), NnKernels.Buf<double>(lse), a); break;
            default: throw NnKernels.Unsupported("Attention", q);
        }
    }

    /// <summary>
    /// Attention of a packed projection qkv (B, T, 3C) = [q | k | v], C = H D with the heads side by side in
    /// each third, into y (B, T, C) with the heads side by side again (what the output projection reads),
    /// and lse (B, H, T): no copy of q, k, v or y.
    /// </summary>
    public static void QkvForward(Tensor qkv, Tensor y, Tensor lse, QkvAttentionAttrs a)
    {
        NnKernels.CheckSameDType("QkvAttention", qkv, y, lse);
        var dims = QkvDims(qkv, a);
        switch (qkv.DType)
        {
            case DType.F32: Forward(dims, Packed<float>(qkv, 0, dims), Packed<float>(qkv, 1, dims), Packed<float>(qkv, 2, dims), Packed<float>(y, 0, dims), NnKernels.Buf<float>(lse), a.Attention); break;
            case DType.F64: Forward(dims, Packed<double>(qkv, 0, dims), Packed<double>(qkv, 1, dims), Packed<double>(qkv, 2, dims), Packed<double>(y, 0, dims), NnKernels.Buf<double>(lse), a.Attention); break;
            default: throw NnKernels.Unsupported("QkvAttention", qkv);
        }
    }

    private static Dims QkvDims(Tensor qkv, QkvAttentionAttrs a)
    {
        int heads = a.Heads, d = qkv.Shape[2] / 3 / heads;
        return new(qkv.Shape[0], heads, heads, qkv.Shape[1], qkv.Shape[1], d, a.Attention.Causal);
    }

    private static Rows<T> Packed<T>(Tensor t, int part, Dims dims) where T : unmanaged
    {
        if (t.Strides[2] != 1 && t.Shape[2] > 1) throw new ArgumentException($"QkvAttention: the last axis of {t.Describe()} must be contiguous");
        return new(t.Elements<T>(), HeadRows.Packed(t, part, dims.H, dims.D));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Forward<T>(Dims dims, Rows<T> q, Rows<T> k, Rows<T> v, Rows<T> o, (T[] Data, int Offset) lse, AttentionAttrs a)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var drop = Dropout<T>.From(a, dims);
        T scale = T.CreateTruncating(a.Scale);
        if (dims.T == 1)
        {
            NnKernels.For(dims.B * dims.H, 2L * dims.S * dims.D, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (_, i0, i1) =>
            {
                for (int bh = i0; bh < i1; bh++) DecodeRow(dims, bh, q, k, v, o, lse, scale, drop);
            });
            return;
        }
        int queryTiles = (dims.T + BlockQ - 1) / BlockQ;
        int groups = dims.B * dims.Hkv;
        int split = Math.Clamp((TargetTasks + groups - 1) / groups, 1, queryTiles);
        NnKernels.For(groups * split, 4L * BlockQ * dims.S * dims.D * dims.Group, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (_, i0, i1) =>
        {
            int d = dims.D;
            using var ktScratch = new Scratch<T>(d * dims.S);    // (D, S) the kv head's keys, transposed
            using var sScratch = new Scratch<T>(BlockQ * BlockK); // (BlockQ, BlockK) scores, then weights
            using var accScratch = new Scratch<T>(BlockQ * d);    // (BlockQ, D) output accumulator
            using var rowScratch = new Scratch<T>(2 * BlockQ + BlockK); // m, l per row; a dropout row
            fixed (T* pq = q.Data, pk = k.Data, pv = v.Data, po = o.Data, pKt = ktScratch.Array, pS = sScratch.Array, pAcc = accScratch.Array, pRow = rowScratch.Array)
            {
                for (int item = i0; item < i1; item++)
                {
                    int group = item / split, part = item % split; // group = b * Hkv + kv head
                    int lastTile = part + (queryTiles - 1 - part) / split * split;
                    int kEnd = dims.VisibleEnd(Math.Min(dims.T, (lastTile + 1) * BlockQ) - 1);
                    if (kEnd == 0) { ForwardEmptyRows(dims, group, part, split, o, lse); continue; }
                    Transpose(pk + k.Layout.At(group, 0), k.Layout.RowStride, kEnd, d, pKt); // group = flat kv head
                    for (int h = group * dims.Group; h < (group + 1) * dims.Group; h++) // h = b * H + query head
                    {
                        for (int tile = part; tile < queryTiles; tile += split)
                        {
                            int r0 = tile * BlockQ, m = Math.Min(BlockQ, dims.T - r0);
                            ForwardTile(dims, h, r0, m, pq + q.Layout.At(h, r0), q.Layout.RowStride, pKt, kEnd,
                                pv + v.Layout.At(group, 0), v.Layout.RowStride, po + o.Layout.At(h, r0), o.Layout.RowStride,
                                lse, pS, pAcc, pRow, scale, drop);
                        }
                    }
                }
            }
        });
    }

    /// <summary>
    /// Query rows [r0, r0 + m) of flat head h: online softmax over key tiles, then out and lse.
    /// kt is the (D, ldk) transposed key block of the kv head, vHead its (S, D) values; qRows, vHead and
    /// oRows step by qStride, vStride and oStride elements from one row to the next.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardTile<T>(Dims dims, int h, int r0, int m, T* qRows, int qStride, T* kt, int ldk, T* vHead, int vStride,
        T* oRows, int oStride, (T[] Data, int Offset) lse, T* s, T* acc, T* rowScratch, T scale, Dropout<T> drop)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = dims.D;
        var rowMax = new Span<T>(rowScratch, m);
        var rowSum = new Span<T>(rowScratch + BlockQ, m);
        var keep = new Span<T>(rowScratch + 2 * BlockQ, BlockK);
        rowMax.Fill(T.NegativeInfinity);
        rowSum.Clear();
        new Span<T>(acc, m * d).Clear();
        int kLimit = dims.VisibleEnd(r0 + m - 1); // the last row sees the most keys
        for (int j0 = 0; j0 < kLimit; j0 += BlockK)
        {
            int n = Math.Min(BlockK, kLimit - j0);
            new Span<T>(s, m * n).Clear();
            TileGemm.MulAdd(m, n, d, qRows, qStride, 1, kt + j0, ldk, s, n); // s = q k^T
            for (int r = 0; r < m; r++)
            {
                var row = new Span<T>(s + r * n, n);
                int valid = Math.Clamp(dims.VisibleEnd(r0 + r) - j0, 0, n);
                if (valid == 0) { row.Clear(); continue; }
                var live = row[..valid];
                T max = T.Max(rowMax[r], AttentionRows.ScaleMax(live, scale));
                T sum = AttentionRows.ExpSum(live, max);
                row[valid..].Clear();
                T correction = T.Exp(rowMax[r] - max); // 0 on the first tile (m = -inf)
                rowSum[r] = rowSum[r] * correction + sum;
                rowMax[r] = max;
                if (correction != T.One) AttentionRows.Scale(new Span<T>(acc + r * d, d), correction);
                if (drop.Enabled)
                {
                    drop.Mask(keep[..valid], h, r0 + r, j0);
                    AttentionRows.Multiply(live, keep[..valid], live);
                }
            }
            TileGemm.MulAdd(m, d, n, s, n, 1, vHead + (long)j0 * vStride, vStride, acc, d); // acc += P v
        }
        for (int r = 0; r < m; r++)
        {
            var outRow = new Span<T>(oRows + (long)r * oStride, d);
            ref T l = ref lse.Data[lse.Offset + (long)h * dims.T + r0 + r];
            if (rowSum[r] == T.Zero) // no visible key (causal, T > S): out 0, lse +inf, so the backward's P = 0
            {
                outRow.Clear();
                l = T.PositiveInfinity;
                continue;
            }
            new ReadOnlySpan<T>(acc + r * d, d).CopyTo(outRow);
            AttentionRows.Scale(outRow, T.One / rowSum[r]);
            l = rowMax[r] + T.Log(rowSum[r]);
        }
    }

    /// <summary>Rows of a part whose keys are all masked (causal with T much larger than S): out 0, lse +inf.</summary>
    private static void ForwardEmptyRows<T>(Dims dims, int group, int part, int split, Rows<T> o, (T[] Data, int Offset) lse)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int queryTiles = (dims.T + BlockQ - 1) / BlockQ;
        for (int h = group * dims.Group; h < (group + 1) * dims.Group; h++)
            for (int tile = part; tile < queryTiles; tile += split)
            {
                int r0 = tile * BlockQ, m = Math.Min(BlockQ, dims.T - r0);
                for (int r = r0; r < r0 + m; r++) o.Data.AsSpan((int)o.Layout.At(h, r), dims.D).Clear();
                lse.Data.AsSpan(lse.Offset + h * dims.T + r0, m).Fill(T.PositiveInfinity);
            }
    }

    /// <summary>
    /// One query (T = 1, decoding against a cache): scores by dot products straight from the (S, D) keys,
    /// which beats transposing the whole cache for a single row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DecodeRow<T>(Dims dims, int h, Rows<T> q, Rows<T> k, Rows<T> v, Rows<T> o,
        (T[] Data, int Offset) lse, T scale, Dropout<T> drop)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = dims.D, s = dims.VisibleEnd(0), kvHead = h / dims.Group;
        var qRow = new ReadOnlySpan<T>(q.Data, (int)q.Layout.At(h, 0), d);
        var outRow = new Span<T>(o.Data, (int)o.Layout.At(h, 0), d);
        using var scratch = new Scratch<T>(2 * s);
        var p = scratch.Span[..s];
        for (int j = 0; j < s; j++) p[j] = TensorPrimitives.Dot(qRow, new ReadOnlySpan<T>(k.Data, (int)k.Layout.At(kvHead, j), d));
        TensorPrimitives.Multiply(p, scale, p);
        T max = TensorPrimitives.Max<T>(p);
        TensorPrimitives.Subtract(p, max, p);
        TensorPrimitives.Exp(p, p);
        T sum = TensorPrimitives.Sum<T>(p);
        lse.Data[lse.Offset + h] = max + T.Log(sum);
        TensorPrimitives.Multiply(p, T.One / sum, p);
        if (drop.Enabled)
        {
            var keep = scratch.Span[s..];
            drop.Mask(keep, h, 0, 0);
            TensorPrimitives.Multiply(p, keep, p);
        }
        outRow.Clear();
        for (int j = 0; j < s; j++)
            if (p[j] != T.Zero) TensorPrimitives.MultiplyAdd(new ReadOnlySpan<T>(v.Data, (int)v.Layout.At(kvHead, j), d), p[j], outRow, outRow);
    }

    // ---- backward ----

    public static void Backward(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor dq, Tensor dk, Tensor dv, AttentionAttrs a)
    {
        NnKernels.CheckSameDType("AttentionBackward", q, dout, k, v, o, lse, dq, dk, dv);
        var dims = Dims.Of(q, k, a.Causal);
        switch (q.DType)
        {
            case DType.F32:
                Backward(dims, Rows<float>.Of(dout), Rows<float>.Of(q), Rows<float>.Of(k), Rows<float>.Of(v), Rows<float>.Of(o), NnKernels.Buf<float>(lse),
                    Rows<float>.Of(dq), Rows<float>.Of(dk), Rows<float>.Of(dv), a);
                break;
            case DType.F64:
                Backward(dims, Rows<double>.Of(dout), Rows<double>.Of(q), Rows<double>.Of(k), Rows<double>.Of(v), Rows<double>.Of(o), NnKernels.Buf<double>(lse),
                    Rows<double>.Of(dq), Rows<double>.Of(dk), Rows<double>.Of(dv), a);
                break;
            default: throw NnKernels.Unsupported("AttentionBackward", q);
        }
    }

    /// <summary>dqkv (B, T, 3C) of <see cref="QkvForward"/> from dy (B, T, C): dq, dk and dv land in their thirds directly.</summary>
    public static void QkvBackward(Tensor dy, Tensor qkv, Tensor y, Tensor lse, Tensor dqkv, QkvAttentionAttrs a)
    {
        NnKernels.CheckSameDType("QkvAttentionBackward", qkv, dy, y, lse, dqkv);
        var dims = QkvDims(qkv, a);
        switch (qkv.DType)
        {
            case DType.F32:
                Backward(dims, Packed<float>(dy, 0, dims), Packed<float>(qkv, 0, dims), Packed<float>(qkv, 1, dims), Packed<float>(qkv, 2, dims), Packed<float>(y, 0, dims),
                    NnKernels.Buf<float>(lse), Packed<float>(dqkv, 0, dims), Packed<float>(dqkv, 1, dims), Packed<float>(dqkv, 2, dims), a.Attention);
                break;
            case DType.F64:
                Backward(dims, Packed<double>(dy, 0, dims), Packed<double>(qkv, 0, dims), Packed<double>(qkv, 1, dims), Packed<double>(qkv, 2, dims), Packed<double>(y, 0, dims),
                    NnKernels.Buf<double>(lse), Packed<double>(dqkv, 0, dims), Packed<double>(dqkv, 1, dims), Packed<double>(dqkv, 2, dims), a.Attention);
                break;
            default: throw NnKernels.Unsupported("QkvAttentionBackward", qkv);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Backward<T>(Dims dims, Rows<T> dout, Rows<T> q, Rows<T> k, Rows<T> v, Rows<T> o, (T[] Data, int Offset) lse,
        Rows<T> dq, Rows<T> dk, Rows<T> dv, AttentionAttrs a)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = dims.D, rows = dims.B * dims.H * dims.T; // flat query row r = h * T + t
        var drop = Dropout<T>.From(a, dims);
        T scale = T.CreateTruncating(a.Scale);

        // Di = dout_i . out_i for every query row.
        using var deltaScratch = new Scratch<T>(rows);
        var delta = deltaScratch.Array;
        NnKernels.For(rows, 2L * d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (_, r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                int h = r / dims.T, t = r - h * dims.T;
                delta[r] = TensorPrimitives.Dot(new ReadOnlySpan<T>(dout.Data, (int)dout.Layout.At(h, t), d), new ReadOnlySpan<T>(o.Data, (int)o.Layout.At(h, t), d));
            }
        });

        int keyTiles = (dims.S + BlockK - 1) / BlockK;
        int groups = dims.B * dims.Hkv;
        int split = Math.Clamp((TargetTasks + groups - 1) / groups, 1, Math.Min(keyTiles, int.MaxValue / (rows * d)));
        // One part sums dS k into dq's own rows; several parts each sum into their own dense copy (flat row
        // r at r * D), added up in part order below.
        using var partialScratch = new Scratch<T>(split > 1 ? split * rows * d : 0);
        var partial = partialScratch.Array;
        if (split == 1) ForEachRow(dims, dq, row => row.Clear());
        else partialScratch.Clear();

        NnKernels.For(groups * split, 10L * BlockK * dims.T * d * dims.Group, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (_, i0, i1) =>
        {
            using var tScratch = new Scratch<T>(2 * d * BlockK);         // kt, vt: (D, BlockK) each
            using var accScratch = new Scratch<T>(2 * BlockK * d);       // dk, dv accumulators: (BlockK, D) each
            using var pScratch = new Scratch<T>(3 * BlockQ * BlockK);    // P, dP then dS, dropout keep/scale
            fixed (T* pq = q.Data, pk = k.Data, pv = v.Data, pdo = dout.Data, pdq = dq.Data, pdk = dk.Data, pdv = dv.Data,
                   pPart = partial, pT = tScratch.Array, pAcc = accScratch.Array, pP = pScratch.Array, pDelta = delta)
            {
                for (int item = i0; item < i1; item++)
                {
                    int group = item / split, part = item % split; // group = b * Hkv + kv head
                    for (int tile = part; tile < keyTiles; tile += split)
                    {
                        int j0 = tile * BlockK, n = Math.Min(BlockK, dims.S - j0);
                        T* kRows = pk + k.Layout.At(group, j0), vRows = pv + v.Layout.At(group, j0);
                        T* kt = pT, vt = pT + d * BlockK, dkAcc = pAcc, dvAcc = pAcc + BlockK * d;
                        Transpose(kRows, k.Layout.RowStride, n, d, kt);
                        Transpose(vRows, v.Layout.RowStride, n, d, vt);
                        new Span<T>(pAcc, 2 * BlockK * d).Clear();
                        int firstTile = dims.FirstRowSeeing(j0) / BlockQ;
                        for (int h = group * dims.Group; h < (group + 1) * dims.Group; h++)
                        {
                            for (int qTile = firstTile; qTile * BlockQ < dims.T; qTile++)
                            {
                                int r0 = qTile * BlockQ, m = Math.Min(BlockQ, dims.T - r0);
                                long row = (long)h * dims.T + r0; // flat row of the tile's first query
                                T* dqRows = split == 1 ? pdq + dq.Layout.At(h, r0) : pPart + ((long)part * rows + row) * d;
                                int dqStride = split == 1 ? dq.Layout.RowStride : d;
                                // Keys past the tile's last row's horizon (causal) get P = 0 from every row: leave them out.
                                int seen = Math.Min(n, dims.VisibleEnd(r0 + m - 1) - j0);
                                BackwardTile(dims, h, r0, m, j0, seen, n, pq + q.Layout.At(h, r0), q.Layout.RowStride, pdo + dout.Layout.At(h, r0), dout.Layout.RowStride,
                                    lse.Data, lse.Offset + (int)row, pDelta + row, kRows, k.Layout.RowStride, kt, vt, dkAcc, dvAcc,
                                    dqRows, dqStride, pP, scale, drop);
                            }
                        }
                        for (int j = 0; j < n; j++)
                        {
                            TensorPrimitives.Multiply(new ReadOnlySpan<T>(dkAcc + j * d, d), scale, new Span<T>(pdk + dk.Layout.At(group, j0 + j), d));
                            new ReadOnlySpan<T>(dvAcc + j * d, d).CopyTo(new Span<T>(pdv + dv.Layout.At(group, j0 + j), d));
                        }
                    }
                }
            }
        });

        // dq = scale * (sum over parts of dS k).
        if (split == 1) ForEachRow(dims, dq, row => TensorPrimitives.Multiply(row, scale, row));
        else
        {
            NnKernels.For(rows, (long)split * d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (_, r0, r1) =>
            {
                for (int r = r0; r < r1; r++)
                {
                    int h = r / dims.T, t = r - h * dims.T;
                    var dst = dq.Data.AsSpan((int)dq.Layout.At(h, t), d);
                    partial.AsSpan(r * d, d).CopyTo(dst);
                    for (int p = 1; p < split; p++) TensorPrimitives.Add(dst, partial.AsSpan((p * rows + r) * d, d), dst);
                    TensorPrimitives.Multiply(dst, scale, dst);
                }
            });
        }
    }

    /// <summary>Runs <paramref name="body"/> on every query row of an operand (B H T rows of D).</summary>
    private static void ForEachRow<T>(Dims dims, Rows<T> x, SpanAction<T> body) where T : unmanaged
    {
        for (int h = 0; h < dims.B * dims.H; h++)
            for (int t = 0; t < dims.T; t++) body(x.Data.AsSpan((int)x.Layout.At(h, t), dims.D));
    }

    private delegate void SpanAction<T>(Span<T> row);

    /// <summary>
    /// Query tile [r0, r0 + m) of flat head h against keys [j0, j0 + n) of the key tile: dk, dv accumulate
    /// in the key tile's (BlockK, D) buffers, dq (unscaled) in the rows at dqRows. q, dout, k and dq rows
    /// step by their own strides; kt and vt, the tile's transposed keys and values, by ldt.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardTile<T>(Dims dims, int h, int r0, int m, int j0, int n, int ldt, T* qRows, int qStride, T* doRows, int doStride,
        T[] lse, int lseOffset, T* delta, T* kRows, int kStride, T* kt, T* vt, T* dkAcc, T* dvAcc, T* dqRows, int dqStride, T* scratch, T scale, Dropout<T> drop)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = dims.D;
        T* p = scratch, dp = scratch + BlockQ * BlockK, keep = scratch + 2 * BlockQ * BlockK;
        new Span<T>(p, m * n).Clear();
        TileGemm.MulAdd(m, n, d, qRows, qStride, 1, kt, ldt, p, n); // s = q k^T
        for (int r = 0; r < m; r++)
        {
            var row = new Span<T>(p + r * n, n);
            int valid = Math.Clamp(dims.VisibleEnd(r0 + r) - j0, 0, n);
            var live = row[..valid];
            // P = exp(scale s - lse); lse = +inf on a row with no visible key gives P = 0.
            AttentionRows.ScaleExp(live, scale, lse[lseOffset + r]);
            row[valid..].Clear();
            if (drop.Enabled)
            {
                var keepRow = new Span<T>(keep + r * n, n);
                drop.Mask(keepRow[..valid], h, r0 + r, j0);
                keepRow[valid..].Clear();
            }
        }
        T* pv = p; // the weights that multiplied v: P, or P * keep / (1 - p)
        if (drop.Enabled)
        {
            pv = dp; // dP is computed after dv, so its buffer holds the dropped P meanwhile
            AttentionRows.Multiply(new ReadOnlySpan<T>(p, m * n), new ReadOnlySpan<T>(keep, m * n), new Span<T>(pv, m * n));
        }
        TileGemm.MulAdd(n, d, m, pv, 1, n, doRows, doStride, dvAcc, d);   // dv += P^T dout
        new Span<T>(dp, m * n).Clear();
        TileGemm.MulAdd(m, n, d, doRows, doStride, 1, vt, ldt, dp, n);    // dP = dout v^T
        for (int r = 0; r < m; r++)
        {
            var dpRow = new Span<T>(dp + r * n, n);
            if (drop.Enabled) AttentionRows.Multiply(dpRow, new ReadOnlySpan<T>(keep + r * n, n), dpRow);
            AttentionRows.SoftmaxGrad(dpRow, new ReadOnlySpan<T>(p + r * n, n), delta[r]); // dS = P (dP - Di)
        }
        TileGemm.MulAdd(n, d, m, dp, 1, n, qRows, qStride, dkAcc, d);        // dk += dS^T q   (scaled when stored)
        TileGemm.MulAdd(m, d, n, dp, n, 1, kRows, kStride, dqRows, dqStride); // dq += dS k     (scaled at the end)
    }

    /// <summary>dst (D, n) = src (n rows of D, srcStride apart) transposed: row j of src becomes column j of dst.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Transpose<T>(T* src, int srcStride, int n, int d, T* dst) where T : unmanaged
    {
        if (typeof(T) == typeof(float) && System.Runtime.Intrinsics.X86.Avx.IsSupported && n % 8 == 0 && d % 8 == 0)
        {
            SimdTranspose.Blocks((float*)src, srcStride, n, d, (float*)dst, n); // 8 x 8 blocks in registers
            return;
        }
        for (int j = 0; j < n; j++)
        {
            T* row = src + (long)j * srcStride;
            for (int c = 0; c < d; c++) dst[(long)c * n + j] = row[c];
        }
    }

    /// <summary>The attention-dropout mask of <see cref="AttentionAttrs"/>, as per-entry multipliers (0 or 1 / (1 - p)).</summary>
    private readonly struct Dropout<T>(bool enabled, ulong seed, ulong offset, uint threshold, T keepScale, Dims dims)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        public bool Enabled => enabled;

        public static Dropout<T> From(AttentionAttrs a, Dims dims)
            => new(a.DropoutP > 0, a.Seed, a.Offset, a.KeepThreshold, T.CreateTruncating(a.KeepScale), dims);

        /// <summary>dst[c] = multiplier of entry (flat head h, query i, key j0 + c).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Mask(Span<T> dst, int h, int i, int j0)
        {
            ulong index = offset + ((ulong)h * (ulong)dims.T + (ulong)i) * (ulong)dims.S + (ulong)j0;
            int c = 0;
            while (c < dst.Length)
            {
                var (w0, w1, w2, w3) = Philox.Block(seed, index >> 2); // one block serves up to 4 entries
                for (int word = (int)(index & 3); word < 4 && c < dst.Length; word++, c++, index++)
                {
                    uint bits = word switch { 0 => w0, 1 => w1, 2 => w2, _ => w3 };
                    dst[c] = (bits >> 8) >= threshold ? keepScale : T.Zero;
                }
            }
        }
    }
}
