namespace ManagedTensor.Models.Whisper;

/// <summary>How to decode: beam width (1 = greedy), timestamps, language, and the longest transcript in tokens.</summary>
public sealed record DecodeOptions(int Beam = 1, bool Timestamps = false, string? Language = "en", int MaxTokens = 224)
{
    public void Validate()
    {
        if (Beam < 1 || Beam > 64) throw new UserErrorException($"--beam {Beam} must be in [1, 64]");
        if (MaxTokens < 1) throw new UserErrorException($"the token limit {MaxTokens} must be positive");
    }
}

/// <summary>
/// Choosing the transcript's tokens one at a time from the decoder's logits, as openai/whisper's decoding.py:
/// greedy (the most likely token each step) or beam search (the best <c>beam</c> partial transcripts by total log
/// probability; a finished one is ranked by its mean log probability per token, whisper's length_penalty=None).
/// Before a token is chosen, the logits pass Whisper's rules (<see cref="SuppressTokens"/>): special tokens other than
/// end-of-text and timestamps never appear in a transcript, and with timestamps the first token is a timestamp of at
/// most 1 s, timestamps come in pairs (end of one segment, start of the next) and never go back in time, and a
/// timestamp is forced when all timestamps together are more likely than any single text token.
/// </summary>
public static class WhisperSearch
{
    /// <summary>The transcript's tokens after <paramref name="prompt"/>, without the closing end-of-text; also their total log probability.</summary>
    public static (int[] Tokens, double LogProb) Decode(WhisperModel model, WhisperTokenizer tok, Tensor audio, int[] prompt, DecodeOptions o)
    {
        o.Validate();
        int max = Math.Min(o.MaxTokens, model.Config.MaxTargetPositions - prompt.Length);
        if (max < 1) throw new ArgumentException($"Whisper: a prompt of {prompt.Length} tokens leaves no room in {model.Config.MaxTargetPositions} positions");
        using var noGrad = GradMode.NoGrad();
        return o.Beam == 1 ? Greedy(model, tok, audio, prompt, o.Timestamps, max) : Beam(model, tok, audio, prompt, o.Timestamps, max, o.Beam);
    }

    private static (int[], double) Greedy(WhisperModel model, WhisperTokenizer tok, Tensor audio, int[] prompt, bool timestamps, int max)
    {
        using var state = model.StartDecoding(audio);
        var tokens = new List<int>();
        double total = 0;
        var logits = state.Step(Ids([prompt])).ToArray<float>();
        for (int step = 0; step < max; step++)
        {
            var logProbs = LogSoftmax(SuppressTokens(logits, tok, tokens, timestamps, Timestamps(model)));
            int next = ArgMax(logProbs);
            total += logProbs[next];
            if (next == tok.EndOfText) break;
            tokens.Add(next);
            if (step + 1 < max) logits = state.Step(Ids([[next]])).ToArray<float>();
        }
        return ([.. tokens], total);
    }

    private static (int[], double) Beam(WhisperModel model, WhisperTokenizer tok, Tensor audio, int[] prompt, bool timestamps, int max, int width)
    {
        using var state = model.StartDecoding(audio, width);
        int v = model.Config.VocabSize;
        var beams = Enumerable.Range(0, width).Select(_ => (Tokens: new List<int>(), LogProb: 0.0)).ToList();
        var finished = new List<(List<int> Tokens, double LogProb)>();
        var logits = state.Step(Ids(Enumerable.Repeat(prompt, width).ToArray())).ToArray<float>(); // (width, V)
        for (int step = 0; step < max && finished.Count < width; step++)
        {
            // Every live beam's best width + 1 continuations (one more than needed, in case one of them ends);
            // at the first step all beams are the same prompt, so only beam 0 proposes.
            var candidates = new List<(int From, int Token, double LogProb)>();
            for (int b = 0; b < (step == 0 ? 1 : beams.Count); b++)
            {
                var lp = LogSoftmax(SuppressTokens(logits.AsSpan(b * v, v).ToArray(), tok, beams[b].Tokens, timestamps, Timestamps(model)));
                foreach (int t in TopK(lp, width + 1)) candidates.Add((b, t, beams[b].LogProb + lp[t]));
            }
            var next = new List<(List<int> Tokens, double LogProb)>();
            var from = new List<int>();
            foreach (var c in candidates.OrderByDescending(c => c.LogProb))
            {
                if (c.Token == tok.EndOfText) { if (finished.Count < width) finished.Add((beams[c.From].Tokens, c.LogProb)); }
                else if (next.Count < width) { next.Add(([.. beams[c.From].Tokens, c.Token], c.LogProb)); from.Add(c.From); }
                if (next.Count == width && finished.Count >= width) break;
            }
            if (next.Count < width || step + 1 == max) { finished.AddRange(next); break; }
            beams = next;
            state.SelectRows([.. from]);
            logits = state.Step(Ids(beams.Select(b => new[] { b.Tokens[^1] }).ToArray())).ToArray<float>();
        }
        var best = finished.Count > 0 ? finished.MaxBy(f => f.LogProb / Math.Max(1, f.Tokens.Count + 1)) : beams[0];
        return ([.. best.Tokens], best.LogProb);
    }

