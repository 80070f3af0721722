namespace ManagedTensor;

/// <summary>
/// Mixed precision as torch.autocast: inside <c>using (Autocast.Enable(DType.BF16)) { ... }</c> the ops that gain most from
/// 16-bit arithmetic (MatMul, and so Linear and the LM heads; Attention and QkvAttention) cast their float32 inputs to
/// the 16-bit dtype and compute there; everything else (reductions, softmax, norms, losses, the optimizer) stays float32.
/// The cast is the recorded To(dtype) op, whose backward casts the gradient back to the input's dtype: master weights
/// and their gradients stay float32 while the gradients that flow through a matmul are 16-bit, as in PyTorch.
///
/// One difference from PyTorch: a matmul's 16-bit result is widened back to float32 before it leaves the op (its value is
/// the 16-bit rounding of the product, bit for bit what PyTorch's bf16 matmul returns), because the engine's binary ops
/// do not promote dtypes (PyTorch's bf16 + f32 -> f32) and the residual stream, biases and norms are float32. The
/// attention kernels of the CPU read float32 only, so attention is modelled by rounding: q, k, v and the output are
/// rounded to the 16-bit dtype and the kernel accumulates in float32 between them, as flash attention does.
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
    /// The 16-bit dtype an op over float32 inputs <paramref name="dtypes"/> computes in, or null (autocast off, or an
    /// input that is not float32: F64 gradient checks, tensors already 16-bit, integers) for the op as written.
    /// </summary>
    internal static DType? Target(params ReadOnlySpan<DType> dtypes)
    {
        if (_dtype is not { } low) return null;
        foreach (var d in dtypes)
            if (d != ManagedTensor.DType.F32) return null;
        return low;
    }

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
