using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.IO;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Training;

/// <summary>
/// A training checkpoint is one file, OUT/ckpt.safetensors, so that it is replaced atomically as a whole:
/// the model's parameters under their state-dict names, AdamW's moments under "optim.exp_avg.NAME" and
/// "optim.exp_avg_sq.NAME", and in the header metadata the model config, the training config, the
/// tokenizer and the <see cref="TrainState"/> as JSON. OUT/config.json repeats the configs and tokenizer
/// for people and other tools (also written atomically); loading reads only the safetensors file.
/// ckpt.safetensors is the last evaluated step (what --resume continues); OUT/best.safetensors is a copy of
/// the checkpoint with the lowest validation loss so far (what nanoGPT keeps as ckpt.pt).
/// Loading checks the metadata as strictly as the tensors: every JSON value of the right kind and in range,
/// the model config equal to the one the training config and tokenizer imply, every tensor float32.
/// </summary>
public static class GptCheckpoint
{
    public const string FileName = "ckpt.safetensors";
    public const string BestFileName = "best.safetensors";
    public const string ConfigFileName = "config.json";
    private const string OptimPrefix = "optim.";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    public static string PathIn(string outDir) => Path.Combine(outDir, FileName);

    public static string BestPathIn(string outDir) => Path.Combine(outDir, BestFileName);

    /// <summary>Whether <paramref name="outDir"/> holds a run (a checkpoint, the last or the best).</summary>
    public static bool Exists(string outDir) => File.Exists(PathIn(outDir)) || File.Exists(BestPathIn(outDir));

    /// <summary>Temporary files of writes into <paramref name="outDir"/> that a kill cut short (see <see cref="AtomicFile"/>).</summary>
    public static void RemoveStaleTemporaries(string outDir)
    {
        foreach (string name in new[] { FileName, BestFileName, ConfigFileName, "loss.png" })
            AtomicFile.RemoveStale(Path.Combine(outDir, name));
    }

