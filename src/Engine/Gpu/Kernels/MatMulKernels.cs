using System.Numerics;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>Sizes and strides of a batched matmul, passed to the kernel by value.</summary>
internal struct MatMulGeometry
{
    public int M, N, K;
    public int Tile, TilesM, TilesN, Batch;
    public int ARowStride, AColStride, BRowStride, BColStride;
    /// <summary>Batch axes with operands (c, a, b): offsets of each batch's matrices (stride 0 where broadcast).</summary>
    public StridedLayout Batches;
}

/// <summary>
/// Batched matmul: a (..., M, K) @ b (..., K, N) -> c (..., M, N), c contiguous, a and b any strides
/// (a transposed view is just a pair of swapped strides, so a.MT costs no copy).
/// The kernel is the textbook shared-memory tiling, kept simple and correct: a group of T x T threads
/// computes a T x T tile of c, walking K in steps of T; each step loads a T x T tile of a and of b into
/// shared memory (zero-padded past the edges), then every thread accumulates its dot product from them.
/// T = 16 on a GPU (256 threads), 8 on the CPU accelerator (64). The fast GEMMs (register blocking,
/// tensor cores) are a separate family; <see cref="MatMul"/> is the one place that picks a kernel.
/// On ILGPU's CPU accelerator the tiling is the slow choice: each simulated thread is an OS thread, so a
/// Group.Barrier is a barrier of 64 OS threads (0.1 ms on a quiet 2-core machine, about 2 ms on a loaded one), and
/// the tiled kernel takes 2 K / T of them per tile of c: 1,408 barriers (2.8 s) for one (32, 172) @ (172, 64) of a
/// stories260K fine-tune, 45,000 at batch 8 x 128. There <see cref="DotKernel"/> runs instead: one thread per element
/// of c, its dot product read straight from a and b, no shared memory and no barrier.
/// </summary>
internal static class MatMulKernels
{
    // ---- kernel ----

    public static void TiledKernel<T>(ArrayView<T> a, ArrayView<T> b, ArrayView<T> c, MatMulGeometry g) where T : unmanaged, INumber<T>
    {
        int tile = g.Tile;
        int tid = Group.IdxX, groups = Grid.DimX;
        int tr = tid / tile, tc = tid - tr * tile;
        var shared = SharedMemory.GetDynamic<T>();
        var aTile = shared.SubView(0, tile * tile); // (T, T) of a: rows of c, a k-step
        var bTile = shared.SubView(tile * tile, tile * tile); // (T, T) of b: a k-step, columns of c
        int perMatrix = g.TilesM * g.TilesN;
        for (int block = Grid.IdxX; block < g.Batch * perMatrix; block += groups)
        {
            int batch = block / perMatrix, t = block - batch * perMatrix;
            int tm = t / g.TilesN, tn = t - tm * g.TilesN;
            g.Batches.Offsets3(batch, out int oc, out int oa, out int ob);
            int row = tm * tile + tr, col = tn * tile + tc;
            T acc = T.Zero;
            for (int k0 = 0; k0 < g.K; k0 += tile)
            {
                int ka = k0 + tc, kb = k0 + tr;
                aTile[tr * tile + tc] = row < g.M && ka < g.K ? a[oa + row * g.ARowStride + ka * g.AColStride] : T.Zero;
                bTile[tr * tile + tc] = kb < g.K && col < g.N ? b[ob + kb * g.BRowStride + col * g.BColStride] : T.Zero;
                Group.Barrier();
                for (int k = 0; k < tile; k++) acc += aTile[tr * tile + k] * bTile[k * tile + tc];
                Group.Barrier();
            }
            if (row < g.M && col < g.N) c[oc + row * g.N + col] = acc;
        }
    }

