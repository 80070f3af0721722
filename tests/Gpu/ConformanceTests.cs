using ManagedTensor.Conformance;
using Xunit;

namespace ManagedTensor.Tests.Gpu;

/// <summary>
/// Test classes that use the process-wide ilgpu-cpu backend run one after another, so that one class's
/// allocator statistics are not moved by another's kernels.
/// </summary>
[CollectionDefinition(Name)]
public sealed class IlgpuCpuCollection
{
    public const string Name = "ilgpu-cpu backend";
}

/// <summary>
/// The op conformance suite (src/Engine/Conformance, the same list `mt selftest` runs) on ILGPU's CPU
/// accelerator at small, odd shapes: every GPU kernel against the CPU reference, with broadcast and
/// non-contiguous inputs, launched as on a GPU (OpConformance.Run enters GpuBackend.GpuShapedOnCpu: multi-thread row
/// groups, the tiled matmul), not with the barrier-free shortcuts the CPU accelerator otherwise takes.
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class ConformanceTests
{
    private static readonly IReadOnlyList<OpCase> Cases = OpConformance.Cases(CaseScale.Small);

    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        foreach (var c in Cases) data.Add(c.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void MatchesCpuReference(string name)
    {
        var c = Cases.Single(x => x.Name == name);
        var result = OpConformance.Run(c, Device.IlgpuCpu);
        Assert.True(result.Passed, $"{name}: {result.Error}");
    }

    [Fact]
    public void EveryOpWithAKernelHasACase()
    {
        // The registry says which ops backends execute: each needs a case (movement ops, Cat and Custom never reach a kernel).
        var covered = Cases.SelectMany(c => c.Ops).ToHashSet();
        var executed = OpRegistry.All.Select(d => d.Op)
            .Where(op => Backends.For(Device.Cpu).Kernels.Has(op) || Backends.For(Device.IlgpuCpu).Kernels.Has(op)).ToList();
        var missing = executed.Where(op => !covered.Contains(op)).Select(OpRegistry.NameOf).ToList();
        Assert.True(missing.Count == 0, "ops without a conformance case: " + string.Join(", ", missing));
        Assert.Contains(Op.MatMul, executed);
        Assert.Equal(Cases.Count, Cases.Select(c => c.Name).Distinct().Count());
    }

    [Fact]
    public void ACaseThatDisagreesFails()
    {
        // The comparison itself: a run that adds 1e-3 on the device must be reported, with the element.
        var wrong = new OpCase("exp off by 1e-3", [Op.Exp], DType.F32, "[5]", g => [g.Uniform([5])],
            (x, d) => [d == Device.Cpu ? x[0].Exp() : x[0].Exp().AddScalar(1e-3)], Tolerance.For(DType.F32));
        var result = OpConformance.Run(wrong, Device.IlgpuCpu);
        Assert.False(result.Passed);
        Assert.Contains("element 0", result.Error);
        Assert.InRange(result.MaxAbsError, 9e-4, 1.1e-3);
    }

    [Fact]
    public void BadIndexThrowsAtTheNextSynchronization()
    {
        var x = Tensor.Zeros([5, 3], DType.F32, Device.IlgpuCpu);
        var idx = Tensor.FromArray(new long[] { 1, 7 }).To(Device.IlgpuCpu);
        var y = x.IndexSelect(0, idx);
        var e = Assert.Throws<IndexOutOfRangeException>(() => y.ToArray<float>());
        Assert.Contains("IndexSelect: index 7", e.Message);
        Assert.Contains("size 5", e.Message);
        // The error is reported once; the backend is usable afterwards.
        Assert.Equal(new float[] { 0, 0, 0 }, x.IndexSelect(0, Tensor.FromArray(new long[] { 4 }).To(Device.IlgpuCpu)).ToArray<float>());
    }

    [Fact]
    public void UnsupportedOpAndDTypeNamesBoth()
    {
        var h = Tensor.Zeros([2, 3], DType.F16, Device.IlgpuCpu);
        var e = Assert.Throws<NotSupportedException>(() => h.Softmax());
        Assert.Contains("Softmax", e.Message);
        Assert.Contains("F16", e.Message);
        var i = Tensor.Zeros([2, 2], DType.I32, Device.IlgpuCpu);
        var e2 = Assert.Throws<NotSupportedException>(() => i.MatMul(i));
        Assert.Contains("matmul", e2.Message);
        Assert.Contains("I32", e2.Message);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Tiled_and_barrier_free_matmul_kernels_match_the_cpu(bool tiled)
    {
        // Outside the conformance cases' GPU-shaped scope the CPU accelerator's MatMul runs the barrier-free kernel:
        // both kernels are launched here by hand, at a batched, broadcast, transposed shape whose sizes are not
        // multiples of the tile (8 on this accelerator).
        var g = new Generator(11);
        var a = Tensor.Randn([3, 1, 13, 21], g);             // (3, 1, M, K)
        var bt = Tensor.Randn([2, 19, 21], g);               // (2, N, K): b is its transpose, strides (K, 1) swapped
        var expected = a.MatMul(bt.MT);                      // (3, 2, M, N) on the CPU
        var (da, db) = (a.To(Device.IlgpuCpu), bt.To(Device.IlgpuCpu).MT);
        var c = Tensor.Empty(expected.Shape, DType.F32, Device.IlgpuCpu);
        var backend = (ManagedTensor.Gpu.GpuBackend)Backends.For(Device.IlgpuCpu);
        ManagedTensor.Gpu.Kernels.MatMulKernels.Run(backend, da.Expand([3, 2, 13, 21]), db.Expand([3, 2, 21, 19]), c, 13, 19, 21, tiled);
        TestUtil.AssertClose(expected, c.To(Device.Cpu), rtol: 1e-5, atol: 1e-5, what: tiled ? "tiled" : "barrier-free");
    }
}
