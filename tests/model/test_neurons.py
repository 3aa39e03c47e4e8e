"""LIF step, surrogate gradient and the network's two code paths."""

import math

import pytest
import torch
from tracekws.model.network import SNN
from tracekws.model.neurons import (
    LIFParams,
    LIFState,
    lif_step,
    readout_step,
    spike,
    surrogate,
    trace_step,
)


def test_lif_leak_threshold_and_soft_reset():
    p = LIFParams(alpha=0.77, v_th=0.66)
    st = LIFState(torch.tensor([[0.5, 0.5, 0.0]]), torch.zeros(1, 3))
    s, v_tilde, new = lif_step(torch.tensor([[0.0, 0.4, 0.7]]), st, p)
    torch.testing.assert_close(v_tilde, torch.tensor([[0.385, 0.785, 0.7]]))
    assert s.tolist() == [[0.0, 1.0, 1.0]]
    # soft reset subtracts the threshold, it does not zero the membrane
    torch.testing.assert_close(new.v, torch.tensor([[0.385, 0.785 - 0.66, 0.7 - 0.66]]))
    assert torch.equal(new.s, s)


def test_surrogate_gradient_equals_its_formula():
    x = torch.linspace(-2, 2, 41, requires_grad=True)
    for k in (1.0, 10.0):
        (g,) = torch.autograd.grad(spike(x, k).sum(), x)
        expected = k / (1 + (math.pi * x.detach()) ** 2)
        torch.testing.assert_close(g, expected)
        torch.testing.assert_close(surrogate(x.detach(), k), expected)
    assert spike(torch.tensor([-0.1, 0.0, 0.1]), 1.0).tolist() == [0.0, 0.0, 1.0]


def test_trace_and_readout_steps():
    e = trace_step(torch.ones(2), torch.full((2,), 2.0), 0.977)
    torch.testing.assert_close(e, torch.full((2,), 0.977 * 2 + 1))
    torch.testing.assert_close(readout_step(torch.ones(1), torch.ones(1), 1.0), torch.tensor([2.0]))


@pytest.mark.parametrize("batch", [1, 3, 6])  # numpy loop up to 4, torch loop above
def test_fast_inference_path_matches_step_by_step(batch):
    torch.manual_seed(0)
    net = SNN(20, 16, 4)
    with torch.no_grad():
        net.w_in.mul_(4)
    x = (torch.rand(batch, 30, 20) < 0.3).float()
    with torch.no_grad():
        fast, _, _ = net(x)
    st = net.init_state(batch)
    with torch.no_grad():
        for t in range(30):
            m, st = net.step(x[:, t], st)
    torch.testing.assert_close(fast, m)
    with torch.enable_grad():
        slow, _, _ = net(x)
    torch.testing.assert_close(slow.detach(), m)


def test_numpy_loop_follows_weight_updates():
    """The numpy loop keeps W_rec transposed between calls; an in-place update (what the
    rules' optimisers do) or loaded weights must be seen by the next call."""
    torch.manual_seed(1)
    net = SNN(20, 16, 4)
    with torch.no_grad():
        net.w_in.mul_(4)
        net.w_rec.mul_(6)
    x = (torch.rand(1, 30, 20) < 0.3).float()

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            fast, _, _ = net(x)
        with torch.enable_grad():
            slow, _, _ = net(x)
        return fast, slow.detach()

    first, _ = both()
    with torch.no_grad():
        net.w_rec.add_(0.5 * torch.randn_like(net.w_rec))
    fast, slow = both()
    torch.testing.assert_close(fast, slow)
    assert not torch.allclose(fast, first)
    net.load_state_dict({k: torch.randn_like(v) for k, v in net.state_dict().items()})
    fast, slow = both()
    torch.testing.assert_close(fast, slow)
