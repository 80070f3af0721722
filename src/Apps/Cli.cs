using System.CommandLine;
using ManagedTensor.Gpu;

namespace ManagedTensor.Apps;

/// <summary>Options shared by several commands.</summary>
public static class Cli
{
    public static Option<string> DeviceOption(string defaultDevice = "auto", string? note = null) => new("--device")
    {
        Description = "auto (the first CUDA GPU when there is one, else cpu), cpu, cuda, cuda:N, or ilgpu-cpu (ILGPU's CPU accelerator, for testing kernels)" + note,
        DefaultValueFactory = _ => defaultDevice,
    };

    /// <summary>
    /// The device named on the command line. "auto" takes CUDA device 0 when the driver reports one and
    /// the CPU backend otherwise, never ILGPU's CPU accelerator or an OpenCL device.
    /// </summary>
    public static Device ParseDevice(string s)
    {
        if (!s.Equals("auto", StringComparison.OrdinalIgnoreCase)) return Device.Parse(s);
        if (!GpuDevices.CudaDriverPresent()) return Device.Cpu; // cheap check first: no driver, no context
        return GpuDevices.ListCuda().Devices.Count > 0 ? Device.Cuda() : Device.Cpu;
    }
}
