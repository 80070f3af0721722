using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu.Sass;

/// <summary>A kernel the report measures: its method, how it is launched, and its budget.</summary>
/// <param name="Name">The report's name for it.</param>
/// <param name="Family">"gemm", "attention" or "decode": the families whose hot loops the tests hold to budgets; "ladder" (the
/// SGEMM teaching versions) and "fallback" (the SIMT attention kernels for float32 and odd head dims, whose per-thread rows of
/// runtime length live in local memory) and "scan" (selective scan and WKV: latency-bound recurrences) are reported, not held.</param>
/// <param name="Threads">Threads per block at launch on a GPU.</param>
/// <param name="DynamicSharedBytes">Dynamic shared memory per block at launch (static shared memory is read from ptxas).</param>
/// <param name="MaxPerMma">The budget: at most this many instructions per tensor-core instruction in the hot loop, or null.</param>
/// <param name="Sm90aOnly">Hopper-only code (wgmma, TMA): assembled for sm_90a only.</param>
public sealed record ReportKernel(string Name, string Family, MethodInfo Method, int Threads, int DynamicSharedBytes = 0,
    double? MaxPerMma = null, bool Sm90aOnly = false);

/// <summary>One kernel on one architecture: ptxas's resource counts, occupancy, and its hot loop's instruction mix.</summary>
public sealed record KernelAnalysis(ReportKernel Kernel, string Arch, int Registers, int SharedBytes, int StackBytes, int SpillStores,
    int SpillLoads, Occupancy Occupancy, InstructionMix Whole, InstructionMix? HotLoop, int NestedLoops, int EnclosingExtra, string? Error = null)
{
    /// <summary>The hot loop's instructions per HMMA (or per FFMA), 0 without a loop.</summary>
    public double PerMathInstruction => HotLoop?.PerMathInstruction ?? 0;

    /// <summary>Whether the hot loop keeps the family's rules: no local memory, no integer division, within its budget.</summary>
    public IEnumerable<string> BudgetViolations()
    {
        if (Error is not null) { yield return Error; yield break; }
        if (StackBytes > 0 || SpillStores > 0 || SpillLoads > 0) yield return $"{StackBytes} bytes stack, {SpillStores}/{SpillLoads} bytes spilled";
        if (HotLoop is not { } h) yield break;
        if (h.Local > 0) yield return $"{h.Local} LDL/STL in the hot loop";
        if (h.Division > 0) yield return $"{h.Division} integer divisions in the hot loop";
        if (Kernel.MaxPerMma is double max && h.Mma > 0 && h.PerMathInstruction > max)
            yield return $"{h.PerMathInstruction:F1} instructions per HMMA in the hot loop, budget {max}";
    }
}

