using ManagedTensor.Gpu.Gemm;
using Xunit;

namespace ManagedTensor.Tests.Gpu.Gemm;

/// <summary>
/// The tensor-core GEMM on the ILGPU CPU accelerator (its plain path: each lane sums its mma outputs from the
/// swizzled shared tiles; MmaFragmentTests covers the ldmatrix/mma fragments): tile copies, swizzle, the
/// pipeline's stage rotation, edge tiles and the epilogue against the float64 reference.
/// Inputs are multiples of 1/64, exact in bf16 and fp16, and every partial sum is exact in fp32, so the
/// only error is C's final rounding: half an ulp of the format (2^-9 bf16, 2^-12 fp16).
/// </summary>
public class HgemmTests(GpuFixture gpu) : IClassFixture<GpuFixture>
{
    private void Run(GemmCase t, DType format)
    {
        ushort Encode(double v) => format == DType.BF16 ? BFloat16.FromFloat((float)v).Bits : BitConverter.HalfToUInt16Bits((Half)v);
        double Decode(ushort u) => format == DType.BF16 ? new BFloat16(u).ToFloat() : (double)BitConverter.UInt16BitsToHalf(u);
        using var a = gpu.Upload(t.A.Select(Encode).ToArray());
        using var b = gpu.Upload(t.B.Select(Encode).ToArray());
        using var c = gpu.Upload(t.C0.Select(Encode).ToArray());
        using var bias = gpu.Upload(t.Bias.Select(Encode).ToArray());
        HgemmMma.Launch(gpu.Accelerator, format, a.View, b.View, c.View, t.Args.HasBias != 0 ? bias.View : default, t.Args, t.Batch);
        var actual = gpu.Download(c).Select(Decode).ToArray();
        double rtol = format == DType.BF16 ? 1.0 / 256 : 1.0 / 2048;
        t.AssertClose(t.Expected(), actual, rtol, atol: 1e-6, $"hgemm {format}");
    }

    [Fact]
    public void EveryLayoutMatchesTheReferenceInBf16()
    {
        foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
            Run(GemmCase.Random(37, 29, 45, ta, tb, seed: 11), DType.BF16);
    }

    [Fact]
    public void BatchedEpilogueAndSeveralBlocksInFp16AndBf16()
    {
        // Batch 2 with B shared, padded rows, alpha/beta, bias and relu (fp16); two row blocks with gelu (bf16).
        Run(GemmCase.Random(21, 40, 40, false, true, batch: 2, pad: 3, seed: 12, alpha: 0.5f, beta: 0.25f, bias: true,
            act: GemmActivation.Relu, shareB: true), DType.F16);
        Run(GemmCase.Random(136, 20, 24, true, false, seed: 13, bias: true, act: GemmActivation.GeluTanh), DType.BF16);
        // K = 100: four 32-deep tiles, so the 3-stage ring wraps around.
        Run(GemmCase.Random(20, 12, 100, false, false, seed: 14), DType.BF16);
    }

    [Fact]
    public void SwizzleKeepsEightRowsOfAChunkInDistinctBankGroups()
    {
        foreach (int chunksPerRow in new[] { 4, 16 })
        {
            for (int chunk = 0; chunk < chunksPerRow; chunk++)
            {
                for (int row0 = 0; row0 < 32; row0 += 8)
                {
                    // The 16-byte slot within a 128-byte line (8 slots of 8 halves) of rows row0 .. row0 + 7.
                    var slots = Enumerable.Range(row0, 8).Select(r => HgemmMma.Swizzle(r, chunk, chunksPerRow) / 8 % 8).ToHashSet();
                    Assert.Equal(8, slots.Count);
                }
                // And the swizzle is a permutation of each row's chunks.
                var inRow = Enumerable.Range(0, chunksPerRow).Select(ch => HgemmMma.Swizzle(5, ch, chunksPerRow)).ToHashSet();
                Assert.Equal(chunksPerRow, inRow.Count);
                Assert.All(inRow, o => Assert.InRange(o, 5 * chunksPerRow * 8, 6 * chunksPerRow * 8 - 8));
            }
        }
    }
}
