using System.Globalization;
using System.Text.RegularExpressions;

namespace ManagedTensor.Gpu.Sass;

/// <summary>One machine instruction of a cuobjdump -sass listing.</summary>
/// <param name="Address">Byte offset in the kernel (16 bytes per instruction since Volta).</param>
/// <param name="Predicate">"@P0", "@!P1", ... or "".</param>
/// <param name="Opcode">The full opcode with modifiers, e.g. "HMMA.16816.F32.BF16", "LDS.U.128".</param>
/// <param name="Operands">The rest of the line up to the semicolon.</param>
public sealed record SassInstruction(int Address, string Predicate, string Opcode, string Operands)
{
    /// <summary>The opcode without modifiers ("HMMA", "LDS", ...).</summary>
    public string Mnemonic => Opcode.Split('.')[0];

    /// <summary>The target of a branch with an absolute address (BRA, BRX does not have one), else null.</summary>
    public int? BranchTarget
    {
        get
        {
            if (Mnemonic is not ("BRA" or "BRX" or "JMP")) return null;
            var m = Regex.Match(Operands, @"0x([0-9a-f]+)");
            return m.Success ? int.Parse(m.Groups[1].Value, NumberStyles.HexNumber) : null;
        }
    }

    public override string ToString() => $"/*{Address:x4}*/ {Predicate} {Opcode} {Operands}".Replace("  ", " ");
}

/// <summary>
/// A loop of the machine code: the instructions from a backward branch's target to the branch
/// (ptxas lays loops out as one contiguous range closed by a conditional backward branch).
/// </summary>
public sealed record SassLoop(int Start, int End, int Depth)
{
    public bool Contains(SassLoop other) => other != this && Start <= other.Start && other.End <= End;
}

/// <summary>
/// The SASS of one kernel, parsed from cuobjdump -sass: its instructions and its loops. What a
/// report needs from machine code without a GPU: which instructions a loop issues per iteration.
/// </summary>
public sealed class SassListing
{
    private static readonly Regex Line = new(@"^\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*([^;]*);", RegexOptions.Compiled);

    public IReadOnlyList<SassInstruction> Instructions { get; }
    public IReadOnlyList<SassLoop> Loops { get; }

    private SassListing(IReadOnlyList<SassInstruction> instructions)
    {
        Instructions = instructions;
        // Out-of-line stubs: where a warp shuffle may run diverged, ptxas branches (BRA.DIV) to a slow path placed after
        // the kernel's end, which calls a helper and jumps back into the loop. That return jump is not a loop.
        var stubStarts = instructions.Where(i => i.Opcode == "BRA.DIV" || i.Opcode.StartsWith("BRA.DIV", StringComparison.Ordinal))
            .Select(i => Regex.Match(i.Operands, @"0x([0-9a-f]+)")).Where(m => m.Success)
            .Select(m => int.Parse(m.Groups[1].Value, NumberStyles.HexNumber)).ToHashSet();
        var ranges = new List<(int Start, int End)>();
        int stub = -1;
        foreach (var i in instructions)
        {
            if (stubStarts.Contains(i.Address)) stub = i.Address;
            bool unconditional = i.Predicate.Length == 0;
            if (i.BranchTarget is int target && target < i.Address && !(stub >= 0 && unconditional && i.Mnemonic == "BRA"))
                ranges.Add((target, i.Address));
            if (unconditional && i.Mnemonic is "BRA" or "EXIT" or "RET") stub = -1; // a stub ends with its jump back
        }
        ranges = [.. ranges.Distinct().OrderBy(r => r.Start).ThenByDescending(r => r.End)];
        Loops = [.. ranges.Select(r => new SassLoop(r.Start, r.End, ranges.Count(o => o != r && o.Start <= r.Start && r.End <= o.End)))];
    }

    /// <summary>Parses the listing of a cubin holding one kernel (the first function's code; NOPs dropped).</summary>
    public static SassListing Parse(string cuobjdumpOutput)
    {
        var list = new List<SassInstruction>();
        bool started = false;
        foreach (var raw in cuobjdumpOutput.Split('\n'))
        {
            if (raw.Contains("Function :"))
            {
                if (started) break; // one kernel per cubin: stop at a second function
                started = true;
                continue;
            }
            var m = Line.Match(raw);
            if (!m.Success) continue;
            var op = m.Groups[3].Value;
            if (op == "NOP") continue;
            list.Add(new SassInstruction(int.Parse(m.Groups[1].Value, NumberStyles.HexNumber), m.Groups[2].Value.Trim(), op, m.Groups[4].Value.Trim()));
        }
        return new SassListing(list);
    }

    /// <summary>The instructions of a loop's range (nested loops included once).</summary>
    public IEnumerable<SassInstruction> In(SassLoop loop) => Instructions.Where(i => i.Address >= loop.Start && i.Address <= loop.End);

    /// <summary>Loops directly or indirectly inside <paramref name="loop"/>.</summary>
    public IEnumerable<SassLoop> Inside(SassLoop loop) => Loops.Where(loop.Contains);
}

