using System.CommandLine;
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
    public static int Main(string[] args) => Run(args, Console.Out);

    public static int Run(string[] args, TextWriter output)
    {
        var root = new RootCommand("ManagedTensor: a tensor and autograd engine in C#, and the apps built on it");
        root.Subcommands.Add(TrainCommand.Create(output));
        root.Subcommands.Add(SampleCommand.Create(output));
        root.Subcommands.Add(GenerateCommand(output));
        root.Subcommands.Add(ChatCommand(output));
        root.Subcommands.Add(QuantizeCommand(output));
        root.Subcommands.Add(BenchCommand(output));
        root.Subcommands.Add(DemoCommand(output));
        root.Subcommands.Add(SelftestCommand.Create(output));
        root.Subcommands.Add(AttentionBenchCommand.Create(output));
        // Bad input (a wrong option value, a missing or malformed file) ends with its message, not a
        // stack trace; anything else is a bug and keeps the runtime's full report.
        try
        {
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidDataException or InvalidModelFileException or NotSupportedException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private const string DefaultModel = "data/stories260K/stories260K.bin";
    private const string DefaultTokenizer = "data/stories260K/tok512.bin";

    private static Option<string> ModelOption() => new("--model")
    {
        Description = "any language model: llama2.c .bin, GGUF, a Hugging Face directory (Llama, Mistral, GPT-2) or its config.json, llm.c's GPT-2 .bin, an `mt train gpt` out-dir or its ckpt.safetensors",
        DefaultValueFactory = _ => DefaultModel,
    };
    private static Option<string?> TokenizerOption() => new("--tokenizer") { Description = "a tokenizer other than the model's own: llama2.c tokenizer.bin (default: beside a llama2.c model), tokenizer.json, or GPT-2's vocab.json with merges.txt beside it" };

    /// <summary>The tokenizer for a model: the one given, the embedded default for the default model, or none for GGUF.</summary>
    private static string? TokenizerFor(string model, string? tokenizer)
    {
        if (tokenizer is not null) return DataFiles.Find(tokenizer);
        if (model == DefaultModel) return DataFiles.Find(DefaultTokenizer);
        return null;
    }

    private static Command GenerateCommand(TextWriter output)
    {
        var model = ModelOption();
        var tokenizer = TokenizerOption();
        var prompt = new Option<string>("--prompt") { Description = "text to continue", DefaultValueFactory = _ => "" };
        var steps = new Option<int>("--length") { Description = "tokens to generate", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "keep the K most likely tokens (0: all)", DefaultValueFactory = _ => 0 };
        var topP = new Option<float>("--top-p") { Description = "nucleus sampling threshold", DefaultValueFactory = _ => 0.9f };
        var penalty = new Option<float>("--repetition-penalty") { DefaultValueFactory = _ => 1f };
        var seed = new Option<ulong>("--seed") { DefaultValueFactory = _ => 42UL };
        var (device, dtype) = LlamaDeviceOptions();
        var cmd = new Command("generate", "generate text from a language model (default: the embedded stories260K)")
        {
            model, tokenizer, prompt, steps, temperature, topK, topP, penalty, seed, device, dtype,
        };
        cmd.SetAction(p =>
        {
            string m = p.GetValue(model)!;
            var opts = new GenerateOptions(DataFiles.Find(m), TokenizerFor(m, p.GetValue(tokenizer)), p.GetValue(prompt)!, p.GetValue(steps),
                new SamplerOptions(p.GetValue(temperature), p.GetValue(topK), p.GetValue(topP), p.GetValue(penalty), p.GetValue(seed)),
                Device: Cli.ParseDevice(p.GetValue(device)!), FloatWeights: ParseWeightDType(p.GetValue(dtype)!));
            var r = TextGenerator.Run(opts, output, Console.Error);
            output.WriteLine($"prefill {r.PromptTokens.Count} tokens at {r.PrefillTokensPerSecond:F1} tok/s, decode {r.Generated.Count} tokens at {r.DecodeTokensPerSecond:F1} tok/s");
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// --device and --dtype of generate and chat. Weights stay as stored on every device (block formats such as Q4_0 in
    /// their blocks, multiplied by QMatMul); --dtype converts a Llama's float matrices (f16 for a GPU's tensor cores).
    /// </summary>
    private static (Option<string> Device, Option<string> DType) LlamaDeviceOptions() =>
        (Cli.DeviceOption("cpu"),
         new Option<string>("--dtype") { Description = "a Llama's float weight matrices: as stored (auto), or converted to f32, f16 or bf16; block formats stay as stored", DefaultValueFactory = _ => "auto" });

    private static DType? ParseWeightDType(string s) => s.ToLowerInvariant() switch
    {
        "auto" => null,
        "f32" or "float32" => DType.F32,
        "f16" or "float16" => DType.F16,
        "bf16" or "bfloat16" => DType.BF16,
        _ => throw new ArgumentException($"--dtype {s}: expected auto, f32, f16 or bf16"),
    };

    private static Command ChatCommand(TextWriter output)
    {
        var model = ModelOption();
        var tokenizer = TokenizerOption();
        var length = new Option<int>("--length") { Description = "most tokens per reply", DefaultValueFactory = _ => 200 };
        var temperature = new Option<float>("--temperature") { DefaultValueFactory = _ => 0.8f };
        // Chat templates (ChatTemplates.cs): the checkpoint's own by default, or one forced by name; --system adds a system message.
        var template = new Option<string>("--template") { Description = "chat format: auto (the checkpoint's template), or " + string.Join(", ", ChatTemplates.Names.Keys), DefaultValueFactory = _ => "auto" };
        var system = new Option<string?>("--system") { Description = "system message at the start of the conversation" };
        var (device, dtype) = LlamaDeviceOptions();
        var cmd = new Command("chat", "talk to a model turn by turn in its chat format (one KV cache across turns); an empty line ends") { model, tokenizer, length, temperature, template, system, device, dtype };
        cmd.SetAction(p =>
        {
            string m = p.GetValue(model)!;
            var loaded = ModelLoader.Open(DataFiles.Find(m), TokenizerFor(m, p.GetValue(tokenizer)), Cli.ParseDevice(p.GetValue(device)!), ParseWeightDType(p.GetValue(dtype)!));
            var format = ChatFormatFor(loaded, p.GetValue(template)!, output);
            using var chat = new TemplatedChat(loaded.Model, loaded.Tokenizer, format, new SamplerOptions(p.GetValue(temperature), TopP: 0.9f), loaded.StopTokens, p.GetValue(system));
            chat.Notice = line => Console.Error.WriteLine(line);
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

    /// <summary>The chat format: forced by --template, else recognized from the checkpoint's template (plain when unknown, raw when there is none).</summary>
    private static ChatFormat ChatFormatFor(LoadedModel m, string name, TextWriter output)
    {
        if (name != "auto") return ChatTemplates.Parse(name);
        if (m.ChatTemplate is null) return ChatFormat.Raw;
        if (ChatTemplates.Detect(m.ChatTemplate) is { } f) return f;
        output.WriteLine("(the checkpoint's chat template is not one of the known formats: using 'plain'; --template picks another)");
        return ChatFormat.Plain;
    }

    private static Command QuantizeCommand(TextWriter output)
    {
        var input = new Argument<string>("input") { Description = "llama2.c .bin or GGUF model" };
        var outPath = new Argument<string>("output") { Description = "GGUF file to write" };
        var tokenizer = TokenizerOption();
        var type = new Option<GgmlType>("--type") { Description = "F32, F16, Q8_0 or Q4_0", DefaultValueFactory = _ => GgmlType.Q8_0 };
        var cmd = new Command("quantize", "write a model as GGUF with F32, F16, Q8_0 or Q4_0 weights") { input, outPath, tokenizer, type };
        cmd.SetAction(p =>
        {
            string i = p.GetValue(input)!;
            Quantize.Run(DataFiles.Find(i), TokenizerFor(i, p.GetValue(tokenizer)), p.GetValue(outPath)!, p.GetValue(type), output);
            return 0;
        });
        return cmd;
    }

    private static Command BenchCommand(TextWriter output)
    {
        var big = new Option<bool>("--big") { Description = "also a ~1B-parameter Llama shape with random weights" };
        var types = new Option<GgmlType[]>("--types") { Description = "weight types of the 1B shape (F32, F16, Q8_0, Q4_0)", DefaultValueFactory = _ => [GgmlType.Q4_0, GgmlType.F16], AllowMultipleArgumentsPerToken = true };
        var device = Cli.DeviceOption("cpu");
        var cmd = new Command("bench", "decode and prefill tokens/s of stories260K (and a 1B shape with --big)") { big, types, device };
        cmd.SetAction(p =>
        {
            LlamaBench.Run(output, DataFiles.Find(DefaultModel), p.GetValue(big), bigTypes: p.GetValue(types), device: Cli.ParseDevice(p.GetValue(device)!));
            return 0;
        });
        cmd.Subcommands.Add(GemmBenchCommand.Create());
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
