using ManagedTensor.Models;
using ManagedTensor.Nn;
using ManagedTensor.Optim;
using Xunit;

namespace ManagedTensor.Tests.Autograd;

/// <summary>
/// Mixed precision (<see cref="Autocast"/>, <see cref="GradScaler"/>): matmuls and attention compute in and return 16 bits
/// inside the scope, the float32-list ops cast 16-bit inputs up, master weights and their gradients stay float32, a small GPT's gradient stays within bf16 tolerance of the
/// float32 one, and the loss scaler skips an overflowed step, halves its scale and grows it after good steps.
/// </summary>
public sealed class AutocastTests
{
    private static Tensor Leaf(int[] shape, ulong seed)
    {
        var t = Tensor.Rand(shape, new Generator(seed), -1, 1);
        t.RequiresGrad = true;
        return t;
    }

    [Fact]
    public void A_bf16_matmul_returns_the_bf16_product_and_the_gradients_of_float32_leaves_stay_float32()
    {
        var a = Leaf([3, 5], 1);
        var b = Leaf([5, 7], 2);
        Tensor y;
        using (Autocast.Enable(DType.BF16)) y = a.MatMul(b);
        Assert.Equal(DType.BF16, y.DType); // as torch.autocast: the product stays 16-bit
        Tensor expected;
        using (GradMode.NoGrad()) expected = a.To(DType.BF16).MatMul(b.To(DType.BF16));
        Assert.Equal(expected.ToDoubleArray(), y.ToDoubleArray());
        Assert.NotEqual(a.MatMul(b).ToDoubleArray(), y.ToDoubleArray()); // the scope changed the numbers
        y.Sum().Backward();
        Assert.Equal(DType.F32, a.Grad!.DType);
        Assert.Equal(DType.F32, b.Grad!.DType);
        // d sum(a b) / d a = 1 b^T: the row sums of b, computed from bf16 values, so within bf16 rounding of the exact ones.
        var exact = b.Sum(1).ToDoubleArray();
        var da = a.Grad.ToDoubleArray();
        for (int i = 0; i < da.Length; i++) Assert.Equal(exact[i % 5], da[i], 0.05);
        // Outside the scope nothing is cast.
        Assert.Null(Autocast.DType);
    }

    [Fact]
    public void Bf16_attention_rounds_q_k_v_returns_bf16_and_gives_float32_gradients()
    {
        var q = Leaf([1, 2, 5, 4], 4);
        var k = Leaf([1, 1, 5, 4], 5);
        var v = Leaf([1, 1, 5, 4], 6);
        Tensor y;
        using (Autocast.Enable(DType.BF16)) y = Tensor.Attention(q, k, v, causal: true); // grouped-query: 2 heads read 1
        Assert.Equal(DType.BF16, y.DType);
        double[] Rounded(Tensor t) => t.To(DType.BF16).ToDoubleArray();
        Tensor expected;
        using (GradMode.NoGrad())
            expected = Tensor.Attention(q.To(DType.BF16).To(DType.F32), k.To(DType.BF16).To(DType.F32), v.To(DType.BF16).To(DType.F32), causal: true);
        Assert.Equal(Rounded(expected), y.ToDoubleArray());
        Assert.NotEqual(Tensor.Attention(q, k, v, causal: true).ToDoubleArray(), y.ToDoubleArray());
        y.Sum().Backward();
        Assert.All(new[] { q, k, v }, t => Assert.Equal(DType.F32, t.Grad!.DType));
    }

