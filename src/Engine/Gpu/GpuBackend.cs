using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu.Kernels;

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
        Kernels = KernelCache.For(accelerator);
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
    internal KernelCache Kernels { get; }

    /// <summary>The attention launchers (their own kernel cache: typed delegates, loaded on first use).</summary>
    internal GpuAttention Attention => _attention ??= new GpuAttention(Accelerator);

    private GpuAttention? _attention;

    /// <summary>Threads per group for 1-D kernels: 256 on a GPU, the accelerator's maximum when smaller (64 on the CPU accelerator).</summary>
    internal int GroupSize { get; }

    /// <summary>Most groups a grid-stride kernel is launched with (32 per multiprocessor on a GPU).</summary>
    internal int MaxGroups { get; }

    internal int WarpSize => Accelerator.WarpSize;

    /// <summary>Kernels compiled so far.</summary>
    public int CompiledKernels => Kernels.Count;

    internal ArrayView<int> Status => _status.View;

    // ---- IBackend ----

    public Storage Allocate(DType dtype, int length, bool zero)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), length, "storage length must be non-negative");
        long bytes = (long)length * dtype.SizeOf();
        var block = length == 0 ? null : Allocator.Allocate(bytes, DeviceMemory.CurrentCategory);
        var storage = new GpuStorage(this, dtype, length, block);
        if (zero && block is not null) storage.Bytes.MemSetToZero(Stream);
        DeviceMemory.Track(storage);
        return storage;
    }

    public void Execute(Op op, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs)
    {
        foreach (var t in inputs) CheckOnThisDevice(op, t);
        foreach (var t in outputs) CheckOnThisDevice(op, t);
        switch (op)
        {
            case Op.Copy: CopyKernels.Copy(this, inputs[0], outputs[0]); break;
            case Op.Fill: CopyKernels.Fill(this, outputs[0], ((ScalarAttrs)attrs!).Value); break;
            case Op.RandUniform: CopyKernels.Random(this, outputs[0], (RandomAttrs)attrs!, normal: false); break;
            case Op.RandNormal: CopyKernels.Random(this, outputs[0], (RandomAttrs)attrs!, normal: true); break;

            case Op.Neg or Op.Abs or Op.Exp or Op.Log or Op.Sqrt or Op.Rsqrt or Op.Tanh or Op.Sigmoid or Op.Relu
                or Op.Gelu or Op.GeluTanh or Op.Silu or Op.Erf or Op.AddScalar or Op.MulScalar or Op.PowScalar or Op.Clamp:
                ElementwiseKernels.Unary(this, op, inputs[0], outputs[0], attrs);
                break;
            case Op.Add or Op.Sub or Op.Mul or Op.Div or Op.Pow or Op.Maximum or Op.Minimum or Op.GeluBackward
                or Op.Eq or Op.Ne or Op.Lt or Op.Le or Op.Gt or Op.Ge:
                ElementwiseKernels.Binary(this, op, inputs[0], inputs[1], outputs[0]);
                break;
            case Op.Where: ElementwiseKernels.Where(this, inputs[0], inputs[1], inputs[2], outputs[0]); break;

            case Op.Sum or Op.Mean or Op.Max or Op.Min or Op.ArgMax or Op.Var:
                ReduceKernels.Reduce(this, op, inputs[0], outputs[0], (ReduceAttrs)attrs!);
                break;

            case Op.MatMul: MatMulKernels.MatMul(this, inputs[0], inputs[1], outputs[0]); break;

            case Op.Softmax: NormKernels.Softmax(this, inputs[0], outputs[0], log: false); break;
            case Op.LogSoftmax: NormKernels.Softmax(this, inputs[0], outputs[0], log: true); break;
            case Op.LayerNorm: NormKernels.LayerNorm(this, inputs[0], inputs[1], inputs[2], outputs[0], outputs[1], outputs[2], (NormAttrs)attrs!); break;
            case Op.LayerNormBackward:
                NormKernels.LayerNormBackward(this, inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], outputs[0], outputs[1], outputs[2]);
                break;
            case Op.RmsNorm: NormKernels.RmsNorm(this, inputs[0], inputs[1], outputs[0], outputs[1], (NormAttrs)attrs!); break;
            case Op.RmsNormBackward: NormKernels.RmsNormBackward(this, inputs[0], inputs[1], inputs[2], inputs[3], outputs[0], outputs[1]); break;

            case Op.IndexSelect: IndexKernels.IndexSelect(this, inputs[0], inputs[1], outputs[0], ((AxisAttrs)attrs!).Axis); break;
            case Op.IndexAdd: IndexKernels.IndexAdd(this, outputs[0], inputs[0], inputs[1], ((AxisAttrs)attrs!).Axis); break;
            case Op.Gather: IndexKernels.Gather(this, inputs[0], inputs[1], outputs[0], ((AxisAttrs)attrs!).Axis); break;
            case Op.ScatterAdd: IndexKernels.ScatterAdd(this, outputs[0], inputs[0], inputs[1], ((AxisAttrs)attrs!).Axis); break;

            case Op.CrossEntropy: LossKernels.CrossEntropy(this, inputs[0], inputs[1], outputs[0], outputs[1], (CrossEntropyAttrs)attrs!); break;
            case Op.CrossEntropyBackward:
                LossKernels.CrossEntropyBackward(this, inputs[0], inputs[1], inputs[2], inputs[3], outputs[0], (CrossEntropyAttrs)attrs!);
                break;

            case Op.Conv2d: ConvKernels.Conv2d(this, inputs[0], inputs[1], inputs[2], outputs[0], (Conv2dAttrs)attrs!); break;
            case Op.Conv2dBackwardInput: ConvKernels.BackwardInput(this, inputs[0], inputs[1], outputs[0], (Conv2dAttrs)attrs!); break;
            case Op.Conv2dBackwardWeight: ConvKernels.BackwardWeight(this, inputs[0], inputs[1], outputs[0], (Conv2dAttrs)attrs!); break;
            case Op.MaxPool2d: PoolKernels.MaxPool2d(this, inputs[0], outputs[0], outputs[1], (Pool2dAttrs)attrs!); break;
            case Op.MaxPool2dBackward: PoolKernels.MaxPool2dBackward(this, inputs[0], inputs[1], outputs[0]); break;
            case Op.AvgPool2d: PoolKernels.AvgPool2d(this, inputs[0], outputs[0], (Pool2dAttrs)attrs!); break;
            case Op.AvgPool2dBackward: PoolKernels.AvgPool2dBackward(this, inputs[0], outputs[0], (Pool2dAttrs)attrs!); break;
            case Op.UpsampleNearest2d: PoolKernels.Upsample(this, inputs[0], outputs[0], ((ScaleAttrs)attrs!).Scale); break;
            case Op.UpsampleNearest2dBackward: PoolKernels.UpsampleBackward(this, inputs[0], outputs[0], ((ScaleAttrs)attrs!).Scale); break;

            case Op.AdamWStep: OptimKernels.AdamWStep(this, outputs[0], inputs[0], outputs[1], outputs[2], (AdamWAttrs)attrs!); break;

            case Op.Attention: AttentionKernels.Forward(this, inputs[0], inputs[1], inputs[2], outputs[0], outputs[1], (AttentionAttrs)attrs!); break;
            case Op.AttentionBackward:
                AttentionKernels.Backward(this, inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], outputs[0], outputs[1], outputs[2], (AttentionAttrs)attrs!);
                break;

            default: throw new NotSupportedException($"the GPU backend has no kernel for op {op}");
        }
    }

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
            .Concat(OptimKernels.Specs())
            .Concat(AttentionKernels.Specs());

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

    internal void Launch(KernelSpec spec, KernelConfig config, params object[] args) =>
        Kernels.Get(spec).Launch(Stream, config, args);

    // ---- workspace and status ----

    /// <summary>Scratch device memory for one op (counted as workspace); dispose it after queuing the kernels that use it.</summary>
    internal GpuStorage Workspace(DType dtype, int length)
    {
        using (DeviceMemory.Category(MemoryCategory.Workspace))
        {
            var block = length == 0 ? null : Allocator.Allocate((long)length * dtype.SizeOf(), MemoryCategory.Workspace);
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
        throw new IndexOutOfRangeException($"{op}: index {s[1]} is out of range for a dimension of size {s[2]} (found by a GPU kernel on {Device}; reported at the next synchronization)");
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
