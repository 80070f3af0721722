namespace ManagedTensor.Nn;

/// <summary>
/// A LoRA recipe, as PEFT's LoraConfig: rank r, alpha (the update is scaled by alpha / r), dropout on the adapter's
/// input, and the target modules: names matched against each Linear's dotted path (a path equal to a name or ending
/// in "." + name, PEFT's rule: "q_proj" matches "model.layers.3.self_attn.q_proj"), or "all-linear" for every Linear
/// except the output head (lm_head), as PEFT's all-linear.
/// </summary>
public sealed record LoraConfig(int Rank, double Alpha, double Dropout, IReadOnlyList<string> TargetModules)
{
    public const string AllLinear = "all-linear";

    /// <summary>A comma list ("q_proj,k_proj,v_proj,o_proj") or "all-linear" as a list of names.</summary>
    public static IReadOnlyList<string> ParseTargets(string list) =>
        list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first setting that cannot make an adapter.</summary>
    public void Validate()
    {
        if (Rank <= 0) throw new ArgumentException($"LoRA rank r must be at least 1 (got {Rank})");
        if (!double.IsFinite(Alpha) || Alpha <= 0) throw new ArgumentException($"LoRA alpha must be a finite number > 0 (got {Alpha})");
        if (!double.IsFinite(Dropout) || Dropout is < 0 or >= 1) throw new ArgumentException($"LoRA dropout must be in [0, 1) (got {Dropout})");
        if (TargetModules.Count == 0) throw new ArgumentException("LoRA target modules: none given (a comma list such as q_proj,v_proj, or all-linear)");
    }
}

/// <summary>
/// LoRA over any module tree (a language model, a diffusion denoiser): find the target Linears by name, freeze
/// everything, attach adapters (<see cref="Linear.AddLora"/>), list what is trainable, merge. Nothing here knows
/// what the model is; the names are the module tree's own, so a model carrying Hugging Face's names gets PEFT's keys.
/// </summary>
public static class Lora
{
    /// <summary>The Linears <paramref name="targets"/> select, by dotted path; a name that selects none is an error listing the names there are.</summary>
    public static List<(string Name, Linear Layer)> Targets(Module root, IReadOnlyList<string> targets)
    {
        var linears = root.NamedModules().Where(m => m.Module is Linear && m.Name.Length > 0 && !IsAdapterPart(m.Name))
            .Select(m => (m.Name, Layer: (Linear)m.Module)).ToList();
        if (targets.Count == 1 && targets[0] == LoraConfig.AllLinear)
            return linears.Where(l => LastPart(l.Name) != "lm_head").ToList();
        foreach (string t in targets)
            if (!linears.Any(l => Matches(l.Name, t)))
            {
                var kinds = linears.Select(l => LastPart(l.Name)).Distinct().Take(12);
                throw new ArgumentException($"LoRA target module '{t}' matches no Linear layer of the {root.GetType().Name}; its Linear layers are named {string.Join(", ", kinds)} (or use {LoraConfig.AllLinear})");
            }
        return linears.Where(l => targets.Any(t => Matches(l.Name, t))).ToList();
    }

    /// <summary>
    /// Freezes every parameter of <paramref name="root"/> (RequiresGrad false: no gradient, no optimizer state) and
    /// attaches an adapter to each target; returns the adapted layers. A draws from <paramref name="initGen"/>.
    /// </summary>
    public static List<(string Name, Linear Layer)> Apply(Module root, LoraConfig config, Generator initGen, Generator dropoutGen)
    {
        config.Validate();
        var targets = Targets(root, config.TargetModules);
        foreach (var p in root.Parameters()) p.RequiresGrad = false;
        foreach (var (_, layer) in targets) layer.AddLora(config.Rank, config.Alpha, config.Dropout, initGen, dropoutGen);
        return targets;
    }

    /// <summary>The layers that carry an adapter, with their dotted paths.</summary>
    public static List<(string Name, Linear Layer)> Adapted(Module root) =>
        root.NamedModules().Where(m => m.Module is Linear { LoraA: not null }).Select(m => (m.Name, (Linear)m.Module)).ToList();

    /// <summary>The parameters an optimizer should update: those that require a gradient (the adapters, after <see cref="Apply"/>).</summary>
    public static IEnumerable<(string Name, Tensor Tensor)> Trainable(Module root) => root.NamedParameters().Where(p => p.Tensor.RequiresGrad);

    /// <summary>Dropout of every adapter on (training) or off; the frozen base is left in eval mode.</summary>
    public static void SetTraining(Module root, bool training)
    {
        root.Eval();
        foreach (var (_, layer) in Adapted(root)) layer.SetLoraTraining(training);
    }

    /// <summary>
    /// Merges every adapter into its base weight (<see cref="Linear.MergeLora"/>) and returns how many. A weight tied to
    /// an embedding (a tied lm_head) is refused: the update would change the embedding too.
    /// </summary>
    public static int Merge(Module root)
    {
        var adapted = Adapted(root);
        var embeddings = new HashSet<Tensor>(root.NamedModules().Select(m => m.Module).OfType<Embedding>().Select(e => e.Weight), ReferenceEqualityComparer.Instance);
        foreach (var (name, layer) in adapted)
            if (embeddings.Contains(layer.Weight))
                throw new ArgumentException($"cannot merge the LoRA adapter of {name}: its weight is tied to the token embedding, which the update would change too");
        foreach (var (_, layer) in adapted) layer.MergeLora();
        return adapted.Count;
    }

    /// <summary>
    /// QLoRA's base: every Linear except lm_head gets a block-format weight (<see cref="Linear.QuantizeWeight"/>).
    /// Layers whose in-features do not fill whole blocks stay float (frozen) and are returned as skipped with the reason.
    /// </summary>
    public static (List<string> Quantized, List<string> Skipped) QuantizeLinears(Module root, DType format)
    {
        var done = new List<string>();
        var skipped = new List<string>();
        int block = Quant.BlockFormats.Get(format).BlockSize;
        foreach (var (name, layer) in Targets(root, [LoraConfig.AllLinear]))
        {
            if (layer.Quantized) continue;
            if (layer.InFeatures % block != 0) { skipped.Add($"{name} (in-features {layer.InFeatures} not a multiple of {block})"); continue; }
            layer.QuantizeWeight(format);
            done.Add(name);
        }
        return (done, skipped);
    }

    private static bool Matches(string path, string target) => path == target || path.EndsWith("." + target, StringComparison.Ordinal);

    private static string LastPart(string path) => path[(path.LastIndexOf('.') + 1)..];

    private static bool IsAdapterPart(string path) => LastPart(path) is "lora_A" or "lora_B";
}
