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
/// Threads: C is cut into as many stripes as there are cores, along its longer side (rows in multiples
/// of MR, or columns in multiples of NR); each stripe is an independent serial GEMM with its own packing
/// buffers. Each thread packs the operand shared by all stripes again (B when cutting rows), which costs
/// K * N copies against M * N * K / threads FMAs: noise from a few hundred rows up.
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
    /// threads: how many stripes C may be cut into (1 = run on the calling thread only).
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
        if (work < DirectLimit)
        {
            Direct(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        var (mr, nr) = Tile(isa);
        bool byRows = m >= n;
        int tiles = byRows ? (m + mr - 1) / mr : (n + nr - 1) / nr;
        int stripes = work < ParallelLimit ? 1 : Math.Min(threads, tiles);
        if (stripes <= 1)
        {
            Serial(isa, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        // Stripe s covers rows (or columns) [s * step, min((s + 1) * step, size)), whole tiles each.
        int step = (tiles + stripes - 1) / stripes * (byRows ? mr : nr);
        nint pa = (nint)a, pb = (nint)b, pc = (nint)c;
        Parallel.For(0, stripes, s =>
        {
            int start = s * step;
            if (byRows)
            {
                int rows = Math.Min(step, m - start);
                if (rows <= 0) return;
                float* sa = (float*)pa + (transA ? start : (nint)start * lda);
                Serial(isa, transA, transB, rows, n, k, alpha, sa, lda, (float*)pb, ldb, beta, (float*)pc + (nint)start * ldc, ldc);
            }
            else
            {
                int cols = Math.Min(step, n - start);
                if (cols <= 0) return;
                float* sb = (float*)pb + (transB ? (nint)start * ldb : start);
                Serial(isa, transA, transB, m, cols, k, alpha, (float*)pa, lda, sb, ldb, beta, (float*)pc + start, ldc);
            }
        });
    }

    /// <summary>The five loops around the micro-kernel on the calling thread (see the class comment).</summary>
    private static void Serial(SgemmIsa isa, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        var (mr, nr) = Tile(isa);
        int mcMax = MC / mr * mr;
        var buffers = PackBuffers.ForThisThread((mcMax + mr) * KC, (NC + nr) * KC);
        float* ap = buffers.A, bp = buffers.B;
        float* edge = stackalloc float[32 * 32]; // one MR x NR tile for ragged edges (NR is the row stride)

        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc);
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                float betaBlock = pc == 0 ? beta : 1f;
                SgemmPack.B(transB, b, ldb, pc, kc, jc, nc, nr, bp);
                for (int ic = 0; ic < m; ic += mcMax)
                {
                    int mc = Math.Min(mcMax, m - ic);
                    SgemmPack.A(transA, a, lda, ic, mc, pc, kc, alpha, mr, ap);
                    for (int jr = 0; jr < nc; jr += nr)
                    {
                        int cols = Math.Min(nr, nc - jr);
                        float* bSliver = bp + (nint)jr * kc;
                        for (int ir = 0; ir < mc; ir += mr)
                        {
                            int rows = Math.Min(mr, mc - ir);
                            float* aSliver = ap + (nint)ir * kc;
                            float* cTile = c + (nint)(ic + ir) * ldc + jc + jr;
                            if (rows == mr && cols == nr)
                            {
                                Kernel(isa, kc, aSliver, bSliver, cTile, ldc, betaBlock);
                            }
                            else
                            {
                                // Ragged edge: run the full kernel into a scratch tile, then merge the valid part.
                                Kernel(isa, kc, aSliver, bSliver, edge, nr, 0f);
                                for (int r = 0; r < rows; r++)
                                {
                                    float* crow = cTile + (nint)r * ldc;
                                    float* erow = edge + r * nr;
                                    for (int j = 0; j < cols; j++)
                                        crow[j] = betaBlock == 0f ? erow[j] : erow[j] + betaBlock * crow[j];
                                }
                            }
                        }
                    }
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
    /// Per-thread packing buffers, 64-byte aligned (one cache line, one zmm), allocated on a thread's
    /// first GEMM and kept for the life of the thread so the hot path never allocates. They are only
    /// touched inside Serial, which never blocks or yields, so two GEMMs can't share them at once.
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
