using ILGPU;

namespace ManagedTensor.Gpu;

/// <summary>
/// The ILGPU context settings every GPU path shares: the runtime backend (CUDA and the CPU accelerator)
/// and the offline PTX compiler use the same ones, so the PTX a test checks is the PTX a GPU would run.
/// EnableAlgorithms brings XMath (exp, log, tanh, pow, ... for float and double on PTX) and the warp
/// and group reductions of ILGPU.Algorithms. O2 (ILGPU's default is O1): at O1 the tensor-core attention
/// kernels kept 3.3 KB of stack and spilled 200-400 bytes per thread (ptxas -v); at O2 none do.
/// MathMode stays exact (no ftz and no approximate division: Fast32BitOnly would silently turn every
/// double into a float).
/// EnablePtxInline registers the engine's register-result PTX instructions (mma.sync, ldmatrix, ...; see PtxInline).
/// </summary>
public static class GpuContextOptions
{
    public static Context.Builder Apply(Context.Builder builder) => builder.EnableAlgorithms().EnablePtxInline().Optimize(OptimizationLevel.O2);
}
