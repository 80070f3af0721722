using System.Globalization;
using System.Text;

namespace ManagedTensor;

/// <summary>
/// An n-dimensional view over a <see cref="Storage"/>: element (i0, i1, ...) lives at
/// Offset + sum_k i_k * Strides[k] (strides in elements, 0 on broadcast axes).
/// Views (reshape, permute, narrow, expand, ...) share storage; ops allocate new contiguous outputs.
/// A tensor is also its own autograd graph node (<see cref="Node"/>).
/// </summary>
public sealed partial class Tensor : IDisposable
{
    internal Tensor(Storage storage, int[] shape, int[] strides, int offset)
    {
        Storage = storage;
        Shape = shape;
        Strides = strides;
        Offset = offset;
        Numel = CheckedNumel(shape);
    }

    public Storage Storage { get; }

    /// <summary>The sizes of each axis. Treat as read-only.</summary>
    public int[] Shape { get; }

    /// <summary>Element strides of each axis. Treat as read-only.</summary>
    public int[] Strides { get; }

    /// <summary>Index of element (0, 0, ...) in <see cref="Storage"/>.</summary>
    public int Offset { get; }

    public int Numel { get; }
    public int Rank => Shape.Length;
    public DType DType => Storage.DType;
    public Device Device => Storage.Device;
    public IBackend Backend => Backends.For(Device);

    /// <summary>An optional name used in error messages and state dicts.</summary>
    public string? Name { get; set; }

    // ---- autograd state (read and written by the Autograd layer) ----

    private bool _requiresGrad;

    /// <summary>Whether gradients flow to this tensor. Only floating-point tensors may require gradients.</summary>
    public bool RequiresGrad
    {
        get => _requiresGrad;
        set
        {
            if (value && !DType.IsFloat())
                throw new InvalidOperationException($"tensor {Describe()}: only floating-point tensors can require gradients");
            _requiresGrad = value;
        }
    }

    /// <summary>The accumulated gradient (same shape as this tensor) after a backward pass.</summary>
    public Tensor? Grad { get; set; }

    /// <summary>The op that produced this tensor, when recorded (see <see cref="GradMode"/>).</summary>
    public OpNode? Node { get; internal set; }

    public bool IsLeaf => Node is null;

    /// <summary>A view of the same storage cut off from the graph (no node, no gradient).</summary>
    public Tensor Detach() => new(Storage, Shape, Strides, Offset) { Name = Name };

    public int Size(int axis) => Shape[NormalizeAxis(axis)];

    public bool IsContiguous
    {
        get
        {
            int expected = 1;
            for (int i = Rank - 1; i >= 0; i--)
            {
                if (Shape[i] == 1) continue;
                if (Strides[i] != expected) return false;
                expected *= Shape[i];
            }
            return true;
        }
    }

    // ---- creation ----

