using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Sass;
using Xunit;

namespace ManagedTensor.Tests.Gpu;

/// <summary>Small kernels for the infrastructure tests.</summary>
internal static class SampleKernels
{
    public static void Saxpy(Index1D i, ArrayView<float> x, ArrayView<float> y, float a) => y[i] += a * x[i];

    /// <summary>An explicitly grouped kernel with static shared memory and a barrier.</summary>
    public static void ReverseInGroup(ArrayView<int> data)
    {
        var tile = SharedMemory.Allocate<int>(64);
        int t = Group.IdxX, g = Grid.IdxX;
        tile[t] = data[g * 64 + t];
        Group.Barrier();
        data[g * 64 + t] = tile[63 - t];
    }

    /// <summary>Uses a class (a string), which kernels cannot: compilation must fail with a clear message.</summary>
    public static void Invalid(Index1D i, ArrayView<int> y) => y[i] = i.ToString().Length;
}

/// <summary>The offline PTX compiler and the CPU-accelerator fixture that the kernel tests build on.</summary>
public class PtxCompilerTests(GpuFixture gpu) : IClassFixture<GpuFixture>
{
    [Fact]
    public void CompilesImplicitAndExplicitKernelsForCiTargets()
    {
        foreach (var arch in PtxCompiler.CiTargets)
        {
            var ptx = PtxCompiler.Compile(typeof(SampleKernels).GetMethod(nameof(SampleKernels.Saxpy))!, arch);
            Assert.Contains(".version 7.8", ptx);
            Assert.Contains(".target sm_80", ptx); // ILGPU 1.5.3 caps the target (see PtxCompiler remarks)
            Assert.Contains(".entry", ptx);
            Assert.Contains("mul.f32", ptx); // generic ld/st: ILGPU emits no .global qualifier

            var shared = PtxCompiler.Compile(typeof(SampleKernels).GetMethod(nameof(SampleKernels.ReverseInGroup))!, arch);
            Assert.Contains(".shared", shared);
            Assert.Contains("bar.sync", shared);
        }
        Assert.True(PtxCompiler.IsImplicitlyGrouped(typeof(SampleKernels).GetMethod(nameof(SampleKernels.Saxpy))!));
        Assert.False(PtxCompiler.IsImplicitlyGrouped(typeof(SampleKernels).GetMethod(nameof(SampleKernels.ReverseInGroup))!));
    }

    [Fact]
    public void RaiseTargetEmitsTheRequestedArchitecture()
    {
        var ptx = PtxCompiler.Compile(typeof(SampleKernels).GetMethod(nameof(SampleKernels.Saxpy))!, PtxCompiler.Sm90, raiseTarget: true);
        Assert.Contains(".target sm_90", ptx);
    }

    [Fact]
    public void FailureNamesTheKernel()
    {
        var e = Assert.Throws<InvalidOperationException>(() => PtxCompiler.Compile(typeof(SampleKernels).GetMethod(nameof(SampleKernels.Invalid))!, PtxCompiler.Sm89));
        Assert.Contains("SampleKernels.Invalid", e.Message);
    }

    [Fact]
    public void CompileAllRecoversAfterAFailure()
    {
        var kernels = new[] { nameof(SampleKernels.Invalid), nameof(SampleKernels.Saxpy), nameof(SampleKernels.ReverseInGroup) }
            .Select(n => typeof(SampleKernels).GetMethod(n)!);
        var results = PtxCompiler.CompileAll(kernels, PtxCompiler.Sm90);
        Assert.Contains("SampleKernels.Invalid", results[0].Error);
        Assert.Null(results[0].Ptx);
        Assert.Contains(".entry", results[1].Ptx);
        Assert.Contains("bar.sync", results[2].Ptx);
    }

    [Fact]
    public void FixtureRunsWarpSizedGroups()
    {
        Assert.Equal(32, gpu.Accelerator.WarpSize);
        var kernel = gpu.Accelerator.LoadStreamKernel<ArrayView<int>>(SampleKernels.ReverseInGroup);
        var data = Enumerable.Range(0, 128).ToArray();
        using var buffer = gpu.Upload(data);
        kernel(new KernelConfig(2, 64), buffer.View);
        var result = gpu.Download(buffer);
        Assert.Equal(Enumerable.Range(0, 64).Reverse().Concat(Enumerable.Range(64, 64).Reverse()), result);
    }

    [PtxasFact]
    public void PtxasAssemblesForCiTargets()
    {
        foreach (var arch in PtxCompiler.CiTargets)
        {
            var ptx = PtxCompiler.Compile(typeof(SampleKernels).GetMethod(nameof(SampleKernels.ReverseInGroup))!, arch);
            var (ok, log) = CudaTools.Assemble(ptx, arch);
            Assert.True(ok, log);
        }
    }
}
