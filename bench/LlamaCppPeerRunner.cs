using System.Diagnostics;
using System.Globalization;
using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Tokenizers;

namespace ManagedTensor.Bench;

/// <summary>
/// Our side of bench/quant_vs_llamacpp.sh, the same commands as bench/llamacpp (llama.cpp through LLamaSharp) so both
/// run the same GGUF file with the same prompt and lengths:
///   llama-speed MODEL PROMPT DECODE   prefill and decode tokens/s (prompt ids (p * 7919 + 1) % vocab, then greedy)
///   llama-greedy MODEL N              N greedy tokens after BOS, as ids on one line
///   llama-logits MODEL ID,ID,...      the last position's logits, one per line
///   write-random-llama OUT [small|tiny] the TinyLlama-1.1B shape (or 256-wide ones: 4 layers, vocab 512; 2, 320) with
///                                     random F32 weights (std 0.02) as GGUF, with a placeholder vocabulary (what
///                                     `mt quantize` and llama.cpp's quantizer then convert)
///   gguf-compare A B                  per tensor: the two files' types, and whether same-type tensors hold the same bytes
/// </summary>
public static class LlamaCppPeerRunner
{
    public static void Run(string[] args)
    {
        switch (args[0])
        {
            case "llama-speed":
                {
                    var (model, _) = ModelLoader.OpenLlama(args[1], null);
                    int prompt = int.Parse(args[2]), decode = int.Parse(args[3]);
                    LlamaBench.Measure(model, "warmup", 4, 2, GgmlType.F32);
                    var r = LlamaBench.Measure(model, Path.GetFileName(args[1]), prompt, decode, GgmlType.F32);
                    Console.WriteLine(string.Format(CultureInfo.InvariantCulture, "mt {0} threads {1} prefill {2:F2} tok/s decode {3:F2} tok/s ({4} + {5} tokens)",
                        Path.GetFileName(args[1]), Environment.ProcessorCount, r.PrefillTokensPerSecond, r.DecodeTokensPerSecond, prompt, decode));
                    break;
                }
            case "llama-greedy":
                {
                    var (model, _) = ModelLoader.OpenLlama(args[1], null);
                    int n = int.Parse(args[2]);
                    using var cache = model.NewCache();
                    var logits = model.NextLogits([1], cache);
                    var ids = new List<int>();
                    for (int p = 1; p <= n; p++)
                    {
                        int next = Sampler.ArgMax(logits);
                        ids.Add(next);
                        if (p < n) logits = model.NextLogits([next], cache);
                    }
                    Console.WriteLine(string.Join(' ', ids));
                    break;
                }
            case "llama-logits":
                {
                    var (model, _) = ModelLoader.OpenLlama(args[1], null);
                    var ids = args[2].Split(',').Select(int.Parse).ToArray();
                    using var cache = model.NewCache();
                    foreach (float v in model.NextLogits(ids, cache)) Console.WriteLine(v.ToString("R", CultureInfo.InvariantCulture));
                    break;
                }
            case "write-random-llama":
                {
                    var c = args.Length < 3 ? LlamaBench.TinyLlama1B : args[2] switch
                    {
                        "small" => new LlamaConfig(256, 768, 4, 8, 4, 512, 256),
                        "tiny" => new LlamaConfig(256, 256, 2, 4, 2, 320, 64),   // the test fixture's size
                        var other => throw new ArgumentException($"write-random-llama: shape {other} (small or tiny)"),
                    };
                    var sw = Stopwatch.StartNew();
                    var model = LlamaBench.RandomLlama(c, GgmlType.F32);
                    // Placeholder vocabulary: <unk>, <s>, </s>, the 256 byte tokens llama.cpp's SPM vocabulary expects, then fillers.
                    var vocab = Enumerable.Range(0, c.VocabSize).Select(i => i switch
                    {
                        0 => "<unk>",
                        1 => "<s>",
                        2 => "</s>",
                        < 259 => $"<0x{i - 3:X2}>",
                        _ => $"t{i}",
                    }).ToArray();
                    GgufLlama.Save(model, new LlamaTokenizer(vocab, new float[vocab.Length]), args[1], GgmlType.F32);
                    Console.WriteLine($"{args[1]}: {c.NLayers} layers x {c.Dim}, random F32 weights, {new FileInfo(args[1]).Length:N0} bytes in {sw.Elapsed.TotalSeconds:F0} s");
                    break;
                }
            case "gguf-compare":
                {
                    using var a = GgufFile.Open(args[1]);
                    using var b = GgufFile.Open(args[2]);
                    int same = 0, differ = 0, otherType = 0;
                    var mix = new SortedDictionary<string, int>();
                    foreach (var ta in a.Tensors)
                    {
                        var tb = b.Tensor(ta.Name);
                        string key = ta.Type == tb.Type ? $"{ta.Type}" : $"{ta.Type} vs {tb.Type}";
                        mix[key] = mix.GetValueOrDefault(key) + 1;
                        if (ta.Type != tb.Type) { otherType++; continue; }
                        if (a.TensorBytes(ta).SequenceEqual(b.TensorBytes(tb))) same++;
                        else { differ++; Console.WriteLine($"  {ta.Name} ({ta.Type}): bytes differ"); }
                    }
                    Console.WriteLine($"{Path.GetFileName(args[1])} vs {Path.GetFileName(args[2])}: {same} tensors byte-identical, {differ} differ, {otherType} of different types; types: {string.Join(", ", mix.Select(kv => $"{kv.Key} x{kv.Value}"))}");
                    break;
                }
            default:
                throw new ArgumentException($"unknown command {args[0]}");
        }
    }
}
