using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Kernels.Attention;
using ManagedTensor.Tests.Gpu;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Attention;

/// <summary>One ILGPU CPU accelerator and one set of attention launchers for the GPU kernel tests.</summary>
public sealed class AttentionGpuFixture : IDisposable
{
    public GpuFixture Gpu { get; } = new();
    public GpuAttention Attention { get; }

    public AttentionGpuFixture() => Attention = new GpuAttention(Gpu.Accelerator);

    public void Dispose()
    {
        Attention.Dispose();
        Gpu.Dispose();
    }
}

/// <summary>
/// The GPU attention kernels (SIMT, tensor-core forward, decode, SIMT backward) on ILGPU's CPU
/// accelerator against the CPU op at small odd sizes: T and S not multiples of the tiles, T != S,
/// GQA 1, 2 and 4, causal and full, rows that see no key, dropout; F32, BF16 and F16 storage.
/// The tensor-core kernel runs its plain branch here (everything but the mma instruction).
/// </summary>
public class AttentionGpuTests(AttentionGpuFixture fixture) : IClassFixture<AttentionGpuFixture>
{
    private readonly GpuAttention _gpu = fixture.Attention;
    private readonly Accelerator _acc = fixture.Gpu.Accelerator;

    /// <summary>A CPU F32 tensor of values exactly representable in <paramref name="dtype"/>.</summary>
    private static Tensor Values(int[] shape, int seed, DType dtype)
    {
        var t = RandomTensor(shape, seed, DType.F32);
        return dtype == DType.F32 ? t : t.To(dtype).To(DType.F32);
    }

    /// <summary>A device copy of a CPU F32 tensor stored as <paramref name="dtype"/>.</summary>
    private MemoryBuffer Upload(Tensor t, DType dtype)
    {
        var f = t.ToArray<float>();
        return dtype switch
        {
            DType.F32 => _acc.Allocate1D(f),
            DType.BF16 => _acc.Allocate1D(f.Select(x => BFloat16.FromFloat(x).Bits).ToArray()),
            DType.F16 => _acc.Allocate1D(f.Select(x => BitConverter.HalfToUInt16Bits((System.Half)x)).ToArray()),
            _ => throw new ArgumentException($"{dtype}"),
        };
    }

    private MemoryBuffer Zeros(int n, DType dtype) => dtype == DType.F32 ? _acc.Allocate1D<float>(n) : _acc.Allocate1D<ushort>(n);

    private static ArrayView<byte> Bytes(MemoryBuffer b) => b switch
    {
        MemoryBuffer1D<float, Stride1D.Dense> f => f.View.AsContiguous().Cast<byte>(),
        MemoryBuffer1D<ushort, Stride1D.Dense> u => u.View.AsContiguous().Cast<byte>(),
        _ => throw new ArgumentException(b.GetType().Name),
    };

    private double[] Download(MemoryBuffer b, DType dtype)
    {
        _acc.Synchronize();
        return b switch
        {
            MemoryBuffer1D<float, Stride1D.Dense> f => f.GetAsArray1D().Select(x => (double)x).ToArray(),
            MemoryBuffer1D<ushort, Stride1D.Dense> u when dtype == DType.BF16 => u.GetAsArray1D().Select(x => (double)new BFloat16(x).ToFloat()).ToArray(),
            MemoryBuffer1D<ushort, Stride1D.Dense> u => u.GetAsArray1D().Select(x => (double)BitConverter.UInt16BitsToHalf(x)).ToArray(),
            _ => throw new ArgumentException(b.GetType().Name),
        };
    }

    private static (double Rtol, double Atol) Tol(DType t) => t switch
    {
        DType.F32 => (2e-4, 2e-5),
        DType.F16 => (5e-3, 2e-3),
        _ => (2e-2, 1e-2),
    };

    private static AttentionAttrs Attrs(bool causal, int d, double dropout = 0) => new(causal, 1 / Math.Sqrt(d), dropout, 77, 1000);

