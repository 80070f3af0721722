using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace ManagedTensor.Cpu;

/// <summary>Which micro-kernel the SGEMM runs (the best one the CPU has, unless a test asks for another).</summary>
internal enum SgemmIsa { Scalar, Avx2, Avx512 }

/// <summary>
/// Single-precision GEMM, C = alpha * op(A) * op(B) + beta * C, row-major, after Goto and van de Geijn
/// ("Anatomy of high-performance matrix multiplication", 2008) in the loop order of BLIS:
///
///   for jc in 0..N step NC                      C and B split into column panels of NC
///     for pc in 0..K step KC                    rank-KC updates
///       pack B[pc:pc+KC, jc:jc+NC] -> Bp         KC x NC, lives in L3 (shared by every A block)
///       for ic in 0..M step MC
///         pack A[ic:ic+MC, pc:pc+KC] -> Ap       MC x KC, lives in L2
///         for jr in 0..NC step NR                one B sliver (KC x NR) stays in L1 ...
///           for ir in 0..MC step MR              ... while the A slivers (MR x KC) stream from L2
///             kernel: C[ic+ir : +MR, jc+jr : +NR] (+)= Ap sliver * Bp sliver   (in registers)
///
/// Sizes for the AVX-512 kernel (MR x NR = 12 x 32) on a core with 48 KiB L1d and 1 MiB L2 (Zen 4/5):
/// a B sliver is KC * NR * 4 = 256 * 32 * 4 = 32 KiB (two thirds of L1, the rest for the A sliver and C);
/// the A block is MC * KC * 4 = 192 * 256 * 4 = 192 KiB (a fraction of L2, so it stays there while B
/// slivers pass through); the B block KC * NC * 4 = 4 MiB sits in L3.
/// The kernel does 2 * MR * NR flops per MR + NR floats loaded from the packed buffers, and the first
/// rank-KC update applies the caller's beta, the later ones accumulate (beta = 1).
///
/// Threads (see Threaded): the B block is packed once per (jc, pc) step and shared; the ic x jr plane
/// below it is cut into about 4 work items per thread that the threads take as they free up, so a core
/// shared with another process does not hold the others back.
/// Small products (M * N * K below 32^3) skip all of that and run a direct loop.
/// </summary>
internal static unsafe class Sgemm
{
    /// <summary>Rank of each k block: the B sliver KC x NR must fit in L1.</summary>
    public const int KC = 256;
    /// <summary>Rows of the A block packed per (pc, ic) step: about 200 KiB of L2 (a multiple of MR is used).</summary>
    public const int MC = 192;
    /// <summary>Columns of the B block packed per (jc, pc) step: KC x NC floats in L3.</summary>
    public const int NC = 4096;
    /// <summary>Below this many multiply-adds the packing and threading overheads dominate.</summary>
    public const long DirectLimit = 32 * 32 * 32;
    /// <summary>Below this many multiply-adds one thread is faster than waking a second one.</summary>
    public const long ParallelLimit = 96 * 96 * 96;

    public static SgemmIsa Best { get; } =
        Avx512F.IsSupported ? SgemmIsa.Avx512 : Avx2.IsSupported && Fma.IsSupported ? SgemmIsa.Avx2 : SgemmIsa.Scalar;

    /// <summary>The register tile (MR rows x NR columns) of each micro-kernel.</summary>
    public static (int Mr, int Nr) Tile(SgemmIsa isa) => isa switch
    {
        SgemmIsa.Avx512 => (12, 32),
        SgemmIsa.Avx2 => (6, 16),
        _ => (4, 4),
    };

