using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu.Kernels;
using ManagedTensor.Gpu.Kernels.Quant;

namespace ManagedTensor.Gpu;

/// <summary>
/// The GPU backend: the op set as ILGPU kernels (src/Engine/Gpu/Kernels, one file per family, each
/// with its kernels first and its launchers after), run on one accelerator and one stream. The same
/// kernels run on an NVIDIA GPU (CUDA; PTX JIT-compiled by the driver) and on ILGPU's CPU accelerator
/// (Device.IlgpuCpu, for tests). Storages come from a caching allocator; kernels are compiled on
/// first use and cached by name. Like the CPU reference, it knows nothing of gradients.
/// A kernel cannot throw: one that finds a bad index records it in a small status buffer, and the next
/// synchronization (a copy to the host, <see cref="Synchronize"/>) throws, as PyTorch's device asserts do.
/// </summary>
public sealed class GpuBackend : IBackend, IDeviceMemory, IDisposable
{
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _status; // (code, value, limit, unused)

    private GpuBackend(Device device, Context context, Accelerator accelerator)
    {
        Device = device;
        Context = context;
        Accelerator = accelerator;
        Allocator = new GpuAllocator(accelerator);
        Kernels = BuildKernels(new KernelTable(device.ToString()));
        Compiled = KernelCache.For(accelerator);
        Info = GpuDevices.Describe(device, accelerator.Device);
        GroupSize = Math.Min(256, accelerator.MaxNumThreadsPerGroup);
        MaxGroups = accelerator.AcceleratorType == AcceleratorType.CPU ? 2 : accelerator.NumMultiprocessors * 32;
        _status = accelerator.Allocate1D<int>(4);
        _status.MemSetToZero();
        accelerator.Synchronize();
    }

    /// <summary>Opens the backend of a CUDA or ILGPU-CPU device (what <see cref="Backends.GpuFactory"/> calls).</summary>
    public static GpuBackend Create(Device device)
    {
        var (context, accelerator) = GpuDevices.Open(device);
        return new GpuBackend(device, context, accelerator);
    }

    public Device Device { get; }
    public DeviceInfo Info { get; }
    internal Context Context { get; }
    internal Accelerator Accelerator { get; }
    internal AcceleratorStream Stream => Accelerator.DefaultStream;
    internal GpuAllocator Allocator { get; }
    internal KernelCache Compiled { get; }

    /// <summary>The attention launchers (their own kernel cache: typed delegates, loaded on first use).</summary>
    internal GpuAttention Attention => _attention ??= new GpuAttention(Accelerator);

    private GpuAttention? _attention;

    /// <summary>Threads per group for 1-D kernels: 256 on a GPU, the accelerator's maximum when smaller (64 on the CPU accelerator).</summary>
    internal int GroupSize { get; }

    /// <summary>Most groups a grid-stride kernel is launched with (32 per multiprocessor on a GPU).</summary>
    internal int MaxGroups { get; }

    internal int WarpSize => Accelerator.WarpSize;

    /// <summary>Kernels compiled so far.</summary>
    public int CompiledKernels => Compiled.Count;

    internal ArrayView<int> Status => _status.View;

    // ---- IBackend ----

