using System.Text.Json;
using ManagedTensor.Models.Generation;

namespace ManagedTensor.Models.Data;

/// <summary>One instruction example as tokens, with the positions whose token is part of a response (trained on).</summary>
public sealed record Example(int[] Tokens, bool[] IsResponse);

/// <summary>
/// What `mt finetune` trains on: a plain-text file (random windows of its tokens, as `mt train`: every next token is a
/// target), or a JSONL instruction file, one example a line, either
///   {"instruction": ..., "input": ... (optional), "output": ...}    (Alpaca's fields: the user's turn is the instruction,
///                                                                  a blank line and the input; the reply is the output)
///   {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}
/// rendered with the model's chat template. Only response tokens are targets (each assistant reply and the EOS after it);
/// the prompt's targets are -1, which the cross-entropy ignores, so the loss is the response's alone. The first 90% of the
/// examples train, the rest validate.
/// </summary>
public sealed class FinetuneData
{
    private readonly TextDataset? _text;
    private readonly Example[] _train = [], _val = [];

    private FinetuneData(TextDataset text) => _text = text;

    private FinetuneData(Example[] train, Example[] val)
    {
        _train = train;
        _val = val;
    }

    /// <summary>Whether the file is read as JSONL instructions (.jsonl, or a first non-blank character '{').</summary>
    public bool Instructions => _text is null;

    /// <summary>Tokens (plain text) or examples (JSONL) in each split, for the start line.</summary>
    public string Describe() => _text is { } t
        ? $"{t.Train.Length:N0} train / {t.Val.Length:N0} val tokens of plain text"
        : $"{_train.Length:N0} train / {_val.Length:N0} val instruction examples ({_train.Sum(e => e.IsResponse.Count(r => r)):N0} train response tokens)";

    /// <summary>
    /// Reads <paramref name="path"/>. Instruction examples with no response token among their first
    /// <paramref name="blockSize"/> + 1 tokens (a prompt longer than the block) have nothing to train on and are dropped
    /// (<see cref="Dropped"/> counts them).
    /// </summary>
    public static FinetuneData Load(string path, ITokenizer tokenizer, ChatFormat format, int blockSize)
    {
        string text = File.ReadAllText(path);
        if (text.Length == 0) throw new UserErrorException($"--data {path}: the file is empty");
        bool jsonl = path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || text.TrimStart().StartsWith('{');
        if (!jsonl) return new FinetuneData(new TextDataset(EncodeByLine(text, tokenizer)));
        var all = ParseJsonl(path, text).Select(m => Render(m, tokenizer, format)).ToList();
        var examples = all.Where(e => e.IsResponse.Take(blockSize + 1).Skip(1).Any(r => r)).ToArray();
        if (examples.Length < 2) throw new UserErrorException($"--data {path}: {examples.Length} usable example(s) of {all.Count} (a response must start within --block-size {blockSize} tokens); a run needs at least 2 (one to train, one to validate)");
        int n = Math.Max(1, (int)(examples.Length * 0.9));
        if (n == examples.Length) n--;
        return new FinetuneData(examples[..n], examples[n..]) { Dropped = all.Count - examples.Length };
    }

    /// <summary>Instruction examples left out because no response token fits in the block.</summary>
    public int Dropped { get; private init; }

    /// <summary>
    /// Plain text tokenized a line at a time (each line with its newline), so a sentencepiece vocabulary adds its
    /// dummy-prefix space at each line start. This began as a workaround (llama2.c's merge loop was quadratic in the
    /// string); since <see cref="Tokenizers.SentencePieceMerges"/> the whole text encodes in one call too, but into other
    /// tokens (one dummy prefix, merges across line starts), so the split stays: it is what earlier runs trained on.
    /// </summary>
    public static int[] EncodeByLine(string text, ITokenizer tokenizer)
    {
        var tokens = new List<int>(text.Length / 2);
        for (int start = 0; start < text.Length;)
        {
            int end = text.IndexOf('\n', start);
            end = end < 0 ? text.Length : end + 1;
            tokens.AddRange(tokenizer.Encode(text[start..end], bos: false));
            start = end;
        }
        return [.. tokens];
    }

