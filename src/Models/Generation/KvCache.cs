namespace ManagedTensor.Models.Generation;

/// <summary>
/// Keys and values of every past position, per layer: Keys[l] is (seq_len, kv_dim), row p written when
/// position p is decoded. Attention at position p reads rows 0..p, so each token costs O(p) instead of
/// recomputing the whole prefix.
/// </summary>
public sealed class KvCache
{
    public float[][] Keys { get; }
    public float[][] Values { get; }
    public int SeqLen { get; }

    public KvCache(int layers, int seqLen, int kvDim)
    {
        SeqLen = seqLen;
        Keys = new float[layers][];
        Values = new float[layers][];
        for (int l = 0; l < layers; l++)
        {
            Keys[l] = new float[(long)seqLen * kvDim];
            Values[l] = new float[(long)seqLen * kvDim];
        }
    }
}
