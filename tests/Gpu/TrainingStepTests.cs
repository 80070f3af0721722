using Xunit;

namespace ManagedTensor.Tests.Gpu;

/// <summary>
/// Autograd on the GPU backend: backward rules are written with ops, so a forward and backward pass run
/// on ilgpu-cpu and give the CPU's gradients; and a training step, after the first, allocates nothing
/// new on the device (every request is served by the caching allocator).
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class TrainingStepTests
{
    private const int Batch = 6, In = 10, Hidden = 14, Classes = 5;

    /// <summary>A 2-layer MLP's parameters (W1, b1, layer-norm weight and bias, W2, b2), made on the CPU.</summary>
    private static Tensor[] InitialParameters()
    {
        var g = new Generator(2024);
        return
        [
            Tensor.Randn([In, Hidden], g, 0, 0.4), Tensor.Rand([Hidden], g, -0.1, 0.1),
            Tensor.Rand([Hidden], g, 0.8, 1.2), Tensor.Rand([Hidden], g, -0.1, 0.1),
            Tensor.Randn([Hidden, Classes], g, 0, 0.4), Tensor.Rand([Classes], g, -0.1, 0.1),
        ];
    }

    /// <summary>loss = CE(LN(gelu(x W1 + b1)) W2 + b2, targets), with a transposed view and a broadcast in the graph.</summary>
    private static Tensor Loss(Tensor[] p, Tensor x, Tensor targets)
    {
        var h = (x.MatMul(p[0]) + p[1]).Gelu();
        h = h.LayerNorm(p[2], p[3]);
        var logits = h.MatMul(p[4].MT.MT) + p[5];
        return Tensor.CrossEntropy(logits, targets) + logits.Square().Mean().MulScalar(0.01);
    }

    private static (Tensor X, Tensor Targets) Data()
    {
        var x = Tensor.Randn([Batch, In], new Generator(7));
        var t = Tensor.FromArray(new long[] { 0, 4, 2, 2, -100, 1 });
        return (x, t);
    }

    /// <summary>Fresh leaf copies on <paramref name="d"/> (never the CPU tensors themselves, which other copies may share).</summary>
    private static Tensor[] OnDevice(Tensor[] cpu, Device d) => cpu.Select(t =>
    {
        var p = d == Device.Cpu ? t.Detach().Clone() : t.Detach().To(d);
        p.RequiresGrad = true;
        return p;
    }).ToArray();

    [Fact]
    public void MlpGradientsMatchTheCpu()
    {
        var init = InitialParameters();
        var (x, t) = Data();
        var cpu = OnDevice(init, Device.Cpu);
        var cpuLoss = Loss(cpu, x, t);
        cpuLoss.Backward();

        var gpu = OnDevice(init, Device.IlgpuCpu);
        var gpuLoss = Loss(gpu, x.To(Device.IlgpuCpu), t.To(Device.IlgpuCpu));
        gpuLoss.Backward();

        Assert.Equal(cpuLoss.Item(), gpuLoss.Item(), 5);
        for (int i = 0; i < init.Length; i++)
        {
            Assert.NotNull(gpu[i].Grad);
            Assert.Equal(Device.IlgpuCpu, gpu[i].Grad!.Device);
            TestUtil.AssertClose(cpu[i].Grad!, gpu[i].Grad!.To(Device.Cpu), rtol: 1e-4, atol: 1e-6, what: $"grad of parameter {i}");
        }
    }

    [Fact]
    public void TrainingStepAllocatesNothingAfterWarmUp()
    {
        // Tensors earlier tests left to the GC would otherwise be finalized mid-test (when parallel test
        // classes put pressure on the GC) and lower LiveBytes below `before`.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var d = Device.IlgpuCpu;
        var init = InitialParameters();
        var (xCpu, tCpu) = Data();
        Tensor[] p, m, v;
        Tensor x, t;
        using (DeviceMemory.Category(MemoryCategory.Weights)) p = OnDevice(init, d);
        using (DeviceMemory.Category(MemoryCategory.OptimizerState))
        {
            m = init.Select(q => Tensor.Zeros(q.Shape, q.DType, d)).ToArray();
            v = init.Select(q => Tensor.Zeros(q.Shape, q.DType, d)).ToArray();
        }
        x = xCpu.To(d);
        t = tCpu.To(d);
        // Tensors that earlier tests dropped return their blocks when the GC finalizes them: let that happen
        // now, so that the live bytes below change only through this test.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var before = DeviceMemory.Stats(d)!;
        Assert.True(before.LiveByCategory[MemoryCategory.Weights] >= init.Sum(q => q.Numel * 4L), "weights are counted as weights");
        Assert.Equal(before.LiveByCategory[MemoryCategory.Weights], before.LiveByCategory[MemoryCategory.OptimizerState] / 2);

        var allocationsAfterStep = new List<long>();
        var liveAfterStep = new List<long>();
        var losses = new List<double>();
        for (int step = 1; step <= 3; step++)
        {
            using (var scope = DeviceMemory.Scope())
            {
                var loss = Loss(p, x, t);
                loss.Backward();
                for (int i = 0; i < p.Length; i++)
                {
                    DeviceMemory.Tag(p[i].Grad!, MemoryCategory.Grads);
                    Tensor.AdamWStep_(p[i], p[i].Grad!, m[i], v[i], new AdamWAttrs(0.05, 0.9, 0.999, 1e-8, 0.01, step));
                }
                Assert.True(DeviceMemory.Stats(d)!.LiveByCategory[MemoryCategory.Grads] > 0, "gradients are counted as grads");
                losses.Add(loss.Item());
                foreach (var q in p) q.Grad = null;
                Assert.True(scope.Count > 20, "the step's tensors are owned by the scope");
            }
            var s = DeviceMemory.Stats(d)!;
            allocationsAfterStep.Add(s.DeviceAllocations);
            liveAfterStep.Add(s.LiveBytes);
        }
        Assert.True(losses[2] < losses[0], $"AdamW steps on the device lower the loss: {string.Join(", ", losses)}");
        // The first step may or may not reach the driver (blocks cached by earlier tests can serve it);
        // the later ones must not.
        Assert.Equal(allocationsAfterStep[0], allocationsAfterStep[1]);
        Assert.Equal(allocationsAfterStep[0], allocationsAfterStep[2]);
        // Everything the steps made went back to the cache: only weights, optimizer state and data stay live.
        Assert.Equal(before.LiveBytes, liveAfterStep[0]);
        Assert.Equal(before.LiveBytes, liveAfterStep[2]);
        Assert.True(DeviceMemory.Stats(d)!.CachedBytes > 0);
    }

    [Fact]
    public void DisposeReturnsTheBlockAndScopesKeepWhatTheyAreTold()
    {
        GC.Collect(); // as above: no finalizer of an earlier test's tensor may run between live0 and the checks
        GC.WaitForPendingFinalizers();
        var d = Device.IlgpuCpu;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long live0 = DeviceMemory.Stats(d)!.LiveBytes;
        var a = Tensor.Zeros([1000], DType.F32, d);
        Assert.Equal(live0 + 4096, DeviceMemory.Stats(d)!.LiveBytes); // 4000 bytes round up to the 4 KiB class
        long allocs = DeviceMemory.Stats(d)!.DeviceAllocations;
        a.Dispose();
        Assert.Equal(live0, DeviceMemory.Stats(d)!.LiveBytes);
        var b = Tensor.Zeros([1000], DType.F32, d); // served from the cache
        Assert.Equal(allocs, DeviceMemory.Stats(d)!.DeviceAllocations);
        Assert.Throws<ObjectDisposedException>(() => a.ToArray<float>());
        Tensor kept;
        using (var scope = DeviceMemory.Scope())
        {
            var tmp = b + b;
            kept = scope.Keep(tmp * b);
            Assert.Equal(1, scope.Count);
        }
        Assert.Equal(new float[1000], kept.ToArray<float>());
        Assert.Equal(live0 + 2 * 4096, DeviceMemory.Stats(d)!.LiveBytes);
        b.Dispose();
        kept.Dispose();
        Assert.Equal(live0, DeviceMemory.Stats(d)!.LiveBytes);
    }

    [Fact]
    public void CudaWithoutADriverSaysSo()
    {
        // This machine has no NVIDIA driver (CI): asking for CUDA must fail clearly, never fall back.
        if (ManagedTensor.Gpu.GpuDevices.CudaDriverPresent()) return;
        var e = Assert.ThrowsAny<Exception>(() => Tensor.Zeros([2], DType.F32, Device.Cuda(0)));
        Assert.Contains("no CUDA device", e.Message);
        Assert.Contains("driver not found", e.Message);
        var (devices, problem) = ManagedTensor.Gpu.GpuDevices.ListCuda();
        Assert.Empty(devices);
        Assert.Contains("driver not found", problem);
    }
}
