using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Gemm;
using ManagedTensor.Gpu.Sass;
using Xunit;

namespace ManagedTensor.Tests.Gpu.Gemm;

/// <summary>
/// The Hopper bf16 GEMM (wgmma + TMA + mbarrier). No GPU here: its PTX is assembled for sm_90a by ptxas 12 (the wgmma,
/// TMA and mbarrier instructions are valid, no stack or spills, and ptxas does not serialize the wgmma), and its plain
/// path runs on the CPU accelerator: the 128 x 128 x 64 tiling, the 128-byte swizzle its descriptors assume, the
/// accumulator layout of wgmma.m64n128 and the epilogue, against the float64 reference.
/// </summary>
public class HgemmWgmmaTests(GpuFixture gpu) : IClassFixture<GpuFixture>
{
    private void Run(GemmCase t)
    {
        using var a = gpu.Upload(t.A.Select(v => BFloat16.FromFloat((float)v).Bits).ToArray());
        using var b = gpu.Upload(t.B.Select(v => BFloat16.FromFloat((float)v).Bits).ToArray());
        using var c = gpu.Upload(t.C0.Select(v => BFloat16.FromFloat((float)v).Bits).ToArray());
        using var bias = gpu.Upload(t.Bias.Select(v => BFloat16.FromFloat((float)v).Bits).ToArray());
        Assert.True(HgemmWgmma.Supports(DType.BF16, t.Args, 0, 0, t.Batch), t.ToString());
        HgemmWgmma.Launch(gpu.Accelerator, a.View, b.View, c.View, t.Args.HasBias != 0 ? bias.View : default, t.Args, t.Batch);
        var actual = gpu.Download(c).Select(u => (double)new BFloat16(u).ToFloat()).ToArray();
        t.AssertClose(t.Expected(), actual, 1.0 / 256, 1e-6, "hgemm wgmma (plain path)");
    }

    [Fact]
    public void Plain_path_matches_the_reference_for_ragged_batched_problems()
    {
        // C = A B^T: A stored M x K, B stored N x K (TransB); two row blocks, a ragged column block, K = 100: a 64-deep tile
        // and a ragged one (TMA's zero fill); rows padded to multiples of 8 elements (TMA's 16-byte strides).
        Run(GemmCase.Random(140, 70, 100, false, true, batch: 2, align: 8, seed: 31, alpha: 0.5f, beta: 0.25f, bias: true, act: GemmActivation.Relu));
        // B shared by the batch (batch stride 0: a one-deep tensor map, batch coordinate 0), K under one tile.
        Run(GemmCase.Random(30, 136, 24, false, true, batch: 3, align: 8, seed: 32, shareB: true));
    }

    [Fact]
    public void Only_k_contiguous_bf16_with_16_byte_rows_is_taken()
    {
        var ok = GemmCase.Random(16, 16, 64, false, true, align: 8).Args;
        Assert.True(HgemmWgmma.Supports(DType.BF16, ok, 0, 0, 1));
        Assert.False(HgemmWgmma.Supports(DType.F16, ok, 0, 0, 1));
        Assert.False(HgemmWgmma.Supports(DType.BF16, ok, 4, 0, 1));                                         // A's start not 16-byte aligned
        Assert.False(HgemmWgmma.Supports(DType.BF16, GemmCase.Random(16, 16, 60, false, true).Args, 0, 0, 1)); // rows of 120 bytes
        Assert.False(HgemmWgmma.Supports(DType.BF16, GemmCase.Random(16, 16, 64, false, false, align: 8).Args, 0, 0, 1)); // B n-contiguous
        Assert.False(HgemmWgmma.Supports(DType.BF16, GemmCase.Random(16, 16, 64, true, true, align: 8).Args, 0, 0, 1));  // A m-contiguous
    }

