"""Traces Propagation: the hand-written three-factor update equals autograd on the one-step
graph, and the adaptation state does not grow with the length of the audio."""

import torch
from _rules import state_bytes_after
from tracekws.model.adapt import adapt_inputs, make
from tracekws.model.network import SNN
from tracekws.model.neurons import LIFParams, spike
from tracekws.model.pipeline import KWSModel, ModelConfig
from tracekws.model.rules.core import readout_grad
from tracekws.model.rules.tp import contrast_targets, layer_grads

P = LIFParams(alpha=0.77, v_th=0.66, k=10.0, beta=0.977)


def _one_step_graph(shared: bool, seed: int = 0):
    """Random detached state of one layer for B data samples and K label paths (float64,
    so the comparison tests the algebra, not float32 rounding)."""
    g = torch.Generator().manual_seed(seed)
    b, k, n_in, h = 4, 3, 7, 6
    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    w = (r(h, n_in) - 0.3).requires_grad_()
    w_rec = (r(h, h) - 0.5).mul(0.5).requires_grad_()
    s_lab_w = r(h, k) if not shared else None  # fixed S at layer 1
    r_lab = (r(h, h) - 0.5) * 0.5
    x = (r(b, n_in) < 0.4).double()
    x_lab = (r(k, n_in) < 0.4).double() if shared else torch.eye(k, dtype=torch.float64)
    v, v_lab = r(b, h) * 0.6, r(k, h) * 0.6
    s_prev, s_prev_lab = (r(b, h) < 0.3).double(), (r(k, h) < 0.3).double()
    eps_prev, eps_prev_lab = r(b, h) * 3, r(k, h) * 3
    labels = torch.tensor([0, 2, 1, 2])
    lab_traces = r(k, k) * 2 + torch.eye(k, dtype=torch.float64) * 5
    y = contrast_targets(lab_traces, labels)

    # autograd on the one-step graph (all state detached)
    v_t = P.alpha * v + x @ w.T + s_prev @ w_rec.T
    s = spike(v_t - P.v_th, P.k)
    eps = P.beta * eps_prev + s
    if shared:
        v_t_lab = P.alpha * v_lab + x_lab @ w.T + s_prev_lab @ w_rec.T
    else:
        v_t_lab = P.alpha * v_lab + x_lab @ s_lab_w.T + s_prev_lab @ r_lab.T
    s_lab = spike(v_t_lab - P.v_th, P.k)
    eps_lab = P.beta * eps_prev_lab + s_lab
    z = eps @ eps_lab.T
    loss = -(y * torch.log_softmax(z, 1)).sum(1).mean()
    gw, gr = torch.autograd.grad(loss, [w, w_rec])

    mine = layer_grads(x, v_t.detach(), s_prev, eps.detach(), x_lab, v_t_lab.detach(),
                       s_prev_lab, eps_lab.detach(), y, P, shared=shared)
    return mine, gw, gr, loss