    /// <summary>The CPU op's out and lse for the same values and attrs.</summary>
    private static (Tensor Out, Tensor Lse) CpuForward(Tensor q, Tensor k, Tensor v, AttentionAttrs a)
    {
        var o = q.EmptyLike();
        var lse = Tensor.Empty([q.Shape[0], q.Shape[1], q.Shape[2]]);
        Backends.For(Device.Cpu).Execute(Op.Attention, [q, k, v], [o, lse], a);
        return (o, lse);
    }

    private void CheckForward(AttentionPath path, DType dtype, int b, int h, int hkv, int t, int s, int d, bool causal, double dropout = 0, int splits = 0)
    {
        var q = Values([b, h, t, d], 1, dtype);
        var k = Values([b, hkv, s, d], 2, dtype);
        var v = Values([b, hkv, s, d], 3, dtype);
        var a = Attrs(causal, d, dropout);
        var (expected, expectedLse) = CpuForward(q, k, v, a);

        using var gq = Upload(q, dtype);
        using var gk = Upload(k, dtype);
        using var gv = Upload(v, dtype);
        using var go = Zeros(q.Numel, dtype);
        using var glse = _acc.Allocate1D<float>(b * h * t);
        var p = new AttentionParams(b, h, hkv, t, s, d, a);
        _gpu.Forward(dtype, Bytes(gq), Bytes(gk), Bytes(gv), Bytes(go), glse.View, p, path, splits);

        var (rtol, atol) = Tol(dtype);
        string what = $"{path} {dtype} B{b} H{h}/{hkv} T{t} S{s} D{d} causal={causal} dropout={dropout}";
        AssertClose(expected.ToDoubleArray(), Download(go, dtype), rtol, atol, $"out {what}");
        AssertClose(expectedLse.ToDoubleArray(), Download(glse, DType.F32), 1e-4, 1e-4, $"lse {what}");
    }

    public static TheoryData<DType, int, int, int, int, int, int, bool> SimtCases => new()
    {
        { DType.F32, 1, 2, 1, 37, 37, 16, true },    // GQA 2, one query tile plus a bit
        { DType.F32, 1, 4, 1, 70, 70, 16, false },   // GQA 4, two query tiles
        { DType.BF16, 2, 2, 2, 9, 67, 16, true },    // T < S, two key tiles
        { DType.F16, 1, 2, 1, 70, 70, 64, true },    // D 64: key tiles of 32
        { DType.F32, 1, 2, 2, 6, 4, 16, true },      // T > S: rows with no visible key
    };

    [Theory, MemberData(nameof(SimtCases))]
    public void Simt_forward_matches_the_cpu_op(DType dtype, int b, int h, int hkv, int t, int s, int d, bool causal)
        => CheckForward(AttentionPath.Simt, dtype, b, h, hkv, t, s, d, causal);

    public static TheoryData<DType, int, int, int, int, int, int, bool> MmaCases => new()
    {
        { DType.BF16, 1, 2, 1, 70, 70, 64, true },   // two query tiles, two key tiles, diagonal masking
        { DType.F16, 1, 1, 1, 37, 45, 64, false },   // T != S, keys past S masked
        { DType.BF16, 1, 1, 1, 17, 17, 128, true },  // D 128: both output halves
        { DType.BF16, 1, 2, 1, 6, 4, 64, true },     // rows with no visible key
    };

    [Theory, MemberData(nameof(MmaCases))]
    public void Tensor_core_forward_matches_the_cpu_op(DType dtype, int b, int h, int hkv, int t, int s, int d, bool causal)
        => CheckForward(AttentionPath.Mma, dtype, b, h, hkv, t, s, d, causal);

