"""transfer.zoo against real things: torchvision's weight metadata, ccexam's real weights, real digits.

Expected values come from outside the code under test: torchvision's documented ResNet-18 numbers,
ccexam's own ``DATASET_STATS`` and model classes, ``hashlib`` on the written files, the graph codec.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kg.codec import decode_props, encode_props
from ontology.vocab import NODES, Label
from transfer.data import ImageDataset, load_dataset
from transfer.zoo import (
    ModelRecord,
    SmallCNN,
    ZooError,
    build_demo_zoo,
    build_for_record,
    build_model,
    ccexam_records,
    check_layer_groups,
    chop_head,
    compress_groups,
    head_name,
    layer_groups,
    load_model,
    read_state_dict,
    record_for_model,
    record_from_torchvision,
    save_checkpoint,
)

FAMILIES = [
    ("smallcnn", 1), ("ccexam-mnist", 1), ("ccexam-usps", 1), ("ccexam-svhn", 3),
    ("resnet18", 3), ("resnet34", 3), ("resnet50", 3), ("mobilenet_v3_small", 3), ("mobilenet_v3_large", 3),
    ("efficientnet_b0", 3), ("convnext_tiny", 3), ("vit_b_16", 3),
]  # fmt: skip


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


def small_record(tmp_path: Path, width: int = 8, num_classes: int = 3) -> tuple[SmallCNN, ModelRecord]:
    """A random SmallCNN saved as safetensors, and its record."""
    torch.manual_seed(0)
    model = SmallCNN(1, num_classes, width).eval()
    path = tmp_path / "small.safetensors"
    digest = save_checkpoint(model, path)
    record = record_for_model(
        model, "smallcnn", id="test.small", input_size=(1, 12, 12), mean=(0.5,), std=(0.25,),
        checkpoint=str(path), checksum=digest, arch_kwargs={"width": width},
        class_names=[f"c{i}" for i in range(num_classes)],
    )  # fmt: skip
    return model, record


def owners(names: list[str], groups: list[list[str]]) -> dict[str, list[int]]:
    """For each parameter, every group with a prefix covering it (independent of transfer.zoo.groups)."""
    return {n: [i for i, g in enumerate(groups) for p in g if n == p or n.startswith(p + ".")] for n in names}


# ---------------------------------------------------------------- records


def test_record_round_trips_through_the_graph_codec(tmp_path: Path) -> None:
    _, record = small_record(tmp_path)
    record.metrics = {"test_accuracy": 0.5}
    record.pretrained_on = "digits"
    props = record.to_properties()
    assert set(props) <= set(NODES[Label.MODEL].properties)
    assert "pretrained_on" not in props and props["extra"]["class_names"] == ["c0", "c1", "c2"]
    stored = encode_props(Label.MODEL, props, "test")  # json kinds become text, as the stores hold them
    assert isinstance(stored["input_size"], str)
    back = ModelRecord.from_properties(decode_props(Label.MODEL, stored), pretrained_on="digits")
    assert back == record
    assert ModelRecord.from_properties(stored, pretrained_on="digits") == record  # json text accepted too


def test_record_refuses_inconsistent_values() -> None:
    base = {
        "id": "x", "name": "x", "architecture": "smallcnn", "num_classes": 2, "input_size": (3, 8, 8),
        "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2), "head": "head", "layer_groups": [["head"]],
    }  # fmt: skip
    ModelRecord(**base)
    with pytest.raises(ZooError, match="one mean and one std per input channel"):
        ModelRecord(**{**base, "mean": (0.5,)})
    with pytest.raises(ZooError, match="class names"):
        ModelRecord(**base, class_names=["a"])
    with pytest.raises(ZooError, match="head 'head' in the last layer group"):
        ModelRecord(**{**base, "layer_groups": [["head"], ["body"]]})
    with pytest.raises(ZooError, match="lack"):
        ModelRecord.from_properties({"id": "x"})


# ---------------------------------------------------------------- architectures and layer groups


@pytest.mark.parametrize(("architecture", "channels"), FAMILIES)
def test_layer_groups_cover_every_parameter_exactly_once(architecture: str, channels: int) -> None:
    model = build_model(architecture, 7, channels)
    groups = layer_groups(model, architecture)
    names = [n for n, _ in model.named_parameters()]
    hits = owners(names, groups)
    assert all(len(h) == 1 for h in hits.values()), {n: h for n, h in hits.items() if len(h) != 1}
    assert hits[names[0]] == [0]  # input first
    head = head_name(model, architecture)
    assert isinstance(model.get_submodule(head), nn.Linear)
    assert model.get_submodule(head).out_features == 7
    assert all(hits[n] == [len(groups) - 1] for n in names if n.startswith(head + "."))  # head last
    assert len(groups) >= 4


def test_layer_group_check_names_the_problem() -> None:
    model = SmallCNN(1, 3, 4)
    with pytest.raises(ZooError, match=r"'head\.weight' is in no layer group"):
        check_layer_groups(model, [["block1"], ["block2"], ["block3"], ["block4"]])
    with pytest.raises(ZooError, match="more than one"):
        check_layer_groups(model, [["block1", "block2"], ["block2", "block3", "block4", "head"]])
    with pytest.raises(ZooError, match="matches no parameter"):
        check_layer_groups(model, [["block1", "block2", "block3", "block4", "head", "block5"]])
    params = [[n for n, _ in model.named_parameters() if n.startswith(b)] for b in ("block1", "block2")]
    rest = [n for n, _ in model.named_parameters() if not n.startswith(("block1", "block2"))]
    assert compress_groups(model, [*params, rest]) == [["block1"], ["block2"], ["block3", "block4", "head"]]


def test_unknown_architecture_and_missing_timm_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ZooError, match="unknown architecture 'alexnet-ish'"):
        build_model("alexnet-ish", 10)
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(ZooError, match="timm is not installed: pip install timm"):
        build_model("timm:resnet18", 10)


def test_timm_record_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    from transfer.zoo import record_from_timm

    record = record_from_timm("resnet18")
    assert record.head == "fc" and record.layer_groups[-1] == ["fc"]
    model = build_for_record(record)
    record.checkpoint = str(tmp_path / "timm.safetensors")
    record.checksum = save_checkpoint(model, record.checkpoint)
    assert load_model(record).fc.out_features == record.num_classes


# ---------------------------------------------------------------- checkpoints


def test_safetensors_round_trip_with_checksum(tmp_path: Path) -> None:
    model, record = small_record(tmp_path)
    data = Path(record.checkpoint).read_bytes()
    assert record.checksum == hashlib.sha256(data).hexdigest()
    assert data[8:9] == b"{"  # safetensors: u64 header length, then the JSON header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.safetensors"]  # no temporary left behind
    loaded = load_model(record)
    assert not loaded.training
    x = torch.rand(4, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    _, record = small_record(tmp_path)
    record.checksum = "0" * 64
    with pytest.raises(ZooError, match="SHA-256"):
        load_model(record)


def test_torch_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    model, record = small_record(tmp_path)
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
    record.checkpoint, record.checksum = str(path), None
    assert torch.equal(load_model(record).head.weight, model.head.weight)


class _RunsCode:
    """Pickles to a call of os.system, as a malicious checkpoint would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _Custom:
    """A harmless custom class: still not a tensor, so still refused."""


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the raw pickle
@pytest.mark.parametrize("how", ["torch-reduce", "torch-custom-class", "raw-pickle"])
def test_unsafe_pickle_is_refused_without_running_it(tmp_path: Path, how: str) -> None:
    _, record = small_record(tmp_path)
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    if how == "torch-reduce":
        torch.save({"head.weight": torch.zeros(1), "x": _RunsCode(marker)}, path)
    elif how == "torch-custom-class":
        torch.save({"head.weight": torch.zeros(1), "x": _Custom()}, path)
    else:
        path.write_bytes(pickle.dumps(_RunsCode(marker)))
    record.checkpoint, record.checksum = str(path), None
    culprit = {"torch-reduce": r"(posix|nt)\.system", "torch-custom-class": "_Custom", "raw-pickle": ""}[how]
    with pytest.raises(ZooError, match=rf"{culprit}.*refused"):
        load_model(record)
    assert not marker.exists()


