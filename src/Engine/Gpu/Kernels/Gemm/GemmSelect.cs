using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>The GEMM kernels in the order they grew: versions 1, 2 and 4 are the teaching ladder (Gpu/Bench/SgemmLadder, beside
/// the benchmark that compares them), never selected; 3, 5 and the tensor-core one are the backend's.</summary>
internal enum GemmKernel
{
    Sgemm1Naive,
    Sgemm2SharedTiles,
    Sgemm3RegisterBlocked,
    Sgemm4Vectorized,
    Sgemm5WarpTiled,
    HgemmMma,
    HgemmWgmma,
}

/// <summary>
/// Picks the fastest correct kernel for a problem, and runs it.
///
/// float32:
/// - Versions 1, 2 and 4 are never picked (they live in Gpu/Bench/SgemmLadder): 1 and 2 are the plain steps the
///   others grew from, and 4 needs the same alignment as 5 while being slower everywhere (bank conflicts, no prefetch).
/// - Version 5 (128 x 128 blocks, float4 loads, warp tiles) whenever its float4 loads are aligned
///   (leading dimensions, batch strides and offsets multiples of 4: every dense matrix with a column
///   count divisible by 4, which is all of GPT-2's) and the problem fills the GPU.
/// - Version 3 (64 x 64 blocks, scalar bounds-checked loads) otherwise: it runs any layout, and when
///   128 x 128 blocks would leave streaming multiprocessors idle (fewer blocks than SMs, e.g. 256 x 256
///   or the short-M products of generation), four times as many 64 x 64 blocks spread the work better;
///   on one wave the block count, not the per-block efficiency, sets the time.
/// bf16 / fp16: the tensor-core kernel always (on sm_90, bf16 C = A B^T: its wgmma twin, HgemmWgmma). It copies with cp.async when chunks are 16-byte aligned
///   and with plain loads otherwise, so it is correct for every shape; no SIMT kernel comes near
///   tensor-core throughput even on its slow path.
/// </summary>
internal static class GemmSelect
{
    /// <summary>The kernel for float32 operands; offsets are the views' element offsets in their buffers.</summary>
    public static GemmKernel ChooseF32(in GemmArgs p, int batch, long aOffset, long bOffset, long cOffset, int multiprocessors)
    {
        if (!VectorTiles.CanRun(p, aOffset, bOffset, cOffset)) return GemmKernel.Sgemm3RegisterBlocked;
        long big = (long)GemmLaunch.CeilDiv(p.M, Sgemm5WarpTiled.BM) * GemmLaunch.CeilDiv(p.N, Sgemm5WarpTiled.BN) * batch;
        return big < multiprocessors ? GemmKernel.Sgemm3RegisterBlocked : GemmKernel.Sgemm5WarpTiled;
    }

    /// <summary>C = act(alpha op(A) op(B) + beta C + bias), float32, with the kernel <see cref="ChooseF32"/> picks (or <paramref name="force"/>).</summary>
    public static GemmKernel Run(Accelerator accelerator, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, GemmArgs p, int batch = 1, GemmKernel? force = null)
    {
        var kernel = force ?? ChooseF32(p, batch, Offset(a), Offset(b), Offset(c), accelerator.NumMultiprocessors);
        switch (kernel)
        {
            case GemmKernel.Sgemm3RegisterBlocked: Sgemm3RegisterBlocked.Launch(accelerator, a, b, c, bias, p, batch); break;
            case GemmKernel.Sgemm5WarpTiled: Sgemm5WarpTiled.Launch(accelerator, a, b, c, bias, p, batch); break;
            default: throw new ArgumentException($"{kernel} is not a float32 kernel the backend selects (the teaching versions 1, 2 and 4 run from Gpu/Bench/SgemmLadder)", nameof(force));
        }
        return kernel;
    }

    /// <summary>The same for bf16 or fp16 operands (<paramref name="format"/>), stored as raw 16-bit values.</summary>
    /// <remarks>On an sm_90 device (H100, H200) bf16 with both operands k-contiguous (C = A B^T) runs the wgmma + TMA kernel.</remarks>
    public static GemmKernel Run(Accelerator accelerator, DType format, ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c,
        ArrayView<ushort> bias, GemmArgs p, int batch = 1)
    {
        if (HgemmWgmma.Available(accelerator) && HgemmWgmma.Supports(format, p, Offset(a), Offset(b), batch))
        {
            HgemmWgmma.Launch(accelerator, a, b, c, bias, p, batch);
            return GemmKernel.HgemmWgmma;
        }
        HgemmMma.Launch(accelerator, format, a, b, c, bias, p, batch);
        return GemmKernel.HgemmMma;
    }

    /// <summary>Every kernel the selection can launch on CUDA (for the offline PTX tests and the backend's spec list).</summary>
    public static IEnumerable<KernelSpec> Specs()
    {
        foreach (bool aK in new[] { true, false })
        {
            foreach (bool bK in new[] { true, false })
            {
                string layout = $"{(aK ? 'N' : 'T')}{(bK ? 'T' : 'N')}";
                yield return GemmLaunch.Spec($"sgemm3_{layout}", typeof(Sgemm3RegisterBlocked), GemmLaunch.Layout(aK), GemmLaunch.Layout(bK));
                yield return GemmLaunch.Spec($"sgemm5_{layout}", typeof(Sgemm5WarpTiled), GemmLaunch.Layout(aK), GemmLaunch.Layout(bK));
            }
        }
        foreach (var spec in HgemmMma.Specs()) yield return spec;
    }

    private static long Offset<T>(ArrayView<T> v) where T : unmanaged =>
        v.Length == 0 ? 0 : ((IContiguousArrayView)v).IndexInBytes / System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
}