    public Storage Allocate(DType dtype, int length, bool zero)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), length, "storage length must be non-negative");
        long bytes = dtype.ByteCount(length);
        var block = length == 0 ? null : Allocator.Allocate(bytes, DeviceMemory.CurrentCategory);
        var storage = new GpuStorage(this, dtype, length, block);
        if (zero && block is not null) storage.Bytes.MemSetToZero(Stream);
        DeviceMemory.Track(storage);
        return storage;
    }

    /// <summary>Every op's GPU kernel launcher, by op; ops missing here run their composite fallback (see <see cref="OpRegistry"/>).</summary>
    public KernelTable Kernels { get; }

    public void Execute(Op op, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs)
    {
        foreach (var t in inputs) CheckOnThisDevice(op, t);
        foreach (var t in outputs) CheckOnThisDevice(op, t);
        Kernels.Run(op, inputs, outputs, attrs);
    }

    private KernelTable BuildKernels(KernelTable t) => t
        .Add(Op.Copy, (i, o, a) => QuantDecodeKernels.Copy(this, i[0], o[0]), (i, a) => QuantDecodeKernels.Decodes(i[0].DType))
        .Add(Op.Copy, (i, o, a) => { if (o[0].DType.IsQuantized()) QuantDecodeKernels.EncodeOnHost(i[0], o[0]); else CopyKernels.Copy(this, i[0], o[0]); }, (i, a) => !i[0].DType.IsQuantized())
        .Add(Op.Fill, (i, o, a) => CopyKernels.Fill(this, o[0], ((ScalarAttrs)a!).Value))
        .Add(Op.RandUniform, (i, o, a) => CopyKernels.Random(this, o[0], (RandomAttrs)a!, normal: false))
        .Add(Op.RandNormal, (i, o, a) => CopyKernels.Random(this, o[0], (RandomAttrs)a!, normal: true))

        .Add(OpFamilies.Unary, (op, i, o, a) => ElementwiseKernels.Unary(this, op, i[0], o[0], a))
        .Add(OpFamilies.Binary, (op, i, o, a) => ElementwiseKernels.Binary(this, op, i[0], i[1], o[0]))
        .Add(Op.Where, (i, o, a) => ElementwiseKernels.Where(this, i[0], i[1], i[2], o[0]))
        .Add(OpFamilies.Reduce, (op, i, o, a) => ReduceKernels.Reduce(this, op, i[0], o[0], (ReduceAttrs)a!))

        .Add(Op.MatMul, (i, o, a) => MatMulKernels.MatMul(this, i[0], i[1], o[0]))
        .Add(Op.QMatMul, (i, o, a) => QuantKernels.QMatMul(this, i[0], i[1], o[0]), (i, a) => QuantKernels.Supports(i[0], i[1]))

        .Add(Op.Softmax, (i, o, a) => NormKernels.Softmax(this, i[0], o[0], log: false))
        .Add(Op.LogSoftmax, (i, o, a) => NormKernels.Softmax(this, i[0], o[0], log: true))
        .Add(Op.LayerNorm, (i, o, a) => NormKernels.LayerNorm(this, i[0], i[1], i[2], o[0], o[1], o[2], (NormAttrs)a!))
        .Add(Op.LayerNormBackward, (i, o, a) => NormKernels.LayerNormBackward(this, i[0], i[1], i[2], i[3], i[4], o[0], o[1], o[2]))
        .Add(Op.RmsNorm, (i, o, a) => NormKernels.RmsNorm(this, i[0], i[1], o[0], o[1], (NormAttrs)a!))
        .Add(Op.RmsNormBackward, (i, o, a) => NormKernels.RmsNormBackward(this, i[0], i[1], i[2], i[3], o[0], o[1]))

        .Add(Op.IndexSelect, (i, o, a) => IndexKernels.IndexSelect(this, i[0], i[1], o[0], ((AxisAttrs)a!).Axis))
        .Add(Op.IndexAdd, (i, o, a) => IndexKernels.IndexAdd(this, o[0], i[0], i[1], ((AxisAttrs)a!).Axis))
        .Add(Op.Gather, (i, o, a) => IndexKernels.Gather(this, i[0], i[1], o[0], ((AxisAttrs)a!).Axis))
        .Add(Op.ScatterAdd, (i, o, a) => IndexKernels.ScatterAdd(this, o[0], i[0], i[1], ((AxisAttrs)a!).Axis))

        .Add(Op.CrossEntropy, (i, o, a) => LossKernels.CrossEntropy(this, i[0], i[1], o[0], o[1], (CrossEntropyAttrs)a!))
        .Add(Op.CrossEntropyBackward, (i, o, a) => LossKernels.CrossEntropyBackward(this, i[0], i[1], i[2], i[3], o[0], (CrossEntropyAttrs)a!))

        .Add(Op.Conv2d, (i, o, a) => ConvKernels.Conv2d(this, i[0], i[1], i[2], o[0], (Conv2dAttrs)a!))
        .Add(Op.Conv2dBackwardInput, (i, o, a) => ConvKernels.BackwardInput(this, i[0], i[1], o[0], (Conv2dAttrs)a!))
        .Add(Op.Conv2dBackwardWeight, (i, o, a) => ConvKernels.BackwardWeight(this, i[0], i[1], o[0], (Conv2dAttrs)a!))
        .Add(Op.MaxPool2d, (i, o, a) => PoolKernels.MaxPool2d(this, i[0], o[0], o[1], (Pool2dAttrs)a!))
        .Add(Op.MaxPool2dBackward, (i, o, a) => PoolKernels.MaxPool2dBackward(this, i[0], i[1], o[0]))
        .Add(Op.AvgPool2d, (i, o, a) => PoolKernels.AvgPool2d(this, i[0], o[0], (Pool2dAttrs)a!))
        .Add(Op.AvgPool2dBackward, (i, o, a) => PoolKernels.AvgPool2dBackward(this, i[0], o[0], (Pool2dAttrs)a!))
        .Add(Op.UpsampleNearest2d, (i, o, a) => PoolKernels.Upsample(this, i[0], o[0], ((ScaleAttrs)a!).Scale))
        .Add(Op.UpsampleNearest2dBackward, (i, o, a) => PoolKernels.UpsampleBackward(this, i[0], o[0], ((ScaleAttrs)a!).Scale))

        .Add(LeakyReluOps.LeakyRelu, (i, o, a) => LeakyReluKernels.Forward(this, i[0], o[0], ((ScalarAttrs)a!).Value), (i, a) => i[0].DType is DType.F32 or DType.F64)
        .Add(LeakyReluOps.LeakyReluBackward, (i, o, a) => LeakyReluKernels.Backward(this, i[0], i[1], o[0], ((ScalarAttrs)a!).Value), (i, a) => i[0].DType is DType.F32 or DType.F64)
        .Add(BatchNormOps.BatchNorm2d, (i, o, a) => BatchNormKernels.Forward(this, i[0], i[1], i[2], o[0], o[1], o[2], (NormAttrs)a!), (i, a) => i[0].DType is DType.F32 or DType.F64)
        .Add(BatchNormOps.BatchNorm2dBackward, (i, o, a) => BatchNormKernels.Backward(this, i[0], i[1], i[2], i[3], i[4], o[0], o[1], o[2]), (i, a) => i[0].DType is DType.F32 or DType.F64)

        .Add(Op.AdamWStep, (i, o, a) => OptimKernels.AdamWStep(this, o[0], i[0], o[1], o[2], (AdamWAttrs)a!))

        .Add(Op.Attention, (i, o, a) => AttentionKernels.Forward(this, i[0], i[1], i[2], o[0], o[1], (AttentionAttrs)a!))
        .Add(Op.AttentionBackward, (i, o, a) => AttentionKernels.Backward(this, i[0], i[1], i[2], i[3], i[4], i[5], o[0], o[1], o[2], (AttentionAttrs)a!))

        .Add(ScanOps.SelectiveScan, (i, o, a) => ScanKernels.Forward(this, i[0], i[1], i[2], i[3], i[4], i[5], o[0], o[1], (SelectiveScanAttrs)a!), (i, a) => ScanKernels.Supports(this, i, a))
        .Add(ScanOps.SelectiveScanBackward, (i, o, a) => ScanKernels.Backward(this, i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7], o[0], o[1], o[2], o[3], o[4], o[5], (SelectiveScanAttrs)a!), (i, a) => ScanKernels.Supports(this, i[1..], a))
        .Add(WkvOps.Wkv6, (i, o, a) => WkvKernels.Forward(this, i[0], i[1], i[2], i[3], i[4], o[0], o[1], (WkvAttrs)a!), (i, a) => WkvKernels.Supports(this, i))
        .Add(WkvOps.Wkv6Backward, (i, o, a) => WkvKernels.Backward(this, i[0], i[1], i[2], i[3], i[4], i[5], i[6], o[0], o[1], o[2], o[3], o[4], (WkvAttrs)a!), (i, a) => WkvKernels.Supports(this, i[1..]))
        .Add(MoeOps.MoeCombine, (i, o, a) => MoeKernels.Combine(this, i[0], i[1], i[2], o[0]), (i, a) => MoeKernels.Supports(i));

    private void CheckOnThisDevice(Op op, Tensor t)
    {
        if (t.Storage is not GpuStorage s || !ReferenceEquals(s.Backend, this))
            throw new ArgumentException($"{op}: tensor {t.Describe()} is not on {Device}");
    }

    /// <summary>Every kernel the launchers of all families can use (for the offline PTX test and `mt selftest`).</summary>
    public static IEnumerable<KernelSpec> AllKernelSpecs() =>
        CopyKernels.Specs()
            .Concat(ElementwiseKernels.Specs())
            .Concat(ReduceKernels.Specs())
            .Concat(MatMulKernels.Specs())
            .Concat(NormKernels.Specs())
            .Concat(IndexKernels.Specs())
            .Concat(LossKernels.Specs())
            .Concat(ConvKernels.Specs())
            .Concat(PoolKernels.Specs())
            .Concat(LeakyReluKernels.Specs())
            .Concat(BatchNormKernels.Specs())
            .Concat(OptimKernels.Specs())
            .Concat(AttentionKernels.Specs())
            .Concat(QuantDecodeKernels.Specs())
            .Concat(QuantKernels.Specs())
            .Concat(ScanKernels.Specs())
            .Concat(WkvKernels.Specs())
            .Concat(PartSumKernels.Specs())
            .Concat(MoeKernels.Specs());

    // ---- launching ----

    /// <summary>A 1-D grid-stride launch over <paramref name="n"/> items: full groups, at most <see cref="MaxGroups"/>.</summary>
    internal KernelConfig Grid(long n)
    {
        long groups = Math.Clamp((n + GroupSize - 1) / GroupSize, 1, MaxGroups);
        return new KernelConfig((int)groups, GroupSize);
    }

    /// <summary>One group per item (a row, a tile), at most 8 <see cref="MaxGroups"/>: kernels loop over items with a group stride.</summary>
    internal int GroupsFor(long items) => (int)Math.Clamp(items, 1, 8L * MaxGroups);

    internal KernelConfig GroupPerItem(long items) => new(GroupsFor(items), GroupSize);

    /// <summary>
    /// One group per row for the kernels whose threads meet only in <see cref="Kernels.GroupReduce.All"/> and walk the
    /// row with a Group.DimX stride (norms, softmax, cross-entropy): <see cref="GroupPerItem"/> on a GPU (and wherever
    /// <see cref="GpuShaped"/>); otherwise, on the CPU accelerator, groups of one thread, which walks the row alone. There every simulated thread is an OS thread and
    /// each reduction costs group barriers of all of them (a few ms each on a loaded 2-core machine), so a 64-thread
    /// group spent ~5 ms a row of RMSNorm where one thread needs microseconds for 64 values.
    /// </summary>
    internal KernelConfig RowGroups(long rows) => GpuShaped ? GroupPerItem(rows) : new(GroupsFor(rows), 1);

    /// <summary>
    /// Whether this backend runs kernels in the shape a GPU runs them (multi-thread groups for the row kernels, the tiled
    /// matmul): always on a GPU; on the CPU accelerator only inside <see cref="GpuShapedOnCpu"/>, which the conformance
    /// suite enters (OpConformance.Run: the tests and `mt selftest`) so that CI tests the code a GPU runs, while
    /// everything else there takes the barrier-free shortcuts.
    /// </summary>
    internal bool GpuShaped => Accelerator.AcceleratorType != AcceleratorType.CPU || _gpuShapedDepth > 0;

    [ThreadStatic] private static int _gpuShapedDepth;

    /// <summary>A scope (this thread, as GradMode's) in which the CPU accelerator runs the GPU-shaped kernels.</summary>
    internal static IDisposable GpuShapedOnCpu()
    {
        _gpuShapedDepth++;
        return new GpuShapedScope();
    }

    private sealed class GpuShapedScope : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            _gpuShapedDepth--;
        }
    }

    internal void Launch(KernelSpec spec, KernelConfig config, params object[] args) =>
        Compiled.Get(spec).Launch(Stream, config, args);

    // ---- workspace and status ----

    /// <summary>Scratch device memory for one op (counted as workspace); dispose it after queuing the kernels that use it.</summary>
    internal GpuStorage Workspace(DType dtype, int length)
    {
        using (DeviceMemory.Category(MemoryCategory.Workspace))
        {
            var block = length == 0 ? null : Allocator.Allocate(dtype.ByteCount(length), MemoryCategory.Workspace);
            return new GpuStorage(this, dtype, length, block);
        }
    }

    /// <summary>Throws the error a kernel recorded since the last check (and clears it).</summary>
    internal void CheckKernelStatus()
    {
        var s = _status.GetAsArray1D();
        if (s[0] == 0) return;
        _status.MemSetToZero();
        Accelerator.Synchronize();
        var op = (Op)(s[0] - 1);
        throw new IndexOutOfRangeException($"{OpRegistry.NameOf(op)}: index {s[1]} is out of range for a dimension of size {s[2]} (found by a GPU kernel on {Device}; reported at the next synchronization)");
    }

    // ---- IDeviceMemory ----

    public MemoryStats Stats => Allocator.Stats();

    public void ResetPeak() => Allocator.ResetPeak();

    public void EmptyCache() => Allocator.EmptyCache();

    public void Synchronize()
    {
        Accelerator.Synchronize();
        CheckKernelStatus();
    }

    public void Dispose()
    {
        Accelerator.Synchronize();
        _attention?.Dispose();
        Allocator.Dispose();
        _status.Dispose();
        Accelerator.Dispose();
        Context.Dispose();
    }

    public override string ToString() => $"GpuBackend({Info})";
}