def test_mismatched_checkpoint_names_the_first_bad_key(tmp_path: Path) -> None:
    _, record = small_record(tmp_path, width=8)
    wider = tmp_path / "wider.safetensors"
    save_checkpoint(SmallCNN(1, 3, 16), wider)
    record.checkpoint, record.checksum = str(wider), None
    with pytest.raises(
        ZooError, match=r"'block1\.0\.weight' has shape \(16, 1, 3, 3\) where the model needs"
    ):
        load_model(record)
    state = SmallCNN(1, 3, 8).state_dict()
    del state["head.bias"]
    state["extra.weight"] = torch.zeros(1)
    save_checkpoint(state, wider)
    with pytest.raises(ZooError, match=r"lacks 'head\.bias' \(1 more mismatches\)"):
        load_model(record)
    assert set(read_state_dict(wider)) == set(state)


# ---------------------------------------------------------------- torchvision


def test_torchvision_record_reads_the_real_weight_metadata() -> None:
    record = record_from_torchvision("resnet18", "IMAGENET1K_V1")
    assert record.mean == (0.485, 0.456, 0.406) and record.std == (0.229, 0.224, 0.225)
    assert record.input_size == (3, 224, 224) and record.extra["resize_size"] == [256]
    assert record.interpolation == "bilinear"
    assert record.num_params == 11_689_512 and record.num_classes == 1000
    assert record.class_names[:2] == ["tench", "goldfish"]
    assert record.metrics["ImageNet-1K"]["acc@1"] == pytest.approx(69.758)
    assert record.extra["url"] == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert record.head == "fc" and record.source == "torchvision:resnet18.IMAGENET1K_V1"
    assert record.pretrained_on == "ImageNet-1K" and "recipe" in record.license
    with pytest.raises(ZooError, match="has no weights 'IMAGENET9K'"):
        record_from_torchvision("resnet18", "IMAGENET9K")


