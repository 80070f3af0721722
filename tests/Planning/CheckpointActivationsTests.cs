using ManagedTensor.Models;
using Xunit;

namespace ManagedTensor.Tests.Planning;

/// <summary>
/// Per-block activation checkpointing (<see cref="IActivationCheckpointing"/>) in GPT and Llama: the same loss and the same
/// gradients as the plain run (dropout masks included: the recomputation replays them), and on a device a lower
/// measured peak.
/// </summary>
public class CheckpointActivationsTests
{
    private static (Tensor X, Tensor Y) Batch(int b, int t, int vocab)
    {
        var x = Tensor.FromArray(Enumerable.Range(0, b * t).Select(i => (long)(i * 7 % vocab)).ToArray(), [b, t]);
        var y = Tensor.FromArray(Enumerable.Range(0, b * t).Select(i => (long)((i * 5 + 3) % vocab)).ToArray(), [b, t]);
        return (x, y);
    }

    private static void AssertSameGradients(Nn.Module plain, Nn.Module checkpointed, string what)
    {
        var a = plain.NamedParameters().ToList();
        var b = checkpointed.NamedParameters().ToDictionary(p => p.Name, p => p.Tensor);
        Assert.NotEmpty(a);
        foreach (var (name, p) in a)
        {
            Assert.NotNull(p.Grad);
            Assert.NotNull(b[name].Grad);
            TestUtil.AssertClose(p.Grad!, b[name].Grad!, rtol: 1e-5, atol: 1e-7, what: $"{what}: gradient of {name}");
        }
    }

    [Fact]
    public void Gpt_with_dropout_gives_the_same_loss_and_gradients()
    {
        var cfg = new GptConfig(BlockSize: 16, VocabSize: 20, NLayer: 3, NHead: 2, NEmbd: 16, Dropout: 0.2, Bias: true);
        var (x, y) = Batch(2, 12, 20);
        var plain = new GPT(cfg, new Generator(5), dropoutSeed: 9);
        var checkpointed = new GPT(cfg, new Generator(5), dropoutSeed: 9) { CheckpointActivations = true };
        var l1 = plain.Loss(x, y);
        var l2 = checkpointed.Loss(x, y);
        l1.Backward();
        l2.Backward();
        Assert.Equal(l1.Item(), l2.Item(), 6);
        AssertSameGradients(plain, checkpointed, "gpt");
        Assert.Equal(plain.DropoutGenerator.Offset, checkpointed.DropoutGenerator.Offset); // rewound after the recomputation
    }

    [Fact]
    public void Llama_gives_the_same_loss_and_gradients()
    {
        var cfg = new LlamaConfig(Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKvHeads: 2, VocabSize: 20, SeqLen: 16);
        var (x, y) = Batch(2, 10, 20);
        var plain = ManagedTensor.Models.Llama.Create(cfg, new Generator(3));
        var checkpointed = ManagedTensor.Models.Llama.Create(cfg, new Generator(3));
        checkpointed.CheckpointActivations = true;
        var l1 = plain.Forward(x, y).Loss;
        var l2 = checkpointed.Forward(x, y).Loss;
        l1.Backward();
        l2.Backward();
        Assert.Equal(l1.Item(), l2.Item(), 6);
        AssertSameGradients(plain, checkpointed, "llama");
    }
}

/// <summary>
/// On ilgpu-cpu, where a checkpointed block frees its intermediates as soon as it has run: the gradients are the plain
/// run's. (That the step's peak drops is held by <see cref="MeasuredPeakTests"/>: the checkpointed and plain Llama
/// recipes each sit within 10% of predictions 30% apart.)
/// </summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public class CheckpointActivationsDeviceTests
{
    [Fact]
    public void Llama_gradients_on_the_device_equal_the_plain_run()
    {
        var d = Device.IlgpuCpu;
        var cfg = new LlamaConfig(Dim: 32, HiddenDim: 64, NLayers: 2, NHeads: 4, NKvHeads: 2, VocabSize: 32, SeqLen: 16);
        var x = Tensor.FromArray(Enumerable.Range(0, 2 * 16).Select(i => (long)(i * 7 % 32)).ToArray(), [2, 16]);
        var y = Tensor.FromArray(Enumerable.Range(0, 2 * 16).Select(i => (long)(i * 5 % 32)).ToArray(), [2, 16]);
        ManagedTensor.Models.Llama Make(bool ckpt)
        {
            var m = ManagedTensor.Models.Llama.Create(cfg, new Generator(1), d);
            m.CheckpointActivations = ckpt;
            return m;
        }
        var a = Make(false);
        var b = Make(true);
        a.Forward(x.To(d), y.To(d)).Loss.Backward();
        b.Forward(x.To(d), y.To(d)).Loss.Backward();
        foreach (var ((name, p), (_, q)) in a.NamedParameters().Zip(b.NamedParameters()))
            TestUtil.AssertClose(p.Grad!.To(Device.Cpu), q.Grad!.To(Device.Cpu), rtol: 1e-5, atol: 1e-7, what: $"gradient of {name} on {d}");
    }
}
