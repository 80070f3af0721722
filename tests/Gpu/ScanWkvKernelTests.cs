using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Gpu;

/// <summary>
/// The selective-scan and WKV GPU kernels (src/Engine/Gpu/Kernels/ScanKernels.cs, WkvKernels.cs) on ILGPU's CPU
/// accelerator against the CPU kernels, through autograd: both outputs (y and the saved chunk starts) and every
/// input's gradient of loss = sum(y * r), at odd sizes: lengths not a multiple of the chunk, a chunk longer than
/// the sequence, odd N, D, K, a partial channel tile, both schedules, F32 and F64. The kernel, not the composite
/// fallback, must be what runs on the device.
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class ScanWkvKernelTests
{
    private static Tensor Uniform(int[] shape, int seed, double lo, double hi, DType t) =>
        (RandomTensor(shape, seed) * ((hi - lo) / 2)).AddScalar((hi + lo) / 2).To(t);

    private static Tensor Leaf(Tensor t, Device device)
    {
        var leaf = t.To(device).Detach();
        leaf.RequiresGrad = true;
        return leaf;
    }

    private static (double Rtol, double Atol) Tol(DType t) => t == DType.F32 ? (2e-4, 2e-5) : (1e-9, 1e-11);

    /// <summary>Runs <paramref name="op"/> on <paramref name="device"/>; returns its outputs and the gradients of sum(y * weight).</summary>
    private static (Tensor[] Outputs, Tensor[] Grads) Run(Op op, OpAttrs attrs, Tensor[] inputs, Tensor weight, Device device)
    {
        var leaves = inputs.Select(x => Leaf(x, device)).ToArray();
        Assert.True(Tensor.HasKernel(op, device, attrs, leaves), $"{OpRegistry.NameOf(op)} runs its fallback on {device}, not a kernel");
        var outputs = Tensor.Apply(op, attrs, leaves);
        (outputs[0] * weight.To(device)).Sum().Backward();
        return ([.. outputs.Select(o => o.To(Device.Cpu))], [.. leaves.Select(l => l.Grad!.To(Device.Cpu))]);
    }

    private static void Compare(Op op, OpAttrs attrs, Tensor[] inputs, Tensor weight, string[] names, DType t)
    {
        var (rtol, atol) = Tol(t);
        var (cpuOut, cpuGrad) = Run(op, attrs, inputs, weight, Device.Cpu);
        var (gpuOut, gpuGrad) = Run(op, attrs, inputs, weight, Device.IlgpuCpu);
        AssertClose(cpuOut[0], gpuOut[0], rtol, atol, "y");
        AssertClose(cpuOut[1], gpuOut[1], rtol, atol, "chunk_states");
        for (int i = 0; i < names.Length; i++) AssertClose(cpuGrad[i], gpuGrad[i], rtol, atol, "grad " + names[i]);
    }

    public static TheoryData<int, int, int, int, int, bool, DType> ScanShapes => new()
    {
        { 1, 19, 7, 5, 8, true, DType.F32 },     // L = 2 chunks + 3; 12 channels per group: one partial tile
        { 2, 13, 13, 17, 4, false, DType.F64 },  // N = 17: 3 channels per group, 5 tiles (the last partial) summed by one group; sequential
        { 2, 9, 3, 3, 16, true, DType.F64 },     // one chunk longer than the sequence
    };

    [Theory]
    [MemberData(nameof(ScanShapes))]
    public void Selective_scan_kernels_match_the_cpu(int b, int l, int d, int n, int chunk, bool parallel, DType t)
    {
        Tensor[] inputs =
        [
            Uniform([b, l, d], 1, -1, 1, t), Uniform([b, l, d], 2, 0.01, 0.5, t), Uniform([d, n], 3, -2, -0.1, t),
            Uniform([b, l, n], 4, -1, 1, t), Uniform([b, l, n], 5, -1, 1, t), Uniform([d], 6, -1, 1, t),
        ];
        Compare(ScanOps.SelectiveScan, new SelectiveScanAttrs(chunk, parallel), inputs, Uniform([b, l, d], 7, -1, 1, t), ["x", "delta", "A", "B", "C", "D"], t);
    }

    public static TheoryData<int, int, int, int, int, bool, DType> WkvShapes => new()
    {
        { 1, 13, 3, 5, 4, true, DType.F32 },     // T = 3 chunks + 1, K = 5
        { 2, 7, 1, 6, 3, false, DType.F64 },     // sequential
        { 2, 11, 2, 3, 32, true, DType.F64 },    // one chunk longer than the sequence
    };

    [Theory]
    [MemberData(nameof(WkvShapes))]
    public void Wkv6_kernels_match_the_cpu(int b, int tt, int h, int k, int chunk, bool parallel, DType t)
    {
        Tensor[] inputs =
        [
            Uniform([b, tt, h, k], 11, -1, 1, t), Uniform([b, tt, h, k], 12, -1, 1, t), Uniform([b, tt, h, k], 13, -1, 1, t),
            Uniform([b, tt, h, k], 14, -2, -0.01, t), Uniform([h, k], 15, -1, 1, t),
        ];
        Compare(WkvOps.Wkv6, new WkvAttrs(chunk, parallel), inputs, Uniform([b, tt, h, k], 16, -1, 1, t), ["r", "k", "v", "logw", "u"], t);
    }

    [Fact]
    public void Sizes_beyond_a_group_or_shared_memory_run_the_composite_instead()
    {
        // WKV runs a head with K threads (ilgpu-cpu's groups hold 64) and keeps a K x K state and its gradient in
        // 48 KB of shared memory (K = 64 in F64: 37 KB).
        Tensor Head(int k, DType t) => Tensor.Zeros([1, 1, 1, k], t, Device.IlgpuCpu);
        bool Wkv(int k, DType t) => Tensor.HasKernel(WkvOps.Wkv6, Device.IlgpuCpu, new WkvAttrs(), Head(k, t), Head(k, t), Head(k, t), Head(k, t), Tensor.Zeros([1, k], t, Device.IlgpuCpu));
        Assert.True(Wkv(64, DType.F64));
        Assert.False(Wkv(65, DType.F32));
        // The scan's backward holds a chunk of states per thread: N = 16 with chunks of 1024 steps does not fit.
        bool Scan(int n, int chunk)
        {
            var x = Tensor.Zeros([1, 2, 3], DType.F32, Device.IlgpuCpu);
            var bc = Tensor.Zeros([1, 2, n], DType.F32, Device.IlgpuCpu);
            return Tensor.HasKernel(ScanOps.SelectiveScan, Device.IlgpuCpu, new SelectiveScanAttrs(chunk), x, x, Tensor.Zeros([3, n], DType.F32, Device.IlgpuCpu), bc, bc,
                Tensor.Zeros([3], DType.F32, Device.IlgpuCpu));
        }
        Assert.True(Scan(16, 64));
        Assert.False(Scan(16, 1024));
    }
}
