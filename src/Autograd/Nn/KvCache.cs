namespace ManagedTensor.Nn;

/// <summary>
/// The keys and values of the positions a model has already seen, kept on the model's device so that
/// generation runs each new token once instead of re-running the whole context (what nanoGPT's
/// generate does). One <see cref="Layer"/> per attention layer: (B, H, Capacity, head size) buffers,
/// the first <see cref="Length"/> positions filled. Attention reads the filled positions in place, as
/// views of the buffers (<see cref="Tensor.Attention"/> takes strided k and v; with one new token, its
/// decode path: a split-KV kernel on the GPU). The one cache type of every model (GPT, Llama).
/// </summary>
public sealed class KvCache : IDisposable
{
    public KvCache(int layers, int batch, int heads, int capacity, int headSize, DType dtype, Device device)
    {
        if (layers <= 0 || batch <= 0 || heads <= 0 || capacity <= 0 || headSize <= 0)
            throw new ArgumentException($"KV cache: every size must be positive (layers {layers}, batch {batch}, heads {heads}, capacity {capacity}, head size {headSize})");
        Capacity = capacity;
        Layers = Enumerable.Range(0, layers).Select(_ => new Layer(this, [batch, heads, capacity, headSize], dtype, device)).ToArray();
    }

    public Layer[] Layers { get; }
    public int Capacity { get; }

    /// <summary>Positions stored so far (the position of the next token).</summary>
    public int Length { get; private set; }

    /// <summary>Forgets every position (the buffers stay allocated for reuse).</summary>
    public void Reset() => Length = 0;

    /// <summary>Keeps the first <paramref name="length"/> positions; later ones are overwritten by what comes next.</summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length) throw new ArgumentOutOfRangeException(nameof(length), $"KV cache: cannot keep {length} of {Length} positions");
        Length = length;
    }

    /// <summary>Called by the model after all layers took the <paramref name="tokens"/> new positions.</summary>
    public void Advance(int tokens)
    {
        if (Length + tokens > Capacity) throw new InvalidOperationException($"KV cache: {Length} + {tokens} positions exceed its capacity {Capacity}");
        Length += tokens;
    }

    /// <summary>
    /// Row b of every layer takes what row <paramref name="rows"/>[b] held (beam search: each beam continues the
    /// hypothesis it was extended from; a row may be copied to several).
    /// </summary>
    public void SelectRows(int[] rows)
    {
        foreach (var l in Layers) l.SelectRows(rows);
    }

    public void Dispose()
    {
        foreach (var l in Layers) l.Dispose();
    }

    /// <summary>One attention layer's keys and values.</summary>
    public sealed class Layer : IDisposable
    {
        private readonly KvCache _owner;
        private readonly Tensor _keys, _values; // (B, H, Capacity, hs)

        internal Layer(KvCache owner, int[] shape, DType dtype, Device device)
        {
            _owner = owner;
            _keys = Tensor.Zeros(shape, dtype, device);
            _values = Tensor.Zeros(shape, dtype, device);
        }

        /// <summary>Positions stored before the ones being added (the position of the first new token).</summary>
        public int Length => _owner.Length;

        /// <summary>The stored keys, (B, H, Length, hs): a view of the buffer, no copy.</summary>
        public Tensor Keys => _keys.Narrow(2, 0, _owner.Length);

        /// <summary>The stored values, (B, H, Length, hs): a view of the buffer, no copy.</summary>
        public Tensor Values => _values.Narrow(2, 0, _owner.Length);

        /// <summary>
        /// Writes the new positions' k and v (B, H, T, hs) after the stored ones and returns all keys and
        /// values so far, (B, H, Length + T, hs). The cache's Length moves when the model calls Advance.
        /// </summary>
        public (Tensor Keys, Tensor Values) Append(Tensor k, Tensor v)
        {
            int start = _owner.Length, t = k.Shape[2];
            if (!k.Shape.AsSpan().SequenceEqual(v.Shape) || k.Rank != 4 || k.Shape[0] != _keys.Shape[0] || k.Shape[1] != _keys.Shape[1] || k.Shape[3] != _keys.Shape[3])
                throw new ArgumentException($"KV cache: k {k.Describe()} and v {v.Describe()} must be (B, H, T, hs) with B, H, hs of the cache {_keys.Describe()}");
            if (start + t > _owner.Capacity)
                throw new ArgumentException($"KV cache: positions {start}..{start + t - 1} go beyond its capacity {_owner.Capacity}");
            _keys.Narrow(2, start, t).CopyFrom_(k);
            _values.Narrow(2, start, t).CopyFrom_(v);
            return (_keys.Narrow(2, 0, start + t), _values.Narrow(2, 0, start + t));
        }

        internal void SelectRows(int[] rows)
        {
            if (rows.Length != _keys.Shape[0] || rows.Any(r => (uint)r >= (uint)_keys.Shape[0]))
                throw new ArgumentException($"KV cache: rows [{string.Join(", ", rows)}] must give one row in 0..{_keys.Shape[0] - 1} for each of the {_keys.Shape[0]} rows");
            using var noGrad = GradMode.NoGrad();
            var index = Tensor.FromArray(rows.Select(r => (long)r).ToArray(), [rows.Length], _keys.Device);
            _keys.CopyFrom_(_keys.IndexSelect(0, index));
            _values.CopyFrom_(_values.IndexSelect(0, index));
        }

        public void Dispose()
        {
            _keys.Dispose();
            _values.Dispose();
        }
    }
}
