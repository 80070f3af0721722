using System.Runtime.InteropServices;
using System.Text;
using ManagedTensor.Models;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Tokenizers;

namespace ManagedTensor.Apps.Serve;

/// <summary>What `mt serve` loads: a model as `mt generate` reads it, where it runs, and how many sequences it serves at once.</summary>
public sealed record LlamaEngineOptions(
    string ModelPath,
    string? TokenizerPath = null,   // llama2.c tokenizer.bin; GGUF and Hugging Face checkpoints carry their own
    string Template = "auto",       // chat format: the checkpoint's own, or one of ChatTemplates.Names
    Device? Device = null,          // null or cpu: the span model; else DeviceLlama on that device
    DType DeviceDType = DType.F32,  // the weights' dtype on a device
    int ContextLength = 0,          // positions per sequence (0: the model's, at most ChatSession.DefaultMaxContext)
    int Parallel = 4);              // sequences at once (KV caches); 1 on a device

/// <summary>
/// The one adapter between the server and the model code on main (LlamaGenerate, ChatTemplates, Sampler, ILlamaRunner):
/// it is the only server file that names a model type, so a new model layer changes this file and nothing else.
/// Each slot is a runner with its own KV cache over the shared weights, all made at start, so the server's memory is
/// fixed once it listens. The span model keeps one set of scratch activations per model, which is why sequences are
/// stepped one after another from one thread; on a device a runner owns its weights, so a device serves one sequence.
/// </summary>
public sealed class LlamaCompletionEngine : ICompletionEngine
{
    private readonly IPromptTokenizer _tok;
    private readonly ChatFormat _format;
    private readonly int[] _stopTokens;
    private readonly List<ILlamaRunner> _runners;
    private readonly Stack<ILlamaRunner> _free;
    private readonly Lock _tokenizerLock = new(); // tokenizers are not documented as thread-safe; requests tokenize in parallel

    private LlamaCompletionEngine(string modelId, LoadedModel model, ChatFormat format, List<ILlamaRunner> runners)
    {
        ModelId = modelId;
        _tok = model.Tokenizer;
        _format = format;
        _stopTokens = model.StopTokens;
        _runners = runners;
        _free = new Stack<ILlamaRunner>(runners);
        ContextLength = runners[0].CacheLength;
    }

    /// <summary>Loads the model and makes every slot's cache; any problem with the files or options is thrown here, before the server listens.</summary>
    public static LlamaCompletionEngine Load(LlamaEngineOptions o, TextWriter log)
    {
        if (o.Parallel < 1) throw new ArgumentOutOfRangeException(nameof(o), $"--parallel {o.Parallel}: at least one sequence");
        var device = o.Device ?? Device.Cpu;
        var model = LlamaGenerate.Open(o.ModelPath, o.TokenizerPath);
        var format = FormatFor(model, o.Template, log);
        int slots = o.Parallel;
        if (device != Device.Cpu && slots > 1)
        {
            log.WriteLine($"(--parallel {slots} on {device}: a device runner holds its own copy of the weights, so one sequence runs at a time)");
            slots = 1;
        }
        var runners = new List<ILlamaRunner>();
        try
        {
            for (int i = 0; i < slots; i++) runners.Add(LlamaGenerate.Runner(model.Model, device, o.ContextLength, o.DeviceDType));
        }
        catch
        {
            foreach (var r in runners) r.Dispose();
            throw;
        }
        return new LlamaCompletionEngine(ModelIdOf(o.ModelPath), model, format, runners);
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
    public int MaxSequences => _runners.Count;
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
            return ids.Count > 0 ? [.. ids] : [_tok.Bos >= 0 ? _tok.Bos : 0]; // an empty raw rendering still needs a token to start from
        }
    }

    public int[] TokenizeText(string prompt)
    {
        lock (_tokenizerLock) return [.. _tok.Encode(prompt, bos: _tok.AddBos || prompt.Length == 0)]; // as `mt generate`
    }

    public IEngineSequence Start(int[] prompt, SamplingSettings sampling)
    {
        if (prompt.Length == 0) throw new ArgumentException("a sequence needs at least one prompt token", nameof(prompt));
        if (prompt.Length >= ContextLength) throw new ArgumentException($"{prompt.Length} prompt tokens leave no room in a context of {ContextLength}", nameof(prompt));
        if (!_free.TryPop(out var runner)) throw new InvalidOperationException($"all {MaxSequences} slots are in use");
        // top_p 0 keeps only the most likely token: greedy, which the sampler spells as temperature 0.
        var options = new SamplerOptions(sampling.TopP == 0 ? 0 : sampling.Temperature, TopP: Math.Max(sampling.TopP, float.Epsilon), Seed: sampling.Seed);
        return new Sequence(this, runner, prompt, new Sampler(options));
    }

    public void Step(IReadOnlyList<IEngineSequence> sequences, Action<int, TokenStep> produced)
    {
        // No batched forward in the model layer yet: each sequence reads the weights once per token.
        for (int i = 0; i < sequences.Count; i++) produced(i, ((Sequence)sequences[i]).Step());
    }

    public void Dispose()
    {
        foreach (var r in _runners) r.Dispose();
    }

    private sealed class Sequence(LlamaCompletionEngine engine, ILlamaRunner runner, int[] prompt, Sampler sampler) : IEngineSequence
    {
        private readonly List<int> _tokens = [.. prompt];
        private int _cached;                                      // tokens already in this slot's KV cache
        private readonly Decoder _utf8 = Encoding.UTF8.GetDecoder(); // byte-fallback tokens can split one character
        private char[] _chars = new char[64];
        private bool _released;

        public int Length => _tokens.Count;

        public TokenStep Step()
        {
            var logits = runner.Forward(CollectionsMarshal.AsSpan(_tokens)[_cached..], _cached);
            _cached = _tokens.Count;
            int next = sampler.Sample(logits, _tokens);
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
            engine._free.Push(runner); // positions are overwritten by the next prompt: nothing to clear
        }
    }
}