    /// <summary>The messages of each line; a line without the fields needed is an error naming its line number.</summary>
    public static List<List<ChatMessage>> ParseJsonl(string path, string text)
    {
        var result = new List<List<ChatMessage>>();
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].Trim();
            if (line.Length == 0) continue;
            string where = $"--data {path} line {i + 1}";
            JsonElement e;
            try
            {
                e = JsonDocument.Parse(line).RootElement;
            }
            catch (JsonException x)
            {
                throw new UserErrorException($"{where}: not valid JSON ({x.Message})");
            }
            if (e.ValueKind != JsonValueKind.Object) throw new UserErrorException($"{where}: expected a JSON object, got {e.ValueKind}");
            string? Str(string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            if (e.TryGetProperty("messages", out var msgs))
            {
                if (msgs.ValueKind != JsonValueKind.Array) throw new UserErrorException($"{where}: \"messages\" must be a list of {{\"role\", \"content\"}}");
                var list = new List<ChatMessage>();
                int k = 0;
                foreach (var m in msgs.EnumerateArray())
                {
                    string? role = m.ValueKind == JsonValueKind.Object && m.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
                    string? content = m.ValueKind == JsonValueKind.Object && m.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
                    if (role is null || content is null) throw new UserErrorException($"{where}: messages[{k}] needs string fields \"role\" and \"content\"");
                    list.Add(new ChatMessage(role, content));
                    k++;
                }
                if (!list.Any(m => m.Role == "assistant")) throw new UserErrorException($"{where}: \"messages\" has no \"assistant\" message to train on");
                result.Add(list);
                continue;
            }
            string? instruction = Str("instruction"), output = Str("output");
            if (instruction is null || output is null)
                throw new UserErrorException($"{where}: needs string fields \"instruction\" and \"output\" (\"input\" optional), or \"messages\"; " +
                                             $"found {(e.EnumerateObject().Any() ? string.Join(", ", e.EnumerateObject().Select(p => '"' + p.Name + '"')) : "no fields")}");
            string input = Str("input") ?? "";
            result.Add([ChatMessage.User(input.Length > 0 ? instruction + "\n\n" + input : instruction), ChatMessage.Assistant(output)]);
        }
        return result;
    }

    /// <summary>
    /// Renders a conversation with the template and tokenizes it piece by piece, so the boundary between prompt and
    /// response is exact: before each assistant message, the text up to its header (generation prompt) is prompt; the
    /// rest of the rendered message is response. EOS ends the example as part of the response, so the model learns to stop.
    /// </summary>
    public static Example Render(IReadOnlyList<ChatMessage> messages, ITokenizer tok, ChatFormat format)
    {
        string bos = tok.Bos >= 0 ? tok.TokenText(tok.Bos) : "", eos = tok.Eos >= 0 ? tok.TokenText(tok.Eos) : "";
        var tokens = new List<int>();
        var response = new List<bool>();
        if (tok.AddBos && tok.Bos >= 0) { tokens.Add(tok.Bos); response.Add(false); }
        string done = "";
        void Append(string piece, bool isResponse)
        {
            if (piece.Length == 0) return;
            foreach (int t in tok.Encode(piece, bos: false, parseSpecial: true))
            {
                if (t == tok.Bos && tokens.Count == 1 && tokens[0] == tok.Bos) continue; // the template wrote the BOS added above
                tokens.Add(t);
                response.Add(isResponse);
            }
        }
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i].Role != "assistant") continue;
            string prompt = ChatTemplates.Format(format, messages.Take(i).ToList(), addGenerationPrompt: true, bos, eos);
            string full = ChatTemplates.Format(format, messages.Take(i + 1).ToList(), addGenerationPrompt: false, bos, eos);
            // A template that changes the earlier text when a reply follows (none of the known ones) is split at the common prefix.
            int cut = CommonPrefix(prompt, full);
            Append(full[done.Length..Math.Max(done.Length, cut)], false);
            Append(full[Math.Max(done.Length, cut)..], true);
            done = full;
        }
        if (tok.Eos >= 0 && (tokens.Count == 0 || tokens[^1] != tok.Eos)) { tokens.Add(tok.Eos); response.Add(true); }
        return new Example([.. tokens], [.. response]);
    }

    private static int CommonPrefix(string a, string b)
    {
        int n = 0;
        while (n < a.Length && n < b.Length && a[n] == b[n]) n++;
        return n;
    }

    /// <summary>Fails unless a batch can be drawn: plain text longer than the block in both splits.</summary>
    public void RequireUsable(int blockSize, string source) => _text?.RequireLongerThan(blockSize, source);

    /// <summary>
    /// Inputs x and targets y (B, T), I64: for plain text, random windows (<see cref="TextDataset.GetBatch"/>); for
    /// instructions, random examples cut to T + 1 tokens, y[t] = token t + 1 where it is a response token, else -1, and
    /// rows padded with token 0 and target -1.
    /// </summary>
    public (Tensor X, Tensor Y) GetBatch(Split split, int batchSize, int blockSize, Generator gen)
    {
        if (_text is not null) return _text.GetBatch(split, batchSize, blockSize, gen);
        var examples = split == Split.Train ? _train : _val;
        var x = new long[batchSize * blockSize];
        var y = new long[batchSize * blockSize];
        Array.Fill(y, -1L);
        for (int b = 0; b < batchSize; b++)
        {
            var e = examples[gen.NextInt(examples.Length)];
            int n = Math.Min(e.Tokens.Length - 1, blockSize);
            for (int t = 0; t < n; t++)
            {
                x[b * blockSize + t] = e.Tokens[t];
                if (e.IsResponse[t + 1]) y[b * blockSize + t] = e.Tokens[t + 1];
            }
        }
        return (Tensor.FromArray(x, [batchSize, blockSize]), Tensor.FromArray(y, [batchSize, blockSize]));
    }
}
