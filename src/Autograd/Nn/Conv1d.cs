namespace ManagedTensor.Nn;

/// <summary>
/// 1-D convolution as torch.nn.Conv1d: x (N, in, T) to (N, out, T'), weight (out, in, k) as PyTorch and Hugging Face
/// store it, bias (out), stride and padding along T. It runs as the engine's Conv2d op on a height of 1: x viewed as
/// (N, in, 1, T), the weight as (out, in, 1, k), stride (1, s), padding (0, p); both views are free, and the op's
/// backward gives the gradients of the (out, in, k) parameter through the reshape. PyTorch's default init:
/// U(+-1/sqrt(fan_in)), fan_in = in * k.
/// </summary>
public sealed class Conv1d : Module
{
    public Conv1d(int inChannels, int outChannels, int kernel, Generator gen, Device device, int stride = 1, int padding = 0, bool bias = true)
        : this(Init.FanInUniform([outChannels, inChannels, kernel], inChannels * kernel, gen, device),
               bias ? Init.FanInUniform([outChannels], inChannels * kernel, gen, device) : null, stride, padding)
    {
    }

    /// <summary>A convolution over existing tensors (a loaded checkpoint): weight (out, in, k), bias (out).</summary>
    public Conv1d(Tensor weight, Tensor? bias, int stride = 1, int padding = 0)
    {
        if (weight.Rank != 3) throw new ArgumentException($"Conv1d: weight {weight.Describe()} must be 3-D (out, in, kernel)");
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != weight.Shape[0]))
            throw new ArgumentException($"Conv1d: bias {bias.Describe()} must be ({weight.Shape[0]}) for weight {weight.Describe()}");
        if (stride < 1 || padding < 0) throw new ArgumentException($"Conv1d: stride {stride} must be >= 1 and padding {padding} >= 0");
        Attrs = new Conv2dAttrs(1, stride, 0, padding);
        Weight = Parameter("weight", weight);
        if (bias is not null) Bias = Parameter("bias", bias);
    }

    public Conv2dAttrs Attrs { get; }
    public Tensor Weight { get; } // (out, in, k)
    public Tensor? Bias { get; }  // (out)
    public int InChannels => Weight.Shape[1];
    public int OutChannels => Weight.Shape[0];

    public Tensor Forward(Tensor x) // (N, in, T) -> (N, out, T')
    {
        if (x.Rank != 3 || x.Shape[1] != InChannels)
            throw new ArgumentException($"Conv1d({InChannels} -> {OutChannels}): input {x.Describe()} must be (N, {InChannels}, T)");
        var w = Weight.Reshape(OutChannels, InChannels, 1, Weight.Shape[2]);
        var y = Tensor.Conv2d(x.Unsqueeze(2), w, Bias, Attrs);   // (N, out, 1, T')
        return y.Squeeze(2);
    }
}
