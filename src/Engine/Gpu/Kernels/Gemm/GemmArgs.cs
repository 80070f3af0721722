using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>Activation applied to each output element by the GEMM epilogue (after bias).</summary>
internal enum GemmActivation
{
    None = 0,
    Relu = 1,
    /// <summary>GPT-2's gelu: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).</summary>
    GeluTanh = 2,
}

/// <summary>
/// The problem every GEMM kernel here solves, row-major throughout, for each batch index b:
///   C[b] = act(alpha * op(A[b]) op(B[b]) + beta * C[b] + bias)
/// op(A) is M x K: A is stored M x K (row stride Lda), or K x M when TransA (op(A) = A^T).
/// op(B) is K x N: B is stored K x N (Ldb), or N x K when TransB. C is M x N (Ldc).
/// The batch strides are in elements; 0 shares one matrix across the batch. bias has N elements
/// (one per output column, the Linear layer's case) when HasBias. beta = 0 never reads C.
/// Passed by value to the kernels (a plain struct of scalars).
/// </summary>
internal struct GemmArgs
{
    public int M, N, K, Lda, Ldb, Ldc;
    public int TransA, TransB;
    public long BatchStrideA, BatchStrideB, BatchStrideC;
    public float Alpha, Beta;
    public int HasBias;
    public int Activation;

    /// <summary>A dense problem: leading dimensions from the stored shapes, alpha 1, beta 0.</summary>
    public static GemmArgs Dense(int m, int n, int k, bool transA = false, bool transB = false, int batch = 1)
    {
        var p = new GemmArgs
        {
            M = m,
            N = n,
            K = k,
            TransA = transA ? 1 : 0,
            TransB = transB ? 1 : 0,
            Lda = transA ? m : k,
            Ldb = transB ? k : n,
            Ldc = n,
            Alpha = 1f,
            Beta = 0f,
        };
        if (batch > 1)
        {
            p.BatchStrideA = (long)m * k;
            p.BatchStrideB = (long)k * n;
            p.BatchStrideC = (long)m * n;
        }
        return p;
    }

    /// <summary>Rows and columns of A and B as stored (before op).</summary>
    public readonly (int Rows, int Cols) StoredA => TransA != 0 ? (K, M) : (M, K);
    public readonly (int Rows, int Cols) StoredB => TransB != 0 ? (N, K) : (K, N);

    /// <summary>Checks sizes, leading dimensions and that each view holds every element the batch touches.</summary>
    public readonly void Validate(long aLength, long bLength, long cLength, long biasLength, int batch, string who)
    {
        if (M < 0 || N < 0 || K < 0 || batch < 1)
            throw new ArgumentException($"{who}: bad sizes M={M} N={N} K={K} batch={batch}");
        if (batch > 65535) throw new ArgumentException($"{who}: batch {batch} exceeds the grid's z limit 65535");
        Check("A", StoredA, Lda, BatchStrideA, aLength);
        Check("B", StoredB, Ldb, BatchStrideB, bLength);
        Check("C", (M, N), Ldc, BatchStrideC, cLength);
        if (HasBias != 0 && biasLength < N) throw new ArgumentException($"{who}: bias has {biasLength} elements, N = {N}");
        if (batch > 1 && BatchStrideC < (long)(M - 1) * Ldc + N && M * N > 0)
            throw new ArgumentException($"{who}: batch stride of C ({BatchStrideC}) makes batches overlap");

        void Check(string name, (int Rows, int Cols) s, int ld, long stride, long length)
        {
            if (s.Rows == 0 || s.Cols == 0) return;
            if (ld < s.Cols) throw new ArgumentException($"{who}: {name} is stored {s.Rows} x {s.Cols} but its leading dimension is {ld}");
            if (stride < 0) throw new ArgumentException($"{who}: {name} has a negative batch stride {stride}");
            long need = (batch - 1) * stride + (long)(s.Rows - 1) * ld + s.Cols;
            if (length < need) throw new ArgumentException($"{who}: {name} ({s.Rows} x {s.Cols}, ld {ld}, batch {batch} x {stride}) needs {need} elements, the view has {length}");
        }
    }
}

/// <summary>The epilogue shared by every kernel: scale, beta * C, bias, activation.</summary>
internal static class GemmEpilogue
{
    /// <summary>alpha * acc + beta * old + bias, then the activation. old and bias are read only when used.</summary>
    public static float Apply(float acc, float old, float bias, in GemmArgs p)
    {
        float v = p.Alpha * acc;
        if (p.Beta != 0f) v += p.Beta * old;
        if (p.HasBias != 0) v += bias;
        return Activate(v, p.Activation);
    }

    public static float Activate(float v, int activation)
    {
        if (activation == (int)GemmActivation.Relu) return v > 0f ? v : 0f;
        if (activation == (int)GemmActivation.GeluTanh)
        {
            const float SqrtTwoOverPi = 0.7978845608f;
            float u = SqrtTwoOverPi * (v + 0.044715f * v * v * v);
            float t = ILGPU.Runtime.Cuda.CudaAsm.IsSupported ? Ptx.TanhApprox(u) : MathF.Tanh(u);
            return 0.5f * v * (1f + t);
        }
        return v;
    }

    /// <summary>The float32 epilogue for element (row, col) of one batch's C (a view starting at that batch).</summary>
    public static void StoreF32(ArrayView<float> c, int row, int col, float acc, ArrayView<float> bias, in GemmArgs p)
    {
        int i = row * p.Ldc + col;
        float old = p.Beta != 0f ? c[i] : 0f;
        float b = p.HasBias != 0 ? bias[col] : 0f;
        c[i] = Apply(acc, old, b, p);
    }
}

/// <summary>Host-side helpers shared by the launchers.</summary>
internal static class GemmLaunch
{
    public static int CeilDiv(int a, int b) => (a + b - 1) / b;

    /// <summary>The spec of <paramref name="host"/>'s kernel method ("Kernel"), closed over <paramref name="generic"/>.</summary>
    public static KernelSpec Spec(string name, Type host, params Type[] generic)
    {
        var method = host.GetMethod("Kernel", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)
            ?? throw new InvalidOperationException($"{host.Name} has no Kernel method");
        return new KernelSpec(name, generic.Length == 0 ? method : method.MakeGenericMethod(generic));
    }

    /// <summary>The layout type of an operand: <see cref="KInner"/> when k is its contiguous axis.</summary>
    public static Type Layout(bool kInner) => kInner ? typeof(KInner) : typeof(MnInner);

    /// <summary>ILGPU cannot pass a null view; an absent bias is a 1-element dummy that the kernel never reads.</summary>
    public static ArrayView<T> OrDummy<T>(this ArrayView<T> view, Accelerator accelerator) where T : unmanaged
        => view.Length > 0 ? view : Dummies<T>.For(accelerator);

    /// <summary>The device address of element 0 of a view (for cp.async, which takes raw global addresses).</summary>
    public static ulong DeviceAddress<T>(ArrayView<T> view) where T : unmanaged
    {
        if (view.Length == 0) return 0;
        var contiguous = (IContiguousArrayView)view;
        return (ulong)((IArrayView)view).Buffer.NativePtr.ToInt64() + (ulong)contiguous.IndexInBytes;
    }

    private static class Dummies<T> where T : unmanaged
    {
        private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Accelerator, MemoryBuffer1D<T, Stride1D.Dense>> Table = new();

        public static ArrayView<T> For(Accelerator accelerator) => Table.GetValue(accelerator, a => a.Allocate1D<T>(1)).View;
    }
}
