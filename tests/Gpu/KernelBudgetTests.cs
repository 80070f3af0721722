using ManagedTensor.Gpu.Sass;
using Xunit;
using Xunit.Abstractions;

namespace ManagedTensor.Tests.Gpu;

/// <summary>
/// The kernel report's rules, checked on machine code (ptxas + cuobjdump, no GPU), not on time: in the hot loop of every
/// GEMM, attention and decode kernel no local-memory traffic (LDL/STL) and no integer division (ptxas's I2F.RP +
/// MUFU.RCP sequence), no stack frame or spills, and the tensor-core kernels within their instructions-per-mma budgets
/// (GEMM 4, attention forward 8). Shares compiled PTX and cubins with the other PTX tests (one compile per kernel).
/// </summary>
public class KernelBudgetTests(ITestOutputHelper output)
{
    public static TheoryData<string> Kernels =>
        new(ReportKernels.All().Where(k => k.Family is "gemm" or "attention" or "decode").Select(k => k.Name));

    [CudaToolsTheory, MemberData(nameof(Kernels))]
    public void Hot_loop_keeps_the_budget(string name)
    {
        var kernel = ReportKernels.All().Single(k => k.Name == name);
        foreach (var arch in ReportTargets.Of(kernel))
        {
            var a = KernelReport.Analyze(kernel, arch);
            output.WriteLine(KernelReport.Table([a]).Split('\n')[2]);
            Assert.True(a.Error is null, a.Error);
            Assert.True(a.HotLoop is not null, $"{name} {a.Arch}: no loop with HMMA or FFMA found in its SASS");
            var violations = a.BudgetViolations().ToList();
            Assert.True(violations.Count == 0, $"{name} {a.Arch}: {string.Join("; ", violations)}");
        }
    }

    [Fact]
    public void Sass_parser_finds_loops_mix_and_divisions()
    {
        // A loop with an integer division by a runtime value, a load, an FFMA and a backward branch; a diverged-shuffle stub's jump back is not a loop.
        const string listing = """
                Function : k
            /*0000*/                   MOV R1, c[0x0][0x28] ;
            /*0010*/                   I2F.U32.RP R8, R3 ;
            /*0020*/                   MUFU.RCP R8, R8 ;
            /*0030*/                   LDG.E R5, [R4.64] ;
            /*0040*/                   FFMA R0, R5, R5, R0 ;
            /*0050*/                   BRA.DIV ~URZ, 0x00a0 ;
            /*0060*/                   SHFL.BFLY PT, R5, R6, 0x1, 0x1f ;
            /*0070*/              @!P0 BRA 0x0010 ;
            /*0080*/                   STL [R1], R0 ;
            /*0090*/                   EXIT ;
            /*00a0*/                   CALL.REL.NOINC 0x00c0 ;
            /*00b0*/                   BRA 0x0060 ;
            /*00c0*/                   RET.REL.NODEC R20 0x0 ;
            """;
        var sass = SassListing.Parse(listing);
        var loop = Assert.Single(sass.Loops);
        Assert.Equal((0x10, 0x70), (loop.Start, loop.End));
        var mix = InstructionMix.Of(sass.In(loop));
        Assert.Equal((7, 1, 1, 1, 1, 0), (mix.Total, mix.Ffma, mix.Ldg, mix.Mufu, mix.Division, mix.Local));
        Assert.Equal(1, InstructionMix.Of(sass.Instructions).Local);
    }
}

/// <summary>The architectures a report kernel is analysed for: sm_89 and sm_90, or sm_90a alone for Hopper-only code.</summary>
internal static class ReportTargets
{
    public static IEnumerable<ILGPU.Runtime.Cuda.CudaArchitecture> Of(ReportKernel k) =>
        k.Sm90aOnly ? [ManagedTensor.Gpu.PtxCompiler.Sm90] : ManagedTensor.Gpu.PtxCompiler.CiTargets;
}
