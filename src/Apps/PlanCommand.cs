using System.CommandLine;
using System.Globalization;
using ManagedTensor.Models.Planning;
using Spectre.Console;

namespace ManagedTensor.Apps;

/// <summary>
/// `mt plan --model llama-2-7b --recipe qlora:64 --dtype bf16 --batch 1 --seq 512 --memory 12GB`: the peak device memory
/// of a training step, predicted before anything is allocated (<see cref="MemoryPlanner"/>), part by part; whether it fits
/// --memory; and if not, the cheapest change that makes it fit (<see cref="PlanAdvisor"/>).
/// </summary>
public static class PlanCommand
{
    public static Command Create(TextWriter output)
    {
        var model = new Option<string>("--model", "-m") { Description = $"a named shape ({string.Join(", ", ModelShape.Named.Keys)}) or a Hugging Face config.json (or its folder)", DefaultValueFactory = _ => "tinyllama-1.1b" };
        var recipe = new Option<string>("--recipe") { Description = "full, lora:R (adapters of rank R on every block matrix, base frozen) or qlora:R (the same on an NF4 base)", DefaultValueFactory = _ => "full" };
        var dtype = new Option<string>("--dtype") { Description = "weights: f32, bf16 or f16", DefaultValueFactory = _ => "f32" };
        var batch = new Option<int>("--batch") { Description = "sequences per micro-batch", DefaultValueFactory = _ => 1 }.AtLeast(1);
        var seq = new Option<int>("--seq") { Description = "tokens per sequence", DefaultValueFactory = _ => 512 }.AtLeast(1);
        var accum = new Option<int>("--grad-accum") { Description = "micro-batches per optimizer step", DefaultValueFactory = _ => 1 }.AtLeast(1);
        var checkpointing = new Option<bool>("--checkpointing") { Description = "per-block activation checkpointing" };
        var offload = new Option<bool>("--offload") { Description = "optimizer moments in host memory, updated on the CPU" };
        var optim = new Option<string>("--optim") { Description = "adamw (float moments), adamw8bit (block-wise 8-bit moments) or offload (float moments in host memory, as --offload); mt train's --optim adamw8bit keeps its 8-bit moments in host memory: plan it with --offload", DefaultValueFactory = _ => "adamw" };
        var autocast = new Option<bool>("--autocast") { Description = "bf16 mixed precision as `mt train --autocast bf16` and PyTorch's autocast run it: float32 master weights, 16-bit matmul and attention outputs, a float32 residual stream and norms" };
        var loraDropout = new Option<double>("--lora-dropout") { Description = "dropout on the adapters' input (lora:R, qlora:R): above 0 its masks are counted; PEFT's default is 0, mt finetune's 0.05", DefaultValueFactory = _ => 0 };
        var memory = new Option<string?>("--memory") { Description = "device memory to fit, e.g. 12GB (GB = GiB here, as cards are sized)" };
        var device = new Option<string>("--device") { Description = "cuda (adds the CUDA context) or ilgpu-cpu", DefaultValueFactory = _ => "cuda" };
        var cmd = new Command("plan", "predict a training step's peak device memory, part by part, before anything is allocated")
            { model, recipe, dtype, batch, seq, accum, checkpointing, offload, optim, autocast, loraDropout, memory, device };
        cmd.SetAction(p =>
        {
            var shape = ModelShape.Resolve(p.GetValue(model)!);
            var weights = p.GetValue(dtype)!.ToLowerInvariant() switch
            {
                "f32" => DType.F32,
                "bf16" => DType.BF16,
                "f16" => DType.F16,
                var other => throw new UserErrorException($"--dtype '{other}': expected f32, bf16 or f16"),
            };
            bool eightBit = p.GetValue(optim)!.ToLowerInvariant() switch
            {
                "adamw" => false,
                "adamw8bit" => true,
                "offload" => false,
                var other => throw new UserErrorException($"--optim '{other}': expected adamw, adamw8bit or offload"),
            };
            bool cuda = p.GetValue(device)!.ToLowerInvariant() switch
            {
                "cuda" => true,
                "ilgpu-cpu" => false,
                var other => throw new UserErrorException($"--device '{other}': expected cuda or ilgpu-cpu"),
            };
            var r = PlanRecipe.Parse(p.GetValue(recipe)!, weights) with
            {
                Batch = p.GetValue(batch), Seq = p.GetValue(seq), GradAccum = p.GetValue(accum), Checkpointing = p.GetValue(checkpointing),
                OptimizerOffload = p.GetValue(offload) || p.GetValue(optim)!.ToLowerInvariant() == "offload", Optimizer8Bit = eightBit, Autocast = p.GetValue(autocast),
                RuntimeReserve = cuda ? PlanRecipe.CudaContextBytes : 0,
                LoraDropout = p.GetValue(loraDropout) switch
                {
                    var v when !double.IsFinite(v) || v is < 0 or >= 1 => throw new UserErrorException($"--lora-dropout {v:R}: expected a value in [0, 1)"),
                    var v => v > 0,
                },
            };
            long? limit = p.GetValue(memory) is { } m ? ParseBytes(m) : null;
            return Print(output, shape, r, limit);
        });
        return cmd;
    }

