using System.Collections.Concurrent;
using System.Diagnostics;

namespace ManagedTensor.Apps.Serve;

/// <summary>
/// Runs every generation on one thread, a token at a time across all running jobs (iteration-level scheduling, as
/// llama.cpp's server and vLLM do): a new job starts at the next step instead of waiting for a long one to end, and a job
/// whose client has gone is dropped at the next step, its slot free for the next in the queue. Jobs beyond the engine's
/// slots wait in a bounded queue; past that bound <see cref="TryAdmit"/> says no (the HTTP side answers 429). One thread
/// because the model keeps one set of scratch buffers and uses every core for each step anyway.
/// </summary>
public sealed class GenerationScheduler : IDisposable
{
    private readonly ICompletionEngine _engine;
    private readonly int _capacity;                              // slots + queue
    private readonly ConcurrentQueue<GenerationJob> _waiting = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private volatile bool _stopping;
    private int _admitted;                                       // jobs waiting or running
    private int _running;
    private double _meanJobSeconds = 1;                          // a moving average, for Retry-After

    /// <param name="maxQueued">jobs that may wait for a slot; more are refused</param>
    public GenerationScheduler(ICompletionEngine engine, int maxQueued)
    {
        if (maxQueued < 0) throw new ArgumentOutOfRangeException(nameof(maxQueued), $"queue length {maxQueued} must be >= 0");
        _engine = engine;
        _capacity = engine.MaxSequences + maxQueued;
        _thread = new Thread(Loop) { IsBackground = true, Name = "mt serve scheduler" };
        _thread.Start();
    }

    /// <summary>Jobs being generated now.</summary>
    public int Running => Volatile.Read(ref _running);

    /// <summary>Jobs waiting for a slot.</summary>
    public int Queued => Math.Max(0, Volatile.Read(ref _admitted) - Running);

    /// <summary>Slots (sequences generated at once).</summary>
    public int Slots => _engine.MaxSequences;

    /// <summary>Seconds a refused client should wait: the queue's expected drain time at the recent pace, 1 to 60.</summary>
    public int RetryAfterSeconds => (int)Math.Clamp(Math.Ceiling(Volatile.Read(ref _meanJobSeconds) * (Queued + 1) / Slots), 1, 60);

    /// <summary>Queues <paramref name="job"/>, or returns false when slots and queue are full.</summary>
    public bool TryAdmit(GenerationJob job)
    {
        if (_stopping) return false;
        int n = Interlocked.Increment(ref _admitted);
        if (n > _capacity)
        {
            Interlocked.Decrement(ref _admitted);
            return false;
        }
        // A client that leaves while waiting gives its place back at once; a running job is dropped by the loop.
        job.Registration = job.Cancel.Register(() =>
        {
            if (job.TryWithdraw()) Interlocked.Decrement(ref _admitted);
            _wake.Release();
        });
        _waiting.Enqueue(job);
        _wake.Release();
        return true;
    }

    private void Loop()
    {
        var active = new List<GenerationJob>();
        var sequences = new List<IEngineSequence>();
        var endings = new FinishReason?[_engine.MaxSequences];
        // Text goes to each client as its token is made; slots are freed once the step is over.
        void Produced(int i, TokenStep step) => endings[i] = active[i].Accept(step);
        Action<int, TokenStep> produced = Produced;
        var started = new Dictionary<GenerationJob, long>();

        void Finish(GenerationJob job, FinishReason reason, Exception? error = null)
        {
            job.Complete(reason, error);
            Interlocked.Decrement(ref _admitted);
            if (started.Remove(job, out long t0) && reason != FinishReason.Cancelled)
            {
                double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                Volatile.Write(ref _meanJobSeconds, 0.8 * _meanJobSeconds + 0.2 * seconds);
            }
        }

        while (true)
        {
            if (_stopping)
            {
                foreach (var job in active) Finish(job, FinishReason.Cancelled);
                while (_waiting.TryDequeue(out var job)) if (job.TryStart()) Finish(job, FinishReason.Cancelled);
                Volatile.Write(ref _running, 0);
                return;
            }
            while (active.Count < _engine.MaxSequences && _waiting.TryDequeue(out var job))
            {
                if (!job.TryStart()) continue; // withdrawn while waiting: already counted out
                try
                {
                    job.Sequence = _engine.Start(job.Prompt, job.Sampling);
                    active.Add(job);
                    started[job] = Stopwatch.GetTimestamp();
                }
                catch (Exception e)
                {
                    Finish(job, FinishReason.Stop, e);
                }
            }
            for (int i = active.Count - 1; i >= 0; i--)
                if (active[i].Cancel.IsCancellationRequested)
                {
                    Finish(active[i], FinishReason.Cancelled);
                    active.RemoveAt(i);
                }
            Volatile.Write(ref _running, active.Count);
            if (active.Count == 0)
            {
                _wake.Wait();
                continue;
            }

            sequences.Clear();
            foreach (var job in active) sequences.Add(job.Sequence!);
            Array.Clear(endings);
            try
            {
                _engine.Step(sequences, produced);
            }
            catch (Exception e)
            {
                // The engine failed mid-step: every running job's state is unknown, so each ends with the error.
                foreach (var job in active) Finish(job, FinishReason.Stop, e);
                active.Clear();
                continue;
            }
            for (int i = active.Count - 1; i >= 0; i--)
                if (endings[i] is { } reason)
                {
                    Finish(active[i], reason);
                    active.RemoveAt(i);
                }
        }
    }

    /// <summary>Stops the loop; running and waiting jobs end as cancelled.</summary>
    public void Dispose()
    {
        _stopping = true;
        _wake.Release();
        _thread.Join();
        // _wake is not disposed: a client's cancellation callback may still release it after the loop has ended, and a
        // SemaphoreSlim whose wait handle was never asked for holds nothing to free.
    }
}