def test_torchvision_weights_come_from_the_hub_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    record = record_from_torchvision("mobilenet_v3_small", "IMAGENET1K_V1")
    with pytest.raises(ZooError, match=r"not in the torch hub cache .*get_state_dict\(\)"):
        load_model(record)
    # A file of the right name but other bytes fails torch hub's hash-prefix check.
    cached = tmp_path / "torch" / "hub" / "checkpoints" / record.extra["filename"]
    cached.parent.mkdir(parents=True)
    torch.save(build_for_record(record).state_dict(), cached)
    with pytest.raises(ZooError, match="does not match the SHA-256 prefix"):
        load_model(record)


# ---------------------------------------------------------------- chop_head


def test_chop_head_replaces_only_the_classifier(tmp_path: Path) -> None:
    record = record_from_torchvision("mobilenet_v3_small", "IMAGENET1K_V1")
    model = build_for_record(record)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    old_head = model.get_submodule("classifier.3")
    chop_head(model, record, 5, ["a", "b", "c", "d", "e"], seed=1)
    new_head = model.get_submodule("classifier.3")
    assert new_head is not old_head and new_head.out_features == 5 and new_head.in_features == 1024
    assert not torch.equal(new_head.weight[:5], old_head.weight[:5])
    after = model.state_dict()
    assert {k for k in before if not k.startswith("classifier.3.")} == {
        k for k in after if not k.startswith("classifier.3.")
    }
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("classifier.3."))
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 5)
    again = chop_head(build_for_record(record), record, 5, seed=1)
    assert torch.equal(again.get_submodule("classifier.3").weight, new_head.weight)  # seeded

    small, small_rec = small_record(tmp_path)
    head = small.head
    assert chop_head(small, small_rec, 3, ["c0", "c1", "c2"]).head is head  # same label space: kept
    assert chop_head(small, small_rec, 3, ["x", "y", "z"]).head is not head  # same size, other classes


