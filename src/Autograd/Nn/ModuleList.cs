namespace ManagedTensor.Nn;

/// <summary>An indexed list of child modules named "0", "1", ... (torch.nn.ModuleList), e.g. a model's layers.</summary>
public sealed class ModuleList<T> : Module where T : Module
{
    private readonly List<T> _items = [];

    public ModuleList(IEnumerable<T> items)
    {
        foreach (var item in items) _items.Add(Child(_items.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), item));
    }

    public int Count => _items.Count;
    public T this[int i] => _items[i];
    public IEnumerable<T> Items => _items;
}
