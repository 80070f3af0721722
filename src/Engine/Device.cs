namespace ManagedTensor;

public enum DeviceKind
{
    /// <summary>The CPU reference backend (plain C#, SIMD, Parallel.For).</summary>
    Cpu,
    /// <summary>ILGPU kernels on an NVIDIA GPU through the CUDA driver.</summary>
    Cuda,
    /// <summary>The same ILGPU kernels on ILGPU's CPU accelerator (for testing kernels without a GPU).</summary>
    IlgpuCpu,
}

/// <summary>Where a tensor's storage lives. Parsed from "cpu", "cuda", "cuda:1", "ilgpu-cpu".</summary>
public readonly record struct Device(DeviceKind Kind, int Index = 0)
{
    public static readonly Device Cpu = new(DeviceKind.Cpu);
    public static Device Cuda(int index = 0) => new(DeviceKind.Cuda, index);
    public static readonly Device IlgpuCpu = new(DeviceKind.IlgpuCpu);

    public static Device Parse(string s)
    {
        string t = s.Trim().ToLowerInvariant();
        if (t == "cpu") return Cpu;
        if (t == "ilgpu-cpu") return IlgpuCpu;
        if (t == "cuda") return Cuda();
        if (t.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(t.AsSpan(5), out int i) && i >= 0)
            return Cuda(i);
        throw new ArgumentException($"unknown device '{s}': expected cpu, cuda, cuda:N or ilgpu-cpu", nameof(s));
    }

    public override string ToString() => Kind switch
    {
        DeviceKind.Cpu => "cpu",
        DeviceKind.Cuda => Index == 0 ? "cuda" : $"cuda:{Index}",
        _ => "ilgpu-cpu",
    };
}
