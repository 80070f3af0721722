using System.Reflection;
using System.Text;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.PTX;
using ILGPU.IR;
using ILGPU.IR.Intrinsics;
using ILGPU.IR.Values;

namespace ManagedTensor.Gpu;

/// <summary>
/// The PTX text of a method marked <see cref="IntrinsicImplementationAttribute"/>; see <see cref="PtxInline"/>.
/// <c>%0..</c> are the result's registers (a struct result gives one register per field, in field order),
/// then each argument's registers in order.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
internal sealed class PtxAttribute(string template) : Attribute
{
    public string Template { get; } = template;
}

/// <summary>
/// Inline PTX whose outputs stay in registers.
///
/// Why not <c>CudaAsm.EmitRef</c>: ILGPU 1.5.3 lowers every <c>out</c>/<c>Output&lt;T&gt;</c>/<c>Ref&lt;T&gt;</c>
/// operand to a <c>.local</c> variable (the operand's address is taken), and ptxas 11.8 does not promote
/// them back: an <c>mma.sync</c> through EmitRef costs 4 STL + 10 LDL around every instruction and a 64-byte
/// stack frame (checked with ptxas -v and cuobjdump -sass). <c>CudaAsm.Emit</c> with inputs only is fine
/// and is still used for cp.async and its fences.
///
/// Here instead a C# method is registered as a code-generating intrinsic of ILGPU's PTX backend: its
/// arguments are loaded into their SSA registers, its result (a primitive or a struct of primitives, e.g.
/// four floats for mma's accumulators) is allocated as fresh registers, and the method's <see cref="PtxAttribute"/>
/// template is written between them. The result is an ordinary value, so accumulators live in registers
/// across loop iterations (ptxas -v: 0 bytes stack frame). Outside the PTX backend (the CPU accelerator)
/// the method's C# body runs; call sites still guard with <c>CudaAsm.IsSupported</c> and take a plain path.
///
/// Call <see cref="Enable"/> on every context builder whose kernels use these methods.
/// </summary>
internal static class PtxInline
{
    private static readonly Type[] Hosts = [typeof(Ptx), typeof(Gemm.Wgmma)];

    /// <summary>Registers every [Ptx] method of the engine with the context's PTX backend.</summary>
    public static Context.Builder EnablePtxInline(this Context.Builder builder)
    {
        Enable(builder.GetIntrinsicManager());
        return builder;
    }

    public static void Enable(IntrinsicImplementationManager manager)
    {
        var generator = new PTXIntrinsic(typeof(PtxInline), nameof(Generate), IntrinsicImplementationMode.GenerateCode);
        foreach (var host in Hosts)
            foreach (var method in host.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static))
                if (method.GetCustomAttribute<PtxAttribute>() is not null)
                    manager.RegisterMethod(method, generator);
    }

    /// <summary>ILGPU's code-generation callback: writes the template with register names substituted.</summary>
    internal static void Generate(PTXBackend backend, PTXCodeGenerator codeGenerator, Value value)
    {
        var call = (MethodCall)value;
        var template = call.Target.Source.GetCustomAttribute<PtxAttribute>()?.Template
            ?? throw new InvalidOperationException($"{call.Target.Source.Name} has no [Ptx] template");
        var registers = new List<RegisterAllocator<PTXRegisterKind>.HardwareRegister>();
        if (!call.Type.IsVoidType) Flatten(codeGenerator, codeGenerator.Allocate(call), registers);
        for (int i = 0; i < call.Count; i++) Flatten(codeGenerator, codeGenerator.Load(call[i]), registers);

        var text = new StringBuilder("\t");
        for (int i = 0; i < template.Length; i++)
        {
            if (template[i] != '%' || i + 1 >= template.Length || !char.IsAsciiDigit(template[i + 1]))
            {
                text.Append(template[i]);
                continue;
            }
            int n = 0, j = i + 1;
            while (j < template.Length && char.IsAsciiDigit(template[j])) n = n * 10 + (template[j++] - '0');
            if (n >= registers.Count)
                throw new InvalidOperationException($"PTX template of {call.Target.Source.Name} names %{n}, it has {registers.Count} registers");
            text.Append('%').Append(PTXRegisterAllocator.GetStringRepresentation(registers[n]));
            i = j - 1;
        }
        codeGenerator.Builder.AppendLine(text.ToString());
    }

    private static void Flatten(PTXCodeGenerator codeGenerator, RegisterAllocator<PTXRegisterKind>.Register register,
        List<RegisterAllocator<PTXRegisterKind>.HardwareRegister> into)
    {
        if (register is RegisterAllocator<PTXRegisterKind>.CompoundRegister compound)
            foreach (var child in compound.Children) Flatten(codeGenerator, child, into);
        else // constants become registers: PTX operands such as mma's must be registers
            into.Add(codeGenerator.EnsureHardwareRegister((RegisterAllocator<PTXRegisterKind>.PrimitiveRegister)register));
    }
}
