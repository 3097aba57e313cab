"""GHN-2: shapes of predicted tensors, predict/embed/calibrate, checkpoints, sweeps on real graphs."""
from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

from ghn_core import CheckpointError, load_ghn
from ghn_core.deepnets import SPLITS, Network, predefined_nets
from ghn_core.deepnets.generate import generate_chunk
from ghn_core.graph import Graph, GraphBatch, GraphWarning
from ghn_core.model import GHN2, calibrate_bn, create_ghn, get_config, list_ghns, save_checkpoint
from ghn_core.model.gnn import sweep_node_by_node
from ghn_core.utils import torchvision_on_meta


@pytest.fixture(scope="module")
def ghn() -> GHN2:
    torch.manual_seed(0)
    return create_ghn("ghn2").eval()


def test_model_size_matches_the_reference():
    # §3 of the reference: GHN-2 for CIFAR-10 has 1,620,764 parameters (15 op types).
    assert create_ghn("ghn2", num_op_types=15).num_params() == 1_620_764
    assert set(list_ghns()) == {"ghn1", "ghn2", "mlp"}
    with pytest.raises(ValueError, match="unknown GHN variant 'ghn3'.*Did you mean"):
        get_config("ghn3")


def _check_prediction(ghn: GHN2, model: nn.Module, input_shape=(1, 3, 32, 32)) -> Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)  # googlenet's aux heads are reported, by design
        graph = Graph.from_module(model, input_shape)
    params = ghn.predict_params([model], [graph])[0]
    expected = {n for n in dict(model.named_parameters())} - set(graph.skipped)
    assert set(params) == expected
    for name, tensor in params.items():
        assert tuple(tensor.shape) == tuple(model.get_parameter(name).shape), name
        assert torch.isfinite(tensor).all(), name
    return graph


# One model of each torchvision family (all 80 are traced in test_graph_torchvision.py).
TORCHVISION = ["resnet18", "resnext50_32x4d", "mobilenet_v3_small", "efficientnet_b0", "densenet121", "googlenet",
               "shufflenet_v2_x0_5", "squeezenet1_1", "mnasnet0_5", "regnet_y_400mf", "convnext_tiny", "swin_t",
               "vit_b_16", "maxvit_t"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_every_parameter_of_torchvision_models_gets_its_shape(ghn, name):
    model = torchvision_on_meta(name, num_classes=10)  # no weights needed; much faster to build
    size = 224 if name in ("vit_b_16", "maxvit_t") else 32
    _check_prediction(ghn, model, (1, 3, size, size))


@pytest.mark.parametrize("split", ["train", "test", "wide", "deep", "dense", "bnfree", "search"])
def test_every_parameter_of_deepnets_splits_gets_its_shape(ghn, split):
    for rec in generate_chunk(SPLITS[split], 0, 3):
        graph = _check_prediction(ghn, Network(rec.arch, rec.C * SPLITS[split].width_multiplier, device="meta"))
        assert not graph.skipped


def test_predefined_nets_are_fully_predicted(ghn):
    for net in predefined_nets().values():
        assert not _check_prediction(ghn, net.to("meta")).skipped


def test_level_sweeps_equal_node_by_node_on_real_graphs(ghn):
    nets = [Network(r.arch, 16, device="meta") for r in generate_chunk(SPLITS["test"], 0, 3)]
    batch = GraphBatch.from_graphs([Graph.from_module(n) for n in nets])
    h0 = ghn.op_embed(batch.node_op) + ghn.shape_embed(batch.param_shape)
    with torch.no_grad():
        fast = ghn.gnn(h0, *ghn.sweep_plans(batch))
        slow = sweep_node_by_node(ghn.gnn, h0, batch.edge_index, batch.edge_dist, torch.arange(len(h0)))
    assert torch.allclose(fast, slow, atol=1e-5)


def _tiny_vit() -> nn.Module:
    """A ViT with (1, T, D) token tables: class token and positional embedding."""
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                                                hidden_dim=16, mlp_dim=16, num_classes=10)


@pytest.mark.parametrize("make", [
    lambda: torchvision.models.resnet18(num_classes=10),
    lambda: torchvision.models.resnet18(num_classes=10).to(memory_format=torch.channels_last),  # strided weights
    _tiny_vit,
])
def test_predict_writes_exactly_the_predicted_tensors(ghn, make):
    """predict (tiling the checked blocks) writes what predict_params returns, strided and token tensors too."""
    torch.manual_seed(0)
    model = make()
    expected = ghn.predict_params([model])[0]
    ghn.predict(model)
    assert expected
    for name, tensor in expected.items():
        assert torch.equal(model.get_parameter(name), tensor), name