    /// <summary>c[i, j] = sum_k a[i, k] b[k, j], one element of c per thread (grid-stride): the barrier-free kernel for the CPU accelerator.</summary>
    public static void DotKernel<T>(ArrayView<T> a, ArrayView<T> b, ArrayView<T> c, MatMulGeometry g) where T : unmanaged, INumber<T>
    {
        int perMatrix = g.M * g.N, n = g.Batch * perMatrix;
        int step = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += step)
        {
            int batch = i / perMatrix, e = i - batch * perMatrix;
            int row = e / g.N, col = e - row * g.N;
            g.Batches.Offsets3(batch, out int oc, out int oa, out int ob);
            int ai = oa + row * g.ARowStride, bi = ob + col * g.BColStride;
            T acc = T.Zero;
            for (int k = 0; k < g.K; k++, ai += g.AColStride, bi += g.BRowStride) acc += a[ai] * b[bi];
            c[oc + e] = acc;
        }
    }

    // ---- launchers ----

    /// <summary>Validates (as the CPU backend does) and picks the kernel: GemmDispatch (Kernels/Gemm) where the layout allows, else the tiled one.</summary>
    public static void MatMul(GpuBackend b, Tensor a, Tensor bm, Tensor c)
    {
        int rank = c.Rank;
        if (a.Rank != rank || bm.Rank != rank || rank < 2)
            throw new ArgumentException($"matmul: operands {a.Describe()} @ {bm.Describe()} -> {c.Describe()} need equal ranks >= 2");
        int m = a.Shape[^2], k = a.Shape[^1], n = bm.Shape[^1];
        if (bm.Shape[^2] != k)
            throw new ArgumentException($"matmul: inner sizes differ: {a.Describe()} @ {bm.Describe()} ({k} vs {bm.Shape[^2]})");
        if (c.Shape[^2] != m || c.Shape[^1] != n || !a.Shape.AsSpan(0, rank - 2).SequenceEqual(c.Shape.AsSpan(0, rank - 2))
            || !bm.Shape.AsSpan(0, rank - 2).SequenceEqual(c.Shape.AsSpan(0, rank - 2)))
            throw new ArgumentException($"matmul: shapes {a.Describe()} @ {bm.Describe()} do not give {c.Describe()}");
        if (!c.IsContiguous) throw new ArgumentException($"matmul: output {c.Describe()} must be contiguous");
        if (a.DType != bm.DType || a.DType != c.DType) throw new ArgumentException($"matmul: dtypes differ: {a.Describe()} @ {bm.Describe()} -> {c.Describe()}");
        if (c.Numel == 0) return;
        if (Gemm.GemmDispatch.TryRun(b, a, bm, c, m, n, k)) return; // the GEMM kernels (Kernels/Gemm) when the strides allow
        if (c.DType is DType.F16 or DType.BF16) Widened(b, a, bm, c);
        else Run(b, a, bm, c, m, n, k, tiled: b.GpuShaped);
    }

    /// <summary>
    /// A 16-bit matmul the GEMM kernels cannot take (strides they do not handle, ILGPU's CPU accelerator with its small
    /// thread groups): float32 copies, the float32 kernel, one rounding at the end, as the CPU backend does (CpuMatMul),
    /// so autocast (Autocast.cs) runs on every device. The copies are workspace, freed as soon as the product is rounded:
    /// kept to the end of the step's memory scope they were most of an autocast step's peak on ILGPU's CPU accelerator
    /// (1.8x the float32 step's for a 2-layer GPT), where every 16-bit matmul takes this path.
    /// </summary>
    private static void Widened(GpuBackend b, Tensor a, Tensor bm, Tensor c)
    {
        Tensor Float(Tensor t)
        {
            var f = Tensor.Empty(t.Shape, DType.F32, t.Device);
            b.Execute(Op.Copy, [t], [f], null);
            return f;
        }
        using var wa = Float(a);
        using var wb = Float(bm);
        using var wc = Tensor.Empty(c.Shape, DType.F32, c.Device);
        MatMul(b, wa, wb, wc);
        b.Execute(Op.Copy, [wc], [c], null);
    }

    /// <summary>
    /// Launches the tiled kernel (<paramref name="tiled"/>) or the barrier-free one on validated operands. Internal
    /// so that the tests run the tiled kernel on the CPU accelerator too, where <see cref="MatMul"/> never picks it.
    /// </summary>
    internal static void Run(GpuBackend b, Tensor a, Tensor bm, Tensor c, int m, int n, int k, bool tiled)
    {
        int rank = c.Rank;
        int tile = tiled ? (int)Math.Sqrt(b.GroupSize) : 1;
        var batchShape = c.Shape.AsSpan(0, rank - 2);
        var g = new MatMulGeometry
        {
            M = m,
            N = n,
            K = k,
            Tile = tile,
            TilesM = (m + tile - 1) / tile,
            TilesN = (n + tile - 1) / tile,
            Batch = c.Numel / (m * n),
            ARowStride = a.Strides[^2],
            AColStride = a.Strides[^1],
            BRowStride = bm.Strides[^2],
            BColStride = bm.Strides[^1],
            Batches = StridedLayout.Create(batchShape, [c.Strides[..^2], a.Strides[..^2], bm.Strides[..^2]], [c.Offset, a.Offset, bm.Offset]),
        };
        if (c.DType is not (DType.F32 or DType.F64))
            throw new NotSupportedException($"the GPU backend's matmul supports F32 and F64, got {a.Describe()} @ {bm.Describe()}");
        var (va, vb, vc) = (CopyKernels.View((GpuStorage)a.Storage), CopyKernels.View((GpuStorage)bm.Storage), CopyKernels.View((GpuStorage)c.Storage));
        if (!tiled)
        {
            b.Launch(Spec(c.DType, tiled: false), b.Grid(c.Numel), va, vb, vc, g);
            return;
        }
        var shared = c.DType == DType.F32 ? SharedMemoryConfig.RequestDynamic<float>(2 * tile * tile) : SharedMemoryConfig.RequestDynamic<double>(2 * tile * tile);
        b.Launch(Spec(c.DType, tiled: true), new KernelConfig(b.GroupsFor((long)g.Batch * g.TilesM * g.TilesN), tile * tile, shared), va, vb, vc, g);
    }

    private static KernelSpec Spec(DType t, bool tiled) => t == DType.F32 ? Spec<float>(t, tiled) : Spec<double>(t, tiled);

    private static KernelSpec Spec<T>(DType t, bool tiled) where T : unmanaged, INumber<T> => tiled
        ? new($"MatMul_{t}", ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, MatMulGeometry>)TiledKernel<T>).Method)
        : new($"MatMulDot_{t}", ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, MatMulGeometry>)DotKernel<T>).Method);

    /// <summary>The tiled and barrier-free kernels and every GEMM kernel GemmSelect can run (SGEMM versions 3 and 5 in each layout, the tensor-core ones).</summary>
    public static IEnumerable<KernelSpec> Specs() =>
        new[] { DType.F32, DType.F64 }.SelectMany(t => new[] { Spec(t, tiled: true), Spec(t, tiled: false) }).Concat(Gemm.GemmSelect.Specs());
}
