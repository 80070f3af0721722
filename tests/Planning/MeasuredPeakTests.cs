using ManagedTensor.Models;
using ManagedTensor.Models.Planning;
using ManagedTensor.Nn;
using Xunit;
using Xunit.Abstractions;

namespace ManagedTensor.Tests.Planning;

/// <summary>
/// `mt plan`'s prediction against the allocator's measured peak of real training steps on ilgpu-cpu (whose caching
/// allocator counts every tensor, as on a GPU): GPT and Llama, batch and sequence varied, checkpointing on and off,
/// gradient accumulation, frozen Q4_0 matrices (QLoRA's base without adapters: the embedding and norms train), LoRA and QLoRA
/// (NF4) steps as `mt finetune` runs them, and GPT, Llama (checkpointed too), LoRA and QLoRA steps under bf16 autocast.
/// Each prediction must be within 10% of the measurement. Thirteen recipes, at the smallest shapes that still vary each part
/// (a GPT step on ILGPU's CPU accelerator costs tens of seconds: CI's 15-minute budget holds no more).
/// </summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public class MeasuredPeakTests(ITestOutputHelper log)
{
    private static readonly GptConfig Gpt = new(BlockSize: 32, VocabSize: 64, NLayer: 2, NHead: 2, NEmbd: 32, Dropout: 0, Bias: true);
    private static readonly LlamaConfig Llama = new(Dim: 32, HiddenDim: 64, NLayers: 2, NHeads: 4, NKvHeads: 2, VocabSize: 64, SeqLen: 32);

    private static (Tensor X, Tensor Y) Batch(int b, int t, int vocab) =>
        (Tensor.FromArray(Enumerable.Range(0, b * t).Select(i => (long)(i * 7 % vocab)).ToArray(), [b, t]),
         Tensor.FromArray(Enumerable.Range(0, b * t).Select(i => (long)((i * 5 + 1) % vocab)).ToArray(), [b, t]));

    /// <summary>
    /// Measured peaks by recipe: a step on ilgpu-cpu takes seconds, and the float32 steps that Autocast_step compares with
    /// are the same steps as Gpt_step's and Llama_step's first cases (same model, seed, batch and ops), so each runs once.
    /// </summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<long>> Measured = new();

    private static long MeasureOnce(string recipe, Func<long> measure) => Measured.GetOrAdd(recipe, _ => new Lazy<long>(measure)).Value;

    private static string GptRecipe(int batch, int seq, bool checkpointing = false, int gradAccum = 1) =>
        $"gpt B={batch} T={seq} checkpointing={checkpointing} accum={gradAccum}";

    private static string LlamaRecipe(int batch, int seq, bool checkpointing = false, bool q4Matrices = false, int gradAccum = 1) =>
        $"llama B={batch} T={seq} accum={gradAccum} checkpointing={checkpointing} q4_0={q4Matrices}";

    private void AssertWithin10Percent(string what, long measured, MemoryPlan plan)
    {
        double ratio = (double)plan.PeakBytes / measured;
        log.WriteLine($"{what}: measured {measured:N0} B, predicted {plan.PeakBytes:N0} B ({ratio:F3}); " + string.Join("; ", plan.Parts.Select(p => $"{p.Name} {p.Bytes:N0}")));
        Assert.True(Math.Abs(ratio - 1) <= 0.10, $"{what}: predicted {plan.PeakBytes:N0} B vs measured {measured:N0} B (x{ratio:F3}); parts: " +
            string.Join("; ", plan.Parts.Select(p => $"{p.Name} {p.Bytes:N0}")));
    }

    [Theory]
    [InlineData(2, 16, false, 1)]
    public void Gpt_step(int batch, int seq, bool checkpointing, int gradAccum)
    {
        var d = Device.IlgpuCpu;
        var (x, y) = Batch(batch, seq, Gpt.VocabSize);
        long measured = MeasureOnce(GptRecipe(batch, seq, checkpointing, gradAccum), () =>
            StepPeak.Measure(d, () => new GPT(Gpt, new Generator(1), d) { CheckpointActivations = checkpointing },
                m => ((GPT)m).Loss(x.To(d), y.To(d)), gradAccum));
        var plan = MemoryPlanner.Predict(ModelShape.Of(Gpt), new PlanRecipe { Batch = batch, Seq = seq, Checkpointing = checkpointing, GradAccum = gradAccum });
        AssertWithin10Percent(GptRecipe(batch, seq, checkpointing, gradAccum), measured, plan);
    }

    [Theory]
    [InlineData(2, 16, false, false, 1)]
    [InlineData(2, 16, true, false, 1)]
    [InlineData(2, 16, false, true, 1)]
    [InlineData(4, 8, true, false, 1)]
    [InlineData(2, 8, false, false, 2)]
    public void Llama_step(int batch, int seq, bool checkpointing, bool q4Matrices, int gradAccum)
    {
        var d = Device.IlgpuCpu;
        var (x, y) = Batch(batch, seq, Llama.VocabSize);
        ManagedTensor.Models.Llama Make()
        {
            var model = ManagedTensor.Models.Llama.Create(Llama, new Generator(1), d);
            if (q4Matrices)
            {
                var weights = model.StateDict().ToDictionary(kv => kv.Key, kv =>
                    kv.Value.Rank == 2 && kv.Key != "model.embed_tokens.weight" ? kv.Value.Detach().To(DType.Q4_0) : kv.Value.Detach());
                model = new ManagedTensor.Models.Llama(Llama, weights, d);
            }
            model.CheckpointActivations = checkpointing;
            return model;
        }
        long measured = MeasureOnce(LlamaRecipe(batch, seq, checkpointing, q4Matrices, gradAccum), () =>
            StepPeak.Measure(d, Make, m => ((ManagedTensor.Models.Llama)m).Forward(x.To(d), y.To(d)).Loss, gradAccum));
        var plan = MemoryPlanner.Predict(ModelShape.Of(Llama, tied: true),
            new PlanRecipe { Batch = batch, Seq = seq, Checkpointing = checkpointing, GradAccum = gradAccum, MatrixFormat = q4Matrices ? DType.Q4_0 : DType.F32 });
        AssertWithin10Percent(LlamaRecipe(batch, seq, checkpointing, q4Matrices, gradAccum), measured, plan);
    }

    // QLoRA's NF4 packs 64 values a block, so every Linear's in-features must be a multiple of 64 to be quantized.
    private static readonly LlamaConfig LlamaNf4 = new(Dim: 64, HiddenDim: 64, NLayers: 2, NHeads: 4, NKvHeads: 2, VocabSize: 64, SeqLen: 32);

    /// <summary>
    /// LoRA (float32 base) and QLoRA (NF4 base through QMatMul) as `mt finetune` sets them up (FinetuneTrainer): the
    /// base quantized first, then adapters r=4 on every Linear (all-linear), everything else frozen, dropout on the
    /// adapters' input as its default 0.05; AdamW over the adapters only (it keeps no state for frozen tensors).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Lora_step(bool nf4) => LoraStep(nf4, autocast: null);

    /// <summary>
    /// The LoRA step (float32 base) and the QLoRA step (NF4 base) under bf16 autocast, as `mt finetune --autocast bf16`
    /// runs them: QMatMul casts its input to 16 bits and returns a 16-bit product, like MatMul.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Lora_step_under_bf16_autocast(bool nf4) => LoraStep(nf4, autocast: DType.BF16);

    private void LoraStep(bool nf4, DType? autocast)
    {
        const int batch = 2, seq = 8, rank = 4;
        var cfg = nf4 ? LlamaNf4 : Llama;
        var d = Device.IlgpuCpu;
        var (x, y) = Batch(batch, seq, cfg.VocabSize);
        ManagedTensor.Models.Llama Make()
        {
            var model = ManagedTensor.Models.Llama.Create(cfg, new Generator(1), d);
            if (nf4) Assert.Empty(Lora.QuantizeLinears(model, DType.NF4).Skipped);
            Lora.Apply(model, new LoraConfig(rank, 2 * rank, 0.05, [LoraConfig.AllLinear]), new Generator(2), new Generator(3));
            Lora.SetTraining(model, true);
            return model;
        }
        long measured = StepPeak.Measure(d, Make, m =>
        {
            using (Autocast.Enable(autocast)) return ((ManagedTensor.Models.Llama)m).Forward(x.To(d), y.To(d)).Loss;
        });
        var plan = MemoryPlanner.Predict(ModelShape.Of(cfg, tied: true),
            new PlanRecipe { Batch = batch, Seq = seq, LoraRank = rank, LoraDropout = true, MatrixFormat = nf4 ? DType.NF4 : DType.F32, Autocast = autocast is not null });
        AssertWithin10Percent($"llama {(nf4 ? "QLoRA (NF4)" : "LoRA")} r={rank} B={batch} T={seq}{(autocast is null ? "" : " bf16 autocast")}", measured, plan);
    }

    /// <summary>
    /// bf16 autocast (as `mt train --autocast bf16` runs the loss): matmul and attention outputs 16-bit, the residual stream
    /// and norms float32. The step must allocate less than the same step in float32 (activations are the bulk of it at
    /// these shapes), and `mt plan --autocast` must predict it within 10%.
    /// </summary>
    [Theory]
    [InlineData("gpt", false)]
    [InlineData("llama", false)]
    [InlineData("llama", true)]
    public void Autocast_step(string family, bool checkpointing)
    {
        const int batch = 2, seq = 16;
        var d = Device.IlgpuCpu;
        bool gpt = family == "gpt";
        var (x, y) = Batch(batch, seq, gpt ? Gpt.VocabSize : Llama.VocabSize);
        Module Make()
        {
            if (gpt) return new GPT(Gpt, new Generator(1), d) { CheckpointActivations = checkpointing };
            var llama = ManagedTensor.Models.Llama.Create(Llama, new Generator(1), d);
            llama.CheckpointActivations = checkpointing;
            return llama;
        }
        Tensor Loss(Module m) => gpt ? ((GPT)m).Loss(x.To(d), y.To(d)) : ((ManagedTensor.Models.Llama)m).Forward(x.To(d), y.To(d)).Loss;
        string recipe = gpt ? GptRecipe(batch, seq, checkpointing) : LlamaRecipe(batch, seq, checkpointing);
        long plain = MeasureOnce(recipe, () => StepPeak.Measure(d, Make, Loss)); // Gpt_step's and Llama_step's cases at 2 x 16
        long bf16 = StepPeak.Measure(d, Make, m =>
        {
            using (Autocast.Enable(DType.BF16)) return Loss(m);
        });
        log.WriteLine($"{recipe}: measured peak {plain:N0} B in float32, {bf16:N0} B under bf16 autocast ({(double)bf16 / plain:F3})");
        Assert.True(bf16 < plain, $"autocast step {bf16:N0} B is not below the float32 step {plain:N0} B");
        var shape = gpt ? ModelShape.Of(Gpt) : ModelShape.Of(Llama, tied: true);
        AssertWithin10Percent($"{recipe} bf16 autocast", bf16, MemoryPlanner.Predict(shape, new PlanRecipe { Batch = batch, Seq = seq, Checkpointing = checkpointing, Autocast = true }));
    }
}
