using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Kernels;
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

    /// <summary>
    /// A kernel compiled for CUDA gets the cvt twins of its 16-bit formats (CudaFormats): fp16's Add converts with one
    /// cvt each way instead of the integer code, on every architecture; bf16 is twinned from sm_80 on (cvt.rn.bf16x2.f32
    /// is Ampere's). Kernels without a 16-bit format are left alone.
    /// </summary>
    [Fact]
    public void Cuda_kernels_convert_16_bits_with_cvt()
    {
        KernelSpec Add(DType t) => ElementwiseKernels.Specs().Single(s => s.Name == $"Add_{t}");
        var f16 = Add(DType.F16).Method;
        var twin = CudaFormats.For(f16, PtxCompiler.Sm89);
        Assert.Contains(typeof(F16Cvt), twin.GetGenericArguments());
        Assert.DoesNotContain(typeof(F16AsFloat), twin.GetGenericArguments());
        var ptx = PtxCompiler.Compile(f16, PtxCompiler.Sm89);
        Assert.Contains("cvt.f32.f16", ptx);
        Assert.Contains("cvt.rn.f16.f32", ptx);

        var bf16 = Add(DType.BF16).Method;
        Assert.Contains(typeof(BF16Cvt), CudaFormats.For(bf16, PtxCompiler.Sm89).GetGenericArguments());
        Assert.Same(bf16, CudaFormats.For(bf16, new ILGPU.Runtime.Cuda.CudaArchitecture(7, 5)));
        var f32 = Add(DType.F32).Method;
        Assert.Same(f32, CudaFormats.For(f32, PtxCompiler.Sm89));

        // Casts too: autocast's float32 -> fp16 copy rounds with cvt.
        var cast = CopyKernels.Specs().Single(s => s.Name == "Copy_F32_F16").Method;
        Assert.Contains(typeof(F16CvtCodec), CudaFormats.For(cast, PtxCompiler.Sm89).GetGenericArguments());
        Assert.Contains("cvt.rn.f16.f32", PtxCompiler.Compile(cast, PtxCompiler.Sm89));
    }

    [Fact]
    public void RaiseTargetEmitsTheRequestedArchitecture()
    {
        var ptx = PtxCompiler.Compile(typeof(SampleKernels).GetMethod(nameof(SampleKernels.Saxpy))!, PtxCompiler.Sm90, raiseTarget: true);
        Assert.Contains(".target sm_90", ptx);
    }

    /// <summary>
    /// ILGPU 1.5.3 makes the same program for sm_89 and sm_90 (PtxCompiler.CodeTarget), which is why the PTX cache compiles
    /// each kernel once for both: compiled apart, in fresh contexts, the two texts differ only in the numbers of labels and
    /// functions. Kernels from the families whose code could depend on the architecture: 16-bit arithmetic (ILGPU gates
    /// half-precision intrinsics by architecture), tensor-core mma and ldmatrix, warp shuffles and atomics.
    /// </summary>
    [Fact]
    public void Ada_and_Hopper_get_the_same_program()
    {
        string[] prefixes = ["Copy_F32_BF16", "Maximum_", "attention_forward_mma_BF16_d64", "QGemv_Q4_K", "Softmax", "ScatterAdd"];
        var all = GpuBackend.AllKernelSpecs().ToList();
        var specs = prefixes.Select(p => all.Where(s => s.Name.StartsWith(p, StringComparison.Ordinal)).OrderBy(s => !s.Name.Contains("16")).FirstOrDefault()).ToList();
        Assert.True(specs.All(s => s is not null), $"no kernel named {string.Join(", ", prefixes.Where((_, i) => specs[i] is null))}*");
        Assert.Equal(PtxCompiler.CodeTarget(PtxCompiler.Sm89), PtxCompiler.CodeTarget(PtxCompiler.Sm90));
        static string Numbered(string ptx) => System.Text.RegularExpressions.Regex.Replace(ptx, @"_\d{4,}", "_#");
        foreach (var spec in specs.Select(s => s!))
        {
            string ada = Numbered(PtxCompiler.Compile(spec.Method, PtxCompiler.Sm89)), hopper = Numbered(PtxCompiler.Compile(spec.Method, PtxCompiler.Sm90));
            Assert.True(ada == hopper, $"{spec.Name}: ILGPU made different programs for sm_89 and sm_90; PtxCompiler.CodeTarget must tell them apart");
        }
        Assert.NotEqual(PtxCompiler.CodeTarget(PtxCompiler.Sm90), PtxCompiler.CodeTarget(PtxCompiler.Sm90, raiseTarget: true));
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
