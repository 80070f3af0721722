using System.Text.Json;
using System.Text.Json.Nodes;
using ManagedTensor.Models.IO;
using ManagedTensor.Nn;

namespace ManagedTensor.Models.Adapters;

/// <summary>
/// LoRA adapters in Hugging Face PEFT's layout, so they move between this project and the Python stack:
///   DIR/adapter_config.json         {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r", "lora_alpha", "lora_dropout",
///                                    "target_modules", "base_model_name_or_path", "bias": "none", ...}
///   DIR/adapter_model.safetensors   base_model.model.PATH.lora_A.weight (r, in), base_model.model.PATH.lora_B.weight (out, r)
/// PATH is the adapted layer's dotted path in the module tree (Llama: model.layers.0.self_attn.q_proj), and
/// "base_model.model." is the prefix PEFT's PeftModel wrapper adds (LoraModel is base_model, the wrapped model its .model).
/// PEFT saves only the adapters' tensors, without the adapter name ("default") that its modules carry.
/// </summary>
public static class PeftAdapter
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";
    public const string Prefix = "base_model.model.";

    /// <summary>Whether <paramref name="dir"/> holds an adapter (its config file).</summary>
    public static bool Exists(string dir) => File.Exists(Path.Combine(dir, ConfigFile));

    /// <summary>The adapter tensors of <paramref name="root"/> under PEFT's key names (the live tensors).</summary>
    public static List<KeyValuePair<string, Tensor>> Tensors(Module root) =>
        Lora.Adapted(root).SelectMany(l => new[]
        {
            new KeyValuePair<string, Tensor>(Prefix + l.Name + ".lora_A.weight", l.Layer.LoraA!.Weight),
            new KeyValuePair<string, Tensor>(Prefix + l.Name + ".lora_B.weight", l.Layer.LoraB!.Weight),
        }).ToList();

    /// <summary>Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (each atomically) for the adapters of <paramref name="root"/>.</summary>
    public static void Save(string dir, Module root, LoraConfig config, string baseModel)
    {
        var tensors = Tensors(root);
        if (tensors.Count == 0) throw new InvalidOperationException($"{root.GetType().Name} has no LoRA adapter to save");
        Directory.CreateDirectory(dir);
        SafeTensors.Save(Path.Combine(dir, WeightsFile), tensors.Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value.To(Device.Cpu).To(DType.F32))),
            new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), ConfigJson(config, baseModel).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>PEFT's LoraConfig as saved by save_pretrained (the fields a loader reads, and its defaults for the rest).</summary>
    public static JsonObject ConfigJson(LoraConfig config, string baseModel) => new()
    {
        ["peft_type"] = "LORA",
        ["task_type"] = "CAUSAL_LM",
        ["base_model_name_or_path"] = baseModel,
        ["r"] = config.Rank,
        ["lora_alpha"] = config.Alpha,
        ["lora_dropout"] = config.Dropout,
        ["target_modules"] = config.TargetModules.Count == 1 && config.TargetModules[0] == LoraConfig.AllLinear
            ? LoraConfig.AllLinear
            : new JsonArray(config.TargetModules.Select(t => (JsonNode)JsonValue.Create(t)!).ToArray()),
        ["bias"] = "none",
        ["fan_in_fan_out"] = false,
        ["inference_mode"] = true,
        ["init_lora_weights"] = true,
        ["modules_to_save"] = null,
        ["use_rslora"] = false,
        ["use_dora"] = false,
    };

    /// <summary>Reads DIR/adapter_config.json: the LoRA config and base_model_name_or_path; errors name the file and the field.</summary>
    public static (LoraConfig Config, string BaseModel) ReadConfig(string dir)
    {
        string path = Path.Combine(dir, ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{dir}: no {ConfigFile}: not a PEFT adapter directory", path);
        JsonObject json;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
        T Field<T>(string name, T? fallback = default, bool required = true)
        {
            if (json[name] is not JsonValue v) return !required ? fallback! : throw new InvalidDataException($"{path}: field '{name}' is missing");
            return v.TryGetValue(out T? value) ? value : throw new InvalidDataException($"{path}: field '{name}' is {v.ToJsonString()}, expected a {typeof(T).Name}");
        }
        string type = Field<string>("peft_type")!;
        if (type != "LORA") throw new InvalidDataException($"{path}: peft_type is '{type}'; only LORA adapters are supported");
        if (json["use_dora"] is JsonValue d && d.TryGetValue(out bool dora) && dora) throw new InvalidDataException($"{path}: use_dora is true; DoRA adapters are not supported");
        if (json["use_rslora"] is JsonValue rs && rs.TryGetValue(out bool rslora) && rslora)
            throw new InvalidDataException($"{path}: use_rslora is true (scale alpha/sqrt(r)); only alpha/r is supported");
        int r = Field<int>("r");
        double alpha = json["lora_alpha"] is JsonValue a && a.TryGetValue(out double av) ? av : throw new InvalidDataException($"{path}: field 'lora_alpha' is missing or not a number");
        double dropout = json["lora_dropout"] is JsonValue dv && dv.TryGetValue(out double dd) ? dd : 0;
        var targets = json["target_modules"] switch
        {
            JsonArray arr => arr.Select(n => n?.GetValue<string>() ?? throw new InvalidDataException($"{path}: target_modules holds a null")).ToList(),
            JsonValue v when v.TryGetValue(out string? s) => s == LoraConfig.AllLinear ? [s] : LoraConfig.ParseTargets(s).ToList(),
            _ => throw new InvalidDataException($"{path}: field 'target_modules' is missing or not a list of names"),
        };
        var config = new LoraConfig(r, alpha, dropout, targets);
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
        return (config, Field<string>("base_model_name_or_path", "", required: false) ?? "");
    }

    /// <summary>
    /// Attaches the adapter in <paramref name="dir"/> to <paramref name="root"/> (freezing the base) and loads its tensors.
    /// Every adapted layer's A and B must be in the file with their exact shapes, and the file may hold nothing else: an
    /// adapter made for another base shows as a shape that differs, named with both shapes.
    /// </summary>
    public static LoraConfig Load(string dir, Module root, Generator? dropoutGen = null)
    {
        var (config, baseModel) = ReadConfig(dir);
        if (Lora.Adapted(root).Count == 0)
        {
            try
            {
                Lora.Apply(root, config, new Generator(0), dropoutGen ?? new Generator(0));
            }
            catch (ArgumentException e)
            {
                throw new InvalidDataException($"{Path.Combine(dir, ConfigFile)}: {e.Message} (an adapter for another base{(baseModel.Length > 0 ? $" than {baseModel}" : "")}?)", e);
            }
        }
        string path = Path.Combine(dir, WeightsFile);
        using var file = SafeTensors.Open(path);
        LoadTensors(path, file.Tensors.ToDictionary(t => t.Name, t => file.Load(t.Name)), root, baseModel);
        return config;
    }

    /// <summary>Copies PEFT-named tensors into the adapters of <paramref name="root"/>, checking names and shapes (errors name <paramref name="source"/>).</summary>
    public static void LoadTensors(string source, IReadOnlyDictionary<string, Tensor> tensors, Module root, string baseModel = "")
    {
        string another = $"an adapter for another base{(baseModel.Length > 0 ? $" than {baseModel}" : "")}?";
        var own = Tensors(root);
        var names = own.Select(kv => kv.Key).ToHashSet();
        var unexpected = tensors.Keys.Where(k => !names.Contains(k)).Order(StringComparer.Ordinal).ToList();
        if (unexpected.Count > 0)
            throw new InvalidDataException($"{source}: {unexpected.Count} tensor(s) match no adapted layer of this model: {string.Join(", ", unexpected.Take(4))}{(unexpected.Count > 4 ? ", ..." : "")} ({another})");
        using var noGrad = GradMode.NoGrad();
        foreach (var (name, dst) in own)
        {
            if (!tensors.TryGetValue(name, out var src)) throw new InvalidDataException($"{source}: tensor '{name}' is missing ({another})");
            if (!src.Shape.AsSpan().SequenceEqual(dst.Shape))
                throw new InvalidDataException($"{source}: tensor '{name}' has shape {Tensor.ShapeString(src.Shape)}, this model's layer needs {Tensor.ShapeString(dst.Shape)} ({another})");
            dst.CopyFrom_(src.To(dst.DType).To(dst.Device));
        }
    }
}