    /// <summary>
    /// C = alpha * op(A) * op(B) + beta * C. A is m x k (k x m when transA) with row stride lda, B is
    /// k x n (n x k when transB) with row stride ldb, C is m x n with row stride ldc. The caller
    /// guarantees the pointers cover those extents (Gemm.Run checks the spans).
    /// threads: how many threads may work on it (1 = the calling thread only).
    /// </summary>
    public static void Run(SgemmIsa isa, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, int threads)
    {
        if (m == 0 || n == 0) return;
        if (k == 0 || alpha == 0f)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }
        long work = (long)m * n * k;
        if (work < DirectLimit) Direct(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        else if (work < ParallelLimit || threads <= 1) Serial(isa, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        else Threaded(isa, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads);
    }

    /// <summary>The five loops around the micro-kernel on the calling thread (see the class comment).</summary>
    private static void Serial(SgemmIsa isa, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        var (mr, nr) = Tile(isa);
        int mc = MC / mr * mr;
        var buffers = PackBuffers.ForThisThread((mc + mr) * KC, (NC + nr) * KC);
        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc);
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                float betaBlock = pc == 0 ? beta : 1f;
                SgemmPack.B(transB, b, ldb, pc, kc, jc, nc, nr, buffers.B);
                for (int ic = 0; ic < m; ic += mc)
                {
                    int rows = Math.Min(mc, m - ic);
                    SgemmPack.A(transA, a, lda, ic, rows, pc, kc, alpha, mr, buffers.A);
                    MacroKernel(isa, kc, buffers.A, rows, buffers.B, 0, nc, nc, c + (nint)ic * ldc + jc, ldc, betaBlock);
                }
            }
        }
    }

    /// <summary>
    /// The same loops on several threads. Per (jc, pc) step the B block is packed once into a shared
    /// buffer (its slivers split among the threads), then the (ic, jr) plane of C is cut into work
    /// items, each an A block of rows times a run of B slivers, that the threads take dynamically
    /// (Parallel.For): a thread slowed down by another process on its core simply takes fewer items.
    /// Each item packs its A block into its thread's buffer; when C is cut along columns too, an A
    /// block is packed once per column run, cheap while a run is hundreds of columns wide.
    /// </summary>
    private static void Threaded(SgemmIsa isa, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, int threads)
    {
        var (mr, nr) = Tile(isa);
        // Aim for about 4 items per thread, rows in multiples of MR (at most MC), columns in runs of
        // at least 8 slivers, so that balancing is fine-grained but each item still reuses its A block.
        int wantItems = 4 * threads;
        int mc = Math.Clamp((m + wantItems - 1) / wantItems, mr, MC) / mr * mr;
        int rowBlocks = (m + mc - 1) / mc;
        var shared = SharedB.Rent((NC + nr) * KC);
        try
        {
            nint pa = (nint)a, pb = (nint)b, pcPtr = (nint)c, pShared = (nint)shared.B;
            for (int jc = 0; jc < n; jc += NC)
            {
                int nc = Math.Min(NC, n - jc);
                int slivers = (nc + nr - 1) / nr;
                int colRuns = Math.Clamp((wantItems + rowBlocks - 1) / rowBlocks, 1, Math.Max(1, slivers / 8));
                int sliversPerRun = (slivers + colRuns - 1) / colRuns;
                colRuns = (slivers + sliversPerRun - 1) / sliversPerRun;
                int sliversPerPacker = (slivers + threads - 1) / threads;
                for (int pc = 0; pc < k; pc += KC)
                {
                    int kc = Math.Min(KC, k - pc);
                    float betaBlock = pc == 0 ? beta : 1f;
                    int jcStep = jc, pcStep = pc;
                    Parallel.For(0, threads, t =>
                    {
                        int s0 = t * sliversPerPacker, s1 = Math.Min(slivers, s0 + sliversPerPacker);
                        if (s0 >= s1) return;
                        int j0 = s0 * nr, cols = Math.Min(nc, s1 * nr) - j0;
                        SgemmPack.B(transB, (float*)pb, ldb, pcStep, kc, jcStep + j0, cols, nr, (float*)pShared + (nint)j0 * kc);
                    });
                    Parallel.For(0, rowBlocks * colRuns, item =>
                    {
                        int ic = item / colRuns * mc, rows = Math.Min(mc, m - ic);
                        int j0 = item % colRuns * sliversPerRun * nr, j1 = Math.Min(nc, j0 + sliversPerRun * nr);
                        var buffers = PackBuffers.ForThisThread((MC + mr) * KC, 0);
                        SgemmPack.A(transA, (float*)pa, lda, ic, rows, pcStep, kc, alpha, mr, buffers.A);
                        MacroKernel(isa, kc, buffers.A, rows, (float*)pShared, j0, j1, nc,
                            (float*)pcPtr + (nint)ic * ldc + jcStep, ldc, betaBlock);
                    });
                }
            }
        }
        finally
        {
            SharedB.Return(shared);
        }
    }

    /// <summary>
    /// The two innermost loops: C[0..mc, j0..j1] (+)= Ap * Bp[:, j0..j1] with Ap a packed A block of
    /// mc rows and Bp a packed B block; each B sliver stays in L1 while the A slivers stream past it.
    /// </summary>
    [SkipLocalsInit]
    private static void MacroKernel(SgemmIsa isa, int kc, float* ap, int mc, float* bp, int j0, int j1, int nc,
        float* c, int ldc, float beta)
    {
        var (mr, nr) = Tile(isa);
        float* edge = stackalloc float[32 * 32]; // one MR x NR scratch tile for ragged edges (row stride NR)
        for (int jr = j0; jr < j1; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            float* bSliver = bp + (nint)jr * kc;
            for (int ir = 0; ir < mc; ir += mr)
            {
                int rows = Math.Min(mr, mc - ir);
                float* aSliver = ap + (nint)ir * kc;
                float* cTile = c + (nint)ir * ldc + jr;
                if (rows == mr && cols == nr)
                {
                    Kernel(isa, kc, aSliver, bSliver, cTile, ldc, beta);
                    continue;
                }
                // Ragged edge: run the full kernel into the scratch tile, then merge the valid part.
                Kernel(isa, kc, aSliver, bSliver, edge, nr, 0f);
                for (int r = 0; r < rows; r++)
                {
                    float* cRow = cTile + (nint)r * ldc;
                    float* eRow = edge + r * nr;
                    for (int j = 0; j < cols; j++)
                        cRow[j] = beta == 0f ? eRow[j] : eRow[j] + beta * cRow[j];
                }
            }
        }
    }

    private static void Kernel(SgemmIsa isa, int kc, float* a, float* b, float* c, nint ldc, float beta)
    {
        switch (isa)
        {
            case SgemmIsa.Avx512: SgemmKernels.Avx512Kernel12x32(kc, a, b, c, ldc, beta); break;
            case SgemmIsa.Avx2: SgemmKernels.Avx2Kernel6x16(kc, a, b, c, ldc, beta); break;
            default: SgemmKernels.ScalarKernel4x4(kc, a, b, c, ldc, beta); break;
        }
    }

    /// <summary>The small-product path: one dot product per element of C, no packing.</summary>
    private static void Direct(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        // Element strides of op(A) (rows, k) and op(B) (k, columns).
        nint aRow = transA ? 1 : lda, aK = transA ? lda : 1;
        nint bK = transB ? 1 : ldb, bCol = transB ? ldb : 1;
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float* ai = a + i * aRow;
                float* bj = b + j * bCol;
                float sum = 0f;
                for (int p = 0; p < k; p++) sum += ai[p * aK] * bj[p * bK];
                float* cij = c + (nint)i * ldc + j;
                *cij = beta == 0f ? alpha * sum : alpha * sum + beta * *cij;
            }
        }
    }

    /// <summary>C = beta * C (what is left of the GEMM when k = 0 or alpha = 0); beta = 0 writes zeros.</summary>
    private static void ScaleC(int m, int n, float beta, float* c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (nint)i * ldc, n);
            if (beta == 0f) row.Clear();
            else if (beta != 1f) foreach (ref float x in row) x *= beta;
        }
    }

    /// <summary>
    /// The packed B block shared by the threads of one Threaded call, rented from a small pool (one
    /// buffer per concurrent threaded GEMM) so that steady-state calls allocate nothing.
    /// </summary>
    private sealed class SharedB
    {
        private static readonly System.Collections.Concurrent.ConcurrentBag<SharedB> Pool = [];

        public float* B { get; private set; }
        private nuint cap;

        public static SharedB Rent(int floats)
        {
            if (!Pool.TryTake(out var buf)) buf = new SharedB();
            if ((nuint)floats > buf.cap)
            {
                NativeMemory.AlignedFree(buf.B);
                buf.B = (float*)NativeMemory.AlignedAlloc((nuint)floats * sizeof(float), 64);
                buf.cap = (nuint)floats;
            }
            return buf;
        }

        public static void Return(SharedB buf) => Pool.Add(buf);

        ~SharedB() => NativeMemory.AlignedFree(B);
    }

    /// <summary>
    /// Per-thread packing buffers, 64-byte aligned (one cache line, one zmm), allocated on a thread's
    /// first GEMM and kept for the life of the thread so the hot path never allocates. They are only
    /// used between a pack and its MacroKernel, code that never blocks or waits, so no other GEMM can
    /// run on the same thread in between.
    /// </summary>
    private sealed class PackBuffers
    {
        [ThreadStatic] private static PackBuffers? current;

        public float* A { get; private set; }
        public float* B { get; private set; }
        private nuint capA, capB;

        public static PackBuffers ForThisThread(int floatsA, int floatsB)
        {
            var buf = current ??= new PackBuffers();
            buf.Ensure(floatsA, floatsB);
            return buf;
        }

        private void Ensure(int floatsA, int floatsB)
        {
            if ((nuint)floatsA > capA)
            {
                NativeMemory.AlignedFree(A);
                A = (float*)NativeMemory.AlignedAlloc((nuint)floatsA * sizeof(float), 64);
                capA = (nuint)floatsA;
            }
            if ((nuint)floatsB > capB)
            {
                NativeMemory.AlignedFree(B);
                B = (float*)NativeMemory.AlignedAlloc((nuint)floatsB * sizeof(float), 64);
                capB = (nuint)floatsB;
            }
        }

        ~PackBuffers()
        {
            NativeMemory.AlignedFree(A);
            NativeMemory.AlignedFree(B);
        }
    }
}
