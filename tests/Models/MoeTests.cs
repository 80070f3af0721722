using System.Text.Json;
using ManagedTensor.Models.IO;
using ManagedTensor.Nn;
using ManagedTensor.Tests.Autograd;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// The mixture-of-experts layer against Mixtral-style PyTorch routing (tests/fixtures/moe/make_moe_fixture.py:
/// torch.topk, a loop over experts with index_add_, Hugging Face's aux loss) in float64 and float32; the
/// combine op's gradients by finite differences; the same layer on ILGPU's CPU accelerator.
/// </summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public class MoeTests
{
    private static Dictionary<string, Tensor> Fixture()
    {
        using var file = SafeTensors.Open(Fixtures.Path("moe/moe_reference.safetensors"));
        return file.LoadAll();
    }

    private static (Tensor Y, Routing R) Layer(Tensor x, Tensor router, Tensor up, Tensor down, int k, Gating gating)
    {
        var r = TopKRouter.FromLogits(x.MatMul(router.MT), k, gating);
        return MixtureOfExperts.Run(x, r, up, down);
    }

    [Theory]
    [InlineData("softmax_k2", 2, Gating.Softmax, DType.F64)]
    [InlineData("sigmoid_k3", 3, Gating.Sigmoid, DType.F64)]
    [InlineData("softmax_k2", 2, Gating.Softmax, DType.F32)]
    public void Routing_output_aux_loss_and_gradients_match_pytorch(string name, int k, Gating gating, DType dtype)
    {
        var f = Fixture();
        Tensor Leaf(string key)
        {
            var t = f[$"{name}.{key}"].To(dtype).Detach();
            t.RequiresGrad = true;
            return t;
        }
        Tensor x = Leaf("x"), router = Leaf("router"), up = Leaf("w_up"), down = Leaf("w_down");
        var (y, r) = Layer(x, router, up, down, k, gating);
        double rtol = dtype == DType.F64 ? 1e-10 : 2e-4, atol = dtype == DType.F64 ? 1e-12 : 2e-5;
        Assert.Equal(f[$"{name}.chosen"].ToArray<long>(), r.Expert.ToArray<long>());
        TestUtil.AssertClose(f[$"{name}.y"], y, rtol, atol, "y");
        TestUtil.AssertClose(f[$"{name}.aux"].ToDoubleArray(), [r.AuxLoss.Item()], rtol, atol, "aux loss");

        var loss = (y * f[$"{name}.r"].To(dtype)).Sum() + r.AuxLoss.MulScalar(0.37);
        loss.Backward();
        foreach (var (key, t) in new[] { ("x", x), ("router", router), ("w_up", up), ("w_down", down) })
            TestUtil.AssertClose(f[$"{name}.grad.{key}"], t.Grad!, rtol, atol, $"dL/d{key}");
    }

    [Fact]
    public void Rows_are_grouped_by_expert_and_every_choice_has_its_own_row()
    {
        var logits = TestUtil.RandomTensor([9, 4], seed: 3);
        var r = TopKRouter.FromLogits(logits, 2, Gating.Softmax);
        var expert = r.Expert.ToArray<long>();
        var slot = r.Slot.ToArray<int>();
        var tokenOfRow = r.TokenOfRow.ToArray<int>();
        Assert.Equal(Enumerable.Range(0, 18), slot.Order());  // a permutation: dropless
        for (int i = 0; i < slot.Length; i++)
        {
            Assert.Equal(i / 2, tokenOfRow[slot[i]]);
            int row = slot[i], e = (int)expert[i];
            Assert.InRange(row, r.RowStart[e], r.RowStart[e + 1] - 1);
        }
        var gate = r.Gate.ToDoubleArray();
        for (int t = 0; t < 9; t++) Assert.Equal(1.0, gate[2 * t] + gate[2 * t + 1], 12);
    }

    [Fact]
    public void Combine_gradients_match_finite_differences()
    {
        var rows = TestUtil.RandomTensor([10, 3], seed: 1);
        var slot = Tensor.FromArray(new[] { 0, 4, 9, 2, 2, 7, 1, 3, 5 }, [3, 3]);  // a repeated row too
        var gate = TestUtil.RandomTensor([3, 3], seed: 2);
        GradCheck.Check(x => x[0].MoeCombine(slot, x[1]), [rows, gate]);
        // The kernel against the composite written out: IndexSelect, scale, sum over the k choices.
        var expected = (rows.IndexSelect(0, slot.Reshape(9)).Reshape(3, 3, 3) * gate.Unsqueeze(2)).Sum(1);
        TestUtil.AssertClose(expected, rows.MoeCombine(slot, gate), 1e-14, 1e-14, "kernel vs composite");
    }

    [Fact]
    public void The_layer_on_ilgpu_cpu_equals_the_cpu()
    {
        var f = Fixture();
        var dev = Device.Parse("ilgpu-cpu");
        Tensor Get(string key, Device d) { var t = f[$"softmax_k2.{key}"].To(DType.F32).To(d).Detach(); t.RequiresGrad = true; return t; }
        var cpu = new[] { "x", "router", "w_up", "w_down" }.Select(k => Get(k, Device.Cpu)).ToArray();
        var gpu = new[] { "x", "router", "w_up", "w_down" }.Select(k => Get(k, dev)).ToArray();
        var (yc, rc) = Layer(cpu[0], cpu[1], cpu[2], cpu[3], 2, Gating.Softmax);
        var (yg, rg) = Layer(gpu[0], gpu[1], gpu[2], gpu[3], 2, Gating.Softmax);
        TestUtil.AssertClose(yc, yg.To(Device.Cpu), 1e-5, 1e-6, "y");
        (yc.Sum() + rc.AuxLoss).Backward();
        (yg.Sum() + rg.AuxLoss).Backward();
        for (int i = 0; i < 4; i++) TestUtil.AssertClose(cpu[i].Grad!, gpu[i].Grad!.To(Device.Cpu), 1e-4, 1e-5, $"gradient {i}");
    }

    [Fact]
    public void Top_k_larger_than_the_number_of_experts_is_refused_by_name()
    {
        var e = Assert.Throws<UserErrorException>(() => new TopKRouter(8, 4, 5, Gating.Softmax, new Generator(1), Device.Cpu));
        Assert.Contains("top-k = 5", e.Message);
        Assert.Contains("(4)", e.Message);
        Assert.Throws<ArgumentException>(() => Tensor.Zeros([3, 2]).MoeCombine(Tensor.Zeros([3, 2], DType.I32), Tensor.Zeros([3, 1])));
    }
}
