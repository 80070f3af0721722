namespace ManagedTensor.Nn;

/// <summary>
/// The gated feed-forward net of Llama-family models (Shazeer 2020, "GLU variants"):
/// down(silu(gate(x)) * up(x)), C -> hidden -> C, with silu(g) = g sigmoid(g). Children are named as
/// Hugging Face names them (gate_proj, up_proj, down_proj), so a checkpoint's state dict loads as is.
/// </summary>
public sealed class SwiGluMlp : Module
{
    public SwiGluMlp(Linear gate, Linear up, Linear down)
    {
        if (gate.OutFeatures != up.OutFeatures || gate.InFeatures != up.InFeatures || down.InFeatures != gate.OutFeatures || down.OutFeatures != gate.InFeatures)
            throw new ArgumentException($"SwiGLU: gate ({gate.InFeatures} -> {gate.OutFeatures}), up ({up.InFeatures} -> {up.OutFeatures}) and down ({down.InFeatures} -> {down.OutFeatures}) must be C -> hidden, C -> hidden, hidden -> C");
        Gate = Child("gate_proj", gate);
        Up = Child("up_proj", up);
        Down = Child("down_proj", down);
    }

    /// <summary>A freshly initialized MLP: N(0, initStd) weights, no biases (down: N(0, downStd) when given, for scaled residual init).</summary>
    public SwiGluMlp(int dim, int hidden, Generator gen, Device device, double initStd = 0.02, double? downStd = null)
        : this(new Linear(dim, hidden, false, gen, device, initStd), new Linear(dim, hidden, false, gen, device, initStd),
               new Linear(hidden, dim, false, gen, device, downStd ?? initStd)) { }

    public Linear Gate { get; }
    public Linear Up { get; }
    public Linear Down { get; }

    public Tensor Forward(Tensor x) => Down.Forward(Gate.Forward(x).Silu() * Up.Forward(x)); // (..., C) -> (..., hidden) -> (..., C)
}
