using System.Text.Json;
using ManagedTensor.Models;
using ManagedTensor.Models.IO;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// llm.c's test_gpt2 idea: one forward + backward step of a tiny GPT (2 layers, 32 wide, biases on,
/// two ignored targets) against the state an independent PyTorch implementation dumped
/// (tests/fixtures/gpt_golden/make_gpt_golden.py, float64 reference). Our float32 model must give the
/// same logits, loss and every parameter gradient to 1e-4 relative.
/// </summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)] // shares the ilgpu-cpu device with the allocator tests
public class GptGoldenTests
{
    private static (GPT Model, Dictionary<string, Tensor> Fixture) Load(Device? device = null)
    {
        using var file = SafeTensors.Open(Fixtures.Path("gpt_golden/gpt_golden.safetensors"));
        var fixture = file.LoadAll();
        using var cfg = JsonDocument.Parse(file.Metadata["config"]);
        var r = cfg.RootElement;
        var config = new GptConfig(r.GetProperty("block_size").GetInt32(), r.GetProperty("vocab_size").GetInt32(), r.GetProperty("n_layer").GetInt32(),
            r.GetProperty("n_head").GetInt32(), r.GetProperty("n_embd").GetInt32(), r.GetProperty("dropout").GetDouble(), r.GetProperty("bias").GetBoolean());
        var model = new GPT(config, new Generator(1), device);
        model.LoadStateDict(fixture, strict: false);
        return (model, fixture);
    }

    /// <summary>max |actual - expected| relative to max |expected|, plus an element-wise check with a small absolute floor.</summary>
    private static void AssertAgrees(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.Shape, actual.Shape);
        var e = expected.ToDoubleArray();
        var a = actual.ToDoubleArray();
        double scale = e.Max(Math.Abs);
        double worst = e.Zip(a, (x, y) => Math.Abs(x - y)).Max();
        Assert.True(worst <= 1e-4 * scale, $"{what}: max error {worst:E3} vs max magnitude {scale:E3}");
        TestUtil.AssertClose(e, a, rtol: 1e-4, atol: 1e-5 * scale, what);
    }

    /// <summary>The CPU backend, and every GPU kernel of a GPT step on ILGPU's CPU accelerator.</summary>
    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Loss_logits_and_every_gradient_match_pytorch(string device)
    {
        var d = Device.Parse(device);
        var (model, f) = Load(d);
        var output = model.Forward(f["idx"].To(d), f["targets"].To(d));
        AssertAgrees(f["loss"].Reshape([]), output.Loss!, "loss");
        AssertAgrees(f["logits"], output.Logits, "logits");

        output.Loss!.Backward();
        var named = model.NamedParameters().ToList();
        Assert.Equal(f.Keys.Count(k => k.StartsWith("grad.", StringComparison.Ordinal)), named.Count);
        foreach (var (name, p) in named)
        {
            Assert.True(p.Grad is not null, $"{name} got no gradient");
            AssertAgrees(f["grad." + name], p.Grad!, "gradient of " + name);
        }
    }

    [Fact]
    public void State_dict_uses_nanogpt_names_and_ties_the_head()
    {
        var (model, f) = Load();
        var names = model.NamedParameters().Select(p => p.Name).ToHashSet();
        var fixtureNames = f.Keys.Where(k => k.StartsWith("transformer.", StringComparison.Ordinal)).ToHashSet();
        Assert.Equal(fixtureNames, names);
        // 12 tensors per layer and 4 outside; no separate lm_head.weight: it is wte.
        Assert.Equal(12 * model.Config.NLayer + 4, names.Count);
    }
}
