using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;

namespace ManagedTensor.Models;

/// <summary>
/// A causal language model that `mt train` can train and `mt sample` can decode, whatever its architecture
/// (GPT, Mamba, RWKV, ...). The trainer needs only
/// what is here: the parameters (it is a <see cref="Module"/>), the logits of every position of a batch with
/// autograd, and the dropout generator whose offset a checkpoint stores for an exact resume. Sampling needs
/// <see cref="Generate"/>, which each architecture writes with its own cached or recurrent form.
/// Each architecture is registered once in <see cref="Architectures"/>: its name, how its config follows
/// from the training flags, and its constructor.
/// </summary>
public abstract class TrainableLM : Module
{
    /// <summary>The name `mt train` knows it by ("gpt", "mamba", "rwkv").</summary>
    public abstract string Architecture { get; }

    public abstract int VocabSize { get; }

    /// <summary>
    /// What every architecture's constructor starts with: checks <paramref name="config"/> (ArgumentException naming the
    /// field) and keeps it, the device (the CPU when null) and a dropout generator seeded with <paramref name="dropoutSeed"/>.
    /// </summary>
    protected TrainableLM(IModelConfig config, Device? device, ulong dropoutSeed)
    {
        config.Validate();
        ConfigRecord = config;
        Device = device ?? Device.Cpu;
        DropoutGenerator = new Generator(dropoutSeed);
    }

    /// <summary>Where the weights live; ids go there too.</summary>
    public Device Device { get; }

    /// <summary>Draws every dropout mask; its offset is part of a checkpoint so a resume replays the same masks.</summary>
    public Generator DropoutGenerator { get; }

    /// <summary>The model's config record, written to the checkpoint as JSON (model_config).</summary>
    public IModelConfig ConfigRecord { get; }

    /// <summary>idx (B, T) token ids to logits (B, T, V), recorded for autograd.</summary>
    public abstract Tensor Logits(Tensor idx);

    /// <summary>The mean cross-entropy of the next-token predictions; targets (B, T), -1 ignored (nanoGPT).</summary>
    public virtual Tensor Loss(Tensor idx, Tensor targets)
    {
        if (!targets.Shape.AsSpan().SequenceEqual(idx.Shape))
            throw new ArgumentException($"{Architecture}: targets {targets.Describe()} must have the shape of the inputs {idx.Describe()}");
        return Functional.CrossEntropy(Logits(idx), targets, ignoreIndex: -1);
    }

    /// <summary>
    /// What the last training loss is made of beyond the cross-entropy, for the progress line (a mixture of experts:
    /// its load-balancing loss); null when the loss is the cross-entropy alone.
    /// </summary>
    public virtual string? LossNote => null;

    /// <summary>
    /// Continues each sequence of <paramref name="idx"/> (B, T) by <paramref name="maxNewTokens"/> tokens, sampled
    /// with <paramref name="sampler"/>; <paramref name="onToken"/> sees each new token of row 0. With
    /// <paramref name="useCache"/> each step runs only the new token (a KV cache or a recurrent state); without,
    /// every step runs the whole context through <see cref="Logits"/> (the reference the cached form must equal).
    /// </summary>
    public abstract List<int>[] Generate(Tensor idx, int maxNewTokens, Sampler sampler, Action<int>? onToken = null, bool useCache = true);
}

/// <summary>
/// A model whose decoding state is a fixed-size recurrent state (Mamba's SSM and conv states, RWKV's WKV and
/// token-shift states): sampling feeds the prompt and then each new token through <see cref="Step"/>, one token
/// at a time, at a cost per token that does not grow with the context.
/// </summary>
public abstract class RecurrentLM(IModelConfig config, Device? device, ulong dropoutSeed) : TrainableLM(config, device, dropoutSeed)
{
    /// <summary>The state before any token, for <paramref name="batch"/> sequences, on the model's device.</summary>
    public abstract RecurrentState NewState(int batch);

    /// <summary>One token per sequence, ids (B), through the recurrent form: logits (B, V); the state advances.</summary>
    public abstract Tensor Step(Tensor ids, RecurrentState state);

    /// <summary>The reference without a state: the whole context each step, through the parallel <see cref="TrainableLM.Logits"/>.</summary>
    private float[] FullContextLogits(List<int>[] rows)
    {
        int t = rows[0].Count;
        var ids = Tensor.FromArray(rows.SelectMany(r => r.Select(v => (long)v)).ToArray(), [rows.Length, t], Device);
        return Logits(ids).Narrow(1, t - 1, 1).To(Device.Cpu).ToArray<float>(); // (B, 1, V)
    }

    public override List<int>[] Generate(Tensor idx, int maxNewTokens, Sampler sampler, Action<int>? onToken = null, bool useCache = true)
    {
        if (idx.Rank != 2) throw new ArgumentException($"{Architecture}: prompt ids must be (B, T), got {idx.Describe()}");
        var rows = Enumerable.Range(0, idx.Shape[0]).Select(r => idx.Narrow(0, r, 1).Reshape(-1).ToDoubleArray().Select(v => (int)v).ToList()).ToArray();
        if (rows[0].Count == 0) throw new ArgumentException($"{Architecture}: generation needs at least one token to start from", nameof(idx));
        bool wasTraining = Training;
        Eval();
        using (GradMode.NoGrad())
        {
            var state = useCache ? NewState(rows.Length) : null;
            float[] logits = [];
            if (state is not null)
                for (int p = 0; p < rows[0].Count; p++) logits = StepLogits(rows, p, state);
            int v = VocabSize;
            for (int step = 0; step < maxNewTokens; step++)
            {
                if (state is null) logits = FullContextLogits(rows);
                for (int r = 0; r < rows.Length; r++)
                {
                    int next = sampler.Sample(logits.AsSpan(r * v, v), rows[r]);
                    rows[r].Add(next);
                    if (r == 0) onToken?.Invoke(next);
                }
                if (state is not null && step + 1 < maxNewTokens) logits = StepLogits(rows, rows[0].Count - 1, state);
            }
        }
        if (wasTraining) Train();
        return rows;
    }

    private float[] StepLogits(List<int>[] rows, int position, RecurrentState state)
    {
        // No memory scope here: the state tensors made by the step must outlive it.
        var ids = Tensor.FromArray(rows.Select(r => (long)r[position]).ToArray(), [rows.Length], Device);
        return Step(ids, state).To(Device.Cpu).ToArray<float>(); // (B, V)
    }
}

/// <summary>
/// The per-layer tensors a recurrent model carries from one token to the next; each architecture names its own
/// (Mamba: conv window and SSM state; RWKV: previous token and WKV state). Updating a slot replaces its tensor.
/// </summary>
public sealed class RecurrentState(int batch, int layers, int slotsPerLayer)
{
    private readonly Tensor?[,] _slots = new Tensor?[layers, slotsPerLayer];

    public int Batch { get; } = batch;
    public int Layers { get; } = layers;

    public Tensor this[int layer, int slot]
    {
        get => _slots[layer, slot] ?? throw new InvalidOperationException($"recurrent state: layer {layer} slot {slot} was never set");
        set => _slots[layer, slot] = value.Detach();
    }
}
