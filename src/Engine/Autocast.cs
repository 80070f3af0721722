namespace ManagedTensor;

/// <summary>
/// Mixed precision as torch.autocast: inside <c>using (Autocast.Enable(DType.BF16)) { ... }</c> each op runs in the dtype
/// PyTorch's autocast gives it, and activations take the layout they take in PyTorch:
///   16-bit list: MatMul (so Linear, LoRA and the LM heads) and QMatMul cast their float inputs (F32, F16, BF16; never F64, which
///     gradient checks use) to the 16-bit dtype and returns the 16-bit product (float32 accumulation in the kernels);
///     Linear's bias is cast too, so a Linear's output is 16-bit. Attention and QkvAttention take q, k, v in 16 bits and
///     return 16 bits: in the 16-bit dtype where the backend has a kernel for it (the GPU backend), else (the CPU, whose
///     attention kernels read float32 only) through the float32 kernel between casts, as flash attention accumulates
///     in float32.
///   float32 list (<see cref="Fp32"/>): Softmax, LogSoftmax, LayerNorm, RmsNorm, GroupNorm, CrossEntropy, and the unary
///     Exp, Log, Rsqrt, Pow (PyTorch's list, for the range of exp and log) cast a 16-bit input up to float32 and return float32.
///   everything else runs in the dtype it is given: elementwise activations (GELU, SiLU, ...) and RoPE stay 16-bit (both
///     backends have 16-bit kernels for them: computed in float32, rounded once), and binary ops promote mixed float
///     inputs as torch.result_type (bf16 + f32 -> f32: the residual stream and the norms stay float32; see
///     <see cref="DTypeInfo.PromoteFloat"/>).
/// Every cast is the recorded To(dtype) op, whose backward casts the gradient back to the input's dtype (and autograd
/// hands each input its gradient in its own dtype), so master weights and their gradients stay float32 while the
/// gradients that flow through the 16-bit activations are 16-bit, as in PyTorch. Two differences in memory: PyTorch
/// caches a weight's 16-bit copy for the whole scope, here each matmul casts its weight again (once a step for a model
/// that uses each weight once); and PyTorch's kernels read both dtypes of a mixed binary op, here the narrower operand
/// is cast first, a copy of it (a residual add's 16-bit branch in float32).
/// The state is per thread, like <see cref="GradMode"/>; it lives in the engine because the ops read it.
/// </summary>
public static class Autocast
{
    [ThreadStatic] private static DType? _dtype;

    /// <summary>The 16-bit dtype matmuls and attention compute in on this thread, or null outside any autocast scope.</summary>
    public static DType? DType => _dtype;

    /// <summary>
    /// Autocasts to <paramref name="dtype"/> (BF16 or F16) until disposed; null turns autocast off inside an enclosing
    /// scope (a region that must run in float32), as torch.autocast(enabled=False).
    /// </summary>
    public static IDisposable Enable(DType? dtype)
    {
        if (dtype is not (null or ManagedTensor.DType.BF16 or ManagedTensor.DType.F16))
            throw new ArgumentException($"autocast computes in BF16 or F16, not {dtype}", nameof(dtype));
        var old = _dtype;
        _dtype = dtype;
        return new Scope(old);
    }

    /// <summary>
    /// The 16-bit dtype a 16-bit-list op (MatMul, attention) over inputs of <paramref name="dtypes"/> computes in, or null
    /// (autocast off, or an input that is not F32, F16 or BF16: F64 gradient checks, integers) for the op as written.
    /// </summary>
    internal static DType? Target(params ReadOnlySpan<DType> dtypes)
    {
        if (_dtype is not { } low) return null;
        foreach (var d in dtypes)
            if (d is not (ManagedTensor.DType.F32 or ManagedTensor.DType.F16 or ManagedTensor.DType.BF16)) return null;
        return low;
    }

    /// <summary>
    /// The input of a float32-list op: under autocast a 16-bit <paramref name="x"/> cast up to float32 (recorded), else
    /// <paramref name="x"/> itself. Outside autocast a 16-bit tensor stays 16-bit, as in PyTorch.
    /// </summary>
    internal static Tensor Fp32(Tensor x) =>
        _dtype is not null && x.DType is ManagedTensor.DType.F16 or ManagedTensor.DType.BF16 ? x.To(ManagedTensor.DType.F32) : x;

    private sealed class Scope(DType? restore) : IDisposable
    {
        private bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _dtype = restore;
        }
    }
}
