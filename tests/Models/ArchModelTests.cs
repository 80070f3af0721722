using ManagedTensor.Models;
using ManagedTensor.Models.BitNet;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Moe;
using ManagedTensor.Models.RetNet;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// The RetNet and MoE language models: decoding token by token (RetNet's recurrent state, MoE's KV cache) gives the
/// logits of the parallel forward; RetNet's chunkwise forward too; the MoE training loss carries its aux loss.
/// </summary>
public class ArchModelTests
{
    private static readonly long[] Ids = [3, 7, 1, 0, 9, 4, 4, 11, 2, 5, 8];

    [Fact]
    public void RetNet_recurrent_decoding_and_chunkwise_forward_give_the_parallel_logits()
    {
        var model = new RetNetLM(new RetNetConfig(BlockSize: 16, VocabSize: 13, NLayer: 2, NHead: 2, NEmbd: 12), new Generator(7));
        model.Eval();
        using var noGrad = GradMode.NoGrad();
        var idx = Tensor.FromArray(Ids.Concat(Ids.Reverse()).ToArray(), [2, 11]);
        var parallel = model.Logits(idx);                                             // (2, 11, 13)
        TestUtil.AssertClose(parallel, model.Forward(idx, RetentionForm.Chunkwise, 4), 1e-5, 1e-6, "chunkwise");
        var state = model.NewState(2);
        for (int n = 0; n < 11; n++)
        {
            var step = model.Step(idx.Narrow(1, n, 1).Reshape(2), state);             // (2, 13)
            TestUtil.AssertClose(parallel.Narrow(1, n, 1).Reshape(2, 13), step, 1e-5, 1e-6, $"position {n}");
        }
    }

    [Fact]
    public void MoE_cached_decoding_gives_the_parallel_logits_and_training_adds_the_aux_loss()
    {
        var model = new MoeGpt(new MoeConfig(BlockSize: 16, VocabSize: 13, NLayer: 2, NHead: 2, NEmbd: 12, Experts: 3, TopK: 2, ExpertHidden: 7), new Generator(8));
        var idx = Tensor.FromArray(Ids, [1, 11]);
        model.Eval();
        using (GradMode.NoGrad())
        {
            var parallel = model.Logits(idx);                                         // (1, 11, 13)
            using var cache = new ManagedTensor.Nn.KvCache(2, 1, 2, 16, 6, DType.F32, Device.Cpu);
            for (int n = 0; n < 11; n++)
                TestUtil.AssertClose(parallel.Narrow(1, n, 1), model.Forward(idx.Narrow(1, n, 1), cache), 1e-5, 1e-6, $"position {n}");
        }
        var targets = Tensor.FromArray(Ids.Skip(1).Append(0L).ToArray(), [1, 11]);
        double ce = model.Loss(idx, targets).Item();
        model.Train();
        double train = model.Loss(idx, targets).Item();
        Assert.InRange(model.LastAuxLoss, 2 - 1e-9, 2.0 * 3);                         // k at balance, E*k at collapse
        Assert.Equal(ce + 0.01 * model.LastAuxLoss, train, 1e-5);
        Assert.Equal(ce, model.LastCrossEntropy, 1e-6);
        Assert.Equal($"cross-entropy {ce:F4} + 0.01 x aux {model.LastAuxLoss:F3} (balanced: 2)", model.LossNote);
        // Sampling runs through the cache and the whole-context path alike.
        var a = model.Generate(idx, 5, new Sampler(new SamplerOptions()), useCache: true);
        var b = model.Generate(idx, 5, new Sampler(new SamplerOptions()), useCache: false);
        Assert.Equal(a[0], b[0]);
    }

    /// <summary>
    /// The packed model (TQ2_0 ternary weights, Q8_K activations in QMatMul) against the fake-quantized training
    /// forward: equal up to the Q8_K requantization (BitLinearTests bounds it per layer); through 2 layers it stays
    /// under 2% of the logits' spread. Cached decoding of the packed model equals its parallel forward.
    /// </summary>
    [Fact]
    public void BitNet_packed_logits_follow_the_fake_quantized_forward_and_cached_decoding_equals_parallel()
    {
        var model = new BitNetGpt(new BitNetConfig(BlockSize: 16, VocabSize: 13, NLayer: 2, NHead: 2, NEmbd: 12), new Generator(9));
        var idx = Tensor.FromArray(Ids, [1, 11]);
        var targets = Tensor.FromArray(Ids.Skip(1).Append(0L).ToArray(), [1, 11]);
        model.Loss(idx, targets).Backward();
        Assert.All(model.Parameters(), p => Assert.True(p.Grad is not null && p.Grad.Abs().Sum().Item() > 0, $"{p.Name} got no gradient"));
        model.Eval();
        using var noGrad = GradMode.NoGrad();
        var fake = model.Logits(idx).ToDoubleArray();
        model.SetPacked(true);
        var packedT = model.Logits(idx);
        var packed = packedT.ToDoubleArray();
        double spread = fake.Max() - fake.Min(), worst = fake.Zip(packed, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst <= 0.02 * spread, $"packed vs fake-quantized logits: max difference {worst:E3}, spread {spread:E3}");
        using var cache = new ManagedTensor.Nn.KvCache(2, 1, 2, 16, 6, DType.F32, Device.Cpu);
        for (int n = 0; n < 11; n++)
            TestUtil.AssertClose(packedT.Narrow(1, n, 1), model.Forward(idx.Narrow(1, n, 1), cache), 1e-5, 1e-6, $"position {n}");
        model.SetPacked(false);
        TestUtil.AssertClose(fake, model.Logits(idx).ToDoubleArray(), 0, 0, "unpacked again");
    }

    [Fact]
    public void The_architectures_are_registered_and_refuse_top_k_above_the_expert_count()
    {
        Assert.Contains("moe", Architectures.Names);
        Assert.Contains("retnet", Architectures.Names);
        Assert.Contains("bitnet", Architectures.Names);
        var e = Assert.Throws<UserErrorException>(() => new ManagedTensor.Models.Training.TrainConfig { Arch = "moe", Experts = 4, TopK = 5 }.Validate());
        Assert.Contains("--top-k 5 is larger than --experts 4", e.Message);
    }
}
