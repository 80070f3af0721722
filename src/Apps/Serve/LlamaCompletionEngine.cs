using System.Runtime.InteropServices;
using System.Text;
using ManagedTensor.Models;
using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;

namespace ManagedTensor.Apps.Serve;

/// <summary>What `mt serve` loads: any model `mt generate` reads, where it runs, and how many sequences it serves at once.</summary>
public sealed record LlamaEngineOptions(
    string ModelPath,
    string? TokenizerPath = null,   // overrides the model's own (llama2.c: tokenizer.bin beside the model by default)
    string Template = "auto",       // chat format: the checkpoint's own, or one of ChatTemplates.Names
    Device? Device = null,          // where the weights go (default: the CPU)
    DType? FloatWeights = null,     // a Llama's float matrices converted to this (f16 for a GPU's tensor cores); block formats stay
    int ContextLength = 0,          // positions per sequence (0: the model's, at most ChatSession.DefaultMaxContext)
    int Parallel = 4);              // sequences at once, each a KV cache over the one copy of the weights

/// <summary>
/// The one adapter between the server and the model layer (ModelLoader, ICausalLM, KvCache, ChatTemplates, Sampler): the
/// only server file that names model code. It serves every model `mt generate` reads (Llama in any weight format, GPT-2,
/// `mt train gpt` checkpoints) on any device. The weights are loaded once; each slot is a KV cache over them, all made at
/// start, so the server's memory is fixed once it listens. Sequences are stepped one after another on the scheduler's thread.
/// </summary>
public sealed class LlamaCompletionEngine : ICompletionEngine
{
    private readonly ICausalLM _model;
    private readonly ITokenizer _tok;
    private readonly ChatFormat _format;
    private readonly int[] _stopTokens;
    private readonly List<KvCache> _caches;
    private readonly Stack<KvCache> _free;
    private readonly Lock _tokenizerLock = new(); // tokenizers are not documented as thread-safe; requests tokenize in parallel

    private LlamaCompletionEngine(string modelId, LoadedModel model, ChatFormat format, List<KvCache> caches)
    {
        ModelId = modelId;
        _model = model.Model;
        _tok = model.Tokenizer;
        _format = format;
        _stopTokens = model.StopTokens;
        _caches = caches;
        _free = new Stack<KvCache>(caches);
        ContextLength = caches[0].Capacity;
    }

    /// <summary>Loads the model and makes every slot's cache; any problem with the files or options is thrown here, before the server listens.</summary>
    public static LlamaCompletionEngine Load(LlamaEngineOptions o, TextWriter log)
    {
        if (o.Parallel < 1) throw new UserErrorException($"--parallel {o.Parallel}: at least one sequence");
        if (o.ContextLength < 0) throw new UserErrorException($"--context {o.ContextLength}: 0 (the model's) or a positive number of positions");
        var model = ModelLoader.Open(o.ModelPath, o.TokenizerPath, o.Device, o.FloatWeights);
        var caches = new List<KvCache>();
        try
        {
            var format = FormatFor(model, o.Template, log);
            int positions = ChatSession.CacheLengthFor(model.Model, o.ContextLength);
            if (o.ContextLength > model.Model.ContextLength)
                log.WriteLine($"(--context {o.ContextLength} is beyond the model's {model.Model.ContextLength} positions: using {positions})");
            for (int i = 0; i < o.Parallel; i++) caches.Add(model.Model.NewCache(1, positions));
            return new LlamaCompletionEngine(ModelIdOf(o.ModelPath), model, format, caches);
        }
        catch
        {
            foreach (var c in caches) c.Dispose();
            (model.Model as IDisposable)?.Dispose();
            throw;
        }
    }

    /// <summary>The name clients see: the checkpoint's file name without extension, or its folder's name.</summary>
    private static string ModelIdOf(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        if (Directory.Exists(full)) return Path.GetFileName(full);
        if (Path.GetFileName(full).Equals("config.json", StringComparison.OrdinalIgnoreCase)) return Path.GetFileName(Path.GetDirectoryName(full)!);
        return Path.GetFileNameWithoutExtension(full);
    }

    /// <summary>As `mt chat` picks it: forced by name, else recognized from the checkpoint (plain when unknown, raw when it has none).</summary>
    private static ChatFormat FormatFor(LoadedModel m, string name, TextWriter log)
    {
        if (name != "auto") return ChatTemplates.Parse(name);
        if (m.ChatTemplate is null) return ChatFormat.Raw;
        if (ChatTemplates.Detect(m.ChatTemplate) is { } f) return f;
        log.WriteLine("(the checkpoint's chat template is not one of the known formats: using 'plain'; --template picks another)");
        return ChatFormat.Plain;
    }

