using System.CommandLine;
using ManagedTensor.Gpu;

namespace ManagedTensor.Apps;

/// <summary>Options shared by several commands.</summary>
public static class Cli
{
    private const string Choices = "cpu, cuda, cuda:N (the N-th NVIDIA GPU), ilgpu-cpu (the GPU kernels on ILGPU's CPU accelerator, for testing)";
    private const string Auto = "auto (the first CUDA GPU when there is one, else cpu)";

    /// <summary>--device, described with its real default; a name that is not a device is a parse error.</summary>
    public static Option<string> DeviceOption(string defaultDevice = "auto", string? note = null)
    {
        var option = new Option<string>("--device")
        {
            Description = (defaultDevice == "auto" ? $"{Auto}, {Choices}" : $"{Choices}, or {Auto}") + note,
            DefaultValueFactory = _ => defaultDevice,
        };
        option.Validators.Add(r =>
        {
            string v = r.GetValueOrDefault<string>() ?? "";
            if (!v.Equals("auto", StringComparison.OrdinalIgnoreCase) && !TryParse(v, out _))
                r.AddError($"--device '{v}' is not a device: expected auto, cpu, cuda, cuda:N or ilgpu-cpu");
        });
        return option;
    }

    private static bool TryParse(string s, out Device device)
    {
        try
        {
            device = Device.Parse(s);
            return true;
        }
        catch (ArgumentException)
        {
            device = default;
            return false;
        }
    }

    /// <summary>
    /// The device named on the command line, checked to exist before anything is loaded or built: "cuda" on a
    /// machine without an NVIDIA driver or GPU is one clear line, not a failure deep inside the first kernel launch.
    /// "auto" takes CUDA device 0 when the driver reports one and the CPU backend otherwise, never ILGPU's CPU
    /// accelerator or an OpenCL device.
    /// </summary>
    public static Device ParseDevice(string s, string? fallback = "use --device cpu")
    {
        if (s.Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            if (!GpuDevices.CudaDriverPresent()) return Device.Cpu; // cheap check first: no driver, no context
            return GpuDevices.ListCuda().Devices.Count > 0 ? Device.Cuda() : Device.Cpu;
        }
        if (!TryParse(s, out var device))
            throw new UserErrorException($"--device '{s}' is not a device: expected auto, cpu, cuda, cuda:N or ilgpu-cpu");
        if (device.Kind == DeviceKind.Cuda) RequireCuda(device, fallback);
        return device;
    }

    /// <summary>Throws a user error unless CUDA device <paramref name="device"/> exists on this machine.</summary>
    public static void RequireCuda(Device device, string? fallback = null)
    {
        var (devices, problem) = GpuDevices.ListCuda();
        if (devices.Count == 0)
            throw new UserErrorException($"--device {device}: this machine has no CUDA device: {problem}{(fallback is null ? "" : "; " + fallback)}");
        if (device.Index >= devices.Count)
            throw new UserErrorException($"--device {device}: this machine has {devices.Count} CUDA device{(devices.Count == 1 ? "" : "s")} (cuda:0 .. cuda:{devices.Count - 1})");
    }
}