/// <summary>
/// What a range of SASS issues, by the unit that executes it. "Integer" is every integer, logic, shift,
/// select, compare and move instruction, on the regular and the uniform datapath: the address and
/// index arithmetic a fast kernel keeps out of its loops.
/// </summary>
public readonly record struct InstructionMix(
    int Total, int Mma, int Ffma, int FloatOther, int Ldsm, int Lds, int Sts, int Ldg, int Ldgsts, int Stg,
    int Integer, int Mufu, int Local, int Division, int Shuffle, int Barrier, int Other)
{
    /// <summary>Global loads of either kind (LDG, LDGSTS = cp.async, UTMALDG = TMA).</summary>
    public int GlobalLoads => Ldg + Ldgsts;

    /// <summary>Instructions per tensor-core instruction (HMMA or Hopper's HGMMA), or per FFMA when there is no mma; 0 when neither.</summary>
    public double PerMathInstruction => Mma > 0 ? (double)Total / Mma : Ffma > 0 ? (double)Total / Ffma : 0;

    public static InstructionMix Of(IEnumerable<SassInstruction> instructions)
    {
        int total = 0, mma = 0, ffma = 0, fp = 0, ldsm = 0, lds = 0, sts = 0, ldg = 0, ldgsts = 0, stg = 0, integer = 0, mufu = 0,
            local = 0, division = 0, shuffle = 0, barrier = 0, other = 0;
        foreach (var i in instructions)
        {
            total++;
            // ptxas's 32-bit integer division and remainder (by a value it cannot prove constant): I2F.RP,
            // MUFU.RCP, F2I.TRUNC, then IMAD.HI corrections, ~20 instructions. I2F.RP occurs once per sequence.
            if (i.Opcode.StartsWith("I2F", StringComparison.Ordinal) && i.Opcode.Contains(".RP", StringComparison.Ordinal)) division++;
            switch (Classify(i.Mnemonic))
            {
                case Unit.Mma: mma++; break;
                case Unit.Ffma: ffma++; break;
                case Unit.Float: fp++; break;
                case Unit.Ldsm: ldsm++; break;
                case Unit.Lds: lds++; break;
                case Unit.Sts: sts++; break;
                case Unit.Ldg: ldg++; break;
                case Unit.Ldgsts: ldgsts++; break;
                case Unit.Stg: stg++; break;
                case Unit.Integer: integer++; break;
                case Unit.Mufu: mufu++; break;
                case Unit.Local: local++; break;
                case Unit.Shuffle: shuffle++; break;
                case Unit.Barrier: barrier++; break;
                default: other++; break;
            }
        }
        return new InstructionMix(total, mma, ffma, fp, ldsm, lds, sts, ldg, ldgsts, stg, integer, mufu, local, division, shuffle, barrier, other);
    }

    private enum Unit { Mma, Ffma, Float, Ldsm, Lds, Sts, Ldg, Ldgsts, Stg, Integer, Mufu, Local, Shuffle, Barrier, Other }

    private static Unit Classify(string mnemonic) => mnemonic switch
    {
        "HMMA" or "HGMMA" or "IMMA" or "DMMA" or "BMMA" => Unit.Mma,
        "FFMA" or "FFMA2" => Unit.Ffma,
        "FADD" or "FMUL" or "FMNMX" or "FSETP" or "FSEL" or "FSET" or "FCHK" or "FRND" or "HADD2" or "HMUL2" or "HFMA2" or "HMNMX2"
            or "F2FP" or "F2F" or "FSWZADD" or "DADD" or "DMUL" or "DFMA" or "DSETP" => Unit.Float,
        "LDSM" => Unit.Ldsm,
        "LDS" or "LD" => Unit.Lds,
        "STS" or "ST" or "STSM" => Unit.Sts,
        "LDG" => Unit.Ldg,
        "UTMALDG" => Unit.Ldgsts,
        "LDGSTS" => Unit.Ldgsts,
        "STG" or "RED" or "ATOM" or "ATOMG" or "REDG" or "UTMASTG" => Unit.Stg,
        "LDL" or "STL" => Unit.Local,
        "MUFU" => Unit.Mufu,
        "SHFL" => Unit.Shuffle,
        "BAR" or "DEPBAR" or "LDGDEPBAR" or "SYNCS" or "WARPSYNC" or "ARRIVES" or "WARPGROUP" or "MEMBAR" => Unit.Barrier,
        "IMAD" or "IADD3" or "IADD" or "LOP3" or "LOP" or "SHF" or "SHL" or "SHR" or "LEA" or "ISETP" or "IMNMX" or "IABS" or "SEL"
            or "PRMT" or "IMUL" or "MOV" or "POPC" or "FLO" or "BFE" or "BFI" or "BREV" or "PLOP3" or "P2R" or "R2P" or "I2F" or "F2I"
            or "I2I" or "IDP" or "VIADD" or "VIMNMX" or "IMNMX3" or "CS2R" or "S2R" or "S2UR" or "R2UR" => Unit.Integer,
        _ when mnemonic.Length > 1 && mnemonic[0] == 'U' && mnemonic is not ("UTMALDG" or "UTMASTG") => Unit.Integer, // uniform datapath
        _ => Unit.Other,
    };
}
