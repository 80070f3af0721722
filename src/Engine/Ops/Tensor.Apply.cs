namespace ManagedTensor;

/// <summary>The generic front end: runs any op declared with an output rule, on whatever backend its inputs live.</summary>
public sealed partial class Tensor
{
    /// <summary>
    /// Runs <paramref name="op"/> on <paramref name="inputs"/> (all on one device) and returns its outputs:
    /// 1. the op's <see cref="OpDef.Shapes"/> rule checks the inputs and gives each output's shape and dtype;
    /// 2. when the backend has a kernel that accepts the inputs, outputs are allocated and the kernel runs,
    ///    and the first output records the op (later outputs are saved for its backward rule);
    /// 3. otherwise the op's <see cref="OpDef.Fallback"/> composite runs, recorded op by op, so autograd
    ///    differentiates the composite (the op's own backward rule may need kernels this backend lacks too);
    /// 4. with neither, a clear error names the op, the backend and the dtypes.
    /// </summary>
    public static Tensor[] Apply(Op op, OpAttrs? attrs, params Tensor[] inputs)
    {
        var def = OpRegistry.Get(op);
        var shapes = def.Shapes ?? throw new InvalidOperationException($"op {def.Name} has no output rule: call its own front-end method");
        if (inputs.Length != def.Inputs.Length)
            throw new ArgumentException($"{def.Name} takes {def.Inputs.Length} inputs ({string.Join(", ", def.Inputs)}), got {inputs.Length}");
        var device = inputs.Length > 0 ? inputs[0].Device : Device.Cpu;
        foreach (var x in inputs)
            if (x.Device != device) throw new ArgumentException($"{def.Name}: tensors on different devices: {inputs[0].Describe()} and {x.Describe()}");
        var specs = shapes(inputs, attrs);
        var backend = Backends.For(device);
        var kernelInputs = def.DenseInputs ? inputs.Select(x => x.Dense()).ToArray() : inputs;
        if (backend.Kernels.Has(op, kernelInputs, attrs))
        {
            var outputs = specs.Select(s => Empty(s.Shape, s.DType, device)).ToArray();
            if (outputs.Any(o => o.Numel > 0)) backend.Execute(op, kernelInputs, outputs, attrs);
            if (outputs.Length > 0) Record(outputs[0], op, attrs, inputs, outputs[1..]);
            return outputs;
        }
        if (def.Fallback is { } fallback) return fallback(inputs, attrs);
        string dtypes = string.Join(", ", inputs.Select(x => x.DType).Distinct());
        throw new NotSupportedException($"op {def.Name} has no kernel on {device} for {dtypes} inputs and no fallback");
    }

    /// <summary>Whether <paramref name="op"/> runs on <paramref name="device"/> by a kernel for these inputs (false: its fallback, if any).</summary>
    public static bool HasKernel(Op op, Device device, OpAttrs? attrs, params Tensor[] inputs) =>
        Backends.For(device).Kernels.Has(op, inputs, attrs);
}