    [Theory]
    [InlineData(DType.F32, 2, 4, 2, 69, 16, 3)]
    [InlineData(DType.BF16, 1, 4, 4, 70, 64, 2)]
    [InlineData(DType.F16, 1, 2, 1, 5, 16, 4)] // more splits than keys per chunk: empty chunks
    public void Decode_matches_the_cpu_op(DType dtype, int b, int h, int hkv, int s, int d, int splits)
    {
        CheckForward(AttentionPath.Decode, dtype, b, h, hkv, 1, s, d, causal: true, splits: splits);
        CheckForward(AttentionPath.Decode, dtype, b, h, hkv, 1, s, d, causal: false, splits: splits);
    }

    [Fact]
    public void Auto_picks_decode_for_one_query_and_tensor_cores_for_16_bit_head_dim_64_and_128()
    {
        var a = Attrs(true, 64);
        Assert.Equal(AttentionPath.Decode, GpuAttention.ChooseForward(DType.BF16, new AttentionParams(1, 2, 1, 1, 90, 64, a)));
        Assert.Equal(AttentionPath.Mma, GpuAttention.ChooseForward(DType.BF16, new AttentionParams(1, 2, 1, 9, 90, 64, a)));
        Assert.Equal(AttentionPath.Mma, GpuAttention.ChooseForward(DType.F16, new AttentionParams(1, 2, 1, 9, 90, 128, a)));
        Assert.Equal(AttentionPath.Simt, GpuAttention.ChooseForward(DType.F32, new AttentionParams(1, 2, 1, 9, 90, 64, a)));
        Assert.Equal(AttentionPath.Simt, GpuAttention.ChooseForward(DType.BF16, new AttentionParams(1, 2, 1, 9, 90, 80, a)));
        var e = Assert.Throws<NotSupportedException>(() => CheckForward(AttentionPath.Mma, DType.F32, 1, 1, 1, 4, 4, 64, true));
        Assert.Contains("head dim 64 or 128", e.Message);
        Assert.Equal(AttentionPath.Mma, GpuAttention.ChooseBackward(DType.BF16, new AttentionParams(1, 2, 1, 9, 90, 128, a)));
        Assert.Equal(AttentionPath.Simt, GpuAttention.ChooseForward(DType.F16, new AttentionParams(1, 2, 1, 1, 90, 20, a))); // decode needs whole 16-byte rows
    }

    [Fact]
    public void Dropout_draws_the_cpu_mask()
    {
        CheckForward(AttentionPath.Simt, DType.F32, 1, 2, 1, 37, 41, 16, causal: true, dropout: 0.3);
        CheckForward(AttentionPath.Mma, DType.BF16, 1, 2, 1, 37, 41, 64, causal: false, dropout: 0.3);
        CheckForward(AttentionPath.Decode, DType.F32, 1, 4, 2, 1, 41, 16, causal: true, dropout: 0.3, splits: 3);
    }

    // ---- backward ----

    [Theory]
    [InlineData(DType.F32, 1, 2, 1, 37, 37, 16, true, 0.0)]
    [InlineData(DType.F32, 1, 2, 2, 70, 70, 16, false, 0.0)]
    [InlineData(DType.BF16, 1, 4, 2, 9, 67, 16, true, 0.0)]
    [InlineData(DType.F32, 1, 4, 1, 35, 35, 16, true, 0.25)]
    [InlineData(DType.F32, 1, 2, 2, 6, 4, 16, true, 0.0)]
    public void Simt_backward_matches_the_cpu_op(DType dtype, int b, int h, int hkv, int t, int s, int d, bool causal, double dropout)
        => CheckBackward(AttentionPath.Simt, dtype, b, h, hkv, t, s, d, causal, dropout);