    [Fact]
    public void Descriptors_tile_addresses_and_accumulators_agree_with_the_ptx_isa()
    {
        // One k tile of one block through emulated hardware: the kernel's TMA boxes (stage 2 of a dynamic shared base that is
        // not 1024-aligned), its descriptors, its Tile64 template (4 wgmma, k advanced inside), the ISA's accumulator layout.
        const int m = 150, n = 140, k = 180, ld = 184, m0 = 128, n0 = 0, kTile = 2, stage = 2;   // k 128..179 of the tile: 4 zeros at its end
        var rng = new Random(5);
        ushort[] Matrix(int rows) => Enumerable.Range(0, rows * ld).Select(_ => BFloat16.FromFloat(rng.Next(-64, 65) / 64f).Bits).ToArray();
        ushort[] a = Matrix(m), b = Matrix(n);
        const uint dynamicBase = 0x90;
        uint sbase = (dynamicBase + 1023u) & ~1023u;   // the kernel's alignment of its dynamic shared memory
        var smem = new byte[sbase + HgemmWgmma.SharedBytes];
        WgmmaEmulator.TmaLoad(smem, (int)HgemmWgmma.TileA(sbase, stage, 0), a, m, k, ld, kTile * HgemmWgmma.BK, m0, HgemmWgmma.BM);
        WgmmaEmulator.TmaLoad(smem, (int)HgemmWgmma.TileB(sbase, stage), b, n, k, ld, kTile * HgemmWgmma.BK, n0, HgemmWgmma.BN);
        double Value(ushort[] x, int row, int rows, int kk) => row < rows && kk < k ? new BFloat16(x[row * ld + kk]).ToFloat() : 0;

        for (int wg = 0; wg < 2; wg++)
        {
            var acc = new float[128, 64];
            int executed = WgmmaEmulator.RunTemplate(Wgmma.Tile64Template, smem,
                HgemmWgmma.Descriptor(HgemmWgmma.TileA(sbase, stage, wg)), HgemmWgmma.Descriptor(HgemmWgmma.TileB(sbase, stage)), acc);
            Assert.Equal(HgemmWgmma.BK / 16, executed);
            for (int thread = 0; thread < 128; thread++)
            {
                var (r0, c0) = HgemmWgmma.FragmentOrigin(128 * wg + thread);
                for (int i = 0; i < 64; i++)
                {
                    // Register i is Acc64.C(i / 4)'s X, Y, Z or W (PtxInline flattens fields in order): the kernel's epilogue puts it at
                    // (r0 + 8 ((i % 4) / 2), c0 + 8 (i / 4) + i % 2); the ISA says which element wgmma left there.
                    var (row, col) = WgmmaEmulator.Element(thread, i);
                    Assert.Equal((64 * wg + row, col), (r0 + 8 * (i % 4 / 2), c0 + 8 * (i / 4) + i % 2));
                    double expected = 0;
                    for (int kk = kTile * 64; kk < kTile * 64 + 64; kk++)
                        expected += Value(a, m0 + 64 * wg + row, m, kk) * Value(b, n0 + col, n, kk);
                    Assert.Equal(expected, acc[thread, i]);
                }
            }
        }
    }

    [Fact]
    public void The_plain_path_reads_the_layout_tma_writes()
    {
        // Swizzled(row, k) is where TMA's 128-byte swizzle puts element (row, k) of a box written at a 1024-aligned address.
        for (int row = 0; row < 128; row++)
            for (int kk = 0; kk < 64; kk++)
                Assert.Equal(WgmmaEmulator.Swizzle128(4096 + 128 * row + 2 * kk) - 4096, HgemmWgmma.Swizzled(row, kk));
    }

    [Fact]
    public void Swizzle_is_the_tma_128_byte_pattern()
    {
        // 16-byte chunk c of row r at chunk c ^ (r % 8); the 8 rows of a column chunk land in 8 different chunks of their lines.
        Assert.Equal(0, HgemmWgmma.Swizzled(0, 0));
        Assert.Equal(128 + 16 * (1 ^ 1), HgemmWgmma.Swizzled(1, 8));
        Assert.Equal(7 * 128 + 16 * (7 ^ 7) + 2 * 5, HgemmWgmma.Swizzled(7, 61));
        for (int c = 0; c < 8; c++)
            Assert.Equal(8, Enumerable.Range(0, 8).Select(r => HgemmWgmma.Swizzled(r, 8 * c) % 128).Distinct().Count());
        // The descriptor: start address / 16, stride 1024 / 16 at bit 32, 128-byte swizzle at bit 62.
        Assert.Equal((0x4400UL >> 4) | (1UL << 16) | (64UL << 32) | (1UL << 62), HgemmWgmma.Descriptor(0x4400));
    }

    [PtxasFact]
    public void Assembles_for_sm90a_with_wgmma_tma_and_mbarrier_and_no_serialization()
    {
        if (!CudaTools.CanAssembleSm90a) return; // ptxas 11.8 (bookworm's) has no sm_90a: the CUDA 12 tools are needed
        var ptx = PtxCompiler.ToArchSpecific(PtxCompiler.CompileCached(HgemmWgmma.Spec(hopper: true).Method, PtxCompiler.Sm90, PtxCompiler.HopperIsa, raiseTarget: true));
        Assert.Contains(".target sm_90a", ptx);
        foreach (var instruction in new[] { "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16", "cp.async.bulk.tensor.3d", "mbarrier.try_wait.parity", "mbarrier.arrive.expect_tx" })
            Assert.Contains(instruction, ptx);
        var (cubin, log) = CudaTools.AssembleCached(ptx, PtxCompiler.Sm90, archSpecific: true);
        Assert.True(cubin is not null, log);
        Assert.Contains("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads", log);
        Assert.DoesNotContain("serialized", log); // C7514: wgmma serialized when accumulators are touched in flight
    }
}
