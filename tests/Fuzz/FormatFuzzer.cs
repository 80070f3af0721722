using System.Diagnostics;
using ManagedTensor.Apps;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.Training;
using ManagedTensor.Tests.IO;

namespace ManagedTensor.Tests.Fuzz;

/// <summary>
/// One format under fuzzing: its pristine files (copied into a case folder once), the files a mutation may touch, how
/// many leading bytes of a file are its header, and what a user command does with the folder (load and run the model
/// for a token or two, so a mutation that passes the loader but breaks the model is caught too).
/// </summary>
public sealed record FuzzTarget(string Format, string[] Files, string[] Mutable, Func<string, byte[], int> HeaderBytes, Action<string, string> Load);

/// <summary>What the mutations of one format ended in. A failure is an exception that <see cref="UserErrors"/> would let through as a stack trace.</summary>
public sealed class FuzzCounts(string format)
{
    public string Format { get; } = format;
    public int Cases { get; set; }
    public int Loaded { get; set; }
    public int UserErrors { get; set; }
    public int UserErrorsNotNamingTheFile { get; set; }
    public List<string> Failures { get; } = [];
    public List<string> UnnamedSamples { get; } = [];
    public TimeSpan Slowest { get; set; }

    public override string ToString() =>
        $"{Format,-34} {Cases,6} mutations: {Loaded,5} loaded and ran, {UserErrors,5} one-line errors ({UserErrorsNotNamingTheFile} not naming the file), " +
        $"{Failures.Count} unhandled; slowest case {Slowest.TotalMilliseconds:F0} ms";
}