    internal static int[] ContiguousStrides(ReadOnlySpan<int> shape)
    {
        var strides = new int[shape.Length];
        int s = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = s;
            s *= shape[i];
        }
        return strides;
    }

    private static int CheckedNumel(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"negative dimension in shape {ShapeString(shape)}");
            n *= d;
            if (n > int.MaxValue) throw new ArgumentException($"shape {ShapeString(shape)} has more than 2^31 - 1 elements");
        }
        return (int)n;
    }

    /// <summary>A new contiguous tensor; contents zero when <paramref name="zero"/>, else unspecified.</summary>
    public static Tensor Empty(int[] shape, DType dtype = DType.F32, Device? device = null, bool zero = false)
    {
        var shapeCopy = (int[])shape.Clone();
        int n = CheckedNumel(shapeCopy);
        if (dtype.IsQuantized() && (shapeCopy.Length == 0 || shapeCopy[^1] % Quant.BlockFormats.Get(dtype).BlockSize != 0))
            throw new ArgumentException($"a {dtype} tensor's last axis must be a whole number of blocks of {Quant.BlockFormats.Get(dtype).BlockSize} values: shape {ShapeString(shapeCopy)}");
        var storage = Backends.For(device ?? Device.Cpu).Allocate(dtype, n, zero);
        return new Tensor(storage, shapeCopy, ContiguousStrides(shapeCopy), 0);
    }

    /// <summary>A new uninitialized contiguous tensor with this tensor's dtype and device.</summary>
    public Tensor EmptyLike(int[]? shape = null, DType? dtype = null) => Empty(shape ?? Shape, dtype ?? DType, Device);

    public static Tensor Zeros(int[] shape, DType dtype = DType.F32, Device? device = null) => Empty(shape, dtype, device, zero: true);

    public static Tensor Ones(int[] shape, DType dtype = DType.F32, Device? device = null) => Full(shape, 1.0, dtype, device);

    public static Tensor Full(int[] shape, double value, DType dtype = DType.F32, Device? device = null)
    {
        var t = Empty(shape, dtype, device);
        t.Backend.Execute(Op.Fill, [], [t], new ScalarAttrs(value));
        return t;
    }

    public Tensor ZerosLike() => Zeros(Shape, DType, Device);
    public Tensor OnesLike() => Ones(Shape, DType, Device);

    /// <summary>Fills this tensor in place (no graph record).</summary>
    public Tensor Fill_(double value)
    {
        Backend.Execute(Op.Fill, [], [this], new ScalarAttrs(value));
        return this;
    }

    /// <summary>A 0-dimensional tensor holding <paramref name="value"/>.</summary>
    public static Tensor Scalar(double value, DType dtype = DType.F32, Device? device = null) => Full([], value, dtype, device);

    /// <summary>[start, start + step, ...) up to but not including <paramref name="end"/>, as PyTorch's arange.</summary>
    public static Tensor Arange(double start, double end, double step = 1, DType dtype = DType.I64, Device? device = null)
    {
        if (step == 0) throw new ArgumentException("arange: step must be non-zero", nameof(step));
        int n = Math.Max(0, (int)Math.Ceiling((end - start) / step));
        var values = new double[n];
        for (int i = 0; i < n; i++) values[i] = start + i * step;
        return FromArray(values, [n], device).To(dtype);
    }

    public static Tensor Arange(int end, DType dtype = DType.I64, Device? device = null) => Arange(0, end, 1, dtype, device);

    /// <summary>A tensor of <paramref name="shape"/> holding a copy of <paramref name="data"/> (row-major).</summary>
    public static Tensor FromArray<T>(T[] data, int[]? shape = null, Device? device = null) where T : unmanaged
    {
        shape ??= [data.Length];
        int n = CheckedNumel(shape);
        if (n != data.Length)
            throw new ArgumentException($"FromArray: {data.Length} values cannot fill shape {ShapeString(shape)} ({n} elements)");
        var t = Empty(shape, DTypeInfo.Of<T>(), device);
        t.Storage.CopyFromHost(data, 0);
        return t;
    }

    /// <summary>Uniform random numbers in [low, high) from <paramref name="gen"/> (same numbers on every backend).</summary>
    public static Tensor Rand(int[] shape, Generator gen, double low = 0, double high = 1, DType dtype = DType.F32, Device? device = null)
    {
        var t = Empty(shape, dtype, device);
        t.Backend.Execute(Op.RandUniform, [], [t], new RandomAttrs(gen.Seed, gen.Take(t.Numel), low, high));
        return t;
    }

    /// <summary>Normal random numbers N(mean, std^2) from <paramref name="gen"/>.</summary>
    public static Tensor Randn(int[] shape, Generator gen, double mean = 0, double std = 1, DType dtype = DType.F32, Device? device = null)
    {
        var t = Empty(shape, dtype, device);
        // Box-Muller uses two uniforms per element: normal i reads words 2i and 2i + 1, so the reserved words
        // must start at an even counter (one word is skipped after an odd-sized draw).
        ulong start = gen.Take(2L * t.Numel + (long)(gen.Offset & 1));
        t.Backend.Execute(Op.RandNormal, [], [t], new RandomAttrs(gen.Seed, (start + 1) / 2, mean, std));
        return t;
    }

    // ---- reading values back ----

    /// <summary>The elements in row-major order as a new host array (T must match the dtype).</summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        if (DTypeInfo.Of<T>() != DType)
            throw new InvalidOperationException($"ToArray<{typeof(T).Name}> on a {DType} tensor {Describe()}: cast first with To(DType)");
        var c = Contiguous();
        return (T[])c.Storage.ToHostArray(c.Offset, c.Numel);
    }

    /// <summary>All elements converted to double, row-major (for tests and printing).</summary>
    public double[] ToDoubleArray() => To(DType.F64).ToArray<double>();

    /// <summary>The value of a one-element tensor.</summary>
    public double Item()
    {
        if (Numel != 1) throw new InvalidOperationException($"Item() needs exactly one element, tensor {Describe()} has {Numel}");
        return ToDoubleArray()[0];
    }

    /// <summary>A copy on another device (this tensor itself when already there).</summary>
    public Tensor To(Device device)
    {
        if (device == Device) return this;
        var c = Contiguous();
        var host = c.Storage.ToHostArray(c.Offset, c.Numel);
        var t = Empty(Shape, DType, device);
        t.Storage.CopyFromHost(host, 0);
        return Record(t, Op.Copy, null, [this]);
    }

    // ---- printing and errors ----

    public static string ShapeString(ReadOnlySpan<int> shape)
    {
        var sb = new StringBuilder("[");
        for (int i = 0; i < shape.Length; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append(shape[i]);
        }
        return sb.Append(']').ToString();
    }

    /// <summary>"name [2, 3] F32 cpu" for error messages.</summary>
    public string Describe() => $"{(Name is null ? "" : Name + " ")}{ShapeString(Shape)} {DType} {Device}";

    public override string ToString()
    {
        var sb = new StringBuilder($"Tensor({ShapeString(Shape)}, {DType}, {Device}");
        if (Numel <= 64 && !Storage.IsDisposed)
        {
            sb.Append(", [");
            var v = ToDoubleArray();
            for (int i = 0; i < v.Length; i++)
            {
                if (i > 0) sb.Append(", ");
                sb.Append(v[i].ToString("G5", CultureInfo.InvariantCulture));
            }
            sb.Append(']');
        }
        return sb.Append(')').ToString();
    }

    public int NormalizeAxis(int axis)
    {
        int a = axis < 0 ? axis + Rank : axis;
        if (a < 0 || a >= Rank) throw new ArgumentOutOfRangeException(nameof(axis), axis, $"axis out of range for tensor {Describe()}");
        return a;
    }

    /// <summary>Frees the storage now (device memory goes back to the allocator). Views of it become invalid.</summary>
    public void Dispose() => Storage.Dispose();

    // ---- graph recording ----

    /// <summary>
    /// Attaches the graph node for <paramref name="op"/> to <paramref name="output"/> when gradients are
    /// being recorded and any input requires one. Returns <paramref name="output"/>.
    /// </summary>
    internal static Tensor Record(Tensor output, Op op, OpAttrs? attrs, Tensor[] inputs, params Tensor[] saved)
    {
        if (!GradMode.IsEnabled || !output.DType.IsFloat()) return output;
        foreach (var x in inputs)
        {
            if (x.RequiresGrad)
            {
                output._requiresGrad = true;
                output.Node = new OpNode(op, inputs, attrs, saved);
                return output;
            }
        }
        return output;
    }
}
