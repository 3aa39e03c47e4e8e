"""The comparator rules (TESS, e-prop, ETLP, DRTP, DECOLLE): each update equals its written
equation on a tiny network — autograd on the graph the rule defines (the unrolled LIF with
recurrent spikes and resets detached, or the one-step graph), or a per-synapse hand
computation — and their state does not grow with the length of the audio (e-prop's grows
with H·(I+H), as it should)."""

import copy
import math

import pytest
import torch
from _rules import state_bytes_after
from tracekws.model.adapt import AdaptSession, adapt_inputs
from tracekws.model.network import SNN
from tracekws.model.neurons import LIFParams, spike, surrogate
from tracekws.model.pipeline import KWSModel, ModelConfig
from tracekws.model.rules import hyperparameter_names, make_rule
from tracekws.model.rules.local import FEEDBACK_SEED, class_projection

NEW_RULES = ["tess", "eprop", "etlp", "drtp", "decolle"]
B, T, N_IN, H, C = 3, 12, 7, 6, 4
LABELS = torch.tensor([0, 3, 1])


@pytest.fixture
def f64():
    """float64 everywhere, so the comparisons test the algebra, not float32 rounding."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def tiny(leak: float = 1.0, seed: int = 0) -> tuple[SNN, torch.Tensor]:
    torch.manual_seed(seed)
    net = SNN(N_IN, H, C, LIFParams(k=3.0, readout_leak=leak))
    with torch.no_grad():
        net.w_in.mul_(2.0)
        net.w_out.normal_()
    x = (torch.rand(B, T, N_IN) < 0.4).to(torch.get_default_dtype())
    return net, x


def rule_update(name: str, net: SNN, x: torch.Tensor, **hp) -> dict[str, torch.Tensor]:
    """What one utterance makes the rule do: ∂W = W_before − W_after with plain SGD at rate 1
    and a single optimiser step at the end (weights fixed during the utterance). ``net`` is
    left as it was."""
    net = copy.deepcopy(net)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    hp = {"optimizer": "sgd", "lr": 1.0, "lr_out": 1.0, "update_every": 10**6} | hp
    if "readout_norm" in hyperparameter_names(name):  # the plain delta rule, as derived
        hp = {"readout_norm": False} | hp
    rule = make_rule(name, net, **hp)
    rule.begin(LABELS)
    for t in range(x.shape[1]):
        rule.step(x[:, t])
    rule.end()
    return {k: before[k] - v.detach() for k, v in net.named_parameters()}


def unrolled(net: SNN, x: torch.Tensor, one_step: bool = False, feedback=None):
    """The LIF network with autograd, recurrent spikes and resets detached (the graph local
    rules differentiate). ``one_step`` also detaches the membrane: the one-step graph.
    ``feedback``: the readout's backward goes through this matrix instead of W_out."""
    p = net.params
    w_in, w_rec, w_out = (w.detach().clone().requires_grad_()
                          for w in (net.w_in, net.w_rec, net.w_out))
    v = s = torch.zeros(x.shape[0], H)
    m = torch.zeros(x.shape[0], C)
    spikes, outs = [], []
    for t in range(x.shape[1]):
        v_prev = v.detach() if one_step else v
        v_tilde = p.alpha * v_prev + x[:, t] @ w_in.T + s.detach() @ w_rec.T
        s = spike(v_tilde - p.v_th, p.k)
        v = v_tilde - p.v_th * s.detach()
        if feedback is None:
            cur = s @ w_out.T
        else:  # value of W_out s, gradient of B s
            cur = (s @ w_out.T).detach() + s @ feedback.T - (s @ feedback.T).detach()
        m = p.readout_leak * m + cur
        spikes.append(s)
        outs.append(m)
    return (w_in, w_rec, w_out), spikes, outs


def ce(logits: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, LABELS)


