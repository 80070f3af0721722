using ManagedTensor.Nn;

namespace ManagedTensor.Models;

/// <summary>
/// A language model that predicts the next token from the ones before it, with a KV cache: what sampling,
/// generation, chat and the benchmarks run, whatever the architecture (<see cref="GPT"/>, <see cref="Llama"/>).
/// A step feeds the new tokens at the positions after the cached ones and gets their logits; the cache is
/// the one <see cref="KvCache"/> type, which the caller resets or truncates (to rewrite a conversation
/// from some point, or to slide the context).
/// </summary>
public interface ICausalLM
{
    /// <summary>The architecture's name ("llama", "gpt2"), for messages.</summary>
    string Architecture { get; }

    /// <summary>Rows of the embedding and of the logits.</summary>
    int VocabSize { get; }

    /// <summary>The most positions the model attends over (the block size, the context length).</summary>
    int ContextLength { get; }

    /// <summary>Where the weights live; ids and caches go there too.</summary>
    Device Device { get; }

    /// <summary>An empty cache for <paramref name="batch"/> sequences of up to <paramref name="capacity"/> positions (0: the context length).</summary>
    KvCache NewCache(int batch = 1, int capacity = 0);

    /// <summary>
    /// Float32 logits of ids (B, T) at positions cache.Length, cache.Length + 1, ... (0, 1, ... without a cache):
    /// (B, 1, V) for the last position, (B, T, V) with <paramref name="allPositions"/>. The tokens join the cache.
    /// </summary>
    Tensor Forward(Tensor ids, KvCache? cache = null, bool allPositions = false);

    /// <summary>Scalar values in the weights (tied ones once, block formats counted by value).</summary>
    long WeightCount { get; }

    /// <summary>Bytes the weights take where they live (4.5 bits per value for Q4_0).</summary>
    long WeightBytes { get; }
}

public static class CausalLMExtensions
{
    /// <summary>
    /// Runs <paramref name="tokens"/> (one sequence) after the cached positions and returns the last token's logits on the
    /// host (V floats), with no autograd recording.
    /// </summary>
    public static float[] NextLogits(this ICausalLM model, ReadOnlySpan<int> tokens, KvCache cache)
    {
        if (tokens.Length == 0) throw new ArgumentException("no tokens to run", nameof(tokens));
        var ids = new long[tokens.Length];
        for (int i = 0; i < ids.Length; i++)
            ids[i] = (uint)tokens[i] < (uint)model.VocabSize ? tokens[i]
                : throw new ArgumentOutOfRangeException(nameof(tokens), $"token {tokens[i]} is outside the model's {model.VocabSize}-token vocabulary");
        using var noGrad = GradMode.NoGrad();
        using var scope = DeviceMemory.Scope();
        return model.Forward(Tensor.FromArray(ids, [1, ids.Length], model.Device), cache).To(Device.Cpu).To(DType.F32).ToArray<float>();
    }

    /// <summary>Scalar values and bytes of a module's parameters and buffers (a shared tensor once).</summary>
    public static (long Count, long Bytes) WeightSize(this Module module)
    {
        long count = 0, bytes = 0;
        foreach (var t in module.StateDict().Values)
        {
            count += t.Numel;
            bytes += t.DType.IsQuantized() ? t.DType.ByteCount(t.Numel) : (long)t.Numel * t.DType.SizeOf();
        }
        return (count, bytes);
    }
}
