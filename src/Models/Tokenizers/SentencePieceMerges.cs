namespace ManagedTensor.Models.Tokenizers;

/// <summary>
/// sentencepiece's BPE merge loop (llama2.c's encode, step 3): repeatedly merge the adjacent pair of pieces whose
/// concatenation is a token with the highest score (ties: the leftmost pair), until no pair is a token.
/// llama2.c rescans the whole sequence for every merge, O(n^2) in the text's length (a 1 MB text never finishes).
/// Here, as sentencepiece's bpe_model.cc and llama.cpp's llm_tokenizer_spm do, the pieces form a linked list and
/// the candidate pairs wait in a priority queue keyed (score desc, left position asc): a merge joins two list
/// nodes and queues only the two pairs it creates, O(n log n) in all. Pairs that a merge broke stay in the queue
/// and are skipped when they come up (their nodes no longer hold those tokens side by side). The order of merges,
/// and so the output, is llama2.c's: the queue's best live pair is the rescan's best pair, since merging keeps the
/// pieces in order and a node keeps the position of its first piece.
/// </summary>
public static class SentencePieceMerges
{
    /// <param name="pieces">the initial tokens (characters and byte-fallback tokens)</param>
    /// <param name="merged">the token of the concatenation of two tokens' strings, or null when there is none</param>
    /// <param name="scores">each token's merge score; a pair scoring -inf or NaN is never merged (as llama2.c's strict &gt; against -inf)</param>
    public static List<int> Apply(List<int> pieces, Func<int, int, int?> merged, float[] scores)
    {
        int n = pieces.Count;
        var token = pieces.ToArray();
        var next = new int[n];  // next live node, -1 at the end
        var prev = new int[n];  // previous live node, -1 at the start
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; alive[i] = true; }

        // Candidate (left node, right node, their tokens, the merged token), best first: highest score, then leftmost.
        var queue = new PriorityQueue<(int Left, int Right, int LeftToken, int RightToken, int Merged), (float Score, int Left)>(
            Comparer<(float Score, int Left)>.Create((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left)));
        void Offer(int left, int right)
        {
            if (left < 0 || right < 0) return;
            if (merged(token[left], token[right]) is int id && scores[id] > float.NegativeInfinity)
                queue.Enqueue((left, right, token[left], token[right], id), (scores[id], left));
        }
        for (int i = 0; i + 1 < n; i++) Offer(i, i + 1);

        while (queue.TryDequeue(out var c, out _))
        {
            // Stale: a merge since took one of the nodes or changed what it holds.
            if (!alive[c.Left] || !alive[c.Right] || next[c.Left] != c.Right || token[c.Left] != c.LeftToken || token[c.Right] != c.RightToken) continue;
            token[c.Left] = c.Merged;                   // the left node takes the pair; the right one leaves the list
            alive[c.Right] = false;
            next[c.Left] = next[c.Right];
            if (next[c.Right] >= 0) prev[next[c.Right]] = c.Left;
            Offer(prev[c.Left], c.Left);
            Offer(c.Left, next[c.Left]);
        }

        var result = new List<int>(n);
        for (int i = n > 0 ? 0 : -1; i >= 0; i = next[i]) result.Add(token[i]);
        return result;
    }
}
