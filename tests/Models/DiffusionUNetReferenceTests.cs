using ManagedTensor.Models.Diffusion;
using ManagedTensor.Models.IO;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// One forward and backward of the whole U-Net against PyTorch (tests/fixtures/diffusion/make_unet_fixture.py, written
/// from DDPM's description in float64): 8 base channels, multipliers 1,2, attention at 8x8 with head size 16. The
/// U-Net holds float32 weights, so the float64 reference is met to float32 accuracy, relative to each tensor's scale:
/// a wiring fault (a skip popped in the wrong order, the embedding added at the wrong place, a transposed attention)
/// is off by the tensor's whole magnitude.
/// </summary>
public sealed class DiffusionUNetReferenceTests
{
    private static readonly Dictionary<string, Tensor> Fx = SafeTensors.Load(Fixtures.Path("diffusion/unet.safetensors"));

    private static void AssertNear(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.Shape, actual.Shape);
        var e = expected.ToDoubleArray();
        var a = actual.ToDoubleArray();
        // 1e-5 absolute as well: a bias right before a GroupNorm of one channel per group has a gradient of exactly 0
        // in float64 (the norm removes it), which float32 rounding leaves at ~1e-7.
        double scale = e.Max(Math.Abs);
        for (int i = 0; i < e.Length; i++)
            Assert.True(Math.Abs(a[i] - e[i]) <= 2e-4 * scale + 1e-5, $"{what}: element {i}: got {a[i]}, expected {e[i]} (scale {scale})");
    }

    [Fact]
    public void The_unet_matches_pytorch_in_output_and_every_gradient()
    {
        var cfg = new DiffusionConfig(ImageSize: 16, UnetChannels: 8, ChannelMults: "1,2", ResBlocks: 1, Heads: 1);
        var net = Denoiser.Create(cfg, new Generator(0), Device.Cpu);
        var weights = Fx.Where(kv => kv.Key.StartsWith("unet.p.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key["unet.p.".Length..], kv => kv.Value);
        net.LoadStateDict(weights, strict: true, source: "unet.safetensors");
        var x = Fx["unet.x"].To(DType.F32).Detach();
        x.RequiresGrad = true;
        double[] t = Fx["unet.t"].ToDoubleArray();
        int[] labels = Fx["unet.labels"].ToDoubleArray().Select(v => (int)v).ToArray();
        var y = net.Forward(x, t, labels);
        AssertNear(Fx["unet.y"], y, "y");
        (y * Fx["unet.dy"].To(DType.F32)).Sum().Backward();
        AssertNear(Fx["unet.grad_x"], x.Grad!, "dx");
        foreach (var (name, p) in net.NamedParameters())
        {
            if (name == "class_embed.embedding_table.weight")
            {
                // Only the rows of the labels used (7 and the null row 10) get gradient; the rest must stay zero.
                AssertNear(Fx["unet.grad." + name].Narrow(0, 7, 1), p.Grad!.Narrow(0, 7, 1), "d " + name + "[7]");
                AssertNear(Fx["unet.grad." + name].Narrow(0, 10, 1), p.Grad!.Narrow(0, 10, 1), "d " + name + "[null]");
                Assert.Equal(0, p.Grad!.Narrow(0, 0, 7).Abs().Sum().Item());
                continue;
            }
            AssertNear(Fx["unet.grad." + name], p.Grad!, "d " + name);
        }
    }
}
