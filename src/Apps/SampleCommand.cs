using System.CommandLine;
using ManagedTensor.Models;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Training;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt sample`: text from a checkpoint written by `mt train ARCH` (nanoGPT's sample.py), decoded with the architecture's
/// cached form: GPT's KV cache, the recurrent state of Mamba and RWKV.
/// </summary>
public static class SampleCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var outDir = new Option<string>("--out-dir") { Description = $"folder of the run (its last checkpoint, {GptCheckpoint.FileName}), or a checkpoint file such as DIR/{GptCheckpoint.BestFileName}", DefaultValueFactory = _ => new TrainConfig().OutDir };
        var prompt = new Option<string>("--prompt", "-p") { Description = "text to continue", DefaultValueFactory = _ => "\n" };
        var length = new Option<int>("--length", "-n") { Description = "new tokens per sample", DefaultValueFactory = _ => 500 }.AtLeast(1);
        var samples = new Option<int>("--num-samples") { Description = "how many samples", DefaultValueFactory = _ => 1 }.AtLeast(1);
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy; below 1 sharper, above 1 more random", DefaultValueFactory = _ => 0.8f }.Within(0);
        var topK = new Option<int>("--top-k") { Description = "keep the K most likely tokens (0: all)", DefaultValueFactory = _ => 200 }.AtLeast(0);
        var seed = new Option<ulong>("--seed", "-s") { Description = "seed of the sampler (sample i uses seed + i)", DefaultValueFactory = _ => 1337UL };
        var device = Cli.DeviceOption();
        var noCache = new Option<bool>("--no-kv-cache") { Description = "run the whole context at every step, as nanoGPT (the KV cache or recurrent state runs only the new token)" };
        // OpenAI's GPT-2 weights instead of an mt checkpoint (GptWeights.cs); the tokenizer is GPT-2's, from data/.
        var gpt2 = new Option<string?>("--gpt2") { Description = "sample from GPT-2 weights instead: a Hugging Face GPT-2 directory (config.json + model.safetensors) or llm.c's gpt2_124M.bin" };
        var cmd = new Command("sample", "generate text from a checkpoint of mt train (gpt, mamba, rwkv, ...)") { outDir, prompt, length, samples, temperature, topK, seed, device, noCache, gpt2 };
        cmd.SetAction(p =>
        {
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            using var ckpt = p.GetValue(gpt2) is null ? GptCheckpoint.Load(p.GetValue(outDir)!) : null;
            string source = ckpt?.File.Path ?? DataFiles.Find(p.GetValue(gpt2)!);
            var model = ckpt?.CreateModel(dev) ?? Models.Formats.GptWeights.Load(source, dev);
            ITokenizer tokenizer = ckpt?.Tokenizer ?? Gpt2Tokenizer.FromDataFolder();
            if (tokenizer.VocabSize > model.VocabSize) // e.g. a GPT-2 tokenizer on a 96-token model
                throw new Models.Formats.InvalidModelFileException(source,
                    $"the tokenizer has {tokenizer.VocabSize} tokens but the model's vocabulary (embedding rows) is {model.VocabSize}: " +
                    $"ids {model.VocabSize}..{tokenizer.VocabSize - 1} have no embedding (a tokenizer made for another model?)");
            int promptTokens = tokenizer.Encode(p.GetValue(prompt)!, bos: false).Count;
            // A recurrent model has no context limit; a GPT sees at most its block.
            if (model is GPT { Config.BlockSize: var block } && promptTokens + p.GetValue(length) > block)
                error.WriteLine($"(the model's context is {block} tokens: the prompt's {promptTokens} and --length {p.GetValue(length)} exceed it, " +
                                $"so beyond it each new token sees only the last {block}, as in nanoGPT's sample.py)");
            var sampler = new SamplerOptions(p.GetValue(temperature), p.GetValue(topK), Seed: p.GetValue(seed));
            for (int i = 0; i < p.GetValue(samples); i++)
            {
                Sample(model, tokenizer, p.GetValue(prompt)!, p.GetValue(length), sampler with { Seed = sampler.Seed + (ulong)i }, output, useCache: !p.GetValue(noCache));
                output.WriteLine();
                output.WriteLine("---------------");
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>Writes the prompt and then each new token's text as it is generated.</summary>
    public static void Sample(TrainableLM model, ITokenizer tokenizer, string prompt, int length, SamplerOptions options, TextWriter output, bool useCache = true)
    {
        var ids = tokenizer.Encode(prompt, bos: false);
        if (ids.Count == 0) throw new ArgumentException("the prompt encodes to no tokens: give at least one character");
        output.Write(prompt);
        var idx = Tensor.FromArray(ids.Select(i => (long)i).ToArray(), [1, ids.Count], model.Device);
        Action<int> write = token => output.Write(tokenizer.Decode([token]));
        // A tokenizer with fewer tokens than the model's (padded) vocabulary: sample only ids it can decode.
        if (model is GPT gpt) gpt.Generate(idx, length, new Sampler(options), write, useCache, sampledVocab: Math.Min(tokenizer.VocabSize, model.VocabSize));
        else model.Generate(idx, length, new Sampler(options), write, useCache);
        output.Flush();
    }
}
