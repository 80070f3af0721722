namespace ManagedTensor.Models.Generation;

/// <summary>How the next token is picked from the logits. Temperature 0 means greedy (argmax).</summary>
public sealed record SamplerOptions(
    float Temperature = 0f,
    int TopK = 0,                  // keep the K most likely tokens (0: all)
    float TopP = 1f,               // keep the smallest set whose probability reaches P (1: all)
    float RepetitionPenalty = 1f,  // CTRL-style: a seen token's logit is divided by it if positive, multiplied if negative
    ulong Seed = 42);

/// <summary>
/// Picks tokens: repetition penalty on the raw logits, then greedy, or softmax(logits / T) filtered by top-k and
/// top-p (nucleus) and drawn with a seeded xorshift generator (llama2.c's), so a seed reproduces a sample.
/// </summary>
public sealed class Sampler
{
    private readonly SamplerOptions _o;
    private ulong _state;

    public Sampler(SamplerOptions options)
    {
        if (options.Temperature < 0) throw new ArgumentOutOfRangeException(nameof(options), $"temperature {options.Temperature} must be >= 0");
        if (options.TopK < 0) throw new ArgumentOutOfRangeException(nameof(options), $"top-k {options.TopK} must be >= 0");
        if (options.TopP is <= 0 or > 1) throw new ArgumentOutOfRangeException(nameof(options), $"top-p {options.TopP} must be in (0, 1]");
        if (options.RepetitionPenalty <= 0) throw new ArgumentOutOfRangeException(nameof(options), $"repetition penalty {options.RepetitionPenalty} must be > 0");
        _o = options;
        _state = options.Seed == 0 ? 0x9E3779B97F4A7C15UL : options.Seed; // xorshift must not start at 0
    }

    /// <summary>llama2.c's random_f32: xorshift64*, top 24 bits as a float in [0, 1).</summary>
    private float NextFloat()
    {
        _state ^= _state >> 12; _state ^= _state << 25; _state ^= _state >> 27;
        uint r = (uint)((_state * 0x2545F4914F6CDD1DUL) >> 32);
        return (r >> 8) / 16777216f;
    }

    /// <summary>The next token given <paramref name="logits"/> (modified in place) and the tokens so far.</summary>
    public int Sample(Span<float> logits, IReadOnlyCollection<int> history)
    {
        if (_o.RepetitionPenalty != 1f)
            foreach (int t in history.Distinct())
                logits[t] = logits[t] > 0 ? logits[t] / _o.RepetitionPenalty : logits[t] * _o.RepetitionPenalty;

        if (_o.Temperature == 0f) return ArgMax(logits);

        // Candidates sorted by probability, cut by top-k then top-p, renormalized, and drawn.
        var idx = Enumerable.Range(0, logits.Length).ToArray();
        var l = logits.ToArray();
        Array.Sort(l.Select(v => -v).ToArray(), idx);
        int keep = _o.TopK > 0 ? Math.Min(_o.TopK, idx.Length) : idx.Length;
        float max = logits[idx[0]];
        var probs = new double[keep];
        double sum = 0;
        for (int i = 0; i < keep; i++) sum += probs[i] = Math.Exp((logits[idx[i]] - max) / _o.Temperature);
        double cum = 0;
        int n = 0;
        while (n < keep)
        {
            cum += probs[n++] / sum;
            if (cum >= _o.TopP) break;
        }
        double total = 0;
        for (int i = 0; i < n; i++) total += probs[i];
        double r = NextFloat() * total, acc = 0;
        for (int i = 0; i < n; i++)
        {
            acc += probs[i];
            if (r < acc) return idx[i];
        }
        return idx[n - 1];
    }

    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