    [Theory]
    [InlineData(DType.BF16, 1, 2, 1, 70, 70, 64, true, 0.0)]   // GQA 2, two key and two query tiles
    [InlineData(DType.F16, 1, 1, 1, 37, 45, 64, false, 0.0)]   // T != S
    [InlineData(DType.BF16, 1, 2, 1, 6, 4, 64, true, 0.0)]     // rows with no visible key
    [InlineData(DType.BF16, 1, 2, 1, 37, 41, 64, true, 0.3)]   // dropout
    [InlineData(DType.F16, 1, 2, 2, 40, 70, 128, true, 0.0)]   // head dim 128, T < S: diagonal tiles offset by S - T
    public void Tensor_core_backward_matches_the_cpu_op(DType dtype, int b, int h, int hkv, int t, int s, int d, bool causal, double dropout)
        => CheckBackward(AttentionPath.Mma, dtype, b, h, hkv, t, s, d, causal, dropout);

    private void CheckBackward(AttentionPath path, DType dtype, int b, int h, int hkv, int t, int s, int d, bool causal, double dropout)
    {
        var q = Values([b, h, t, d], 11, dtype);
        var k = Values([b, hkv, s, d], 12, dtype);
        var v = Values([b, hkv, s, d], 13, dtype);
        var dout = Values([b, h, t, d], 14, dtype);
        var a = Attrs(causal, d, dropout);
        var (o, lse) = CpuForward(q, k, v, a);
        if (dtype != DType.F32) o = o.To(dtype).To(DType.F32); // out as stored, rounded as the GPU sees it
        var (dq, dk, dv) = Tensor.AttentionBackward(dout, q, k, v, o, lse, a);

        using var gdo = Upload(dout, dtype);
        using var gq = Upload(q, dtype);
        using var gk = Upload(k, dtype);
        using var gv = Upload(v, dtype);
        using var go = Upload(o, dtype);
        using var glse = _acc.Allocate1D(lse.ToArray<float>());
        using var gdq = Zeros(q.Numel, dtype);
        using var gdk = Zeros(k.Numel, dtype);
        using var gdv = Zeros(v.Numel, dtype);
        var p = new AttentionParams(b, h, hkv, t, s, d, a);
        _gpu.Backward(dtype, Bytes(gdo), Bytes(gq), Bytes(gk), Bytes(gv), Bytes(go), glse.View, Bytes(gdq), Bytes(gdk), Bytes(gdv), p, path: path);

        var (rtol, atol) = Tol(dtype);
        string what = $"{path} {dtype} B{b} H{h}/{hkv} T{t} S{s} D{d} causal={causal} dropout={dropout}";
        AssertClose(dq.ToDoubleArray(), Download(gdq, dtype), rtol, atol, $"dq {what}");
        AssertClose(dk.ToDoubleArray(), Download(gdk, dtype), rtol, atol, $"dk {what}");
        AssertClose(dv.ToDoubleArray(), Download(gdv, dtype), rtol, atol, $"dv {what}");
    }
}

