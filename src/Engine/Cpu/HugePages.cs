using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// Transparent huge pages for the large arrays of CPU storages (Linux). A fresh array from
/// GC.AllocateUninitializedArray is address space the kernel has not backed yet: the op that first writes it takes a
/// page fault per 4 KiB page, and on a virtual machine each costs microseconds (a YOLOv8n training step at 640 x 640
/// took ~10,000 of them, ~10 us each: the SiLU over [2, 32, 160, 160] spent 8 of its 10 ms in faults). Where the
/// machine's THP mode is "madvise" (Debian's and Ubuntu's default) the kernel backs a range with 2 MiB pages only when
/// asked: <see cref="Advise"/> asks, with madvise(MADV_HUGEPAGE), for the whole 2 MiB pages inside a new array of at
/// least 4 MiB before anything touches it. A first write then faults once per 2 MiB, and the TLB covers 512 times
/// more of the array. Only a hint: the array is the same array, its contents the same; a kernel without THP ignores it
/// or refuses, and then nothing changes. The pool (<see cref="CpuArrayPool"/>) reuses these arrays, so the advice
/// keeps paying after the first step. MT_HUGEPAGES=0 turns it off, to measure what it saves.
/// </summary>
internal static unsafe partial class HugePages
{
    public static readonly bool Enabled = OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("MT_HUGEPAGES") != "0";

    public const long PageBytes = 2L << 20;

    private const int MadvHugepage = 14;

    /// <summary>Advises huge pages for the whole 2 MiB pages inside <paramref name="bytes"/> bytes of array <paramref name="a"/>'s data.</summary>
    public static void Advise(Array a, long bytes)
    {
        if (!Enabled || bytes < 2 * PageBytes) return;
        // Large arrays live on the large-object heap, which the collector does not move: the address stays valid.
        long start = (long)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a));
        var (first, length) = Interior(start, bytes);
        if (length > 0) Madvise((nint)first, (nuint)length, MadvHugepage);
    }

    /// <summary>The whole 2 MiB pages inside [start, start + bytes): the first aligned address and the length (0 if none).</summary>
    public static (long First, long Length) Interior(long start, long bytes)
    {
        long first = (start + PageBytes - 1) & ~(PageBytes - 1), end = (start + bytes) & ~(PageBytes - 1);
        return end > first ? (first, end - first) : (first, 0);
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint addr, nuint length, int advice);
}
