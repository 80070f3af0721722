namespace ManagedTensor.Optim;

/// <summary>
/// AdamW whose moments live in host memory and whose update runs on the CPU (ZeRO-Offload's optimizer half): each step
/// brings a parameter's gradient and values down from the device, runs the same fused AdamW op as <see cref="AdamW"/>
/// on the CPU, and writes the values back. A GPU then holds no optimizer state (8 bytes per trained value in float32).
/// With <c>eightBit</c> the moments are kept as bitsandbytes' 8-bit AdamW keeps them (<see cref="Blockwise8Bit"/>: one
/// byte per value plus a scale per block of 2048, 2 bytes per value for both moments): each step decodes a tensor's
/// moments, updates, and encodes them again. As bitsandbytes does, tensors of fewer than <see cref="Min8BitSize"/> values
/// (norms, biases) keep float32 moments. The update is done tensor by tensor, so the host holds one tensor's decoded
/// moments at a time. Float32 parameters only.
/// </summary>
public sealed class OffloadedAdamW : IOptimizer
{
    public const int Min8BitSize = 4096;

    private readonly List<Slot> _slots;

    private sealed class Slot(string name, Tensor param, bool decay, bool eightBit)
    {
        public string Name { get; } = name;
        public Tensor Param { get; } = param;
        public bool Decay { get; } = decay;
        public bool EightBit { get; } = eightBit;
        // Float moments (host tensors), or codes and block scales.
        public Tensor? M, V;
        public byte[]? MCodes, VCodes;
        public float[]? MScale, VScale;
    }

    public OffloadedAdamW(IEnumerable<(string Name, Tensor Tensor)> parameters, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weightDecay = 0.01, bool eightBit = false)
    {
        AdamW.CheckHyperparameters(lr, beta1, beta2);
        LearningRate = lr;
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
        _slots = [];
        // As AdamW: frozen parameters (RequiresGrad false: a LoRA base) get no moments.
        foreach (var (name, p) in parameters.Where(p => p.Tensor.RequiresGrad))
        {
            if (p.DType != DType.F32) throw new ArgumentException($"OffloadedAdamW: parameter '{name}' is {p.Describe()}; only float32 parameters are supported");
            var s = new Slot(name, p, p.Rank >= 2, eightBit && p.Numel >= Min8BitSize);
            if (s.EightBit)
            {
                int blocks = (p.Numel + Blockwise8Bit.BlockSize - 1) / Blockwise8Bit.BlockSize;
                s.MCodes = new byte[p.Numel];
                s.VCodes = new byte[p.Numel];
                s.MScale = new float[blocks];
                s.VScale = new float[blocks];
                // zero scales: every code decodes to 0, so the moments start at zero as AdamW's do
            }
            else
            {
                s.M = Tensor.Zeros(p.Shape, DType.F32, Device.Cpu);
                s.V = Tensor.Zeros(p.Shape, DType.F32, Device.Cpu);
            }
            _slots.Add(s);
        }
    }

    public double LearningRate { get; set; }
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }
    public int StepCount { get; private set; }
    public IEnumerable<Tensor> Parameters => _slots.Select(s => s.Param);

    /// <summary>Host bytes of the moments: 8 per value in float32, about 2 per value in 8 bits.</summary>
    public long StateBytes => _slots.Sum(s => s.EightBit ? s.MCodes!.Length * 2L + (s.MScale!.Length + s.VScale!.Length) * 4L : s.M!.Numel * 8L);

    public void Step()
    {
        StepCount++;
        using var noGrad = GradMode.NoGrad();
        foreach (var s in _slots)
        {
            if (s.Param.Grad is not { } grad) continue;
            var attrs = new AdamWAttrs(LearningRate, Beta1, Beta2, Eps, s.Decay ? WeightDecay : 0, StepCount);
            var p = s.Param.To(Device.Cpu).Clone();                // the values, down from the device (a copy even on the CPU)
            var g = grad.To(Device.Cpu);
            if (!s.EightBit)
            {
                Tensor.AdamWStep_(p, g, s.M!, s.V!, attrs);
            }
            else
            {
                var m = Decode(s.MCodes!, s.MScale!, Blockwise8Bit.SignedMap, p.Shape);
                var v = Decode(s.VCodes!, s.VScale!, Blockwise8Bit.UnsignedMap, p.Shape);
                Tensor.AdamWStep_(p, g, m, v, attrs);
                Blockwise8Bit.Quantize(m.ToArray<float>(), Blockwise8Bit.SignedMap, s.MCodes, s.MScale);
                Blockwise8Bit.Quantize(v.ToArray<float>(), Blockwise8Bit.UnsignedMap, s.VCodes, s.VScale);
            }
            s.Param.CopyFrom_(p.To(s.Param.Device));               // the updated values, back up
        }
    }

    private static Tensor Decode(byte[] codes, float[] scale, float[] map, int[] shape)
    {
        var values = new float[codes.Length];
        Blockwise8Bit.Dequantize(codes, scale, map, values);
        return Tensor.FromArray(values, shape);
    }

    public void ZeroGrad() => Parameters.ZeroGrad();
}
