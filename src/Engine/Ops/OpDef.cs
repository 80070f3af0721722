namespace ManagedTensor;

/// <summary>
/// A backend's implementation of one op: reads <paramref name="inputs"/>, writes <paramref name="outputs"/>
/// (allocated by the front end with their final shapes; the per-op contract is on <see cref="Op"/> or the op's
/// <see cref="OpDef"/>).
/// </summary>
public delegate void OpKernel(ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs);

/// <summary>A kernel shared by a family of ops (unary elementwise, reductions, ...) that is told which op to run.</summary>
public delegate void OpFamilyKernel(Op op, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, OpAttrs? attrs);

/// <summary>Whether a kernel handles these inputs (a dtype or format it was written for); null means all.</summary>
public delegate bool KernelGuard(ReadOnlySpan<Tensor> inputs, OpAttrs? attrs);

/// <summary>
/// dL/dx for each input of a recorded op, from the node, the op's (first) output y and dL/dy (<c>g</c>, the
/// shape of y); null where an input has no gradient (indices, masks, quantized weights). Written with
/// tensor ops, so one rule serves every backend; autograd runs it with recording off.
/// </summary>
public delegate Tensor?[] BackwardRule(OpNode node, Tensor y, Tensor g);

/// <summary>The op written with other ops: what runs where a backend has no kernel for it.</summary>
public delegate Tensor[] CompositeRule(Tensor[] inputs, OpAttrs? attrs);

/// <summary>The shape and dtype of each output, from the inputs and attributes (validating them).</summary>
public delegate TensorSpec[] OutputRule(Tensor[] inputs, OpAttrs? attrs);

/// <summary>An output's shape and dtype, as an op's <see cref="OutputRule"/> gives it.</summary>
public readonly record struct TensorSpec(int[] Shape, DType DType);

/// <summary>
/// Everything the engine and autograd know about one op, declared in one place (the op's own file for ops
/// beyond the built-in set): its inputs and outputs (names for documentation and error messages; a name
/// ending in '?' is optional and passed as an empty tensor when absent), its attributes record, the rule
/// that gives output shapes, its backward rule and, where one exists, a composite fallback in other ops.
/// Kernels are not here: each backend keeps its own <see cref="KernelTable"/>, so an op can land with a CPU
/// kernel first and run on the GPU through <see cref="Fallback"/> until its GPU kernel exists.
/// Built-in ops whose front ends are written by hand (src/Engine/Tensor.*.cs) need only a backward rule.
/// </summary>
public sealed record OpDef(Op Op, string Name)
{
    public string[] Inputs { get; init; } = [];
    public string[] Outputs { get; init; } = ["out"];

    /// <summary>The attributes record the op takes (null: none).</summary>
    public Type? Attrs { get; init; }

    /// <summary>What the op computes, in a line (shown by `mt selftest --ops`).</summary>
    public string Summary { get; init; } = "";

    /// <summary>Output shapes and dtypes; needed by the generic front end <see cref="Tensor.Apply"/>.</summary>
    public OutputRule? Shapes { get; init; }

    /// <summary>The backward rule; null for ops that are not differentiable (or whose fallback is differentiated instead).</summary>
    public BackwardRule? Backward { get; init; }

    /// <summary>The op in terms of other ops, run where a backend has no kernel (null: the op needs a kernel).</summary>
    public CompositeRule? Fallback { get; init; }

    /// <summary>
    /// Inputs the front end makes contiguous before calling a kernel (by index); others are passed as they are,
    /// views and all (a kernel that reads strides, such as MatMul's, says so by leaving its inputs out).
    /// </summary>
    public bool DenseInputs { get; init; } = true;

    public override string ToString() => Name;
}
