using ManagedTensor.Cpu;
using ManagedTensor.Models;
using ManagedTensor.Nn;
using ManagedTensor.Optim;
using Xunit;

namespace ManagedTensor.Tests.Autograd;

/// <summary>LoRA on nn.Linear: the update's value and gradients (float64, and through QMatMul on an NF4 base), merge, targets, optimizer state.</summary>
public class LoraTests
{
    /// <summary>A Linear (in -> out) over a random weight of <paramref name="dtype"/>, with an adapter whose B is random too (PEFT's zero B would hide A's gradient).</summary>
    private static Linear Adapted(int inF, int outF, int rank, DType dtype, DType? weightFormat = null)
    {
        var w = TestUtil.RandomTensor([outF, inF], 3, dtype == DType.F64 ? DType.F64 : DType.F32);
        var layer = new Linear(weightFormat is { } f ? w.To(f) : w);
        layer.AddLora(rank, alpha: 6, dropout: 0, new Generator(5), new Generator(6));
        using (GradMode.NoGrad()) layer.LoraB!.Weight.CopyFrom_(TestUtil.RandomTensor([outF, rank], 7, layer.LoraB.Weight.DType));
        return layer;
    }

    /// <summary>
    /// dL/dt for L = sum(y * wts) against central differences, for each tensor in <paramref name="tensors"/>, perturbed in
    /// place (the layer's own A and B, and the input).
    /// </summary>
    private static void CheckGradients<T>(Func<Tensor> forward, Tensor[] tensors, T h, double rtol, double atol) where T : unmanaged
    {
        var y0 = forward();
        var wts = TestUtil.RandomTensor(y0.Shape, 11, y0.DType);
        foreach (var t in tensors) t.Grad = null;
        (y0 * wts).Sum().Backward();
        double step = Convert.ToDouble(h);
        for (int k = 0; k < tensors.Length; k++)
        {
            var t = tensors[k];
            Assert.True(t.Grad is not null, $"tensor {k} {t.Describe()} got no gradient");
            var analytic = t.Grad!.ToDoubleArray();
            var data = t.Data<T>();
            var numeric = new double[data.Length];
            using (GradMode.NoGrad())
            {
                for (int i = 0; i < data.Length; i++)
                {
                    T saved = data[i];
                    data[i] = (T)Convert.ChangeType(Convert.ToDouble(saved) + step, typeof(T));
                    double plus = (forward() * wts).Sum().Item();
                    data[i] = (T)Convert.ChangeType(Convert.ToDouble(saved) - step, typeof(T));
                    double minus = (forward() * wts).Sum().Item();
                    data[i] = saved;
                    numeric[i] = (plus - minus) / (2 * step);
                }
            }
            TestUtil.AssertClose(numeric, analytic, rtol, atol, $"gradient of tensor {k} {t.Describe()}");
        }
    }

    [Fact]
    public void Lora_gradients_match_finite_differences_in_float64()
    {
        var layer = Adapted(5, 3, 2, DType.F64);
        var x = TestUtil.RandomTensor([4, 5], 12);
        x.RequiresGrad = true;
        layer.Weight.RequiresGrad = false; // the frozen base
        CheckGradients(() => layer.Forward(x), [x, layer.LoraA!.Weight, layer.LoraB!.Weight], 1e-6, 1e-6, 1e-8);
        Assert.Null(layer.Weight.Grad);
    }

    [Fact]
    public void Lora_forward_is_base_plus_scaled_BA_and_B_zero_starts_as_the_base()
    {
        var w = TestUtil.RandomTensor([3, 5], 3);
        var x = TestUtil.RandomTensor([2, 4, 5], 12);
        var layer = new Linear(w);
        var baseY = layer.Forward(x).ToDoubleArray();
        layer.AddLora(2, alpha: 6, dropout: 0, new Generator(5), new Generator(6));
        TestUtil.AssertClose(baseY, layer.Forward(x).ToDoubleArray(), 0, 0, "B = 0 (PEFT's init) adds nothing");
        using (GradMode.NoGrad()) layer.LoraB!.Weight.CopyFrom_(TestUtil.RandomTensor([3, 2], 7));
        var a = layer.LoraA!.Weight;
        Assert.Equal(new[] { 2, 5 }, a.Shape);
        Assert.All(a.ToDoubleArray(), v => Assert.InRange(Math.Abs(v), 0, 1 / Math.Sqrt(5))); // kaiming_uniform(a=sqrt 5)
        var expected = x.MatMul(w.MT) + x.MatMul(a.MT).MatMul(layer.LoraB.Weight.MT).MulScalar(6.0 / 2);
        TestUtil.AssertClose(expected, layer.Forward(x), 1e-12, 1e-12);
    }