    public string ModelId { get; }
    public int ContextLength { get; }
    public int MaxSequences => _caches.Count;
    public IReadOnlyCollection<string> ChatRoles { get; } = ["system", "user", "assistant"];

    /// <summary>The chat template's name, for the start-up line.</summary>
    public string TemplateName => ChatTemplates.NameOf(_format);

    public int[] TokenizeChat(IReadOnlyList<ChatTurn> messages)
    {
        lock (_tokenizerLock)
        {
            string bos = _tok.Bos >= 0 ? _tok.TokenText(_tok.Bos) : "", eos = _tok.Eos >= 0 ? _tok.TokenText(_tok.Eos) : "";
            string text = ChatTemplates.Format(_format, messages.Select(m => new ChatMessage(m.Role, m.Content)).ToList(), addGenerationPrompt: true, bos, eos);
            // Templates that write BOS themselves (Llama 2, 3, Gemma) must not get a second one from the tokenizer.
            bool addBos = _tok.AddBos && !(bos.Length > 0 && text.StartsWith(bos, StringComparison.Ordinal));
            var ids = _tok.Encode(text, bos: addBos, parseSpecial: true);
            return ids.Count > 0 ? [.. ids] : [.. TextGenerator.StartTokens(_tok)]; // an empty raw rendering still needs a token to start from
        }
    }

    public int[] TokenizeText(string prompt)
    {
        lock (_tokenizerLock) return prompt.Length == 0 ? [.. TextGenerator.StartTokens(_tok)] : [.. _tok.Encode(prompt, bos: _tok.AddBos)]; // as `mt generate`
    }

    public IEngineSequence Start(int[] prompt, SamplingSettings sampling)
    {
        if (prompt.Length == 0) throw new ArgumentException("a sequence needs at least one prompt token", nameof(prompt));
        if (prompt.Length >= ContextLength) throw new ArgumentException($"{prompt.Length} prompt tokens leave no room in a context of {ContextLength}", nameof(prompt));
        if (!_free.TryPop(out var cache)) throw new InvalidOperationException($"all {MaxSequences} slots are in use");
        cache.Reset();
        // top_p 0 keeps only the most likely token: greedy, which the sampler spells as temperature 0.
        var options = new SamplerOptions(sampling.TopP == 0 ? 0 : sampling.Temperature, TopP: Math.Max(sampling.TopP, float.Epsilon), Seed: sampling.Seed);
        return new Sequence(this, cache, prompt, new Sampler(options));
    }

    public void Step(IReadOnlyList<IEngineSequence> sequences, Action<int, TokenStep> produced)
    {
        // No batched forward yet: each sequence reads the weights once per token.
        for (int i = 0; i < sequences.Count; i++) produced(i, ((Sequence)sequences[i]).Step());
    }

    public void Dispose()
    {
        foreach (var c in _caches) c.Dispose();
        (_model as IDisposable)?.Dispose();
    }

    private sealed class Sequence(LlamaCompletionEngine engine, KvCache cache, int[] prompt, Sampler sampler) : IEngineSequence
    {
        private readonly List<int> _tokens = [.. prompt];
        private readonly Decoder _utf8 = Encoding.UTF8.GetDecoder(); // byte-fallback tokens can split one character
        private char[] _chars = new char[64];
        private bool _released;

        public int Length => _tokens.Count;

        public TokenStep Step()
        {
            // The cache holds every token but the last sampled one (or none, before the prompt has run).
            var logits = engine._model.NextLogits(CollectionsMarshal.AsSpan(_tokens)[cache.Length..], cache);
            // Only the tokenizer's ids are sampled (an embedding may be padded past them, as nanoGPT's 50304 rows for GPT-2).
            int next = sampler.Sample(logits.AsSpan(0, engine._tok.VocabSize), _tokens);
            if (Array.IndexOf(engine._stopTokens, next) >= 0) return new TokenStep("", EndOfText: true);
            int n;
            lock (engine._tokenizerLock)
            {
                var bytes = engine._tok.DecodeBytes(_tokens[^1], next);
                if (_chars.Length < bytes.Length + 4) _chars = new char[bytes.Length + 4];
                n = _utf8.GetChars(bytes, _chars, flush: false);
            }
            _tokens.Add(next);
            return new TokenStep(new string(_chars, 0, n), EndOfText: false);
        }

        public void Dispose()
        {
            if (_released) return;
            _released = true;
            engine._free.Push(cache); // reset by the next Start: its positions are overwritten by the next prompt
        }
    }
}
