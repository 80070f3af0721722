namespace ManagedTensor;

/// <summary>
/// The op set as a registry: one <see cref="OpDef"/> per op, looked up by <see cref="Op"/>. Every member of
/// the built-in enumeration has an entry (a bare one until its declaration, or its backward rule, is
/// registered); ops beyond the enumeration get a fresh id from <see cref="Declare"/>, so a new op needs no
/// edit of a central list. Backends look up kernels in their own <see cref="KernelTable"/>; autograd looks
/// up backward rules here; the conformance suite and `mt selftest` enumerate <see cref="All"/>.
/// </summary>
public static class OpRegistry
{
    private static readonly object Gate = new();
    private static readonly Dictionary<Op, OpDef> Defs = new();
    private static readonly Dictionary<string, Op> ByName = new(StringComparer.OrdinalIgnoreCase);
    private static int _nextId = 1000; // ids of declared ops start past the enumeration

    static OpRegistry()
    {
        foreach (var op in Enum.GetValues<Op>()) Add(new OpDef(op, op.ToString()));
        BuiltinOps.Register();
    }

    /// <summary>Builds the registry if it is not yet (declarations add CPU kernels: see <see cref="Backends"/>).</summary>
    public static void EnsureBuilt() { }

    /// <summary>
    /// The id in <paramref name="slot"/>, after building the registry: how a declared op exposes its id, e.g.
    /// <c>public static Op LeakyRelu => OpRegistry.Id(ref _op);</c>. The slot is set by the op's Register, which the
    /// registry's static constructor runs; a static initializer calling Declare instead would run inside that
    /// registration whenever the op's class is touched first, and read the id before it is set.
    /// </summary>
    public static Op Id(ref Op slot)
    {
        EnsureBuilt();
        return slot;
    }

    private static void Add(OpDef def)
    {
        Defs[def.Op] = def;
        ByName[def.Name] = def.Op;
    }

    /// <summary>A new op id for <paramref name="name"/> (or the one it already has): for ops outside the built-in enumeration.</summary>
    public static Op Declare(string name)
    {
        lock (Gate)
        {
            if (ByName.TryGetValue(name, out var op)) return op;
            op = (Op)_nextId++;
            Add(new OpDef(op, name));
            return op;
        }
    }

    /// <summary>Registers (or replaces) the declaration of <c>def.Op</c>.</summary>
    public static OpDef Define(OpDef def)
    {
        lock (Gate)
        {
            if (Defs.TryGetValue(def.Op, out var old) && old.Name != def.Name)
                throw new ArgumentException($"op {def.Op}: declared as '{old.Name}', now defined as '{def.Name}'");
            Add(def);
            return def;
        }
    }

    /// <summary>Changes one part of an op's declaration (autograd adds the built-in ops' backward rules this way).</summary>
    public static OpDef Update(Op op, Func<OpDef, OpDef> change)
    {
        lock (Gate) return Define(change(Get(op)));
    }

    public static OpDef Get(Op op)
    {
        lock (Gate)
            return Defs.TryGetValue(op, out var def) ? def : throw new ArgumentException($"op id {(int)op} is not registered");
    }

    /// <summary>The op called <paramref name="name"/> (case-insensitive), or null.</summary>
    public static Op? Find(string name)
    {
        lock (Gate) return ByName.TryGetValue(name, out var op) ? op : null;
    }

    /// <summary>Every registered op, built-in ones first in enumeration order.</summary>
    public static IReadOnlyList<OpDef> All
    {
        get { lock (Gate) return Defs.Values.OrderBy(d => (int)d.Op).ToList(); }
    }

    /// <summary>The op's name: the enumeration's for built-in ops, the declared one otherwise.</summary>
    public static string NameOf(Op op)
    {
        lock (Gate) return Defs.TryGetValue(op, out var d) ? d.Name : ((int)op).ToString();
    }
}
