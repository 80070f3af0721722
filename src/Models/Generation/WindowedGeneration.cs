using ManagedTensor.Nn;

namespace ManagedTensor.Models.Generation;

/// <summary>
/// nanoGPT's generate for any <see cref="ICausalLM"/>, over a batch of sequences: each step samples the next
/// token of every row from the logits of its last context-length tokens. With the cache (the default) the
/// prompt runs once and every later step runs only the new token; once a row fills the context, the window
/// slides and each step runs the whole window again (absolute positions, as GPT's, cannot be shifted in a
/// cache). Without it, every step runs the whole window (nanoGPT's way, the cache's reference).
/// </summary>
public static class WindowedGeneration
{
    /// <summary>
    /// Continues each row of <paramref name="idx"/> (B, T) by <paramref name="maxNewTokens"/> tokens; <paramref name="onToken"/>
    /// sees row 0's. Only the first <paramref name="sampledVocab"/> logits are sampled when given (a tokenizer with fewer
    /// tokens than the model's padded embedding).
    /// </summary>
    public static List<int>[] Generate(ICausalLM model, Tensor idx, int maxNewTokens, Sampler sampler, Action<int>? onToken = null, bool useCache = true, int sampledVocab = 0)
    {
        if (sampledVocab < 0 || sampledVocab > model.VocabSize)
            throw new ArgumentOutOfRangeException(nameof(sampledVocab), sampledVocab, $"generate: can sample among at most the model's {model.VocabSize} tokens");
        if (idx.Rank != 2) throw new ArgumentException($"generate: ids must be (B, T), got {idx.Describe()}");
        var rows = Enumerable.Range(0, idx.Shape[0]).Select(r => idx.Narrow(0, r, 1).Reshape(-1).ToDoubleArray().Select(v => (int)v).ToList()).ToArray();
        if (rows[0].Count == 0) throw new ArgumentException("generate: needs at least one token to start from", nameof(idx));
        var module = model as Module;
        bool wasTraining = module?.Training ?? false;
        module?.Eval();
        int window = model.ContextLength;
        using var cache = useCache ? model.NewCache(rows.Length) : null;
        using (GradMode.NoGrad())
        {
            for (int step = 0; step < maxNewTokens; step++)
            {
                // Only the newest token when the cache holds everything before it; else the whole window.
                bool incremental = cache is not null && cache.Length == rows[0].Count - 1 && cache.Length < window;
                if (!incremental) cache?.Reset();
                int t = incremental ? 1 : Math.Min(rows[0].Count, window);
                // A full window leaves no room for the next token: filling the cache would be wasted work.
                var stepCache = incremental || t < window ? cache : null;
                var context = rows.SelectMany(r => r.Skip(r.Count - t).Select(v => (long)v)).ToArray();
                using var scope = DeviceMemory.Scope();
                var logits = model.Forward(Tensor.FromArray(context, [rows.Length, t], model.Device), stepCache).To(Device.Cpu).ToArray<float>(); // (B, 1, V)
                int v = model.VocabSize, sampled = sampledVocab > 0 ? sampledVocab : v;
                for (int r = 0; r < rows.Length; r++)
                {
                    int next = sampler.Sample(logits.AsSpan(r * v, sampled), rows[r]);
                    rows[r].Add(next);
                    if (r == 0) onToken?.Invoke(next);
                }
            }
        }
        if (wasTraining) module?.Train();
        return rows;
    }
}
