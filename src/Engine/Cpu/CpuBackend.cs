namespace ManagedTensor.Cpu;

/// <summary>
/// The reference backend: plain C# over managed arrays, SIMD through System.Numerics.Tensors and
/// Vector256/512, threads through Parallel.For. One table maps each op to its kernel (<see cref="Kernels"/>);
/// each op family lives in its own file (CpuElementwise, CpuReduce, CpuMatMul, ...).
/// </summary>
public sealed class CpuBackend : IBackend
{
    public static readonly CpuBackend Instance = new();

    private CpuBackend() { }

    public Device Device => Device.Cpu;

    public Storage Allocate(DType dtype, int length, bool zero) => new CpuStorage(dtype, length, zero);

    /// <summary>
    /// Every op's CPU kernel, by op: one line per built-in op, or per family of ops sharing a kernel. Ops
    /// declared in src/Engine/Ops add their CPU kernel in their declaration. The CPU is the reference: every
    /// op has a CPU kernel (other backends may run an op's fallback until they have one).
    /// </summary>
    public KernelTable Kernels { get; } = Build(new KernelTable("CPU"));

    public void Execute(Op op, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs)
    {
        Kernels.Run(op, inputs, outputs, attrs);
        // A kernel works on its tensors' arrays; the tensors must stay alive until it returns, or the array
        // pool could hand an array still in use to another storage (CpuArrayPool frees dead storages' arrays).
        foreach (var t in inputs) GC.KeepAlive(t.Storage);
        foreach (var t in outputs) GC.KeepAlive(t.Storage);
    }

    /// <summary>
    /// The F32 and F64 kernels of the norms and attention; other float dtypes run the op's composite fallback, or (attention
    /// under autocast, which asks first) go through float32.
    /// </summary>
    private static bool F32OrF64(ReadOnlySpan<Tensor> inputs, OpAttrs? attrs) => inputs[0].DType is DType.F32 or DType.F64;

    private static KernelTable Build(KernelTable t) => t
        .Add(Op.Copy, (i, o, a) => CpuCopy.Copy(i[0], o[0]))
        .Add(Op.Fill, (i, o, a) => CpuCopy.Fill(o[0], ((ScalarAttrs)a!).Value))
        .Add(Op.RandUniform, (i, o, a) => CpuCopy.RandUniform(o[0], (RandomAttrs)a!))
        .Add(Op.RandNormal, (i, o, a) => CpuCopy.RandNormal(o[0], (RandomAttrs)a!))

        .Add(OpFamilies.Unary, (op, i, o, a) => CpuElementwise.Unary(op, i[0], o[0], a))
        .Add(OpFamilies.Binary, (op, i, o, a) => CpuElementwise.Binary(op, i[0], i[1], o[0]))
        .Add(Op.Where, (i, o, a) => CpuElementwise.Where(i[0], i[1], i[2], o[0]))
        .Add(OpFamilies.Reduce, (op, i, o, a) => CpuReduce.Reduce(op, i[0], o[0], (ReduceAttrs)a!))

        .Add(Op.MatMul, (i, o, a) => CpuMatMul.MatMul(i[0], i[1], o[0]))

        .Add(Op.Softmax, (i, o, a) => CpuNorm.Softmax(i[0], o[0], log: false))
        .Add(Op.LogSoftmax, (i, o, a) => CpuNorm.Softmax(i[0], o[0], log: true))
        .Add(Op.LayerNorm, (i, o, a) => CpuNorm.LayerNorm(i[0], i[1], i[2], o[0], o[1], o[2], (NormAttrs)a!))
        .Add(Op.LayerNormBackward, (i, o, a) => CpuNorm.LayerNormBackward(i[0], i[1], i[2], i[3], i[4], o[0], o[1], o[2]))
        .Add(Op.RmsNorm, (i, o, a) => CpuNorm.RmsNorm(i[0], i[1], o[0], o[1], (NormAttrs)a!), F32OrF64)
        .Add(Op.RmsNormBackward, (i, o, a) => CpuNorm.RmsNormBackward(i[0], i[1], i[2], i[3], o[0], o[1]))

        .Add(Op.IndexSelect, (i, o, a) => CpuIndex.IndexSelect(i[0], i[1], o[0], ((AxisAttrs)a!).Axis))
        .Add(Op.IndexAdd, (i, o, a) => CpuIndex.IndexAdd(o[0], i[0], i[1], ((AxisAttrs)a!).Axis))
        .Add(Op.Gather, (i, o, a) => CpuIndex.Gather(i[0], i[1], o[0], ((AxisAttrs)a!).Axis))
        .Add(Op.ScatterAdd, (i, o, a) => CpuIndex.ScatterAdd(o[0], i[0], i[1], ((AxisAttrs)a!).Axis))

        .Add(Op.CrossEntropy, (i, o, a) => CpuLoss.CrossEntropy(i[0], i[1], o[0], o[1], (CrossEntropyAttrs)a!))
        .Add(Op.CrossEntropyBackward, (i, o, a) => CpuLoss.CrossEntropyBackward(i[0], i[1], i[2], i[3], o[0], (CrossEntropyAttrs)a!))

        .Add(Op.Conv2d, (i, o, a) => CpuConv.Conv2d(i[0], i[1], i[2], o[0], (Conv2dAttrs)a!))
        .Add(Op.Conv2dBackwardInput, (i, o, a) => CpuConv.BackwardInput(i[0], i[1], o[0], (Conv2dAttrs)a!))
        .Add(Op.Conv2dBackwardWeight, (i, o, a) => CpuConv.BackwardWeight(i[0], i[1], o[0], (Conv2dAttrs)a!))
        .Add(Op.MaxPool2d, (i, o, a) => CpuPool.MaxPool2d(i[0], o[0], o[1], (Pool2dAttrs)a!))
        .Add(Op.MaxPool2dBackward, (i, o, a) => CpuPool.MaxPool2dBackward(i[0], i[1], o[0], (Pool2dAttrs)a!))
        .Add(Op.AvgPool2d, (i, o, a) => CpuPool.AvgPool2d(i[0], o[0], (Pool2dAttrs)a!))
        .Add(Op.AvgPool2dBackward, (i, o, a) => CpuPool.AvgPool2dBackward(i[0], o[0], (Pool2dAttrs)a!))
        .Add(Op.UpsampleNearest2d, (i, o, a) => CpuPool.UpsampleNearest2d(i[0], o[0], ((ScaleAttrs)a!).Scale))
        .Add(Op.UpsampleNearest2dBackward, (i, o, a) => CpuPool.UpsampleNearest2dBackward(i[0], o[0], ((ScaleAttrs)a!).Scale))

        .Add(Op.Attention, (i, o, a) => CpuAttention.Forward(i[0], i[1], i[2], o[0], o[1], (AttentionAttrs)a!), F32OrF64)
        .Add(Op.AttentionBackward, (i, o, a) => CpuAttention.Backward(i[0], i[1], i[2], i[3], i[4], i[5], o[0], o[1], o[2], (AttentionAttrs)a!), F32OrF64)

        .Add(Op.AdamWStep, (i, o, a) => CpuOptim.AdamWStep(o[0], i[0], o[1], o[2], (AdamWAttrs)a!));
}
