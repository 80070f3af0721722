using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace ManagedTensor.Apps;

/// <summary>
/// Range checks on option values, run while parsing: a value outside its range is a parse error in the option's
/// own terms ("--length must be at least 1 (got -5)") before anything is loaded. NaN and infinities are refused
/// wherever a number feeds arithmetic: NaN compares false with everything, so a plain "v &lt; 0" check lets it through.
/// </summary>
public static class OptionChecks
{
    public static Option<int> AtLeast(this Option<int> option, int min)
    {
        option.Validators.Add(r =>
        {
            if (Value<int>(r) is int v && v < min) r.AddError($"{option.Name} must be at least {min} (got {v})");
        });
        return option;
    }

    /// <summary>A finite value in [min, max] (either end open when <paramref name="minExclusive"/> / <paramref name="maxExclusive"/>).</summary>
    public static Option<float> Within(this Option<float> option, double min, double max = double.PositiveInfinity, bool minExclusive = false, bool maxExclusive = false)
    {
        option.Validators.Add(r =>
        {
            if (Value<float>(r) is float v) Check(r, option.Name, v, min, max, minExclusive, maxExclusive);
        });
        return option;
    }

    /// <inheritdoc cref="Within(Option{float}, double, double, bool, bool)"/>
    public static Option<double> Within(this Option<double> option, double min, double max = double.PositiveInfinity, bool minExclusive = false, bool maxExclusive = false)
    {
        option.Validators.Add(r =>
        {
            if (Value<double>(r) is double v) Check(r, option.Name, v, min, max, minExclusive, maxExclusive);
        });
        return option;
    }

    /// <summary>The option's value, or null when its text does not convert (that is reported as its own parse error).</summary>
    public static T? Value<T>(OptionResult r) where T : struct => TryGet(r, out T v) ? v : null;

    /// <summary>
    /// The option's value in a validator. False when its text does not convert: System.CommandLine reports that as its own
    /// parse error, and reading the value would throw instead.
    /// </summary>
    public static bool TryGet<T>(OptionResult r, out T value)
    {
        try
        {
            value = r.GetValueOrDefault<T>();
            return true;
        }
        catch (InvalidOperationException)
        {
            value = default!;
            return false;
        }
    }

    private static void Check(OptionResult r, string name, double v, double min, double max, bool minExclusive, bool maxExclusive)
    {
        bool ok = double.IsFinite(v) && (minExclusive ? v > min : v >= min) && (maxExclusive ? v < max : v <= max);
        if (!ok) r.AddError($"{name} must be {Range(min, max, minExclusive, maxExclusive)} (got {v.ToString(CultureInfo.InvariantCulture)})");
    }

    /// <summary>The range in words: "a finite number >= 0", "in (0, 1]".</summary>
    public static string Range(double min, double max, bool minExclusive = false, bool maxExclusive = false)
    {
        static string S(double x) => x.ToString(CultureInfo.InvariantCulture);
        if (double.IsPositiveInfinity(max)) return $"a finite number {(minExclusive ? ">" : ">=")} {S(min)}";
        return $"in {(minExclusive ? "(" : "[")}{S(min)}, {S(max)}{(maxExclusive ? ")" : "]")}";
    }
}
