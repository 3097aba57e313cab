"""Search spaces: define-by-run sampling, records on the trial, exact rebuilds, pruned rejects."""
from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn

from ghn_core.deepnets import Architecture, count_params
from nas.space import ATTR, CustomSpace, DeepNetsSpace, NB201Space, get_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(space, n: int, seed: int = 0) -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(lambda t: float(sum(p.numel() for p in space.suggest(t).parameters())), n_trials=n)
    return study


def test_deepnets_trials_rebuild_the_same_network():
    space = DeepNetsSpace(C=16)
    study = _study(space, 40)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= 20
    for t in done:
        arch = Architecture.from_json(t.user_attrs[ATTR])
        assert 6 <= arch.n_cells <= 20 and arch.norm == "bn"
        assert arch.genotype.steps <= (6 if arch.n_cells <= 10 else 3)
        rebuilt = space.rebuild(t.user_attrs)
        assert sum(p.numel() for p in rebuilt.parameters()) == t.value == count_params(arch, 16)
    net = space.rebuild(done[0].user_attrs)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # Same seed, same trials.
    again = _study(space, 40)
    assert [t.user_attrs.get(ATTR) for t in again.trials] == [t.user_attrs.get(ATTR) for t in study.trials]


def test_rejected_architectures_prune_the_trial_with_the_reason():
    space = DeepNetsSpace(max_params=10**5)  # almost everything is too big
    study = _study(space, 10)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(ATTR in t.user_attrs for t in pruned)


def test_nb201_space():
    space = NB201Space()
    study = _study(space, 15)
    for t in study.trials:
        net = space.rebuild(t.user_attrs)
        assert sum(p.numel() for p in net.parameters()) == t.value
        assert len(t.params) == 6 and set(t.params.values()) <= {"none", "skip_connect", "nor_conv_1x1",
                                                                  "nor_conv_3x3", "avg_pool_3x3"}


def test_custom_space_replays_its_parameters():
    def build(trial):
        width = trial.suggest_int("width", 4, 64)
        depth = trial.suggest_int("depth", 1, 3)
        return nn.Sequential(nn.Flatten(), *[nn.Linear(3 * 32 * 32 if i == 0 else width, width) for i in range(depth)],
                             nn.Linear(width, 10))

    space = CustomSpace(build)
    study = _study(space, 5)
    for t in study.trials:
        assert sum(p.numel() for p in space.rebuild(t.params).parameters()) == t.value


def test_unknown_space_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown search space 'deepnet'.*deepnets, nb201.*Did you mean 'deepnets'"):
        get_space("deepnet")
    with pytest.raises(ValueError, match="expected the trial's user attributes"):
        DeepNetsSpace().rebuild({})


@pytest.mark.parametrize("space", ["deepnets", "nb201"])
def test_an_architecture_file_rebuilds_the_trial(tmp_path, space):
    from nas import load_architecture
    from nas.space import save_architecture

    built = get_space(space)
    trial = next(t for t in _study(built, 10).trials if t.state == optuna.trial.TrialState.COMPLETE)
    path = save_architecture(tmp_path / "arch.json", space, trial.user_attrs, trial=trial.number)
    model, same = load_architecture(path), built.rebuild(trial.user_attrs)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [(k, v.shape) for k, v in same.state_dict().items()]
    assert not list(tmp_path.glob("*.tmp"))  # written whole, then moved into place
    with pytest.raises(ValueError, match="unknown search space 'custom'"):
        save_architecture(tmp_path / "custom.json", "custom", trial.user_attrs)
