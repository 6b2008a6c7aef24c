"""Recurrent gatherer and lens: per-timestep numbers against torch on the module's own output."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import layerscope
from layerscope.lenses import Recurrent
from layerscope.records import select


class Tagger(nn.Module):
    """Two stacked LSTMs reading long sequences; the loss reads only the last timestep, so
    the gradient w.r.t. the first LSTM's output reaches early timesteps only through time.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(4, 12, num_layers=2, batch_first=True)
        self.top = nn.LSTM(12, 12, batch_first=True)
        self.head = nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        self.out = out
        out.retain_grad()  # the test's own view of d loss / d output
        return self.head(self.top(out)[0][:, -1])


def _table(records) -> dict[tuple[int, str, str, str], float]:
    table = {(r.step, r.site, r.quantity, r.statistic): r.value for r in records}
    assert len(table) == len(records)
    return table


def test_lstm_timesteps_states_and_vanishing_gradient_match_torch():
    model = Tagger()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(2)
    expected = []
    with layerscope.watch(model, opt, lenses=[Recurrent(names="lstm")]) as scope:
        for _ in range(3):
            x, y = torch.randn(6, 200, 4, generator=g), torch.randint(0, 2, (6,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            with torch.no_grad():
                _, (h_n, c_n) = model.lstm(x)
            expected.append((model.out.detach().clone(), model.out.grad.clone(), h_n, c_n))
            opt.step()
    table = _table(scope.records())
    for step, (out, grad, h_n, c_n) in enumerate(expected):
        for t in (0, 1, 57, 198, 199):
            at = out[:, t]
            site = f"lstm:hidden[t={t}]"
            assert table[(step, site, "value", "mean")] == pytest.approx(
                at.mean().item(), rel=1e-4, abs=1e-7
            )
            assert table[(step, site, "value", "std")] == pytest.approx(
                at.std(correction=0).item(), rel=1e-4
            )
            assert table[(step, site, "l2", "last")] == pytest.approx(at.norm().item(), rel=1e-5)
            want = grad[:, t].norm().item()
            got = table[(step, f"lstm:hidden.grad[t={t}]", "l2", "last")]
            assert got == pytest.approx(want, rel=1e-4, abs=1e-12)
        for index in range(2):
            for label, state in (("h_n", h_n), ("c_n", c_n)):
                site = f"lstm:{label}[l{index}]"
                assert table[(step, site, "l2", "last")] == pytest.approx(
                    state[index].norm().item(), rel=1e-5
                )
                assert table[(step, site, "value", "mean")] == pytest.approx(
                    state[index].mean().item(), rel=1e-4, abs=1e-7
                )
        grads = [table[(step, f"lstm:hidden.grad[t={t}]", "l2", "last")] for t in range(200)]
        # vanishing through time: falls steadily from the last timestep to the early ones
        assert grads[199] > grads[195] > grads[190] > grads[180] > 0
        assert grads[180] < 1e-3 * grads[199]
        assert max(grads[:150]) < 1e-6 * grads[199]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_packed_bidirectional_gru_counts_only_running_sequences():
    torch.manual_seed(0)
    gru = nn.GRU(3, 5, num_layers=2, bidirectional=True)  # sequence-first
    lengths = torch.tensor([7, 5, 2])
    x = torch.randn(7, 3, 3)
    with layerscope.watch(gru, lenses=[Recurrent()]) as scope:
        out, h_n = gru(pack_padded_sequence(x, lengths))
        padded, _ = pad_packed_sequence(out)
        padded.retain_grad()
        padded.pow(2).sum().backward()
        scope.step()
    table = _table(scope.records())
    for t in range(7):
        running = padded[t, lengths > t].detach()
        assert table[(0, f"model:hidden[t={t}]", "value", "mean")] == pytest.approx(
            running.mean().item(), rel=1e-5
        )
        assert table[(0, f"model:hidden[t={t}]", "value", "std")] == pytest.approx(
            running.std(correction=0).item(), rel=1e-4
        )
        grad = padded.grad[t, lengths > t]
        assert table[(0, f"model:hidden.grad[t={t}]", "l2", "last")] == pytest.approx(
            grad.norm().item(), rel=1e-5
        )
    assert (0, "model:hidden[t=7]", "l2", "last") not in table
    for i, site in enumerate(
        ["model:h_n[l0]", "model:h_n[l0_reverse]", "model:h_n[l1]", "model:h_n[l1_reverse]"]
    ):
        assert table[(0, site, "l2", "last")] == pytest.approx(h_n[i].norm().item(), rel=1e-5)
    assert not any(site.startswith("model:c_n") for _, site, _, _ in table)


def test_unrolled_cell_gets_call_indices_that_restart_each_step():
    torch.manual_seed(0)
    cell = nn.LSTMCell(3, 4)
    model = nn.ModuleDict({"cell": cell})
    opt = torch.optim.SGD(cell.parameters(), lr=0.1)
    outputs = []
    with layerscope.watch(model, opt, lenses=[Recurrent()]) as scope:
        for _ in range(2):
            h = c = torch.zeros(2, 4)
            hs = []
            for t in range(5):
                h, c = cell(torch.full((2, 3), float(t)), (h, c))
                hs.append(h.detach().clone())
            outputs.append(hs)
            opt.zero_grad()
            h.sum().backward()
            opt.step()
    table = _table(scope.records())
    for step in range(2):
        for call in range(5):
            prefix = "cell" if call == 0 else f"cell#{call}"
            want = outputs[step][call].norm().item()
            assert table[(step, f"{prefix}:hidden[t=0]", "l2", "last")] == pytest.approx(
                want, rel=1e-5
            )
            assert (step, f"{prefix}:hidden.grad[t=0]", "l2", "last") in table
    assert not any(site.startswith("cell#5") for _, site, _, _ in table)


def test_long_sequences_are_strided_and_end_on_the_last_timestep():
    torch.manual_seed(0)
    rnn = nn.RNN(2, 3)
    with layerscope.watch(rnn, lenses=[Recurrent()]) as scope:
        rnn(torch.randn(300, 1, 2))[0].sum().backward()
        scope.step()
    sites = {r.site for r in select(scope.records(), quantity="l2") if "hidden.grad" in r.site}
    assert sites == {f"model:hidden.grad[t={t}]" for t in [*range(0, 300, 2), 299]}
    assert Recurrent(stride=100).timesteps(300) == [0, 100, 200, 299]
    with pytest.raises(ValueError, match="stride"):
        Recurrent(stride=0)


def test_device_path_gives_the_host_numbers():
    """Values kept as tensors and fetched at flush (as on an accelerator) equal the host path."""

    def run(device_like: bool) -> dict:
        torch.manual_seed(0)
        lstm = nn.LSTM(3, 4, bidirectional=True)
        scope = layerscope.watch(lstm, lenses=[Recurrent()])
        scope.force_torch_reducer = device_like
        for _ in range(2):
            lstm(torch.randn(9, 2, 3))[0].pow(2).sum().backward()
            scope.step()
        scope.close()
        return _table(scope.records())

    host, device = run(False), run(True)
    assert host.keys() == device.keys()
    assert len(host) == 2 * (9 * 4 + 2 * 2 * 3)
    for key, value in host.items():
        assert device[key] == pytest.approx(value, rel=1e-6), key


def test_micro_batches_of_different_lengths_merge_per_timestep_as_one_batch():
    # Each timestep's mean, standard deviation and norm are those of every output that reached
    # it, from either micro-batch: the norm is not a mean of the two norms, the deviation pools
    # both about the merged mean.
    torch.manual_seed(0)
    gru = nn.GRU(2, 3)
    long, short = torch.randn(6, 1, 2) + 1.0, torch.randn(4, 1, 2) - 1.0
    with layerscope.watch(gru, lenses=[Recurrent()]) as scope:
        outs = []
        for x in (long, short):  # gradient accumulation: two forwards, one step
            out, _ = gru(x)
            outs.append(out.detach())
            out.sum().backward()
        scope.step()
    table = _table(scope.records())
    for t in range(6):
        reached = torch.cat([o[t].flatten() for o in outs if t < len(o)]).double()
        site = f"model:hidden[t={t}]"
        assert table[(0, site, "l2", "last")] == pytest.approx(reached.norm().item(), rel=1e-6)
        assert table[(0, site, "value", "mean")] == pytest.approx(reached.mean().item(), rel=1e-6)
        std = reached.std(correction=0).item()
        assert table[(0, site, "value", "std")] == pytest.approx(std, rel=1e-5)
    assert not any("#1" in site for _, site, _, _ in table)  # a new forward restarts the count


def test_calls_of_different_batch_sizes_and_lengths_weigh_per_timestep():
    # One step sees a packed batch of 2 sequences (lengths 6 and 2) and a padded batch of 5 of
    # length 4: each timestep's mean is over every sequence that reached it, wherever it ran.
    torch.manual_seed(0)
    gru = nn.GRU(2, 3)
    g = torch.Generator().manual_seed(6)
    packed = pack_padded_sequence(torch.randn(6, 2, 2, generator=g), torch.tensor([6, 2]))
    padded = torch.randn(4, 5, 2, generator=g)
    with layerscope.watch(gru, lenses=[Recurrent()]) as scope:
        out, _ = gru(packed)
        unpacked, lengths = pad_packed_sequence(out)
        unpacked.sum().backward()
        out, _ = gru(padded)
        out.sum().backward()
        scope.step()
    table = _table(scope.records())
    running = [unpacked[:length, b] for b, length in enumerate(lengths.tolist())]
    for t in range(6):
        values = [seq[t] for seq in running if t < len(seq)] + ([*out[t]] if t < 4 else [])
        want = torch.stack(values).detach().mean().item()
        assert table[(0, f"model:hidden[t={t}]", "value", "mean")] == pytest.approx(want, rel=1e-5)