/// <summary>
/// The kernel report: every hot kernel compiled by ILGPU to PTX, assembled by ptxas for sm_89 and
/// sm_90 (sm_90a for Hopper-only code) and disassembled by cuobjdump, with no GPU. Per kernel and
/// architecture: registers, shared memory, stack and spills (ptxas -v), theoretical occupancy, and the
/// instruction mix of the hot loop.
///
/// The hot loop is the loop of the machine code (a backward branch's range) that holds the most
/// tensor-core instructions, or FFMAs when there are none; of equal ones the innermost, then the longest. Its mix is a
/// static count of that range, i.e. what one iteration issues when every forward branch in it is taken;
/// loops nested inside are counted once and reported (the rebuilt kernels have none). When the hot loop
/// sits inside another loop (a k-step loop inside a k-tile loop), the instructions that loop adds per
/// its iteration are shown too.
/// </summary>
public static class KernelReport
{
    /// <summary>Analyses one kernel for one architecture (needs ptxas and cuobjdump).</summary>
    public static KernelAnalysis Analyze(ReportKernel kernel, CudaArchitecture arch, string? dumpDirectory = null)
    {
        string target = CudaTools.Target(arch, kernel.Sm90aOnly);
        var sm = SmLimits.For(target);
        string ptx;
        try
        {
            ptx = PtxCompiler.CompileCached(kernel.Method, arch, isa: kernel.Sm90aOnly ? PtxCompiler.HopperIsa : null, raiseTarget: kernel.Sm90aOnly);
            if (kernel.Sm90aOnly) ptx = PtxCompiler.ToArchSpecific(ptx);
        }
        catch (Exception e)
        {
            return Failed(kernel, target, sm, e.Message);
        }
        var (cubin, log) = CudaTools.AssembleCached(ptx, arch, kernel.Sm90aOnly);
        if (cubin is null) return Failed(kernel, target, sm, "ptxas: " + log.Trim());
        string listing = CudaTools.Disassemble(cubin);
        if (dumpDirectory is not null)
        {
            string stem = Path.Combine(dumpDirectory, $"{string.Concat(kernel.Name.Select(ch => char.IsLetterOrDigit(ch) ? ch : '_'))}.{target}");
            File.WriteAllText(stem + ".ptx", ptx);
            File.WriteAllText(stem + ".sass", listing);
        }
        var sass = SassListing.Parse(listing);
        var r = ParsePtxasLog(log);
        var occupancy = Occupancy.Of(sm, kernel.Threads, r.Registers, r.Shared + kernel.DynamicSharedBytes);
        var hot = HotLoop(sass);
        // The loop around the hot one (a k-tile loop around an unrolled-by-nothing k-step loop): what it adds per its iteration.
        var parent = hot is null ? null : sass.Loops.Where(l => l.Contains(hot)).OrderBy(l => l.End - l.Start).FirstOrDefault();
        int extra = parent is null ? 0 : sass.In(parent).Count() - sass.In(hot!).Count();
        return new KernelAnalysis(kernel, target, r.Registers, r.Shared + kernel.DynamicSharedBytes, r.Stack, r.SpillStores, r.SpillLoads, occupancy,
            InstructionMix.Of(sass.Instructions), hot is null ? null : InstructionMix.Of(sass.In(hot)), hot is null ? 0 : sass.Inside(hot).Count(), extra);
    }

    private static KernelAnalysis Failed(ReportKernel kernel, string target, SmLimits sm, string error)
        => new(kernel, target, 0, 0, 0, 0, 0, Occupancy.Of(sm, kernel.Threads, 255, 0), default, null, 0, 0, error);

    /// <summary>
    /// The loop with the most tensor-core instructions (else FFMAs); of equal ones the innermost, then the
    /// longest (a main loop that also loads, rather than its drain loop: the conservative count).
    /// </summary>
    public static SassLoop? HotLoop(SassListing sass)
    {
        SassLoop? best = null;
        (int Mma, int Ffma, int Depth, int Total) bestKey = (0, 0, -1, 0);
        foreach (var loop in sass.Loops)
        {
            var mix = InstructionMix.Of(sass.In(loop));
            var key = (mix.Mma, mix.Ffma, loop.Depth, mix.Total);
            if (mix.Mma == 0 && mix.Ffma == 0) continue;
            if (key.CompareTo(bestKey) > 0) (best, bestKey) = (loop, key);
        }
        return best;
    }

    internal static (int Registers, int Shared, int Stack, int SpillStores, int SpillLoads) ParsePtxasLog(string log)
    {
        static int Last(string log, string pattern)
            => Regex.Matches(log, pattern).LastOrDefault() is { } m ? int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
        return (Last(log, @"Used (\d+) registers"), Last(log, @"(\d+) bytes smem"), Last(log, @"(\d+) bytes stack frame"),
            Last(log, @"(\d+) bytes spill stores"), Last(log, @"(\d+) bytes spill loads"));
    }

    /// <summary>Every kernel in <paramref name="kernels"/> on sm_89 and sm_90 (Hopper-only ones on sm_90a), in parallel.</summary>
    public static IReadOnlyList<KernelAnalysis> Run(IEnumerable<ReportKernel> kernels, int parallelism = 2, string? dumpDirectory = null)
    {
        var jobs = kernels.SelectMany(k => k.Sm90aOnly ? [(k, PtxCompiler.Sm90)] : PtxCompiler.CiTargets.Select(a => (k, a))).ToList();
        var results = new KernelAnalysis[jobs.Count];
        Parallel.For(0, jobs.Count, new ParallelOptions { MaxDegreeOfParallelism = parallelism }, i => results[i] = Analyze(jobs[i].k, jobs[i].a, dumpDirectory));
        return results;
    }