    [Fact]
    public void Float32_list_ops_cast_a_16_bit_input_up_under_autocast_and_activations_stay_16_bit()
    {
        var h = Tensor.Rand([2, 3, 8], new Generator(11), -1, 1).To(DType.BF16); // a 16-bit activation (a matmul's output)
        var w = Tensor.Ones([8]);
        var targets = Tensor.FromArray(new long[] { 1, 0, 7, 2, 5, 3 }, [2, 3]);
        using (Autocast.Enable(DType.BF16))
        {
            foreach (var (name, y) in new[] { ("softmax", h.Softmax()), ("log_softmax", h.LogSoftmax()), ("layer_norm", h.LayerNorm(w, null)),
                         ("rms_norm", h.RmsNorm(w)), ("cross_entropy", Tensor.CrossEntropy(h, targets)), ("exp", h.Exp()), ("rsqrt", h.Abs().AddScalar(1).Rsqrt()) })
                Assert.True(y.DType == DType.F32, $"{name} under autocast gave {y.DType}");
            // The float32 op on the widened values, bit for bit.
            Assert.Equal(h.To(DType.F32).Softmax().ToDoubleArray(), h.Softmax().ToDoubleArray());
            // Activations and the Linear (bias included) stay 16-bit.
            Assert.Equal(DType.BF16, h.Gelu().DType);
            Assert.Equal(DType.BF16, h.Silu().DType);
            var linear = new Linear(8, 4, bias: true, new Generator(12), Device.Cpu);
            Assert.Equal(DType.BF16, linear.Forward(h.To(DType.F32)).DType);
        }
        // Outside autocast a 16-bit tensor stays 16-bit, as in PyTorch.
        Assert.Equal(DType.BF16, h.Exp().DType);
    }

    [Fact]
    public void Float64_inputs_are_not_autocast_so_gradient_checks_keep_their_precision()
    {
        var a = Tensor.Rand([2, 3], new Generator(3), -1, 1, DType.F64);
        var b = Tensor.Rand([3, 2], new Generator(4), -1, 1, DType.F64);
        Tensor y;
        using (Autocast.Enable(DType.BF16)) y = a.MatMul(b);
        Assert.Equal(a.MatMul(b).ToDoubleArray(), y.ToDoubleArray());
    }

    /// <summary>Every parameter's gradient of <paramref name="loss"/>, checking master weights and gradients are float32.</summary>
    private static Dictionary<string, double[]> Grads(Module model, Func<Tensor> loss, DType? autocast, out double value)
    {
        var parameters = model.NamedParameters().ToList();
        foreach (var (_, p) in parameters) p.Grad = null;
        Tensor l;
        using (Autocast.Enable(autocast)) l = loss();
        Assert.Equal(DType.F32, l.DType);
        l.Backward();
        value = l.Item();
        foreach (var (name, p) in parameters)
        {
            Assert.True(p.DType == DType.F32, $"{name} is {p.DType}");
            Assert.True(p.Grad is { DType: DType.F32 }, $"{name}'s gradient is {p.Grad?.DType.ToString() ?? "missing"}");
        }
        return parameters.ToDictionary(p => p.Name, p => p.Tensor.Grad!.ToDoubleArray());
    }

    /// <summary>The bf16 autocast gradient of each parameter within 5% (of its norm) of the float32 one, and not equal to it.</summary>
    private static void AssertBf16GradientsClose(Module model, Func<Tensor> loss)
    {
        var f32 = Grads(model, loss, null, out double lossF32);
        var bf16 = Grads(model, loss, DType.BF16, out double lossBf16);
        Assert.Equal(lossF32, lossBf16, 0.02);   // bf16 keeps 8 bits of mantissa: a relative error of about 0.4% per rounding
        Assert.NotEqual(lossF32, lossBf16);      // and it did round
        foreach (var (name, g) in f32)
        {
            // Relative to the tensor's gradient norm: single elements near zero carry no relative precision in bf16.
            double norm = Math.Sqrt(g.Sum(v => v * v)), diff = Math.Sqrt(g.Zip(bf16[name], (u, v) => (u - v) * (u - v)).Sum());
            Assert.True(diff <= 0.05 * norm + 1e-6, $"{name}: |g_bf16 - g_f32| = {diff:G3}, |g_f32| = {norm:G3}");
        }
    }

    private static (Tensor X, Tensor Y) Tokens(int vocab) =>
        (Tensor.Rand([2, 8], new Generator(8), 0, vocab).To(DType.I64), Tensor.Rand([2, 8], new Generator(9), 0, vocab).To(DType.I64));

    [Fact]
    public void A_small_gpt_loss_under_bf16_autocast_has_the_float32_gradient_within_bf16_tolerance_and_float32_master_weights()
    {
        var model = new GPT(new GptConfig(BlockSize: 8, VocabSize: 17, NLayer: 2, NHead: 2, NEmbd: 16, Dropout: 0, Bias: true), new Generator(7));
        var (x, y) = Tokens(17);
        AssertBf16GradientsClose(model, () => model.Loss(x, y)); // QkvAttention, Linear, the tied head
    }

