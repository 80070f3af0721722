using ManagedTensor.Models.Generation;

namespace ManagedTensor.Models;

/// <summary>
/// A Llama with its own KV cache, as generation and chat use it: run tokens at positions after the ones
/// cached (a prompt at once, then one token per step) and get the last token's logits. Two
/// implementations: <see cref="CachedLlama"/> (the span model on the CPU) and <see cref="DeviceLlama"/>
/// (tensor ops on any device).
/// </summary>
public interface ILlamaRunner : IDisposable
{
    LlamaConfig Config { get; }

    /// <summary>Positions the cache holds.</summary>
    int CacheLength { get; }

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions startPos, startPos + 1, ...; the cache must hold the
    /// positions before startPos (later ones are overwritten). Returns the last token's logits (vocab),
    /// valid until the next call.
    /// </summary>
    float[] Forward(ReadOnlySpan<int> tokens, int startPos);
}

/// <summary>The span model <see cref="Llama"/> with a <see cref="KvCache"/> of <paramref name="cacheLength"/> positions.</summary>
public sealed class CachedLlama(Llama model, int cacheLength) : ILlamaRunner
{
    private readonly KvCache _cache = model.NewCache(cacheLength);

    public Llama Model => model;
    public LlamaConfig Config => model.Config;
    public int CacheLength => _cache.SeqLen;
    public float[] Forward(ReadOnlySpan<int> tokens, int startPos) => model.Forward(tokens, startPos, _cache);
    public void Dispose() { }
}