    /// <summary>A parameter count as a model card says it: 6.738B, 124.4M, 306.3K (stories260K was "0B").</summary>
    private static string Count(long n) =>
        n >= 1_000_000_000 ? $"{n / 1e9:0.###}B" : n >= 1_000_000 ? $"{n / 1e6:0.#}M" : $"{n / 1e3:0.#}K";

    /// <summary>Writes the plan table, the verdict against <paramref name="limit"/> and a suggestion; 0 when it fits (or no limit), 2 when not.</summary>
    public static int Print(TextWriter output, ModelShape shape, PlanRecipe r, long? limit)
    {
        var plan = MemoryPlanner.Predict(shape, r);
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors });
        console.Profile.Width = 140; // the formulas fit on one line
        output.WriteLine($"{shape.Name}: {Count(shape.ParameterCount)} parameters ({shape.Layers} layers, width {shape.Dim}, MLP {shape.Hidden}, {shape.Heads} heads, {shape.KvHeads} KV heads, vocabulary {shape.Vocab})");
        output.WriteLine($"recipe: {r.Describe()}; {plan.TrainableParameters:N0} trained values");
        var table = new Table().AddColumn("part").AddColumn(new TableColumn("bytes").RightAligned()).AddColumn("where").AddColumn("formula");
        foreach (var part in plan.Parts)
            table.AddRow(Markup.Escape(part.Name), DeviceMemory.FormatBytes(part.Bytes), part.OnHost ? "host" : "device", Markup.Escape(part.Formula));
        table.AddRow("[bold]peak device memory[/]", $"[bold]{DeviceMemory.FormatBytes(plan.PeakBytes)}[/]", "device", Markup.Escape($"of which {DeviceMemory.FormatBytes(plan.RoundingBytes)} is the allocator's rounding to size classes"));
        console.Write(table);
        if (limit is not { } l) return 0;
        if (plan.Fits(l))
        {
            output.WriteLine($"fits in {DeviceMemory.FormatBytes(l)} ({DeviceMemory.FormatBytes(l - plan.PeakBytes)} to spare)");
            return 0;
        }
        output.WriteLine($"does not fit in {DeviceMemory.FormatBytes(l)}: {DeviceMemory.FormatBytes(plan.PeakBytes - l)} over");
        if (PlanAdvisor.Suggest(shape, r, l) is { } s)
            output.WriteLine($"cheapest change that fits: {string.Join(" + ", s.Changes)} (peak {DeviceMemory.FormatBytes(s.Plan.PeakBytes)}: {s.Plan.Recipe.Describe()})");
        else output.WriteLine("no change here makes it fit: a larger device, or a smaller model");
        return 2;
    }

    /// <summary>"12GB", "12 GiB", "500MB", "24G", or bytes; GB and MB count in powers of 1024 (a "12 GB" card holds 12 GiB).</summary>
    public static long ParseBytes(string text)
    {
        string t = text.Trim().ToUpperInvariant().Replace(" ", "");
        (string Suffix, long Unit)[] units = [("GIB", 1L << 30), ("GB", 1L << 30), ("G", 1L << 30), ("MIB", 1L << 20), ("MB", 1L << 20), ("M", 1L << 20), ("B", 1)];
        long unit = 1;
        foreach (var (suffix, u) in units)
        {
            if (!t.EndsWith(suffix, StringComparison.Ordinal)) continue;
            t = t[..^suffix.Length];
            unit = u;
            break;
        }
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v > 0))
            throw new UserErrorException($"--memory '{text}': expected a size such as 12GB, 24GiB or 500MB");
        return (long)(v * unit);
    }
}
