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
/// Every architecture shares the format: metadata "arch" names it (absent: "gpt", as written before there were
/// others) and model_config is its config record (<see cref="ArchDef.ConfigType"/>).
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
    public static void Save(string outDir, TrainableLM model, IStatefulOptimizer optimizer, TrainConfig train, TrainState state, ITokenizer tokenizer, bool best = false)
    {
        var tensors = model.StateDict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value))
            .Concat(optimizer.StateTensors().Select(kv => new KeyValuePair<string, Tensor>(OptimPrefix + kv.Key, kv.Value)));
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "managedtensor.gpt.v1",
            ["arch"] = model.Architecture,
            ["model_config"] = JsonSerializer.Serialize(model.ConfigRecord, model.ConfigRecord.GetType(), Json),
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
    public sealed class Loaded(SafeTensorsFile file, ArchDef arch, IModelConfig model, TrainConfig train, TrainState state, ITokenizer tokenizer) : IDisposable
    {
        public SafeTensorsFile File { get; } = file;
        public ArchDef Arch { get; } = arch;

        /// <summary>The model config record, of type <see cref="ArchDef.ConfigType"/>.</summary>
        public IModelConfig Model { get; } = model;
        public TrainConfig Train { get; } = train;
        public TrainState State { get; } = state;
        public ITokenizer Tokenizer { get; } = tokenizer;

        /// <summary>The model with the checkpoint's weights on <paramref name="device"/>.</summary>
        public TrainableLM CreateModel(Device device)
        {
            var gpt = Arch.Create(Model, new Generator(0), device, Train.Seed + 2);
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
            string archName = file.Metadata.TryGetValue("arch", out var a) ? a : "gpt";
            var arch = Architectures.All.FirstOrDefault(x => x.Name == archName)
                ?? throw new InvalidDataException($"{path}: metadata 'arch' is '{archName}', not an architecture this build knows ({string.Join(", ", Architectures.Names)})");
            IModelConfig model;
            try
            {
                model = (IModelConfig?)JsonSerializer.Deserialize(Meta("model_config"), arch.ConfigType, Json)
                    ?? throw new InvalidDataException($"{path}: metadata 'model_config' is null, expected a JSON object");
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}: metadata 'model_config' is not a valid {arch.ConfigType.Name} ({e.Message})", e);
            }
            var train = Parse<TrainConfig>("train_config");
            if (train.Arch != arch.Name)
                throw new InvalidDataException($"{path}: metadata 'arch' is {arch.Name} but train_config's arch is {train.Arch}");
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
            CheckConsistent(path, arch, model, train, tokenizer);
            // The trainer keeps parameters and AdamW moments in float32; another dtype in the header (say F32 edited
            // to I32, the same size) would be converted value by value from reinterpreted bits.
            foreach (var t in file.Tensors)
                if (t.DType != DType.F32 && !(t.DType == DType.U8 && train.Optim == "adamw8bit" && t.Name.StartsWith(OptimPrefix, StringComparison.Ordinal) && t.Name.EndsWith(".q8", StringComparison.Ordinal)))
                    throw new InvalidDataException($"{path}: tensor '{t.Name}' is {SafeTensors.DTypeName(t.DType)}; a training checkpoint holds F32 tensors only (and U8 codes of --optim adamw8bit)");
            return new Loaded(file, arch, model, train, state, tokenizer);
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
    private static void CheckConsistent(string path, ArchDef arch, IModelConfig model, TrainConfig train, ITokenizer tokenizer)
    {
        var implied = JsonNode.Parse(JsonSerializer.Serialize(arch.ModelConfig(train, tokenizer.VocabSize), arch.ConfigType, Json))!.AsObject();
        var stored = JsonNode.Parse(JsonSerializer.Serialize(model, arch.ConfigType, Json))!.AsObject();
        var differ = implied.Where(f => !JsonNode.DeepEquals(f.Value, stored[f.Key]))
            .Select(f => $"{f.Key} {stored[f.Key]?.ToJsonString()} (train_config and tokenizer say {f.Value?.ToJsonString()})").ToList();
        if (differ.Count > 0)
            throw new InvalidDataException($"{path}: metadata model_config disagrees with the run that wrote it: {string.Join(", ", differ)}");
    }
}
