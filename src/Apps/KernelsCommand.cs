using System.CommandLine;
using ManagedTensor.Gpu.Sass;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt kernels --report [--out FILE] [--filter TEXT]`: the SASS-level kernel report (see KernelReport), made
/// without a GPU from ptxas and cuobjdump (scripts/cuda_tools.sh fetches them). bench/kernel_report.sh
/// regenerates bench/KERNELS.md with it.
/// </summary>
public static class KernelsCommand
{
    public static Command Create(TextWriter output)
    {
        var report = new Option<bool>("--report") { Description = "registers, shared memory, spills, occupancy and hot-loop instruction mix per kernel and architecture" };
        var outPath = new Option<string?>("--out") { Description = "also write the report (Markdown: the table and the performance model) to this file" };
        var modelJson = new Option<string?>("--model-json") { Description = "also write the model's predictions as JSON (scripts/gpu_checks.sh compares them with measurements)" };
        var filter = new Option<string?>("--filter") { Description = "only kernels whose name contains this text" };
        var dump = new Option<string?>("--dump") { Description = "also write each kernel's PTX and SASS to this directory" };
        var jobs = new Option<int>("--jobs") { Description = "kernels compiled and assembled at once", DefaultValueFactory = _ => Math.Max(1, Environment.ProcessorCount) };
        var cmd = new Command("kernels", "the GPU kernels as machine code, measured without a GPU (ptxas + cuobjdump)") { report, outPath, modelJson, filter, jobs, dump };
        cmd.SetAction(p =>
        {
            if (!p.GetValue(report))
            {
                output.WriteLine("usage: mt kernels --report [--out FILE] [--filter TEXT]");
                return 1;
            }
            if (CudaTools.Ptxas is null || CudaTools.Cuobjdump is null)
            {
                Console.Error.WriteLine("error: ptxas and cuobjdump not found: run scripts/cuda_tools.sh (or set MT_PTXAS)");
                return 1;
            }
            var kernels = ReportKernels.All().Where(k => p.GetValue(filter) is not { } f || k.Name.Contains(f, StringComparison.OrdinalIgnoreCase));
            if (p.GetValue(dump) is { } dir) Directory.CreateDirectory(dir);
            var rows = KernelReport.Run(kernels, p.GetValue(jobs), p.GetValue(dump));
            string table = KernelReport.Table(rows);
            var predictions = PerfModel.Predict(rows);
            output.Write(table);
            output.WriteLine();
            output.Write(PerfModel.Table(predictions));
            if (p.GetValue(outPath) is { } path) File.WriteAllText(path, KernelReport.Document(rows, predictions));
            if (p.GetValue(modelJson) is { } json) File.WriteAllText(json, PerfModel.Json(predictions));
            return rows.Any(r => r.Error is not null) ? 1 : 0;
        });
        return cmd;
    }
}