    [Fact]
    public void Qlora_on_an_nf4_base_matches_the_dequantized_reference_and_finite_differences()
    {
        var layer = Adapted(64, 3, 2, DType.F32, DType.NF4);
        Assert.True(layer.Quantized);
        var x = TestUtil.RandomTensor([2, 64], 12, DType.F32);
        x.RequiresGrad = true;
        var wq = layer.Weight.To(DType.F32);
        var expected = x.Detach().MatMul(wq.MT) + x.Detach().MatMul(layer.LoraA!.Weight.MT).MatMul(layer.LoraB!.Weight.MT).MulScalar(3);
        TestUtil.AssertClose(expected, layer.Forward(x), 1e-4, 1e-4);
        CheckGradients(() => layer.Forward(x), [x, layer.LoraA.Weight, layer.LoraB.Weight], 1e-2f, 2e-2, 2e-3);
    }

    [Fact]
    public void Merge_gives_the_logits_of_base_plus_adapter_and_removes_the_adapter()
    {
        foreach (var format in new DType?[] { null, DType.NF4 })
        {
            var layer = Adapted(64, 5, 3, DType.F32, format);
            var x = TestUtil.RandomTensor([3, 64], 12, DType.F32);
            var before = layer.Forward(x);
            Lora.Merge(new ModuleList<Linear>([layer]));
            Assert.Null(layer.LoraA);
            Assert.Equal(DType.F32, layer.Weight.DType);                      // NF4: merged into a dequantized float copy
            Assert.DoesNotContain(layer.StateDict().Keys, k => k.Contains("lora"));
            TestUtil.AssertClose(before, layer.Forward(x), 1e-5, 1e-5, $"merged, base {format?.ToString() ?? "F32"}");
        }
    }

    private static ManagedTensor.Models.Llama TinyLlama() => ManagedTensor.Models.Llama.Create(new LlamaConfig(64, 64, 2, 4, 2, 32, 16), new Generator(1));

    [Fact]
    public void Targets_follow_peft_names_and_bad_recipes_are_refused_by_name()
    {
        var model = TinyLlama();
        var adapted = Lora.Apply(model, new LoraConfig(4, 8, 0, ["q_proj", "v_proj"]), new Generator(2), new Generator(3));
        Assert.Equal(["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"],
            adapted.Select(a => a.Name));
        Assert.Contains("model.layers.1.self_attn.v_proj.lora_B.weight", model.StateDict().Keys);
        Assert.Equal(14, Lora.Targets(TinyLlama(), [LoraConfig.AllLinear]).Count); // 7 per layer, never lm_head
        var e = Assert.Throws<ArgumentException>(() => Lora.Apply(TinyLlama(), new LoraConfig(4, 8, 0, ["qq_proj"]), new Generator(2), new Generator(3)));
        Assert.Contains("'qq_proj' matches no Linear", e.Message);
        Assert.Contains("q_proj", e.Message.Split("named")[1]);
        var r0 = Assert.Throws<ArgumentException>(() => Lora.Apply(TinyLlama(), new LoraConfig(0, 8, 0, ["q_proj"]), new Generator(2), new Generator(3)));
        Assert.Contains("rank r must be at least 1", r0.Message);
        var tied = TinyLlama();
        Lora.Apply(tied, new LoraConfig(2, 4, 0, ["lm_head"]), new Generator(2), new Generator(3));
        Assert.Contains("tied to the token embedding", Assert.Throws<ArgumentException>(() => Lora.Merge(tied)).Message);
    }

    [Fact]
    public void AdamW_holds_state_only_for_the_adapters_and_leaves_the_frozen_base_alone()
    {
        var model = TinyLlama();
        var baseWeight = model.Layers[0].Attention.Q.Weight.ToDoubleArray();
        Lora.Apply(model, new LoraConfig(4, 8, 0, ["q_proj", "v_proj"]), new Generator(2), new Generator(3));
        var opt = new AdamW(model.NamedParameters(), lr: 1e-2);
        var moments = opt.StateTensors().Select(kv => kv.Key).ToList();
        Assert.Equal(16, moments.Count); // 2 layers x 2 targets x (A, B) x (m, v)
        Assert.All(moments, k => Assert.Contains(".lora_", k));
        long trainable = 2 * ((4 * 64 + 64 * 4) + (4 * 64 + 32 * 4)); // q_proj 64 -> 64, v_proj 64 -> 32 (2 KV heads of 16)
        Assert.Equal(trainable, Lora.Trainable(model).Sum(p => (long)p.Tensor.Numel));
        Assert.Equal(2 * trainable, opt.StateTensors().Sum(kv => (long)kv.Value.Numel));
        var ids = Tensor.FromArray(new long[] { 1, 5, 9, 2, 7, 3 }, [1, 6]);
        var (_, loss) = model.Forward(ids, Tensor.FromArray(new long[] { 5, 9, 2, 7, 3, 1 }, [1, 6]));
        loss.Backward();
        opt.Step();
        Assert.Equal(baseWeight, model.Layers[0].Attention.Q.Weight.ToDoubleArray());
        Assert.Contains(model.Layers[0].Attention.Q.LoraB!.Weight.ToDoubleArray(), v => v != 0);
    }
}