    /// <summary>
    /// Whisper's logit rules for the next token after <paramref name="sampled"/> (the transcript so far, prompt excluded):
    /// suppressed tokens get -infinity. Only the first <paramref name="timestampCount"/> timestamps exist for the model's
    /// audio (one per encoder position, 20 ms: all 1501 for Whisper's 30 s; fewer for a model trained on shorter input).
    /// Returns <paramref name="logits"/>, changed in place.
    /// </summary>
    public static float[] SuppressTokens(float[] logits, WhisperTokenizer tok, IReadOnlyList<int> sampled, bool timestamps, int timestampCount = WhisperTokenizer.TimestampCount)
    {
        int ts = tok.TimestampBegin, end = Math.Min(logits.Length, ts + Math.Min(timestampCount, WhisperTokenizer.TimestampCount));
        for (int i = end; i < Math.Min(logits.Length, ts + WhisperTokenizer.TimestampCount); i++) logits[i] = float.NegativeInfinity;
        // Specials other than end-of-text: start of transcript, languages, tasks, no-timestamps, ... (and timestamps when off).
        for (int i = tok.EndOfText + 1; i < (timestamps ? ts : logits.Length); i++) logits[i] = float.NegativeInfinity;
        if (!timestamps) return logits;
        if (sampled.Count == 0)
        {
            // The first token is a timestamp, at most 1.0 s in (whisper's max_initial_timestamp).
            for (int i = 0; i < ts; i++) logits[i] = float.NegativeInfinity;
            for (int i = ts + (int)Math.Round(1.0 / WhisperTokenizer.TimePrecision) + 1; i < end; i++) logits[i] = float.NegativeInfinity;
            return logits;
        }
        bool last = tok.IsTimestamp(sampled[^1]), penultimate = sampled.Count < 2 || tok.IsTimestamp(sampled[^2]);
        if (last && penultimate) for (int i = ts; i < end; i++) logits[i] = float.NegativeInfinity;   // a pair is complete: text (or the end) next
        else if (last) for (int i = 0; i < tok.EndOfText; i++) logits[i] = float.NegativeInfinity;  // a segment ended: the next one's start (or the end)
        if (sampled.LastOrDefault(tok.IsTimestamp, -1) is int lastTime and >= 0)
        {
            // Time never goes back; a segment's end must lie after its start (no empty segment to loop on), the next
            // segment's start may equal the previous end.
            int limit = last && !penultimate ? lastTime : lastTime + 1;
            for (int i = ts; i < Math.Min(end, limit); i++) logits[i] = float.NegativeInfinity;
        }
        // When the timestamps together outweigh the best text token, take a timestamp.
        var lp = LogSoftmax((float[])logits.Clone());
        double tsMass = LogSumExp(lp.AsSpan(ts, end - ts)), textBest = lp.AsSpan(0, ts).ToArray().Max();
        if (tsMass > textBest) for (int i = 0; i < ts; i++) logits[i] = float.NegativeInfinity;
        return logits;
    }

    /// <summary>
    /// Segments from a transcript with timestamps: each &lt;|t0|&gt; text &lt;|t1|&gt; is one segment, shifted by
    /// <paramref name="offset"/> seconds; text after the last timestamp ends at <paramref name="chunkEnd"/>.
    /// </summary>
    public static List<Segment> Segments(WhisperTokenizer tok, IReadOnlyList<int> tokens, double offset, double chunkEnd)
    {
        var segments = new List<Segment>();
        double? start = null;
        var text = new List<int>();
        foreach (int t in tokens)
        {
            if (!tok.IsTimestamp(t)) { text.Add(t); continue; }
            if (start is null || text.Count == 0) { start = tok.TimeOf(t); continue; }
            segments.Add(new Segment(offset + start.Value, offset + tok.TimeOf(t), tok.DecodeText(text)));
            text.Clear();
            start = null;
        }
        if (text.Count > 0) segments.Add(new Segment(offset + (start ?? 0), Math.Max(offset + (start ?? 0), chunkEnd), tok.DecodeText(text)));
        return segments;
    }

    /// <summary>Timestamps 0 .. max_source_positions x 20 ms: the model's audio length (1501 for Whisper's 30 s).</summary>
    private static int Timestamps(WhisperModel model) => model.Config.MaxSourcePositions + 1;

    private static Tensor Ids(int[][] rows) =>
        Tensor.FromArray(rows.SelectMany(r => r.Select(t => (long)t)).ToArray(), [rows.Length, rows[0].Length]);

    private static double[] LogSoftmax(float[] logits)
    {
        double max = logits.Max();
        double lse = max + Math.Log(logits.Sum(x => Math.Exp(x - max)));
        return logits.Select(x => x - lse).ToArray();
    }

    private static double LogSumExp(ReadOnlySpan<double> x)
    {
        double max = double.NegativeInfinity;
        foreach (var v in x) max = Math.Max(max, v);
        if (double.IsNegativeInfinity(max)) return max;
        double sum = 0;
        foreach (var v in x) sum += Math.Exp(v - max);
        return max + Math.Log(sum);
    }

    private static int ArgMax(double[] x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    /// <summary>The indices of the k largest finite values, best first (one pass, insertion into a k-long list).</summary>
    private static List<int> TopK(double[] x, int k)
    {
        var top = new List<int>(k + 1);
        for (int i = 0; i < x.Length; i++)
        {
            if (double.IsNegativeInfinity(x[i]) || (top.Count == k && x[i] <= x[top[^1]])) continue;
            int at = top.Count;
            while (at > 0 && x[top[at - 1]] < x[i]) at--;
            top.Insert(at, i);
            if (top.Count > k) top.RemoveAt(k);
        }
        return top;
    }
}

/// <summary>A piece of a transcript with its time span in seconds.</summary>
public sealed record Segment(double Start, double End, string Text);
