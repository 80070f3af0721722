namespace ManagedTensor.Nn;

/// <summary>
/// A piece of a network that owns parameters and child modules, as torch.nn.Module. Subclasses register
/// what they own in their constructor (<see cref="Parameter"/>, <see cref="Buffer"/>, <see cref="Child{T}"/>),
/// so that tensors get dotted names ("transformer.h.0.attn.c_attn.weight") in registration order. Those
/// names are the keys of the state dict that checkpoints store.
/// </summary>
public abstract class Module
{
    private readonly List<(string Name, Tensor Tensor)> _parameters = [];
    private readonly List<(string Name, Tensor Tensor)> _buffers = [];
    private readonly List<(string Name, Module Module)> _children = [];

    /// <summary>True while training (dropout active), false after <see cref="Eval"/>.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>Registers <paramref name="value"/> as a trainable parameter called <paramref name="name"/>.</summary>
    protected Tensor Parameter(string name, Tensor value)
    {
        if (_parameters.Any(p => p.Name == name)) throw new ArgumentException($"{GetType().Name}: parameter '{name}' registered twice");
        value.RequiresGrad = true;
        value.Name = name;
        _parameters.Add((name, value));
        return value;
    }

    /// <summary>
    /// Registers <paramref name="value"/> as a buffer called <paramref name="name"/>: state that checkpoints keep
    /// but the optimizer never sees (torch's register_buffer): batch norm's running mean and variance, or a frozen
    /// weight in a block format, which has no gradient.
    /// </summary>
    protected Tensor Buffer(string name, Tensor value)
    {
        if (_parameters.Any(p => p.Name == name) || _buffers.Any(b => b.Name == name))
            throw new ArgumentException($"{GetType().Name}: tensor '{name}' registered twice");
        value.Name = name;
        _buffers.Add((name, value));
        return value;
    }

    /// <summary>Registers <paramref name="module"/> as a child called <paramref name="name"/> and returns it.</summary>
    protected T Child<T>(string name, T module) where T : Module
    {
        if (_children.Any(c => c.Name == name)) throw new ArgumentException($"{GetType().Name}: child '{name}' registered twice");
        _children.Add((name, module));
        return module;
    }

    /// <summary>
    /// Removes the parameter, buffer or child called <paramref name="name"/> (registered by this module), so that a
    /// module can change what it holds after construction: a Linear whose weight is quantized for QLoRA, or whose LoRA
    /// adapter is merged away. The state dict loses the name.
    /// </summary>
    protected void Unregister(string name)
    {
        int removed = _parameters.RemoveAll(p => p.Name == name) + _buffers.RemoveAll(b => b.Name == name) + _children.RemoveAll(c => c.Name == name);
        if (removed == 0) throw new ArgumentException($"{GetType().Name}: nothing called '{name}' is registered");
    }

    /// <summary>
    /// This module (name "") and every module below it with its dotted path ("model.layers.0.self_attn.q_proj"), depth
    /// first in registration order, as torch's named_modules: what LoRA searches for its target layers.
    /// </summary>
    public IEnumerable<(string Name, Module Module)> NamedModules()
    {
        var seen = new HashSet<Module>(ReferenceEqualityComparer.Instance);
        foreach (var m in AllNamedModules(""))
            if (seen.Add(m.Module)) yield return m;
    }

    private IEnumerable<(string Name, Module Module)> AllNamedModules(string path)
    {
        yield return (path, this);
        foreach (var (name, child) in _children)
            foreach (var m in child.AllNamedModules(path.Length == 0 ? name : path + "." + name)) yield return m;
    }

    /// <summary>
    /// Every parameter with its dotted name, depth first in registration order. A tensor reachable under
    /// two names (a tied weight) is listed once, under the first name, as torch's named_parameters.
    /// </summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters()
    {
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var (name, t) in AllNamedParameters(""))
            if (seen.Add(t)) yield return (name, t);
    }

    private IEnumerable<(string Name, Tensor Tensor)> AllNamedParameters(string prefix)
    {
        foreach (var (name, t) in _parameters) yield return (prefix + name, t);
        foreach (var (name, child) in _children)
            foreach (var p in child.AllNamedParameters(prefix + name + ".")) yield return p;
    }

    /// <summary>Every buffer with its dotted name, depth first in registration order (a shared one listed once).</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedBuffers()
    {
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var (name, t) in AllNamedBuffers(""))
            if (seen.Add(t)) yield return (name, t);
    }

    private IEnumerable<(string Name, Tensor Tensor)> AllNamedBuffers(string prefix)
    {
        foreach (var (name, t) in _buffers) yield return (prefix + name, t);
        foreach (var (name, child) in _children)
            foreach (var b in child.AllNamedBuffers(prefix + name + ".")) yield return b;
    }

    /// <summary>The direct child modules with their names, in registration order (torch's named_children).</summary>
    public IEnumerable<(string Name, Module Module)> NamedChildren() => _children;

    public IEnumerable<Tensor> Parameters() => NamedParameters().Select(p => p.Tensor);

    /// <summary>The number of scalar parameters (tied weights counted once).</summary>
    public long ParameterCount() => Parameters().Sum(p => (long)p.Numel);

    /// <summary>Name to tensor for every parameter and buffer (the tensors themselves, not copies).</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var d = NamedParameters().ToDictionary(p => p.Name, p => p.Tensor);
        var shared = new HashSet<Tensor>(d.Values, ReferenceEqualityComparer.Instance);
        foreach (var (name, t) in NamedBuffers())
            if (shared.Add(t)) d[name] = t;
        return d;
    }

    /// <summary>
    /// Copies values into the parameters and buffers, converting dtype and device as needed. Every parameter must be
    /// present with its exact shape; with <paramref name="strict"/>, extra entries are an error too.
    /// Entries whose names start with a prefix in <paramref name="ignorePrefixes"/> are skipped.
    /// </summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, bool strict = true, string source = "state dict", params string[] ignorePrefixes)
    {
        var own = StateDict();
        var missing = own.Keys.Where(k => !state.ContainsKey(k)).ToList();
        if (missing.Count > 0)
            throw new ArgumentException($"{source}: missing parameter(s) {string.Join(", ", missing)} for {GetType().Name}");
        if (strict)
        {
            var unexpected = state.Keys.Where(k => !own.ContainsKey(k) && !ignorePrefixes.Any(k.StartsWith)).ToList();
            if (unexpected.Count > 0)
                throw new ArgumentException($"{source}: unexpected entr{(unexpected.Count == 1 ? "y" : "ies")} {string.Join(", ", unexpected)} for {GetType().Name}");
        }
        foreach (var (name, param) in own)
        {
            var src = state[name];
            if (!src.Shape.AsSpan().SequenceEqual(param.Shape))
                throw new ArgumentException($"{source}: tensor '{name}' has shape {Tensor.ShapeString(src.Shape)}, the model expects {Tensor.ShapeString(param.Shape)}");
            using (GradMode.NoGrad()) param.CopyFrom_(src.To(param.DType));
        }
    }

    /// <summary>Training mode for this module and all below it (dropout on).</summary>
    public void Train() => SetTraining(true);

    /// <summary>Evaluation mode for this module and all below it (dropout off).</summary>
    public void Eval() => SetTraining(false);

    private void SetTraining(bool training)
    {
        Training = training;
        foreach (var (_, child) in _children) child.SetTraining(training);
    }
}
