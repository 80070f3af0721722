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
public sealed class OffloadedAdamW : IStatefulOptimizer
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

    /// <summary>
    /// The moments for a checkpoint, under <see cref="AdamW"/>'s names ("exp_avg.NAME", "exp_avg_sq.NAME", float32) for a
    /// float slot; an 8-bit slot's are saved as they are kept, so a resume continues from the same codes:
    /// "exp_avg.NAME.q8" (U8, one code per value) and "exp_avg.NAME.absmax" (float32, one scale per block), same for exp_avg_sq.
    /// </summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors()
    {
        foreach (var s in _slots)
        {
            if (!s.EightBit)
            {
                yield return new("exp_avg." + s.Name, s.M!);
                yield return new("exp_avg_sq." + s.Name, s.V!);
                continue;
            }
            yield return new("exp_avg." + s.Name + ".q8", Tensor.FromArray(s.MCodes!));
            yield return new("exp_avg." + s.Name + ".absmax", Tensor.FromArray(s.MScale!));
            yield return new("exp_avg_sq." + s.Name + ".q8", Tensor.FromArray(s.VCodes!));
            yield return new("exp_avg_sq." + s.Name + ".absmax", Tensor.FromArray(s.VScale!));
        }
    }

    /// <summary>Restores what <see cref="StateTensors"/> saved (the same kind of slot for each parameter) and the step count.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, int stepCount, string source = "checkpoint")
    {
        Tensor Get(string key, DType dtype, int numel)
        {
            if (!state.TryGetValue(key, out var t))
                throw new ArgumentException($"{source}: optimizer state '{key}' is missing" +
                                            (key.EndsWith(".q8", StringComparison.Ordinal) ? " (was the run saved with another --optim?)" : ""));
            if (t.Numel != numel) throw new ArgumentException($"{source}: optimizer state '{key}' has {t.Numel} values ({Tensor.ShapeString(t.Shape)}), expected {numel}");
            if (t.DType != dtype) throw new ArgumentException($"{source}: optimizer state '{key}' is {t.DType}, expected {dtype}");
            return t;
        }
        using var noGrad = GradMode.NoGrad();
        foreach (var s in _slots)
        {
            if (!s.EightBit)
            {
                s.M!.CopyFrom_(Get("exp_avg." + s.Name, DType.F32, s.M.Numel).To(Device.Cpu).Reshape(s.M.Shape));
                s.V!.CopyFrom_(Get("exp_avg_sq." + s.Name, DType.F32, s.V.Numel).To(Device.Cpu).Reshape(s.V.Shape));
                continue;
            }
            Get("exp_avg." + s.Name + ".q8", DType.U8, s.MCodes!.Length).To(Device.Cpu).ToArray<byte>().CopyTo(s.MCodes, 0);
            Get("exp_avg." + s.Name + ".absmax", DType.F32, s.MScale!.Length).To(Device.Cpu).ToArray<float>().CopyTo(s.MScale, 0);
            Get("exp_avg_sq." + s.Name + ".q8", DType.U8, s.VCodes!.Length).To(Device.Cpu).ToArray<byte>().CopyTo(s.VCodes, 0);
            Get("exp_avg_sq." + s.Name + ".absmax", DType.F32, s.VScale!.Length).To(Device.Cpu).ToArray<float>().CopyTo(s.VScale, 0);
        }
        StepCount = stepCount;
    }
}