def test_predict_writes_parameters_and_uses_batch_statistics(ghn):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    before = model.conv1.weight.clone()
    assert ghn.predict(model) is model
    assert not torch.equal(model.conv1.weight, before)
    expected = ghn.predict_params([model])[0]["conv1.weight"]
    assert torch.allclose(model.conv1.weight, expected)
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        out = model(x)
        out_changed_batch = model(torch.cat([x[:4], torch.randn(4, 3, 32, 32)]))
    assert torch.isfinite(out).all()
    # Batch statistics: the first four outputs depend on the other images of the batch.
    assert not torch.allclose(out[:4], out_changed_batch[:4])
    calibrate_bn(model, [torch.randn(16, 3, 32, 32) for _ in range(3)])
    with torch.no_grad():
        a, b = model(x), model(torch.cat([x[:4], torch.randn(4, 3, 32, 32)]))
    assert torch.allclose(a[:4], b[:4], atol=1e-5)  # fixed statistics after calibration


def test_batched_prediction_equals_one_at_a_time(ghn):
    nets = [Network(r.arch, 16) for r in generate_chunk(SPLITS["test"], 0, 3)]
    alone = [ghn.predict_params([n])[0] for n in nets]
    ghn.predict_batch(nets)
    for net, params in zip(nets, alone):
        for name, tensor in params.items():
            assert torch.allclose(net.get_parameter(name), tensor, atol=1e-5), name


def test_embed_is_deterministic_and_tells_architectures_apart(ghn):
    nets = [torchvision.models.resnet18(num_classes=10), torchvision.models.mobilenet_v2(num_classes=10),
            predefined_nets()["vit"]]
    e1 = ghn.embed(nets)
    e2 = ghn.embed(nets[::-1], batch_size=2)
    assert e1.shape == (3, ghn.config.hid)
    assert torch.allclose(e1, e2.flip(0), atol=1e-5)
    assert torch.cdist(e1, e1)[~torch.eye(3, dtype=bool)].min() > 1e-3
    assert torch.allclose(ghn.embed(graphs=ghn.graphs(nets)), e1, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one of models or graphs"):
        ghn.embed(nets, graphs=ghn.graphs(nets))


def test_checkpoint_round_trip_and_bad_files(ghn, tmp_path):
    path = save_checkpoint(tmp_path / "ghn.pt", {"config": ghn.config.to_dict(), "state_dict": ghn.state_dict(),
                                                   "train": {"step": 0}})
    loaded = load_ghn(path)
    net = Network(generate_chunk(SPLITS["val"], 0, 1)[0].arch, 16, device="meta")
    a, b = ghn.predict_params([net])[0], loaded.predict_params([net])[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(tmp_path.glob("*.tmp"))  # the temp file of the atomic write is gone
    with pytest.raises(CheckpointError, match="no GHN checkpoint"):
        load_ghn(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable GHN checkpoint"):
        load_ghn(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a ghn-nas GHN checkpoint"):
        load_ghn(tmp_path / "other.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        load_ghn(truncated)


def test_variants_build_and_predict():
    net = Network(generate_chunk(SPLITS["val"], 0, 1)[0].arch, 16, device="meta")
    for variant in ("ghn1", "mlp"):
        g = create_ghn(variant)
        params = g.predict_params([net])[0]
        assert set(params) == {n for n, _ in net.named_parameters()}
    assert not create_ghn("ghn1").config.weight_norm


def test_a_few_steps_fit_one_meta_batch():
    """The GHN gets a usable gradient: repeated steps on one meta-batch lower its loss."""
    from ghn_core.train import MetaBatch, train_step

    torch.manual_seed(0)
    ghn = create_ghn("ghn2")
    recs = generate_chunk(SPLITS["train"], 0, 2)
    nets = [Network(r.arch, 8, track_running_stats=False, device="meta") for r in recs]
    meta = MetaBatch([0, 1], nets, [Graph.from_module(n) for n in nets])
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    opt = torch.optim.Adam(ghn.parameters(), lr=1e-3)
    losses = [train_step(ghn, meta, x, y, optimizer=opt)["loss"] for _ in range(15)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_a_model_with_other_classes_is_told_or_refused():
    import warnings

    from torchvision.models import resnet18

    from ghn_core.errors import ClassesWarning, GraphError

    ghn = create_ghn("ghn2")  # 10 classes
    with pytest.warns(ClassesWarning, match="ResNet has 1000 classes, but this GHN was trained for 10"):
        ghn.predict(resnet18())
    with pytest.raises(GraphError, match="1000 classes"):
        ghn.predict(resnet18(), strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClassesWarning)
        ghn.predict(resnet18(num_classes=10))  # the GHN's own number of classes: no warning