    [Fact]
    public void A_small_llama_loss_under_bf16_autocast_has_the_float32_gradient_within_bf16_tolerance()
    {
        var model = ManagedTensor.Models.Llama.Create(new LlamaConfig(32, 48, 2, 4, 2, 19, 8), new Generator(3));
        var (x, y) = Tokens(19);
        // Grouped-query Attention with RoPE, SwiGLU, RMSNorm, the head.
        AssertBf16GradientsClose(model, () => Functional.CrossEntropy(model.Forward(x, cache: null, allPositions: true), y));
    }

    [Fact]
    public void Checkpointed_blocks_recompute_under_the_forwards_autocast()
    {
        var model = new GPT(new GptConfig(BlockSize: 8, VocabSize: 17, NLayer: 2, NHead: 2, NEmbd: 16, Dropout: 0, Bias: false), new Generator(7));
        var (x, y) = Tokens(17);
        var plain = Grads(model, () => model.Loss(x, y), DType.BF16, out double lossPlain);
        model.CheckpointActivations = true;
        // The backward (and so the recomputation) runs after the autocast scope has closed: the block must restore it.
        var checkpointed = Grads(model, () => model.Loss(x, y), DType.BF16, out double lossCheckpointed);
        Assert.Equal(lossPlain, lossCheckpointed);
        foreach (var (name, g) in plain) Assert.True(g.SequenceEqual(checkpointed[name]), $"{name}: the recomputed block's gradient differs");
    }

    [Fact]
    public void Fp16_autocast_of_a_gpt_trains_on_float32_master_weights()
    {
        var cfg = new GptConfig(BlockSize: 8, VocabSize: 17, NLayer: 1, NHead: 2, NEmbd: 16, Dropout: 0, Bias: false);
        var model = new GPT(cfg, new Generator(7));
        var x = Tensor.Rand([2, 8], new Generator(8), 0, 17).To(DType.I64);
        var opt = new AdamW(model.NamedParameters(), 1e-2);
        var scaler = new GradScaler();
        double first = 0, last = 0;
        for (int step = 0; step < 4; step++)
        {
            Tensor loss;
            using (Autocast.Enable(DType.F16)) loss = model.Loss(x, x);
            loss.MulScalar(scaler.Scale).Backward();
            Assert.True(scaler.Unscale(model.Parameters()));
            opt.Step();
            opt.ZeroGrad();
            scaler.Update(stepped: true);
            if (step == 0) first = loss.Item();
            last = loss.Item();
        }
        Assert.True(last < first, $"loss {first} -> {last}");
        Assert.All(model.Parameters(), p => Assert.Equal(DType.F32, p.DType));
    }

    [Fact]
    public void The_grad_scaler_skips_an_overflowed_step_halves_its_scale_and_doubles_it_after_good_steps()
    {
        var w = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, [2, 2]);
        w.RequiresGrad = true;
        var opt = new AdamW([("w", w)], 0.1);
        var scaler = new GradScaler(initScale: 1e38, growthInterval: 3);
        // 1e38 times a gradient of 4 overflows float32: inf gradients (a forced overflow).
        w.Square().Sum().MulScalar(scaler.Scale).Backward();
        bool finite = scaler.Unscale([w]);
        Assert.False(finite);
        scaler.Update(stepped: false);
        Assert.Equal(5e37, scaler.Scale);
        Assert.Equal(0, opt.StepCount);
        Assert.Equal(new float[] { 1, 2, 3, 4 }, w.ToArray<float>());

        scaler.Restore(8, 0);
        for (int good = 1; good <= 3; good++)
        {
            w.Grad = null;
            w.Square().Sum().MulScalar(scaler.Scale).Backward();
            Assert.True(scaler.Unscale([w]));
            // Unscaled: d sum(w^2) / dw = 2 w, whatever the scale was.
            Assert.Equal(w.MulScalar(2).ToArray<float>(), w.Grad!.ToArray<float>());
            opt.Step();
            scaler.Update(stepped: true);
            Assert.Equal(good < 3 ? 8 : 16, scaler.Scale);
        }
        Assert.Equal(0, scaler.GoodSteps);
        Assert.Throws<ArgumentOutOfRangeException>(() => scaler.Restore(double.NaN, 0));
    }
}
