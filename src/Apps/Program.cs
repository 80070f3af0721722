using System.CommandLine;
using System.CommandLine.Help;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;

namespace ManagedTensor.Apps;

/// <summary>
/// The `mt` command line. Thin: parse options, call into Models, report.
/// Commands: train gpt, sample, generate (default model: the embedded stories260K), chat, quantize, bench (and bench gemm),
/// demo, selftest, attention-bench.
/// </summary>
public static class MtApp
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>
    /// Runs one command line. Text goes to <paramref name="output"/>; notices, statistics and errors to
    /// <paramref name="error"/> (stderr), so piped text stays clean. A parse error or an error the user can fix
    /// ends as one "error: ..." line and exit code 1 (see <see cref="UserErrors"/>).
    /// </summary>
    public static int Run(string[] args, TextWriter output, TextWriter? error = null)
    {
        error ??= Console.Error;
        var root = BuildCommands(output, error);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0 && parsed.Action is not HelpAction)
        {
            error.WriteLine($"error: {UserErrors.Describe(parsed.Errors[0])} (mt {CommandPath(parsed.CommandResult.Command)}--help lists the options)");
            return UserErrors.ExitCode;
        }
        try
        {
            // Ctrl-C is handled where it matters (training checkpoints the current step), not by the parser.
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null, Output = output, Error = error });
        }
        catch (Exception e) when (UserErrors.Describe(e) is { } message)
        {
            error.WriteLine($"error: {message}");
            return UserErrors.ExitCode;
        }
    }

    /// <summary>Every command of `mt`, writing to <paramref name="output"/> and (notices, statistics) <paramref name="error"/>.</summary>
    public static RootCommand BuildCommands(TextWriter output, TextWriter error)
    {
        var root = new RootCommand("ManagedTensor: a tensor and autograd engine in C#, and the apps built on it");
        root.Subcommands.Add(TrainCommand.Create(output, error));
        root.Subcommands.Add(SampleCommand.Create(output, error));
        root.Subcommands.Add(GenerateCommand(output, error));
        root.Subcommands.Add(ChatCommand(output, error));
        root.Subcommands.Add(QuantizeCommand(output));
        root.Subcommands.Add(BenchCommand(output));
        root.Subcommands.Add(DemoCommand(output));
        root.Subcommands.Add(SelftestCommand.Create(output));
        root.Subcommands.Add(AttentionBenchCommand.Create(output));
        root.Subcommands.Add(KernelsCommand.Create(output));
        root.Subcommands.Add(Serve.ServeCommand.Create(output));
        root.Subcommands.Add(DetectCommand.Create(output));
        root.Subcommands.Add(TranscribeCommand.Create(output));
        root.Subcommands.Add(FinetuneCommand.Create(output, error));
        root.Subcommands.Add(ClassifyCommand.Create(output));
        root.Subcommands.Add(DiffuseCommand.Create(output, error));
        root.Subcommands.Add(PlanCommand.Create(output));
        return root;
    }

    /// <summary>"train gpt " for `mt train gpt` (empty for the root command).</summary>
    private static string CommandPath(Command c)
    {
        var names = new List<string>();
        for (var s = c; s is not null and not RootCommand; s = s.Parents.OfType<Command>().FirstOrDefault()) names.Insert(0, s.Name);
        return string.Concat(names.Select(n => n + " "));
    }

    private const string DefaultModel = "data/stories260K/stories260K.bin";
    private const string DefaultTokenizer = "data/stories260K/tok512.bin";

    // Short flags as llama.cpp's: -m model, -p prompt, -n tokens to generate, -s seed.
    private static Option<string> ModelOption() => new("--model", "-m")
    {
        Description = "any language model: llama2.c .bin, GGUF, a Hugging Face directory (Llama, Mistral, GPT-2) or its config.json, llm.c's GPT-2 .bin, an `mt train gpt` out-dir or its ckpt.safetensors",
        DefaultValueFactory = _ => DefaultModel,
    };
    private static Option<string?> TokenizerOption() => new("--tokenizer") { Description = "a tokenizer other than the model's own: llama2.c tokenizer.bin (a llama2.c model finds the one beside it), tokenizer.json, or GPT-2's vocab.json with merges.txt beside it" };
    private static Option<ulong> SeedOption(ulong seed) => new("--seed", "-s") { Description = "seed of the sampler (the same seed gives the same text)", DefaultValueFactory = _ => seed };
    private static Option<float> TemperatureOption() =>
        new Option<float>("--temperature") { Description = "0 = greedy; below 1 sharper, above 1 more random", DefaultValueFactory = _ => 0.8f }.Within(0);

    /// <summary>The tokenizer for a model: the one given, the embedded default for the default model, or none for GGUF.</summary>
    internal static string? TokenizerFor(string model, string? tokenizer)
    {
        if (tokenizer is not null) return DataFiles.Find(tokenizer);
        if (model == DefaultModel) return DataFiles.Find(DefaultTokenizer);
        return null;
    }

    private static Command GenerateCommand(TextWriter output, TextWriter error)
    {
        var model = ModelOption();
        var tokenizer = TokenizerOption();
        var prompt = new Option<string>("--prompt", "-p") { Description = "text to continue", DefaultValueFactory = _ => "" };
        var steps = new Option<int>("--length", "-n") { Description = "most tokens to generate", DefaultValueFactory = _ => 256 }.AtLeast(1);
        var temperature = TemperatureOption();
        var topK = new Option<int>("--top-k") { Description = "keep the K most likely tokens (0: all)", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var topP = new Option<float>("--top-p") { Description = "nucleus sampling: keep the most likely tokens whose probabilities sum to P (1: all)", DefaultValueFactory = _ => 0.9f }.Within(0, 1, minExclusive: true);
        var penalty = new Option<float>("--repetition-penalty") { Description = "divide the logits of tokens already in the context by this (1: off; above 1 repeats less)", DefaultValueFactory = _ => 1f }.Within(0, minExclusive: true);
        var seed = SeedOption(42);
        var (device, dtype) = LlamaDeviceOptions();
        var cmd = new Command("generate", "generate text from a language model (default: the embedded stories260K)")
        {
            model, tokenizer, prompt, steps, temperature, topK, topP, penalty, seed, device, dtype,
        };
        cmd.SetAction(p =>
        {
            string m = p.GetValue(model)!;
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            var opts = new GenerateOptions(DataFiles.Find(m), TokenizerFor(m, p.GetValue(tokenizer)), p.GetValue(prompt)!, p.GetValue(steps),
                new SamplerOptions(p.GetValue(temperature), p.GetValue(topK), p.GetValue(topP), p.GetValue(penalty), p.GetValue(seed)),
                Device: dev, FloatWeights: ParseWeightDType(p.GetValue(dtype)!));
            var r = TextGenerator.Run(opts, output, error);
            error.WriteLine($"prefill {r.PromptTokens.Count} tokens at {r.PrefillTokensPerSecond:F1} tok/s, decode {r.Generated.Count} tokens at {r.DecodeTokensPerSecond:F1} tok/s");
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// --device and --dtype of generate and chat. Weights stay as stored on every device (block formats such as Q4_0 in
    /// their blocks, multiplied by QMatMul); --dtype converts a Llama's float matrices (f16 for a GPU's tensor cores).
    /// </summary>
    private static (Option<string> Device, Option<string> DType) LlamaDeviceOptions() =>
        (Cli.DeviceOption("cpu"), WeightDTypeOption());

    private static Option<string> WeightDTypeOption()
    {
        var option = new Option<string>("--dtype") { Description = "a Llama's float weight matrices: as stored (auto), or converted to f32, f16 or bf16; block formats stay as stored", DefaultValueFactory = _ => "auto" };
        option.Validators.Add(r =>
        {
            try { ParseWeightDType(r.GetValueOrDefault<string>() ?? ""); } // a string always converts
            catch (UserErrorException e) { r.AddError(e.Message); }
        });
        return option;
    }

    private static DType? ParseWeightDType(string s) => s.ToLowerInvariant() switch
    {
        "auto" => null,
        "f32" or "float32" => DType.F32,
        "f16" or "float16" => DType.F16,
        "bf16" or "bfloat16" => DType.BF16,
        _ => throw new UserErrorException($"--dtype {s}: expected auto, f32, f16 or bf16"),
    };

    private static Command ChatCommand(TextWriter output, TextWriter error)
    {
        var model = ModelOption();
        var tokenizer = TokenizerOption();
        var length = new Option<int>("--length", "-n") { Description = "most tokens per reply", DefaultValueFactory = _ => 200 }.AtLeast(1);
        var temperature = TemperatureOption();
        var seed = SeedOption(42);
        // Chat templates (ChatTemplates.cs): the checkpoint's own by default, or one forced by name; --system adds a system message.
        var template = new Option<string>("--template") { Description = "chat format: auto (the checkpoint's template), or " + string.Join(", ", ChatTemplates.Names.Keys), DefaultValueFactory = _ => "auto" };
        template.Validators.Add(r =>
        {
            string t = r.GetValueOrDefault<string>() ?? "";
            if (t != "auto" && !ChatTemplates.Names.ContainsKey(t)) r.AddError($"--template '{t}' is not a known chat format: auto, {string.Join(", ", ChatTemplates.Names.Keys)}");
        });
        var system = new Option<string?>("--system") { Description = "system message at the start of the conversation" };
        var (device, dtype) = LlamaDeviceOptions();
        var cmd = new Command("chat", "talk to a model turn by turn in its chat format (one KV cache across turns); an empty line or end of input ends") { model, tokenizer, length, temperature, seed, template, system, device, dtype };
        cmd.SetAction(p =>
        {
            string m = p.GetValue(model)!;
            var loaded = ModelLoader.Open(DataFiles.Find(m), TokenizerFor(m, p.GetValue(tokenizer)), Cli.ParseDevice(p.GetValue(device)!), ParseWeightDType(p.GetValue(dtype)!));
            var (format, source) = ChatFormatFor(loaded, p.GetValue(template)!);
            using var chat = new TemplatedChat(loaded.Model, loaded.Tokenizer, format, new SamplerOptions(p.GetValue(temperature), TopP: 0.9f, Seed: p.GetValue(seed)), loaded.StopTokens, p.GetValue(system));
            chat.Notice = line => error.WriteLine(line);
            error.WriteLine($"chat template: {ChatTemplates.NameOf(format)} ({source}); an empty line or Ctrl-D ends the conversation");
            while (true)
            {
                output.Write("> ");
                string? line = Console.ReadLine();
                if (string.IsNullOrWhiteSpace(line)) return 0;
                chat.Say(line, p.GetValue(length), output);
                output.WriteLine();
            }
        });
        return cmd;
    }

    /// <summary>
    /// The chat format and where it came from: forced by --template, else recognized from the checkpoint's template
    /// (plain when unknown, raw when there is none).
    /// </summary>
    private static (ChatFormat Format, string Source) ChatFormatFor(LoadedModel m, string name)
    {
        if (name != "auto") return (ChatTemplates.Parse(name), "--template");
        if (m.ChatTemplate is null) return (ChatFormat.Raw, "the model has no chat template: messages are fed as plain text; --template picks one");
        if (ChatTemplates.Detect(m.ChatTemplate) is { } f) return (f, "the model's own");
        return (ChatFormat.Plain, "the model's template is not one of the known formats; --template picks another");
    }

    private static Command QuantizeCommand(TextWriter output)
    {
        var input = new Argument<string>("input") { Description = "llama2.c .bin or GGUF model" };
        var outPath = new Argument<string>("output") { Description = "GGUF file to write" };
        var tokenizer = TokenizerOption();
        var type = new Option<string>("--type")
        {
            Description = $"weight type: {QuantRecipe.HelpList} (Q4_K_M: llama.cpp's mix of Q4_K and Q6_K)",
            DefaultValueFactory = _ => "Q8_0",
            HelpName = string.Join("|", QuantRecipe.Names),
        };
        type.AcceptOnlyFromAmong(QuantRecipe.Names.Concat(QuantRecipe.Names.Select(n => n.ToLowerInvariant())).ToArray());
        var cmd = new Command("quantize", "write a model as GGUF with weights of one type (or llama.cpp's Q4_K_M mix)") { input, outPath, tokenizer, type };
        cmd.SetAction(p =>
        {
            string i = p.GetValue(input)!, o = p.GetValue(outPath)!;
            // Checked first: an unwritable output is found before the model is read and converted.
            Models.IO.AtomicFile.EnsureWritable(o);
            Quantize.Run(DataFiles.Find(i), TokenizerFor(i, p.GetValue(tokenizer)), o, QuantRecipe.Parse(p.GetValue(type)!), output);
            return 0;
        });
        return cmd;
    }

    /// <summary>The weight types named by an option's tokens; a name that is not one of <see cref="GgmlTypes.Encodable"/> is a parse error.</summary>
    private static GgmlType[] EncodableTypes(System.CommandLine.Parsing.ArgumentResult r, string option)
    {
        var list = new List<GgmlType>();
        foreach (var token in r.Tokens)
        {
            if (Enum.TryParse(token.Value, ignoreCase: true, out GgmlType t) && GgmlTypes.Encodable.Contains(t)) list.Add(t);
            else r.AddError($"{option} {token.Value}: not a weight type that can be written; choose from {string.Join(", ", GgmlTypes.Encodable)}");
        }
        return [.. list];
    }

    private static Command BenchCommand(TextWriter output)
    {
        var big = new Option<bool>("--big") { Description = "also a ~1B-parameter Llama shape with random weights" };
        var types = new Option<GgmlType[]>("--types")
        {
            Description = $"weight types of the 1B shape ({string.Join(", ", GgmlTypes.Encodable)})",
            DefaultValueFactory = _ => [GgmlType.Q4_0, GgmlType.F16],
            AllowMultipleArgumentsPerToken = true,
            CustomParser = r => EncodableTypes(r, "--types"),
        };
        var contexts = new Option<int[]>("--context")
        {
            Description = "also decode with this many tokens already in the KV cache (e.g. 64 512 2048; capped by the model's context)",
            AllowMultipleArgumentsPerToken = true,
        };
        contexts.Validators.Add(r =>
        {
            foreach (int c in r.GetValueOrDefault<int[]>() ?? [])
                if (c < 1) r.AddError($"--context must be at least 1 (got {c})");
        });
        var device = Cli.DeviceOption("cpu");
        var cmd = new Command("bench", "decode and prefill tokens/s of stories260K (and a 1B shape with --big)") { big, types, contexts, device };
        cmd.SetAction(p =>
        {
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            LlamaBench.Run(output, DataFiles.Find(DefaultModel), p.GetValue(big), bigTypes: p.GetValue(types), device: dev, contexts: p.GetValue(contexts));
            return 0;
        });
        cmd.Subcommands.Add(GemmBenchCommand.Create());
        cmd.Subcommands.Add(QMatMulBenchCommand.Create(output));
        cmd.Subcommands.Add(ScanWkvBench.Create(output));
        cmd.Subcommands.Add(YoloBench.Create(output));
        return cmd;
    }

    private static Command DemoCommand(TextWriter output)
    {
        var cmd = new Command("demo", "a short tour of the tensor engine on the CPU backend");
        cmd.SetAction(_ =>
        {
            var gen = new Generator(1337);
            var a = Tensor.Randn([2, 3], gen);
            var b = Tensor.Randn([3, 4], gen);
            output.WriteLine($"a = {a}");
            output.WriteLine($"a @ b = {a.MatMul(b)}");
            output.WriteLine($"softmax(a) = {a.Softmax(-1)}");
            output.WriteLine($"a.T (a view, strides {Tensor.ShapeString(a.MT.Strides)}) = {a.MT}");
            output.WriteLine($"sum over axis 0 = {a.Sum(0)}");
            return 0;
        });
        return cmd;
    }
}
