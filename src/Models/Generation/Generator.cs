using System.Diagnostics;
using System.Text;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Tokenizers;

namespace ManagedTensor.Models.Generation;

/// <summary>What <see cref="LlamaGenerate.Run"/> needs: a model file (llama2.c .bin or .gguf), its tokenizer and sampling settings.</summary>
public sealed record GenerateOptions(
    string ModelPath,
    string? TokenizerPath = null,   // llama2.c tokenizer.bin; not needed for GGUF (vocabulary embedded)
    string Prompt = "",
    int MaxNewTokens = 256,
    SamplerOptions? Sampling = null,
    int[]? StopTokens = null);      // default: BOS and EOS

/// <summary>Generated ids and speed. Prefill runs the prompt, decode the generated tokens (tokens per second of each).</summary>
public sealed record GenerateResult(List<int> PromptTokens, List<int> Generated, string Text, double PrefillTokensPerSecond, double DecodeTokensPerSecond);

public static class LlamaGenerate
{
    /// <summary>Loads the model and tokenizer named in <paramref name="opts"/>, generates, and streams the text to <paramref name="output"/>.</summary>
    public static GenerateResult Run(GenerateOptions opts, TextWriter output)
    {
        var (model, tokenizer) = Load(opts.ModelPath, opts.TokenizerPath);
        var prompt = tokenizer.Encode(opts.Prompt, bos: true);
        output.Write(opts.Prompt);
        var result = Generate(model, tokenizer, prompt, opts.MaxNewTokens, opts.Sampling ?? new SamplerOptions(), opts.StopTokens, output);
        output.WriteLine();
        return result;
    }

    /// <summary>A model and tokenizer from a .gguf file, or from a llama2.c checkpoint plus its tokenizer.bin.</summary>
    public static (Llama Model, LlamaTokenizer Tokenizer) Load(string modelPath, string? tokenizerPath)
    {
        if (modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            using var g = GgufFile.Open(modelPath);
            return (GgufLlama.LoadModel(g), GgufLlama.LoadTokenizer(g));
        }
        var model = Llama2c.Load(modelPath);
        tokenizerPath ??= Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, "tokenizer.bin");
        return (model, LlamaTokenizer.LoadLlama2c(tokenizerPath, model.Config.VocabSize));
    }

    /// <summary>
    /// Runs the prompt (prefill), then samples up to <paramref name="maxNew"/> tokens, stopping at a stop token
    /// (not emitted) or the context length. Text is streamed to <paramref name="output"/> as tokens arrive.
    /// </summary>
    public static GenerateResult Generate(Llama model, LlamaTokenizer tok, List<int> prompt, int maxNew, SamplerOptions sampling,
                                          int[]? stopTokens = null, TextWriter? output = null)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt must hold at least one token (BOS)", nameof(prompt));
        var stops = new HashSet<int>(stopTokens ?? [tok.Bos, tok.Eos]);
        var sampler = new Sampler(sampling);
        var cache = model.NewCache();
        var history = new List<int>(prompt);
        var generated = new List<int>();
        var text = new StringBuilder();
        var decoder = Encoding.UTF8.GetDecoder(); // byte-fallback tokens may split a UTF-8 character across tokens
        var chars = new char[64];

        var sw = Stopwatch.StartNew();
        float[] logits = [];
        for (int p = 0; p < prompt.Count; p++) logits = model.Forward(prompt[p], p, cache);
        double prefillSec = sw.Elapsed.TotalSeconds;

        sw.Restart();
        int pos = prompt.Count;
        while (generated.Count < maxNew)
        {
            int next = sampler.Sample(logits, history);
            if (stops.Contains(next)) break;
            generated.Add(next);
            var bytes = tok.DecodeBytes(history[^1], next);
            history.Add(next);
            if (chars.Length < bytes.Length + 4) chars = new char[bytes.Length + 4];
            int n = decoder.GetChars(bytes, chars, flush: false);
            text.Append(chars, 0, n);
            output?.Write(chars, 0, n);
            if (pos >= model.Config.SeqLen || generated.Count >= maxNew) break;
            logits = model.Forward(next, pos++, cache);
        }
        double decodeSec = sw.Elapsed.TotalSeconds;
        output?.Flush();
        return new GenerateResult(prompt, generated, text.ToString(),
            prompt.Count / Math.Max(prefillSec, 1e-9), generated.Count / Math.Max(decodeSec, 1e-9));
    }
}
