namespace ManagedTensor.Nn;

/// <summary>
/// Parameter initializers. All draw from a <see cref="Generator"/> (Philox), so a seed gives the same
/// weights on every backend and every run.
/// </summary>
public static class Init
{
    /// <summary>N(0, std^2), as torch.nn.init.normal_ (nanoGPT uses std 0.02 for every weight).</summary>
    public static Tensor Normal(int[] shape, double std, Generator gen, Device device, DType dtype = DType.F32)
        => Tensor.Randn(shape, gen, 0, std, dtype, device);

    /// <summary>
    /// torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)
    /// reduces to this bound).
    /// </summary>
    public static Tensor FanInUniform(int[] shape, int fanIn, Generator gen, Device device, DType dtype = DType.F32)
    {
        double bound = 1 / Math.Sqrt(Math.Max(fanIn, 1));
        return Tensor.Rand(shape, gen, -bound, bound, dtype, device);
    }
}
