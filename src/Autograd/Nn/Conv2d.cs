namespace ManagedTensor.Nn;

/// <summary>
/// 2-D convolution as torch.nn.Conv2d: weight (out, in/groups, k, k), optional bias, square kernel, stride,
/// padding and groups (groups = in = out is a depthwise conv). PyTorch's default init: U(+-1/sqrt(fan_in)),
/// fan_in = in/groups * k * k.
/// </summary>
public sealed class Conv2d : Module
{
    public Conv2d(int inChannels, int outChannels, int kernel, Generator gen, Device device, int stride = 1, int? padding = null, int groups = 1, bool bias = true)
    {
        if (inChannels % groups != 0 || outChannels % groups != 0)
            throw new ArgumentException($"Conv2d({inChannels} -> {outChannels}): groups {groups} must divide both channel counts");
        Attrs = new Conv2dAttrs(stride, stride, padding ?? kernel / 2, padding ?? kernel / 2, 1, 1, groups);
        int fanIn = inChannels / groups * kernel * kernel;
        Weight = Parameter("weight", Init.FanInUniform([outChannels, inChannels / groups, kernel, kernel], fanIn, gen, device));
        if (bias) Bias = Parameter("bias", Init.FanInUniform([outChannels], fanIn, gen, device));
    }

    public Conv2dAttrs Attrs { get; }
    public Tensor Weight { get; }  // (out, in/groups, k, k)
    public Tensor? Bias { get; }   // (out)

    public Tensor Forward(Tensor x) => Tensor.Conv2d(x, Weight, Bias, Attrs); // (N, in, H, W) -> (N, out, H', W')
}
