namespace ManagedTensor.Nn;

/// <summary>
/// A depthwise causal convolution over the sequence axis, as Mamba's conv1d (groups = channels, padding
/// width - 1, the output cut to the input's length): y_t,c = b_c + Σ_j w_c,j x_{t - width + 1 + j, c}.
/// The positions before the first token come from <c>prefix</c>: zeros for a sequence seen whole, the last
/// width - 1 inputs when decoding continues one token at a time. Written with tensor ops (width views and
/// products), so autograd differentiates it and it runs on any device.
/// </summary>
public sealed class CausalConv1d : Module
{
    public CausalConv1d(int channels, int width, Generator gen, Device device)
    {
        if (channels < 1 || width < 1) throw new ArgumentException($"CausalConv1d: channels {channels} and width {width} must be positive");
        Channels = channels;
        Width = width;
        // PyTorch's Conv1d default init: U(+-1/sqrt(fan_in)), fan_in = width for a depthwise kernel.
        Weight = Parameter("weight", Init.FanInUniform([channels, width], width, gen, device));
        Bias = Parameter("bias", Init.FanInUniform([channels], width, gen, device));
    }

    public int Channels { get; }
    public int Width { get; }
    public Tensor Weight { get; } // (C, width)
    public Tensor Bias { get; }   // (C)

    /// <summary>x (B, T, C) after <paramref name="prefix"/> (B, width - 1, C; null: zeros) to y (B, T, C), and the new prefix (the last width - 1 inputs).</summary>
    public (Tensor Y, Tensor Prefix) Forward(Tensor x, Tensor? prefix = null)
    {
        if (x.Rank != 3 || x.Shape[2] != Channels) throw new ArgumentException($"CausalConv1d: x {x.Describe()} must be (B, T, {Channels})");
        int b = x.Shape[0], t = x.Shape[1], k = Width - 1;
        prefix ??= Tensor.Zeros([b, k, Channels], x.DType, x.Device);
        if (prefix.Rank != 3 || prefix.Shape[0] != b || prefix.Shape[1] != k || prefix.Shape[2] != Channels)
            throw new ArgumentException($"CausalConv1d: prefix {prefix.Describe()} must be (B, width - 1, C) = [{b}, {k}, {Channels}]");
        var padded = k == 0 ? x : Tensor.Cat([prefix, x], 1);                               // (B, k + T, C)
        var y = Bias;
        for (int j = 0; j < Width; j++)
            y = y + padded.Narrow(1, j, t) * Weight.Narrow(1, j, 1).Squeeze(1);             // (B, T, C) * (C)
        return (y, padded.Narrow(1, t, k));
    }
}