/// <summary>
/// The seeded fuzz loop (see <see cref="Mutator"/>): for each case one file of the target is mutated, the target's
/// command runs on the folder, and the outcome is counted; the file is then restored for the next case.
/// </summary>
public static class FormatFuzzer
{
    public static FuzzCounts Run(FuzzTarget target, int mutations, int seed, string work)
    {
        var counts = new FuzzCounts(target.Format);
        string dir = Path.Combine(work, string.Concat(target.Format.Where(char.IsLetterOrDigit)));
        Directory.CreateDirectory(dir);
        foreach (string f in target.Files) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)), overwrite: true);
        var rng = new Random(seed);
        for (int i = 0; i < mutations; i++)
        {
            string file = Path.Combine(dir, target.Mutable[rng.Next(target.Mutable.Length)]);
            byte[] original = File.ReadAllBytes(file);
            var (bytes, what) = Mutate(file, original, rng, target.HeaderBytes(file, original));
            File.WriteAllBytes(file, bytes);
            var clock = Stopwatch.StartNew();
            try
            {
                target.Load(dir, file);
                counts.Loaded++;
            }
            catch (Exception e) when (UserErrors.Describe(e) is { } message)
            {
                counts.UserErrors++;
                if (!message.Contains(dir, StringComparison.Ordinal))
                {
                    counts.UserErrorsNotNamingTheFile++;
                    if (counts.UnnamedSamples.Count < 5) counts.UnnamedSamples.Add($"#{i} {Path.GetFileName(file)} {what}: {message}");
                }
            }
            catch (Exception e)
            {
                counts.Failures.Add($"{target.Format} #{i} (seed {seed}) {Path.GetFileName(file)} {what}: {e.GetType().Name}: {e.Message}\n{e.StackTrace?.Split('\n').FirstOrDefault()}");
            }
            finally
            {
                if (clock.Elapsed > counts.Slowest) counts.Slowest = clock.Elapsed;
                counts.Cases++;
                File.WriteAllBytes(file, original);
            }
        }
        return counts;
    }

    private static (byte[] Bytes, string What) Mutate(string file, byte[] original, Random rng, int headerBytes)
    {
        if (file.EndsWith(".json", StringComparison.Ordinal) && rng.Next(3) > 0
            && Mutator.Json(System.Text.Encoding.UTF8.GetString(original), rng) is { } j)
            return (System.Text.Encoding.UTF8.GetBytes(j.Json), "JSON " + j.What);
        if (file.EndsWith(".safetensors", StringComparison.Ordinal) && rng.Next(2) == 0 && Mutator.SafeTensorsHeader(original, rng) is { } s)
            return s;
        return Mutator.Binary(original, rng, headerBytes);
    }

    // ---- the formats ----

    private static readonly SamplerOptions Greedy = new(0f);

    private static void Generate(string model, string? tokenizer, string prompt) =>
        TextGenerator.Run(new GenerateOptions(model, tokenizer, prompt, 2, Greedy), TextWriter.Null);

    /// <summary>A GPT-2 model's forward pass over two tokens (the prompt ids of its own vocabulary).</summary>
    private static void RunGpt(ManagedTensor.Models.GPT model)
    {
        using var _ = GradMode.NoGrad();
        model.Forward(Tensor.FromArray(new long[] { 0, Math.Min(1, model.Config.VocabSize - 1) }, [1, 2]));
    }

    private static int GgufHeader(string path, byte[] bytes)
    {
        try
        {
            using var g = GgufFile.Open(path);
            return (int)g.DataOffset;
        }
        catch (InvalidModelFileException)
        {
            return bytes.Length;
        }
    }

    private static int SafeTensorsHeader(byte[] bytes) =>
        bytes.Length < 8 ? bytes.Length : (int)Math.Clamp(8 + BitConverter.ToInt64(bytes), 8, bytes.Length);

    /// <summary>
    /// Every format the project reads. <paramref name="work"/> receives files made once from the repository's own data:
    /// stories260K as GGUF (our writer) and a small training checkpoint.
    /// </summary>
    public static List<FuzzTarget> Targets(string work)
    {
        Directory.CreateDirectory(work);
        string stories = Fixtures.RepoFile("data/stories260K/stories260K.bin"), tok = Fixtures.RepoFile("data/stories260K/tok512.bin");
        string gguf = Path.Combine(work, "stories260K-q8_0.gguf");
        if (!File.Exists(gguf))
        {
            var (model, tokenizer) = ModelLoader.OpenLlama(stories, tok);
            GgufLlama.Save(model, tokenizer, gguf, GgmlType.Q8_0);
        }
        string run = MakeCheckpoint(work);
        string HfLlama(string name) => Path.Combine(Path.GetDirectoryName(Fixtures.Path("hf_llama/make_fixture.py"))!, name);
        string[] Files(string dir) => Directory.GetFiles(dir).Where(f => !f.EndsWith("reference.json", StringComparison.Ordinal)).ToArray();

        return
        [
            new("llama2.c checkpoint", [stories, tok], ["stories260K.bin"], (_, _) => 64,
                (dir, _) => Generate(Path.Combine(dir, "stories260K.bin"), Path.Combine(dir, "tok512.bin"), "Once upon")),
            new("llama2.c tokenizer.bin", [stories, tok], ["tok512.bin"], (_, b) => b.Length,
                (dir, _) => Generate(Path.Combine(dir, "stories260K.bin"), Path.Combine(dir, "tok512.bin"), "Once upon")),
            new("GGUF (stories260K Q8_0, llama_tiny)", [gguf, Fixtures.Path("gguf/llama_tiny.gguf")], ["stories260K-q8_0.gguf", "llama_tiny.gguf"], GgufHeader,
                (_, file) => Generate(file, null, file.EndsWith("llama_tiny.gguf", StringComparison.Ordinal) ? "" : "Once upon")), // llama_tiny's toy vocabulary encodes no text
            new("HF Llama (safetensors, config, tokenizer)", Files(HfLlama("f16_tied")), ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"],
                (f, b) => f.EndsWith(".safetensors", StringComparison.Ordinal) ? SafeTensorsHeader(b) : b.Length, (dir, _) => Generate(dir, null, "Hello")),
            new("HF Llama sharded (index, 2 shards)", Files(HfLlama("bf16_sharded")),
                ["model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "config.json", "generation_config.json"],
                (f, b) => f.EndsWith(".safetensors", StringComparison.Ordinal) ? SafeTensorsHeader(b) : b.Length, (dir, _) => Generate(dir, null, "Hello")),
            new("llm.c GPT-2 .bin", [Fixtures.Path("hf_gpt2/gpt2_tiny.bin")], ["gpt2_tiny.bin"], (_, _) => 1024,
                (_, file) => RunGpt(GptWeights.Load(file))),
            new("HF GPT-2 (safetensors, config)", [Fixtures.Path("hf_gpt2/config.json"), Fixtures.Path("hf_gpt2/model.safetensors")], ["config.json", "model.safetensors"],
                (f, b) => f.EndsWith(".safetensors", StringComparison.Ordinal) ? SafeTensorsHeader(b) : b.Length, (dir, _) => RunGpt(GptWeights.Load(dir))),
            new("training checkpoint", [Path.Combine(run, GptCheckpoint.FileName)], [GptCheckpoint.FileName], (_, b) => SafeTensorsHeader(b), LoadCheckpoint),
        ];
    }

    /// <summary>What `mt sample` and `mt train gpt --resume` do with a checkpoint: the model with a few tokens sampled, then the whole training state.</summary>
    private static void LoadCheckpoint(string dir, string file)
    {
        using (var ckpt = GptCheckpoint.Load(file))
        {
            var model = ckpt.CreateModel(Device.Cpu);
            SampleCommand.Sample(model, ckpt.Tokenizer, "t", 2, Greedy, TextWriter.Null);
        }
        GptTrainer.Resume(dir, Device.Cpu);
    }

    /// <summary>A two-step run of a small GPT on the start of tiny Shakespeare (the data path in it is absolute, so a resume finds it).</summary>
    private static string MakeCheckpoint(string work)
    {
        string run = Path.Combine(work, "run");
        if (File.Exists(GptCheckpoint.PathIn(run))) return run;
        string data = Path.Combine(work, "tiny.txt");
        File.WriteAllText(data, File.ReadAllText(Fixtures.RepoFile("data/tinyshakespeare.txt"))[..4000]);
        var cfg = new TrainConfig
        {
            DataPath = data,
            OutDir = run,
            MaxIters = 2,
            EvalInterval = 2,
            EvalIters = 1,
            LogInterval = 1,
            NLayer = 1,
            NHead = 2,
            NEmbd = 8,
            BlockSize = 8,
            BatchSize = 2,
            WarmupIters = 1,
            LrDecayIters = 2,
        };
        GptTrainer.Create(cfg, Device.Cpu).Run(new SilentObserver());
        return run;
    }

    private sealed class SilentObserver : ITrainingObserver
    {
        public void OnStart(ManagedTensor.Models.TrainableLM model, TrainConfig config, int startIter, ManagedTensor.Models.ITokenizer tokenizer, ManagedTensor.Models.Data.TextDataset data) { }
        public void OnStep(int iter, double loss, double lr, double tokensPerSecond, double msPerIter) { }
        public void OnEval(int iter, double trainLoss, double valLoss) { }
        public void OnCheckpoint(int iter, string path, bool best) { }
    }
}
