namespace ManagedTensor.Cpu;

/// <summary>
/// The reference backend: plain C# over managed arrays, SIMD through System.Numerics.Tensors and
/// Vector256/512, threads through Parallel.For. One switch maps each op to its implementation;
/// each op family lives in its own file (CpuElementwise, CpuReduce, CpuMatMul, ...).
/// </summary>
public sealed class CpuBackend : IBackend
{
    public static readonly CpuBackend Instance = new();

    private CpuBackend() { }

    public Device Device => Device.Cpu;

    public Storage Allocate(DType dtype, int length, bool zero) => new CpuStorage(dtype, length, zero);

    public void Execute(Op op, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs)
    {
        switch (op)
        {
            case Op.Copy: CpuCopy.Copy(inputs[0], outputs[0]); break;
            case Op.Fill: CpuCopy.Fill(outputs[0], ((ScalarAttrs)attrs!).Value); break;
            case Op.RandUniform: CpuCopy.RandUniform(outputs[0], (RandomAttrs)attrs!); break;
            case Op.RandNormal: CpuCopy.RandNormal(outputs[0], (RandomAttrs)attrs!); break;

            case Op.Neg or Op.Abs or Op.Exp or Op.Log or Op.Sqrt or Op.Rsqrt or Op.Tanh or Op.Sigmoid or Op.Relu
                or Op.Gelu or Op.GeluTanh or Op.Silu or Op.Erf or Op.AddScalar or Op.MulScalar or Op.PowScalar or Op.Clamp:
                CpuElementwise.Unary(op, inputs[0], outputs[0], attrs);
                break;
            case Op.Add or Op.Sub or Op.Mul or Op.Div or Op.Pow or Op.Maximum or Op.Minimum or Op.GeluBackward
                or Op.Eq or Op.Ne or Op.Lt or Op.Le or Op.Gt or Op.Ge:
                CpuElementwise.Binary(op, inputs[0], inputs[1], outputs[0]);
                break;
            case Op.Where: CpuElementwise.Where(inputs[0], inputs[1], inputs[2], outputs[0]); break;

            case Op.Sum or Op.Mean or Op.Max or Op.Min or Op.ArgMax or Op.Var:
                CpuReduce.Reduce(op, inputs[0], outputs[0], (ReduceAttrs)attrs!);
                break;

            case Op.MatMul: CpuMatMul.MatMul(inputs[0], inputs[1], outputs[0]); break;

            case Op.Softmax: CpuNorm.Softmax(inputs[0], outputs[0], log: false); break;
            case Op.LogSoftmax: CpuNorm.Softmax(inputs[0], outputs[0], log: true); break;
            case Op.LayerNorm: CpuNorm.LayerNorm(inputs[0], inputs[1], inputs[2], outputs[0], outputs[1], outputs[2], (NormAttrs)attrs!); break;
            case Op.LayerNormBackward:
                CpuNorm.LayerNormBackward(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], outputs[0], outputs[1], outputs[2]);
                break;
            case Op.RmsNorm: CpuNorm.RmsNorm(inputs[0], inputs[1], outputs[0], outputs[1], (NormAttrs)attrs!); break;
            case Op.RmsNormBackward: CpuNorm.RmsNormBackward(inputs[0], inputs[1], inputs[2], inputs[3], outputs[0], outputs[1]); break;

            case Op.IndexSelect: CpuIndex.IndexSelect(inputs[0], inputs[1], outputs[0], ((AxisAttrs)attrs!).Axis); break;
            case Op.IndexAdd: CpuIndex.IndexAdd(outputs[0], inputs[0], inputs[1], ((AxisAttrs)attrs!).Axis); break;
            case Op.Gather: CpuIndex.Gather(inputs[0], inputs[1], outputs[0], ((AxisAttrs)attrs!).Axis); break;
            case Op.ScatterAdd: CpuIndex.ScatterAdd(outputs[0], inputs[0], inputs[1], ((AxisAttrs)attrs!).Axis); break;

            case Op.CrossEntropy: CpuLoss.CrossEntropy(inputs[0], inputs[1], outputs[0], outputs[1], (CrossEntropyAttrs)attrs!); break;
            case Op.CrossEntropyBackward:
                CpuLoss.CrossEntropyBackward(inputs[0], inputs[1], inputs[2], inputs[3], outputs[0], (CrossEntropyAttrs)attrs!);
                break;

            case Op.Conv2d: CpuConv.Conv2d(inputs[0], inputs[1], inputs[2], outputs[0], (Conv2dAttrs)attrs!); break;
            case Op.Conv2dBackwardInput: CpuConv.BackwardInput(inputs[0], inputs[1], outputs[0], (Conv2dAttrs)attrs!); break;
            case Op.Conv2dBackwardWeight: CpuConv.BackwardWeight(inputs[0], inputs[1], outputs[0], (Conv2dAttrs)attrs!); break;
            case Op.MaxPool2d: CpuPool.MaxPool2d(inputs[0], outputs[0], outputs[1], (Pool2dAttrs)attrs!); break;
            case Op.MaxPool2dBackward: CpuPool.MaxPool2dBackward(inputs[0], inputs[1], outputs[0], (Pool2dAttrs)attrs!); break;
            case Op.AvgPool2d: CpuPool.AvgPool2d(inputs[0], outputs[0], (Pool2dAttrs)attrs!); break;
            case Op.AvgPool2dBackward: CpuPool.AvgPool2dBackward(inputs[0], outputs[0], (Pool2dAttrs)attrs!); break;
            case Op.UpsampleNearest2d: CpuPool.UpsampleNearest2d(inputs[0], outputs[0], ((ScaleAttrs)attrs!).Scale); break;
            case Op.UpsampleNearest2dBackward: CpuPool.UpsampleNearest2dBackward(inputs[0], outputs[0], ((ScaleAttrs)attrs!).Scale); break;

            case Op.Attention: CpuAttention.Forward(inputs[0], inputs[1], inputs[2], outputs[0], outputs[1], (AttentionAttrs)attrs!); break;
            case Op.AttentionBackward:
                CpuAttention.Backward(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], outputs[0], outputs[1], outputs[2], (AttentionAttrs)attrs!);
                break;

            case Op.AdamWStep: CpuOptim.AdamWStep(outputs[0], inputs[0], outputs[1], outputs[2], (AdamWAttrs)attrs!); break;

            default: throw new NotSupportedException($"the CPU backend has no kernel for op {op}");
        }
    }
}