# ---------------------------------------------------------------- ccexam


def _digits_for(record: ModelRecord, ds: ImageDataset) -> torch.Tensor:
    """sklearn's 8x8 digits in the model's input layout, normalised with the record's statistics."""
    x = ds.images.to(torch.float32) / 255.0
    channels, height, width = record.input_size
    if record.source == "ccexam:mnist":  # MNIST digits sit in a 20x20 box centred in 28x28
        x = F.pad(F.interpolate(x, size=(20, 20), mode=record.interpolation), (4, 4, 4, 4))
    else:
        x = F.interpolate(x, size=(height, width), mode=record.interpolation)
    x = x.repeat(1, channels, 1, 1)
    return (x - torch.tensor(record.mean).view(1, -1, 1, 1)) / torch.tensor(record.std).view(1, -1, 1, 1)


def test_ccexam_models_load_strictly_and_read_real_digits(digits: ImageDataset) -> None:
    pytest.importorskip("ccexam")
    from ccexam.constants import DATASET_STATS
    from ccexam.models import MNISTNet, SVHNNet, USPSNet

    records = {r.source: r for r in ccexam_records()}
    assert set(records) == {"ccexam:mnist", "ccexam:usps", "ccexam:svhn"}
    theirs = {"mnist": MNISTNet, "usps": USPSNet, "svhn": SVHNNet}
    for source, record in records.items():
        name = source.split(":")[1]
        stats = DATASET_STATS[name]
        assert record.mean == stats["mean"] and record.std == stats["std"]
        assert record.input_size[1:] == (stats["image_size"],) * 2
        state = torch.load(record.checkpoint, map_location="cpu", weights_only=True)
        ours = load_model(record)  # strict key and shape check inside
        assert set(ours.state_dict()) == set(state)
        reference = theirs[name](input_size=stats["image_size"]).eval()
        reference.load_state_dict(state, strict=True)
        x = _digits_for(record, digits)
        with torch.no_grad():
            logits = ours(x)
            assert torch.allclose(logits, reference(x), atol=1e-5)
        accuracy = float((logits.argmax(1) == digits.labels).float().mean())
        # Measured on all 1,797 digits: mnist 0.70, usps 0.73, svhn 0.72; chance is 0.10.
        assert accuracy > 0.5, (source, accuracy)


# ---------------------------------------------------------------- demo zoo


def test_tiny_demo_zoo_trains_then_hits_the_cache(tmp_path: Path, digits: ImageDataset) -> None:
    events: list[tuple[str, int, int]] = []
    kwargs = {"epochs": 1, "min_steps": 0, "seed": 0}
    start = time.perf_counter()
    [(record, activity)] = build_demo_zoo(
        tmp_path / "zoo", {"digits": digits}, progress=lambda *e: events.append(e), **kwargs
    )
    first = time.perf_counter() - start
    assert activity["cached"] is False and activity["settings"]["epochs_run"] == 1
    assert events == [("digits: epoch 1/1, loss " + events[0][0].rsplit(" ", 1)[1], 1, 1)]
    assert record.pretrained_on == "digits" and record.input_size == (1, 8, 8)
    assert record.metrics["test_accuracy"] > 0.3  # chance is 0.10
    assert activity["kind"] == "pretraining" and activity["settings"]["seed"] == 0

    # The record loads, and its own normalisation reproduces the recorded accuracy.
    model = load_model(record)
    test = digits.split("test")
    x = (test.images.float() / 255 - record.mean[0]) / record.std[0]
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == test.labels).float().mean())
    assert accuracy == pytest.approx(record.metrics["test_accuracy"])

    start = time.perf_counter()
    [(again, cached)] = build_demo_zoo(tmp_path / "zoo", {"digits": digits}, **kwargs)
    assert cached["cached"] is True and again == record
    assert time.perf_counter() - start < max(first, 0.5)

    # Same seed, fresh folder: the same bytes.
    [(twin, _)] = build_demo_zoo(tmp_path / "twin", {"digits": digits}, **kwargs)
    assert twin.checksum == record.checksum
