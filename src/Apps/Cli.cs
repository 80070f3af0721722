using System.CommandLine;

namespace ManagedTensor.Apps;

/// <summary>Options shared by several commands.</summary>
public static class Cli
{
    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "cpu, cuda, cuda:N or ilgpu-cpu (ILGPU's CPU accelerator, for testing kernels)",
        DefaultValueFactory = _ => "cpu",
    };

    public static Device ParseDevice(string s) => Device.Parse(s);
}
