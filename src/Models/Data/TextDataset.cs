namespace ManagedTensor.Models.Data;

public enum Split
{
    Train,
    Val,
}

/// <summary>
/// A token stream split once into train (first 90%) and val (last 10%), as nanoGPT's prepare.py does,
/// and sampled as nanoGPT's get_batch: each of the B rows starts at a uniform random offset i and holds
/// tokens [i, i + T) as input and [i + 1, i + T + 1) as target. Offsets come from a <see cref="Generator"/>,
/// so saving its (seed, offset) and restoring it replays the same batches.
/// </summary>
public sealed class TextDataset
{
    public TextDataset(int[] tokens, double trainFraction = 0.9)
    {
        if (trainFraction is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(trainFraction), trainFraction, "must be in (0, 1)");
        int n = (int)(tokens.Length * trainFraction);
        Train = tokens[..n];
        Val = tokens[n..];
    }

    public static TextDataset FromText(string text, ITokenizer tokenizer, double trainFraction = 0.9) =>
        new(tokenizer.Encode(text, bos: false).ToArray(), trainFraction);

    public int[] Train { get; }
    public int[] Val { get; }

    public int[] Tokens(Split split) => split == Split.Train ? Train : Val;

    /// <summary>
    /// Throws a <see cref="UserErrorException"/> unless both splits hold more than <paramref name="blockSize"/> tokens
    /// (a batch row is block + 1 consecutive tokens). Called before a model is built, so a too short text or an absurd
    /// --block-size is reported at once, not after allocating a model of that context.
    /// </summary>
    public void RequireLongerThan(int blockSize, string source)
    {
        foreach (var split in new[] { Split.Train, Split.Val })
        {
            int n = Tokens(split).Length;
            if (n <= blockSize)
                throw new UserErrorException(
                    $"{source}: the {split.ToString().ToLowerInvariant()} split ({(split == Split.Train ? "first 90%" : "last 10%")} of the text) has {n} tokens, " +
                    $"but a batch row needs --block-size {blockSize} + 1; use a longer text or a --block-size below {n}");
        }
    }

    /// <summary>Inputs x and targets y, both I64 of shape (B, T): y is x shifted left by one token.</summary>
    public (Tensor X, Tensor Y) GetBatch(Split split, int batchSize, int blockSize, Generator gen)
    {
        int[] data = Tokens(split);
        if (data.Length <= blockSize)
            throw new UserErrorException(
                $"the {split.ToString().ToLowerInvariant()} split has {data.Length} tokens, needs more than block size {blockSize}; use more text or a smaller --block-size");
        var x = new long[batchSize * blockSize]; // (B, T)
        var y = new long[batchSize * blockSize]; // (B, T)
        for (int b = 0; b < batchSize; b++)
        {
            int start = gen.NextInt(data.Length - blockSize);
            for (int t = 0; t < blockSize; t++)
            {
                x[b * blockSize + t] = data[start + t];
                y[b * blockSize + t] = data[start + t + 1];
            }
        }
        return (Tensor.FromArray(x, [batchSize, blockSize]), Tensor.FromArray(y, [batchSize, blockSize]));
    }
}
