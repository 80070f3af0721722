using BenchmarkDotNet.Running;
using ManagedTensor.Bench;

// `sgemm [sizes...]`: the quick GFLOP/s table used by sgemm_vs_torch.sh; anything else goes to BenchmarkDotNet.
if (args.Length > 0 && args[0] == "sgemm") SgemmRunner.Run(args[1..]);
else BenchmarkSwitcher.FromAssembly(typeof(SgemmRunner).Assembly).Run(args);
