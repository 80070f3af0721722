using System.Diagnostics;
using ManagedTensor.Apps;

namespace ManagedTensor.Tests.Apps;

/// <summary>Runs `mt` in process (stdout and stderr captured apart) or as a real process (the runtime's own Main).</summary>
public static class Mt
{
    public sealed record Result(int Code, string Out, string Err)
    {
        public override string ToString() => $"exit {Code}\n--- stdout ---\n{Out}\n--- stderr ---\n{Err}";
    }

    public static Result Run(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        int code = MtApp.Run(args, o, e);
        return new Result(code, o.ToString(), e.ToString());
    }

    /// <summary>The built mt.dll beside the test binary, started with `dotnet`.</summary>
    public static ProcessStartInfo ProcessStart(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "mt.dll"));
        foreach (string a in args) psi.ArgumentList.Add(a);
        return psi;
    }

    /// <summary>Runs mt as a process to its end (a generous limit only guards against a hang).</summary>
    public static Result RunProcess(params string[] args)
    {
        using var p = Process.Start(ProcessStart(args))!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"mt {string.Join(' ', args)} did not finish");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }
}