    /// <summary>Writes OUT/ckpt.safetensors and OUT/config.json; with <paramref name="best"/>, also copies it to OUT/best.safetensors.</summary>
    public static void Save(string outDir, GPT model, AdamW optimizer, TrainConfig train, TrainState state, ITokenizer tokenizer, bool best = false)
    {
        var tensors = model.StateDict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value))
            .Concat(optimizer.StateTensors().Select(kv => new KeyValuePair<string, Tensor>(OptimPrefix + kv.Key, kv.Value)));
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "managedtensor.gpt.v1",
            ["model_config"] = JsonSerializer.Serialize(model.Config, Json),
            ["train_config"] = JsonSerializer.Serialize(train, Json),
            ["train_state"] = JsonSerializer.Serialize(state, Json),
            ["tokenizer"] = tokenizer.ToJson(),
        };
        SafeTensors.Save(PathIn(outDir), tensors, metadata);
        var config = new JsonObject
        {
            ["model"] = JsonNode.Parse(metadata["model_config"]),
            ["tokenizer"] = JsonNode.Parse(metadata["tokenizer"]),
            ["train"] = JsonNode.Parse(metadata["train_config"]),
            ["iter"] = state.Iter,
            ["best_val_loss"] = double.IsFinite(state.BestValLoss) ? state.BestValLoss : null,
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, ConfigFileName), config.ToJsonString(Json));
        if (best) AtomicFile.Copy(PathIn(outDir), BestPathIn(outDir));
    }

    /// <summary>What a checkpoint holds, opened and validated; the tensors are read on demand.</summary>
    public sealed class Loaded(SafeTensorsFile file, GptConfig model, TrainConfig train, TrainState state, ITokenizer tokenizer) : IDisposable
    {
        public SafeTensorsFile File { get; } = file;
        public GptConfig Model { get; } = model;
        public TrainConfig Train { get; } = train;
        public TrainState State { get; } = state;
        public ITokenizer Tokenizer { get; } = tokenizer;

        /// <summary>A GPT with the checkpoint's weights on <paramref name="device"/>.</summary>
        public GPT CreateModel(Device device)
        {
            var gpt = new GPT(Model, new Generator(0), device, Train.Seed + 2);
            try
            {
                gpt.LoadStateDict(ModelTensors(), source: File.Path);
            }
            catch (ArgumentException e)
            {
                // A tensor missing, unexpected or of the wrong shape: the file's fault (the message names it).
                throw new InvalidDataException(e.Message, e);
            }
            gpt.DropoutGenerator.Offset = State.DropoutOffset;
            return gpt;
        }

        public Dictionary<string, Tensor> ModelTensors() =>
            File.Tensors.Where(t => !t.Name.StartsWith(OptimPrefix, StringComparison.Ordinal)).ToDictionary(t => t.Name, t => File.Load(t.Name));

        public Dictionary<string, Tensor> OptimizerTensors() =>
            File.Tensors.Where(t => t.Name.StartsWith(OptimPrefix, StringComparison.Ordinal)).ToDictionary(t => t.Name[OptimPrefix.Length..], t => File.Load(t.Name));

        public void Dispose() => File.Dispose();
    }

    /// <summary>Opens OUT/ckpt.safetensors (or a path to such a file) and parses its metadata, with errors naming the file.</summary>
    public static Loaded Load(string outDirOrFile)
    {
        string path = File.Exists(outDirOrFile) ? outDirOrFile : PathIn(outDirOrFile);
        if (!File.Exists(path))
            throw new FileNotFoundException($"no checkpoint at {path}: train first (mt train gpt --out-dir {outDirOrFile})", path);
        var file = SafeTensors.Open(path);
        try
        {
            string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v
                : throw new InvalidDataException($"{path}: not a ManagedTensor GPT checkpoint (metadata '{key}' missing)");
            if (Meta("format") != "managedtensor.gpt.v1") throw new InvalidDataException($"{path}: unknown checkpoint format '{Meta("format")}'");
            T Parse<T>(string key)
            {
                try
                {
                    return JsonSerializer.Deserialize<T>(Meta(key), Json)
                        ?? throw new InvalidDataException($"{path}: metadata '{key}' is null, expected a JSON object");
                }
                catch (JsonException e)
                {
                    throw new InvalidDataException($"{path}: metadata '{key}' is not a valid {typeof(T).Name} ({e.Message})", e);
                }
            }
            var model = Parse<GptConfig>("model_config");
            var train = Parse<TrainConfig>("train_config");
            var state = Parse<TrainState>("train_state");
            // Errors of the parts name the part; the file is named here.
            T Checked<T>(string key, Func<T> check)
            {
                try
                {
                    return check();
                }
                catch (Exception e) when (e is ArgumentException or UserErrorException or JsonException or InvalidDataException)
                {
                    throw new InvalidDataException($"{path}: metadata '{key}': {e.Message}", e);
                }
            }
            Checked("model_config", () => { model.Validate(); return 0; });
            Checked("train_config", () => { train.Validate(); return 0; });
            var tokenizer = Checked("tokenizer", () => Data.Tokenizers.FromJson(Meta("tokenizer")));
            state.Validate(path);
            CheckConsistent(path, model, train, tokenizer);
            // The trainer keeps parameters and AdamW moments in float32; another dtype in the header (say F32 edited
            // to I32, the same size) would be converted value by value from reinterpreted bits.
            foreach (var t in file.Tensors)
                if (t.DType != DType.F32)
                    throw new InvalidDataException($"{path}: tensor '{t.Name}' is {SafeTensors.DTypeName(t.DType)}; a training checkpoint holds F32 tensors only");
            return new Loaded(file, model, train, state, tokenizer);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The model config is written from the training config and the tokenizer; each field must agree with them.
    /// Some edits could not be caught by the tensors: n_head changes no weight's shape, only how attention splits them.
    /// </summary>
    private static void CheckConsistent(string path, GptConfig model, TrainConfig train, ITokenizer tokenizer)
    {
        var implied = train.ModelConfig(tokenizer.VocabSize);
        var fields = new (string Name, object A, object B)[]
        {
            ("block_size", model.BlockSize, implied.BlockSize), ("vocab_size", model.VocabSize, implied.VocabSize),
            ("n_layer", model.NLayer, implied.NLayer), ("n_head", model.NHead, implied.NHead), ("n_embd", model.NEmbd, implied.NEmbd),
            ("dropout", model.Dropout, implied.Dropout), ("bias", model.Bias, implied.Bias),
        };
        var differ = fields.Where(f => !f.A.Equals(f.B)).Select(f => $"{f.Name} {f.A} (train_config and tokenizer say {f.B})").ToList();
        if (differ.Count > 0)
            throw new InvalidDataException($"{path}: metadata model_config disagrees with the run that wrote it: {string.Join(", ", differ)}");
    }
}
