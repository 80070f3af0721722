using ManagedTensor.Apps;
using Xunit;

namespace ManagedTensor.Tests.Gpu;

/// <summary>`mt selftest` end to end on ilgpu-cpu (a filtered run), and its clear failure without a GPU.</summary>
[Collection(IlgpuCpuCollection.Name)]
public class SelftestCommandTests
{
    [Fact]
    public void RunsTheSuiteAndPrintsATable()
    {
        var output = new StringWriter();
        int rc = MtApp.Run(["selftest", "--device", "ilgpu-cpu", "--filter", "softmax"], output);
        string text = output.ToString();
        Assert.True(rc == 0, text);
        Assert.Contains("softmax F32", text);
        Assert.Contains("pass", text);
        Assert.Contains("0 failed", text);
        Assert.Contains("ILGPU CPU accelerator", text);
    }

    [Fact]
    public void CudaWithoutADriverExitsWithTheReason()
    {
        if (ManagedTensor.Gpu.GpuDevices.CudaDriverPresent()) return;
        var output = new StringWriter();
        int rc = MtApp.Run(["selftest", "--device", "cuda", "--filter", "exp F32"], output);
        Assert.Equal(2, rc);
        Assert.Contains("driver not found", output.ToString());
    }
}