/// <summary>
/// Tensor.Attention on the GPU backend (device ilgpu-cpu: the same kernels on ILGPU's CPU accelerator),
/// forward and autograd backward, against the CPU op: the Execute wiring, the dtype and workspace
/// handling, and the automatic choice of kernel (tensor cores for BF16 with D = 64, decode for T = 1).
/// </summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)] // shares the ilgpu-cpu device with the allocator tests
public class AttentionBackendTests
{
    [Theory]
    [InlineData(DType.F32, 1, 2, 1, 21, 21, 16, true)]
    [InlineData(DType.BF16, 1, 2, 1, 19, 23, 64, true)]
    [InlineData(DType.F32, 2, 2, 1, 1, 37, 16, true)]
    public void Forward_and_backward_on_the_gpu_backend_match_the_cpu(DType dtype, int b, int h, int hkv, int t, int s, int d, bool causal)
    {
        var dev = Device.IlgpuCpu;
        var q = RandomTensor([b, h, t, d], 31, DType.F32).To(dtype).To(DType.F32);
        var k = RandomTensor([b, hkv, s, d], 32, DType.F32).To(dtype).To(DType.F32);
        var v = RandomTensor([b, hkv, s, d], 33, DType.F32).To(dtype).To(DType.F32);
        var w = RandomTensor([b, h, t, d], 34, DType.F32).To(dtype).To(DType.F32);

        Tensor Leaf(Tensor x, Device device)
        {
            var l = x.To(device).To(dtype).Detach();
            l.RequiresGrad = true;
            return l;
        }
        var expected = Tensor.Attention(q, k, v, causal);

        var (qg, kg, vg) = (Leaf(q, dev), Leaf(k, dev), Leaf(v, dev));
        var actual = Tensor.Attention(qg, kg, vg, causal);
        Assert.Equal(dev, actual.Device);
        var (rtol, atol) = dtype == DType.F32 ? (2e-4, 2e-5) : (2e-2, 1e-2);
        AssertClose(expected.ToDoubleArray(), actual.To(Device.Cpu).ToDoubleArray(), rtol, atol, $"out {dtype} T{t}");

        (actual * w.To(dev).To(dtype)).Sum().Backward();
        var (q64, k64, v64) = (q.To(DType.F64), k.To(DType.F64), v.To(DType.F64));
        foreach (var x in new[] { q64, k64, v64 }) x.RequiresGrad = true;
        (Tensor.Attention(q64, k64, v64, causal) * w.To(DType.F64)).Sum().Backward();
        AssertClose(q64.Grad!.ToDoubleArray(), qg.Grad!.To(Device.Cpu).ToDoubleArray(), rtol, atol, $"dq {dtype} T{t}");
        AssertClose(k64.Grad!.ToDoubleArray(), kg.Grad!.To(Device.Cpu).ToDoubleArray(), rtol, atol, $"dk {dtype} T{t}");
        AssertClose(v64.Grad!.ToDoubleArray(), vg.Grad!.To(Device.Cpu).ToDoubleArray(), rtol, atol, $"dv {dtype} T{t}");
    }

    /// <summary>
    /// k and v as views of a KV cache's buffers (narrowed to the filled positions): the decode kernel reads them
    /// through their strides, the other kernels take dense copies; both give the CPU op's result.
    /// </summary>
    [Theory]
    [InlineData(DType.F32, 2, 4, 2, 1, 37, 16)]
    [InlineData(DType.BF16, 1, 4, 2, 1, 70, 64)] // two kv heads: the narrowed bf16 cache is strided too
    [InlineData(DType.F32, 1, 2, 1, 3, 21, 16)]
    public void Cache_views_are_read_in_place_by_the_decode_kernel(DType dtype, int b, int h, int hkv, int t, int s, int d)
    {
        var dev = Device.IlgpuCpu;
        int capacity = s + 11;
        var q = RandomTensor([b, h, t, d], 41, DType.F32).To(dtype).To(DType.F32);
        var kBuf = RandomTensor([b, hkv, capacity, d], 42, DType.F32).To(dtype).To(DType.F32);
        var vBuf = RandomTensor([b, hkv, capacity, d], 43, DType.F32).To(dtype).To(DType.F32);
        var expected = Tensor.Attention(q, kBuf.Narrow(2, 0, s), vBuf.Narrow(2, 0, s), causal: true);
        using var noGrad = GradMode.NoGrad();
        var (kg, vg) = (kBuf.To(dev).To(dtype), vBuf.To(dev).To(dtype));
        int copies = ManagedTensor.Gpu.Kernels.AttentionKernels.KvCopies;
        var actual = Tensor.Attention(q.To(dev).To(dtype), kg.Narrow(2, 0, s), vg.Narrow(2, 0, s), causal: true);
        // One query (decode) reads the views in place; several queries go to kernels that take dense copies.
        if (t == 1) Assert.Equal(0, ManagedTensor.Gpu.Kernels.AttentionKernels.KvCopies - copies);
        var (rtol, atol) = dtype == DType.F32 ? (2e-4, 2e-5) : (2e-2, 1e-2);
        AssertClose(expected.ToDoubleArray(), actual.To(Device.Cpu).To(DType.F32).ToDoubleArray(), rtol, atol, $"{dtype} T{t} S{s}");
    }
}