def test_three_factor_update_equals_autograd_layer1():
    for seed in range(3):
        mine, gw, gr, loss = _one_step_graph(shared=False, seed=seed)
        torch.testing.assert_close(mine.w, gw, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(mine.w_rec, gr, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(mine.loss, loss.detach())
        assert gw.abs().sum() > 0


def test_three_factor_update_equals_autograd_shared_weights_both_paths():
    """From layer 2 on data and label spikes go through the same W: both paths add."""
    for seed in range(3):
        mine, gw, gr, _ = _one_step_graph(shared=True, seed=seed)
        torch.testing.assert_close(mine.w, gw, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(mine.w_rec, gr, rtol=1e-5, atol=1e-7)


def test_readout_delta_rule_equals_autograd():
    """(softmax(m) − c*) ⊗ e is ∂CE/∂W_out for m = λ m⁻ + W_out s over an utterance."""
    g = torch.Generator().manual_seed(1)
    b, h, c, t_len = 3, 5, 4, 9
    w_out = torch.randn(c, h, generator=g, requires_grad=True)
    spikes = (torch.rand(t_len, b, h, generator=g) < 0.4).float()
    target = torch.nn.functional.one_hot(torch.tensor([0, 3, 1]), c).float()
    for leak in (1.0, 0.9):
        m, e = torch.zeros(b, c), torch.zeros(b, h)
        for s in spikes:
            m = leak * m + s @ w_out.T
            e = leak * e + s
        loss = -(target * torch.log_softmax(m, 1)).sum(1).mean()
        (gw,) = torch.autograd.grad(loss, [w_out])
        torch.testing.assert_close(readout_grad(m.detach(), target, e), gw, rtol=1e-5, atol=1e-7)


def test_single_sample_all_classes_contrast_gives_a_signal():
    """B = 1: the paper's batch contrast has no signal, the all-classes contrast has."""
    torch.manual_seed(0)
    model = KWSModel(ModelConfig(n_hidden=32))
    x = model.inputs(torch.randn(16000) * 0.1)
    for contrast, expect_signal in (("batch", False), ("classes", True)):
        m = model.clone()
        before = m.net.w_in.detach().clone()
        adapt_inputs(m, x, torch.tensor([3]), rule="tp", epochs=1, contrast=contrast,
                     readout="final", lr=1e-3)
        moved = not torch.equal(before, m.net.w_in.detach())
        assert moved == expect_signal, contrast


def test_adaptation_state_is_the_same_size_after_100_and_3000_frames():
    torch.manual_seed(0)
    for rule_name in ("tp", "readout"):
        sizes = {n: state_bytes_after(rule_name, n) for n in (100, 3000)}
        assert sizes[100] == sizes[3000] > 0, rule_name
    # BPTT, by contrast, keeps every frame
    sizes = {n: state_bytes_after("bptt", n) for n in (100, 300)}
    assert sizes[300] > 2 * sizes[100]


def test_label_path_cache_is_bounded_and_changes_nothing(monkeypatch):
    """The all-classes label paths are cached up to LABEL_CACHE_BYTES; recomputing them gives
    the same update, and at many classes the cache stays within its budget."""
    from tracekws.model.rules import tp

    def run(n_classes: int, budget: int):
        monkeypatch.setattr(tp, "LABEL_CACHE_BYTES", budget)
        torch.manual_seed(0)
        net = SNN(40, 32, n_classes)
        rule = make(KWSModel(ModelConfig(n_hidden=32), net=net), "tp", lr=1e-3)
        x = (torch.rand(2, 150, 40, generator=torch.Generator().manual_seed(1)) < 0.3).float()
        for i in range(2):  # the second utterance reads the cache
            rule.begin(torch.tensor([3]))
            for t in range(x.shape[1]):
                rule.step(x[i : i + 1, t])
            rule.end()
        return net.w_in.detach().clone(), rule

    w_cached, r_cached = run(12, 8 * 2**20)
    w_plain, r_plain = run(12, 0)
    assert len(r_cached._cache) == tp.LABEL_CACHE_FRAMES and not r_plain._cache
    torch.testing.assert_close(w_cached, w_plain, rtol=1e-5, atol=1e-7)
    budget = 2**20
    _, big = run(100, budget)  # 118 kB a frame: 8 of 100 frames fit
    cache_bytes = sum(t.numel() * t.element_size() for st, tr, y in big._cache
                      for t in (*st.lif, st.eps, tr, y))
    assert 0 < cache_bytes <= budget


def test_tp_readiness_scores_are_the_rules_own_loss_at_the_last_frame():
    """`tp_scores` (reported by `tracekws evaluate` as TP readiness) computes the layer loss
    the rule itself sees at the last frame, and its class score from the same traces."""
    from tracekws.model.rules import make_rule
    from tracekws.model.rules.tp import tp_scores

    torch.manual_seed(0)
    net = SNN(20, 16, 4, P)
    x = (torch.rand(5, 30, 20) < 0.3).float()
    y = torch.tensor([0, 1, 2, 3, 1])
    rule = make_rule("tp", net, lr=0.0, lr_out=0.0, optimizer="sgd")
    rule.begin(y)
    for t in range(x.shape[1]):
        rule.step(x[:, t])
    scores = tp_scores(net, x, y)
    torch.testing.assert_close(torch.tensor(scores["layer_loss"]), rule.last_loss.float(),
                               rtol=1e-4, atol=1e-4)
    z = rule.data.eps @ rule.lab.eps.T
    assert scores["class_score_accuracy"] == (z.argmax(1) == y).sum().item() / len(y)


def test_label_decay_scales_the_step_by_the_clips_of_that_label_learned_before():
    """label_decay d: the (n+1)-th clip of a label moves the weights 1 / (1 + d·n) as far."""
    torch.manual_seed(0)
    model = KWSModel(ModelConfig(n_hidden=32))
    x = model.inputs(torch.randn(16000) * 0.1)
    y = torch.tensor([3])

    def moved(decay: float, learned: dict[int, int]) -> tuple[torch.Tensor, dict[int, int]]:
        m = model.clone()
        # one optimiser step at the end of the clip, so the step is linear in its scale
        r = make(m, "tp", lr=1e-3, lr_out=0.1, label_decay=decay, norm_prior=0.0,
                 update_every=10_000)
        r.learned = dict(learned)
        r.run(x, y)
        return torch.cat([(m.net.w_out - model.net.w_out).flatten(),
                          (m.net.w_in - model.net.w_in).flatten()]), r.learned

    base, _ = moved(0.0, {3: 2})
    half, learned = moved(0.5, {3: 2})  # 1 / (1 + 0.5·2)
    other, _ = moved(0.5, {5: 2})  # another label's clips do not count
    assert float(base.detach().abs().max()) > 0
    torch.testing.assert_close(half, base / 2, rtol=1e-3, atol=1e-7)
    torch.testing.assert_close(other, base, rtol=1e-3, atol=1e-7)
    assert learned == {3: 3}