def assert_hidden(upd, ws, loss):
    g_in, g_rec = torch.autograd.grad(loss, ws[:2])
    assert g_in.abs().sum() > 0 and g_rec.abs().sum() > 0  # the test can see a difference
    torch.testing.assert_close(upd["w_in"], g_in, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(upd["w_rec"], g_rec, rtol=1e-9, atol=1e-12)


# ---- e-prop --------------------------------------------------------------------------------
@pytest.mark.parametrize("leak", [1.0, 0.9])
def test_eprop_final_equals_autograd_of_the_prediction_loss(f64, leak):
    """Symmetric e-prop, loss at the last frame: L^T ē^T is exactly the gradient of CE(m_T)
    with recurrent spikes and resets detached; the readout's is the delta rule."""
    net, x = tiny(leak)
    upd = rule_update("eprop", net, x, readout="final")
    ws, _, outs = unrolled(net, x)
    (g_out,) = torch.autograd.grad(ce(outs[-1]), [ws[2]], retain_graph=True)
    assert_hidden(upd, ws, ce(outs[-1]))
    torch.testing.assert_close(upd["w_out"], g_out, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("leak", [1.0, 0.9])
def test_eprop_frame_equals_autograd_of_the_summed_loss(f64, leak):
    net, x = tiny(leak, seed=1)
    upd = rule_update("eprop", net, x, readout="frame", lr_out=0.0)
    ws, _, outs = unrolled(net, x)
    assert_hidden(upd, ws, sum(ce(m) for m in outs))


def test_eprop_random_feedback_sends_the_error_through_b(f64):
    net, x = tiny(seed=2)
    upd = rule_update("eprop", net, x, feedback="random", lr_out=0.0)
    fb = class_projection(H, C, FEEDBACK_SEED + 4000)
    ws, _, outs = unrolled(net, x, feedback=fb)
    assert_hidden(upd, ws, ce(outs[-1]))
    # and it is not the symmetric update
    ws2, _, outs2 = unrolled(net, x)
    assert not torch.allclose(upd["w_in"], torch.autograd.grad(ce(outs2[-1]), ws2[0])[0])


def test_eprop_state_is_per_synapse():
    net = SNN(N_IN, H, C)
    rule = make_rule("eprop", net)
    rule.begin(LABELS)
    rule.step(torch.zeros(B, N_IN))
    per_synapse = B * H * (N_IN + H) * 4
    assert rule.state_bytes() >= per_synapse
    assert any(t.shape == (B, H, N_IN) for t in rule.state_tensors())


# ---- DECOLLE -------------------------------------------------------------------------------
def test_decolle_equals_autograd_of_the_local_losses(f64):
    """Local readout G on the current spikes, CE at every frame, gradient through the current
    step's membrane (P, the α-trace): autograd of Σ_t CE(G s_t) on the detached graph."""
    net, x = tiny(seed=3)
    upd = rule_update("decolle", net, x, lr_out=0.0)
    g = class_projection(H, C, FEEDBACK_SEED + 3000)
    ws, spikes, _ = unrolled(net, x)
    assert_hidden(upd, ws, sum(ce(s @ g.T) for s in spikes))
    assert torch.equal(upd["w_out"], torch.zeros_like(upd["w_out"]))


# ---- DRTP ----------------------------------------------------------------------------------
def test_drtp_equals_autograd_on_the_one_step_graph(f64):
    """L = −c* B is constant, so Σ_t L ψ_t ⊗ pre_t is ∂/∂W of Σ_t ⟨L, s_t⟩ / batch through
    the one-step graph (membrane detached too: no trace)."""
    net, x = tiny(seed=4)
    upd = rule_update("drtp", net, x, lr_out=0.0)
    proj = class_projection(H, C, FEEDBACK_SEED + 1000)
    sig = -torch.nn.functional.one_hot(LABELS, C).double() @ proj
    ws, spikes, _ = unrolled(net, x, one_step=True)
    assert_hidden(upd, ws, sum((sig * s).sum() for s in spikes) / B)


# ---- ETLP ----------------------------------------------------------------------------------
@pytest.mark.parametrize("p_event", [1.0, 0.3])
def test_etlp_equals_the_projected_label_on_eprop_traces_at_events(f64, p_event):
    net, x = tiny(seed=5)
    upd = rule_update("etlp", net, x, lr_out=0.0, p_event=p_event, seed=7)
    gen = torch.Generator().manual_seed(7)
    events = [float(torch.rand((), generator=gen)) < p_event for _ in range(T)]
    assert (sum(events) == T) == (p_event == 1.0)
    proj = class_projection(H, C, FEEDBACK_SEED + 2000)
    sig = -torch.nn.functional.one_hot(LABELS, C).double() @ proj
    ws, spikes, _ = unrolled(net, x)  # the trace: membrane kept, as e-prop's ε
    kept = [s for s, e in zip(spikes, events, strict=True) if e]
    assert_hidden(upd, ws, sum((sig * s).sum() for s in kept) / B)


# ---- TESS ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pool,learn_from", [(0, 0), (3, 4)])
def test_tess_equals_its_eligibility_written_per_synapse(f64, pool, learn_from):
    """ΔW = Σ_t m_t ⊙ e_t with e_ji = α_pre ψ_j tr_i + α_post tr_ψ,j(t−1) pre_i materialised
    per synapse, m = ∂CE(softmax(B pool(s)))/∂s by autograd, B the square waves."""
    net, x = tiny(seed=6)
    cfg = {"lambda_pre": 0.8, "lambda_post": 0.5, "alpha_pre": 1.0, "alpha_post": -0.2,
           "temperature": 0.5}
    upd = rule_update("tess", net, x, lr_out=0.0, pool=pool, learn_from=learn_from, **cfg)

    d = pool or H
    f = torch.linspace(50.0, 512.0, C).unsqueeze(1)
    bmat = torch.sign(torch.sin(f * torch.arange(d).double())) / d
    p = net.params
    w_in, w_rec = net.w_in.detach(), net.w_rec.detach()
    v = s = tr_psi = torch.zeros(B, H)
    tr_x, tr_s = torch.zeros(B, N_IN), torch.zeros(B, H)
    d_in, d_rec = torch.zeros(H, N_IN), torch.zeros(H, H)
    for t in range(T):
        v_tilde = p.alpha * v + x[:, t] @ w_in.T + s @ w_rec.T
        psi = surrogate(v_tilde - p.v_th, p.k)
        s_new = (v_tilde > p.v_th).double()
        v = v_tilde - p.v_th * s_new
        tr_x = cfg["lambda_pre"] * tr_x + x[:, t]
        tr_s = cfg["lambda_pre"] * tr_s + s
        if t >= learn_from:
            a = s_new.clone().requires_grad_()
            pooled = a if not pool else torch.nn.functional.adaptive_avg_pool1d(
                a.unsqueeze(1), pool).squeeze(1)
            (m,) = torch.autograd.grad(ce(pooled @ bmat.T / cfg["temperature"]), [a])
            for pre, tr, acc in ((x[:, t], tr_x, d_in), (s, tr_s, d_rec)):
                e = (cfg["alpha_pre"] * psi[:, :, None] * tr[:, None, :]
                     + cfg["alpha_post"] * tr_psi[:, :, None] * pre[:, None, :])
                acc += torch.einsum("bj,bji->ji", m, e)
        tr_psi = cfg["lambda_post"] * tr_psi + psi
        s = s_new
    assert d_in.abs().sum() > 0
    torch.testing.assert_close(upd["w_in"], d_in, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(upd["w_rec"], d_rec, rtol=1e-9, atol=1e-12)


def test_tess_square_waves_are_binary_rows():
    from tracekws.model.rules.tess import square_waves

    b = square_waves(12, 450)
    assert b.shape == (12, 450)
    assert set((b * 450).round().unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert (b[0] != b[1]).any()


# ---- all of them ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NEW_RULES)
def test_state_is_flat_in_the_length_of_the_audio(name):
    torch.manual_seed(0)
    sizes = {n: state_bytes_after(name, n, n_hidden=16) for n in (50, 500)}
    assert sizes[50] == sizes[500] > 0


@pytest.mark.parametrize("name", NEW_RULES)
def test_defaults_adapt_a_session_and_enrol_a_new_word(name):
    """Each rule runs through the streaming session with its defaults, and grows with the
    readout when a new word is enrolled."""
    from _clips import wave

    torch.manual_seed(0)
    m = KWSModel(ModelConfig(n_hidden=32))
    sess = AdaptSession(m, "seven", rule=name, lr_out=3.0)
    sess.feed(wave("yes", 0))
    res = sess.finish()
    assert res.new_label and m.net.w_out.shape[0] == 13
    assert res.prob_after > res.prob_before
    assert res.hyperparameters["rule"] == name
    # a second word after growth: the fixed projections grow by a row
    before = m.net.w_in.detach().clone()
    r = adapt_inputs(m, m.inputs(wave("no", 0)), torch.tensor([12]), rule=name, lr=1e-2)
    assert all(t.shape[0] == 13 for t in r.fixed_tensors())
    if name != "etlp":  # ETLP may draw no event on a short clip
        assert not torch.equal(before, m.net.w_in.detach())


def test_projection_rows_depend_only_on_the_class():
    a, b = class_projection(10, 3, 5), class_projection(10, 4, 5)
    assert torch.equal(a, b[:3])
    assert math.isclose(float(class_projection(400, 1, 0).pow(2).sum()), 1.0, rel_tol=0.2)


@pytest.mark.parametrize("name", NEW_RULES)
def test_buffered_factors_sum_to_the_per_frame_updates(f64, name):
    """Updates summed every 4 frames (factors drained at each optimiser step) add up to the
    single end-of-utterance sum: rates 0 keep the forward pass identical."""
    net, x = tiny(seed=8)
    totals = []
    for every in (4, 10**6):
        extra = {"etlp": {"p_event": 0.5}, "eprop": {"readout": "frame"}}.get(name, {})
        rule = make_rule(name, copy.deepcopy(net), optimizer="sgd", lr=0.0, lr_out=0.0,
                         update_every=every, **extra)
        seen = []
        flush = rule.flush

        def spy(flush=flush, rule=rule, seen=seen):
            seen.append({k: p.grad.clone() for k, p in rule.net.named_parameters()
                         if p.grad is not None})
            flush()

        rule.flush = spy
        rule.begin(LABELS)
        for t in range(T):
            rule.step(x[:, t])
        rule.end()
        totals.append((len([s for s in seen if s]), {
            k: sum(s[k] for s in seen if k in s) for k in ("w_in", "w_rec")}))
    (n_steps, split), (_, whole) = totals
    assert n_steps > 1
    for k in ("w_in", "w_rec"):
        torch.testing.assert_close(split[k], whole[k], rtol=1e-9, atol=1e-12)


def test_cli_train_bench_rules_and_classes(tmp_path, capsys, small_model_path):
    """`train --rule`, `bench rules` and `bench classes` run end to end (tiny settings)."""
    import json
    import shutil

    from _clips import GSC

    from tracekws.cli import main

    data = tmp_path / "gsc"
    shutil.copytree(GSC, data)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--rule", "eprop",
                 "--epochs", "1", "--hidden", "16", "--batch", "4", "--val-percent", "0",
                 "--threads", "1", "--limit-steps", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["bench", "rules", "--data", str(data), "--model", str(small_model_path),
                 "--rules", "drtp", "--seconds", "0.2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    (row,) = res["rules"]
    assert row["rule"] == "drtp" and row["peak_bytes"]["0.2"] >= 0
    assert {"one_shot", "all_shot", "ms_per_second_of_audio"} <= row.keys()
    assert main(["bench", "classes", "--classes", "12,36", "--batches", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["rows"]) == 4 * 2 and res["crossovers"]
    eprop = [r for r in res["rows"] if r["rule"] == "eprop"]
    assert all(r["dynamic"] >= 450 * (480 + 450) * 4 for r in eprop)  # per-synapse ē