    /// <summary>The whole report: how to read it, the table, and the performance model's predictions.</summary>
    public static string Document(IReadOnlyList<KernelAnalysis> rows, IReadOnlyList<Prediction> predictions)
    {
        var tools = $"ptxas {CudaTools.PtxasVersion}";
        return $$"""
            # Kernel report

            Regenerate with `bash bench/kernel_report.sh` (no GPU: {{tools}} and cuobjdump from Debian's non-free
            nvidia-cuda-toolkit, fetched by scripts/cuda_tools.sh; `mt kernels --report` underneath). Per kernel and
            architecture: registers, shared memory per block, stack and spilled bytes (ptxas -v), theoretical occupancy
            (resident warps per SM and what limits them), and the instruction mix of the hot loop read from SASS: the
            loop with the most HMMA (tensor-core mma) or else FFMA instructions, counted statically (one iteration with
            every forward branch taken). INT counts integer, logic, shift, compare and move instructions on both the
            regular and the uniform datapath; IDIV the integer division sequences (I2F.RP + MUFU.RCP); LDG / LDGSTS
            plain and asynchronous (cp.async) global loads; "nested" the loops inside the hot one; "enclosing loop
            +instr" what the loop around it adds per its own iteration. KernelBudgetTests holds the GEMM, attention and
            decode kernels to: no LDL/STL, no IDIV, no stack or spills in the hot loop; at most 4 instructions per HMMA
            for the tensor-core GEMM, 8 for the attention forward.

            {{Table(rows)}}
            ## Performance model

            From the hot loop's counts and occupancy and each device's published limits (see `PerfModel`: tensor pipe,
            issue slots, MUFU, one warp's serial chain; mma.sync reaches about 0.62 of Hopper's tensor peak; wave
            quantization; DRAM). An upper bound from instruction counts: shared-memory conflicts, barriers and clock
            throttling are not in it. `scripts/gpu_checks.sh` prints measured next to predicted, and the error.

            {{PerfModel.Table(predictions)}}
            """;
    }

    /// <summary>The report as a Markdown table, one row per kernel and architecture.</summary>
    public static string Table(IReadOnlyList<KernelAnalysis> rows)
    {
        var s = new StringBuilder();
        s.AppendLine("| kernel | arch | regs | smem KB | stack / spill B | occupancy (warps, limit) | hot loop instr | HMMA | FFMA | LDSM | LDS | LDG / LDGSTS | INT | MUFU | LDL/STL | IDIV | nested | enclosing loop +instr | instr / HMMA or FFMA |");
        s.AppendLine("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var r in rows)
        {
            if (r.Error is not null)
            {
                s.AppendLine($"| {r.Kernel.Name} | {r.Arch} | failed: {r.Error.Split('\n')[0].Replace("|", "/")} ||||||||||||||||||");
                continue;
            }
            string occupancy = $"{r.Occupancy.Fraction * 100:F0}% ({r.Occupancy.WarpsPerSm}, {r.Occupancy.Limiter})";
            string head = $"| {r.Kernel.Name} | {r.Arch} | {r.Registers} | {r.SharedBytes / 1024.0:0.#} | {r.StackBytes} / {r.SpillStores + r.SpillLoads} | {occupancy} ";
            if (r.HotLoop is not { } h)
            {
                s.AppendLine(head + "| no loop | | | | | | | | | | | | |");
                continue;
            }
            string per = h.Mma > 0 ? $"{h.PerMathInstruction:F1} / HMMA" : h.Ffma > 0 ? $"{h.PerMathInstruction:F1} / FFMA" : "-";
            s.AppendLine(head + $"| {h.Total} | {h.Mma} | {h.Ffma} | {h.Ldsm} | {h.Lds} | {h.Ldg} / {h.Ldgsts} | {h.Integer} | {h.Mufu} | {h.Local} | {h.Division} | {r.NestedLoops} | {(r.EnclosingExtra > 0 ? r.EnclosingExtra : "-")} | {per} |");
        }
        return s.ToString();
    }
}
