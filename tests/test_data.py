"""transfer.data against real data on disk: Fashion-MNIST (Debian), sklearn digits, animal-mnist (PyPI).

Expected values come from independent reads (gzip + numpy on the raw files, sklearn's arrays, torchvision's
own MNIST reader), not from the code under test.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.corpus import CROISSANT
from transfer.data import (
    DataError,
    ImageDataset,
    checksum,
    derive,
    describe_bias,
    load_dataset,
    load_idx_folder,
    load_image_folder,
    profile_dataset,
    read_idx,
)
from transfer.data.sources import FASHION_MNIST_DIR

PROFILE_KEYS = {
    "n_samples", "split_counts", "n_classes", "class_counts", "imbalance", "image_size", "channels",
    "mean", "std", "checksum", "modality",
}  # fmt: skip


def raw_idx(name: str, offset: int) -> np.ndarray:
    """Bytes of a Fashion-MNIST file after its header, decoded without the code under test."""
    return np.frombuffer(
        gzip.decompress((FASHION_MNIST_DIR / name).read_bytes()), dtype=np.uint8, offset=offset
    )


@pytest.fixture(scope="module")
def fmnist() -> ImageDataset:
    return load_dataset("fashion-mnist")


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


def small_dataset(channels: int = 1, n_per_class: int = 6, size: int = 6) -> ImageDataset:
    """A hand-made dataset: 3 classes, train/test, deterministic random pixels."""
    rng = np.random.default_rng(1)
    n = 3 * n_per_class
    return ImageDataset(
        images=torch.from_numpy(rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8)),
        labels=torch.arange(n) % 3,
        splits=np.array([0, 0, 0, 1, 1, 1] * n_per_class)[:n],
        split_names=("train", "test"),
        class_names=["a", "b", "c"],
        name="small",
        source="test",
    )


# ---------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_sizes_and_classes(fmnist: ImageDataset) -> None:
    profile = profile_dataset(fmnist)
    assert set(profile) == PROFILE_KEYS
    assert profile["n_samples"] == 70_000
    assert profile["split_counts"] == {"train": 60_000, "test": 10_000}
    assert profile["n_classes"] == 10
    assert list(profile["class_counts"].values()) == [7_000] * 10
    assert profile["class_counts"]["Ankle boot"] == 7_000
    assert profile["imbalance"] == 1.0
    assert profile["image_size"] == [28, 28] and profile["channels"] == 1
    assert fmnist.images.shape == (70_000, 1, 28, 28) and fmnist.images.dtype == torch.uint8
    assert fmnist.class_names[0] == "T-shirt/top" and fmnist.class_names[9] == "Ankle boot"


def test_fashion_mnist_matches_raw_bytes(fmnist: ImageDataset) -> None:
    train_x = raw_idx("train-images-idx3-ubyte.gz", 16)
    test_x = raw_idx("t10k-images-idx3-ubyte.gz", 16)
    train_y = raw_idx("train-labels-idx1-ubyte.gz", 8)
    assert np.array_equal(fmnist.images[0, 0].numpy().ravel(), train_x[:784])
    assert np.array_equal(fmnist.images[60_000 + 9_999, 0].numpy().ravel(), test_x[-784:])
    assert np.array_equal(fmnist.split("train").labels.numpy(), train_y)

    profile = profile_dataset(fmnist)
    mean = (train_x.sum(dtype=np.int64) + test_x.sum(dtype=np.int64)) / (train_x.size + test_x.size) / 255
    assert profile["mean"][0] == pytest.approx(mean, rel=1e-12)
    test_std = (test_x.astype(np.float64) / 255).std()
    assert profile_dataset(fmnist.split("test"))["std"][0] == pytest.approx(test_std, rel=1e-9)


def test_fashion_mnist_equals_torchvision_reading(fmnist: ImageDataset, tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in FASHION_MNIST_DIR.glob("*.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    theirs = load_dataset(f"torchvision:FashionMNIST:{tmp_path}")
    assert theirs.class_names == fmnist.class_names
    assert checksum(theirs) == checksum(fmnist)


def test_checksum_stable_and_content_sensitive(fmnist: ImageDataset, digits: ImageDataset) -> None:
    assert checksum(load_dataset("fashion-mnist")) == profile_dataset(fmnist)["checksum"]
    assert checksum(derive(fmnist, "invert", {})) != checksum(fmnist)
    one_pixel = digits.subset(np.arange(len(digits)))
    one_pixel.images[5, 0, 3, 3] ^= 1
    assert checksum(one_pixel) != checksum(digits)
    relabelled = digits.subset(np.arange(len(digits)))
    relabelled.labels[0] = (relabelled.labels[0] + 1) % 10
    assert checksum(relabelled) != checksum(digits)
    renamed = ImageDataset(**{**digits.__dict__, "name": "other", "source": "elsewhere"})
    assert checksum(renamed) == checksum(digits)


# ---------------------------------------------------------------- digits and animal-mnist


def test_digits_against_sklearn(digits: ImageDataset) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    profile = profile_dataset(digits)
    assert profile["n_samples"] == 1797 and profile["n_classes"] == 10
    assert list(profile["class_counts"].values()) == np.bincount(bunch.target).tolist()
    assert profile["image_size"] == [8, 8]
    assert np.array_equal(digits.labels.numpy(), bunch.target)
    scaled = np.vectorize(lambda v: round(v * 255 / 16))(bunch.images[:50])
    assert np.array_equal(digits.images[:50, 0].numpy(), scaled)
    assert digits.images.max() == 255
    test_counts = np.bincount(digits.split("test").labels.numpy(), minlength=10)
    assert np.array_equal(test_counts, np.round(np.bincount(bunch.target) * 0.2))
    assert torch.equal(load_dataset("digits").splits, digits.splits)  # the split is fixed


def test_animal_mnist() -> None:
    animals = load_dataset("animal-mnist")
    profile = profile_dataset(animals)
    assert profile["n_samples"] == 10_000
    assert animals.class_names == [
        "Bear",
        "Bird",
        "Cat",
        "Cow",
        "Dog",
        "Elephant",
        "Giraffe",
        "Horse",
        "Sheep",
        "Zebra",
    ]
    assert list(profile["class_counts"].values()) == [1_000] * 10
    assert profile["split_counts"] == {"train": 8_000, "test": 2_000}
    assert np.bincount(animals.split("test").labels.numpy()).tolist() == [200] * 10
    assert profile["image_size"] == [28, 28] and profile["channels"] == 1


# ---------------------------------------------------------------- the container


def test_split_subset_and_torch_adapter(digits: ImageDataset) -> None:
    train = digits.split("train")
    assert len(train) + len(digits.split("test")) == len(digits)
    assert set(train.splits.tolist()) == {0} and train.class_names == digits.class_names
    picked = digits.subset([3, 1])
    assert torch.equal(picked.images[0], digits.images[3]) and len(picked) == 2
    torch_ds = digits.as_torch("test")
    image, label = torch_ds[0]
    assert len(torch_ds) == len(digits.split("test"))
    assert image.dtype == torch.float32 and image.shape == (1, 8, 8) and 0 <= image.min() <= image.max() <= 1
    assert isinstance(label, int)
    flipped, _ = digits.as_torch("test", transform=lambda x: x.flip(-1))[0]
    assert torch.equal(flipped, image.flip(-1))
    with pytest.raises(DataError, match="no split"):
        digits.split("val")


# ---------------------------------------------------------------- derive


def test_rotate_and_invert_are_exact(digits: ImageDataset) -> None:
    twice = derive(derive(digits, "rotate", {"degrees": 180}), "rotate", {"degrees": 180})
    assert torch.equal(twice.images, digits.images)
    quarter = derive(digits, "rotate", {"degrees": 90})
    assert torch.equal(quarter.images[0, 0], torch.from_numpy(np.rot90(digits.images[0, 0].numpy()).copy()))
    assert torch.equal(derive(digits, "invert", {}).images, 255 - digits.images)
    assert torch.equal(derive(derive(digits, "invert", {}), "invert", {}).images, digits.images)
    tilted = derive(digits, "rotate", {"degrees": 30})
    assert tilted.image_size == (8, 8) and not torch.equal(tilted.images, digits.images)


def test_derivation_record_and_name(digits: ImageDataset) -> None:
    out = derive(digits, "noise", {"std": 10}, seed=3)
    assert out.name == "digits-noise"
    assert out.derivation == {"how": "noise", "params": {"std": 10}, "seed": 3}
    assert torch.equal(out.images, derive(digits, "noise", {"std": 10}, seed=3).images)
    assert not torch.equal(out.images, derive(digits, "noise", {"std": 10}, seed=4).images)
    diff = out.images.float() - digits.images.float()
    assert 5 < diff[(digits.images > 30) & (digits.images < 220)].std() < 15
    assert derive(digits, "invert", {}, name="negatives").name == "negatives"


def test_class_subset_relabels_in_given_order(digits: ImageDataset) -> None:
    out = derive(digits, "class_subset", {"classes": ["7", "2"]})
    counts = np.bincount(digits.labels.numpy())
    assert out.class_names == ["7", "2"]
    assert np.bincount(out.labels.numpy()).tolist() == [counts[7], counts[2]]
    assert torch.equal(out.images[out.labels == 0], digits.images[digits.labels == 7])


def test_subset_is_stratified_and_exact(fmnist: ImageDataset) -> None:
    out = derive(fmnist, "subset", {"fraction": 0.1}, seed=1)
    profile = profile_dataset(out)
    assert profile["split_counts"] == {"train": 6_000, "test": 1_000}
    assert list(profile["class_counts"].values()) == [700] * 10
    assert len(derive(fmnist, "subset", {"n": 1234})) == 1234


def test_imbalance_ratio_on_train_only(fmnist: ImageDataset) -> None:
    out = derive(fmnist, "imbalance", {"ratio": 10}, seed=0)
    train_counts = np.bincount(out.split("train").labels.numpy(), minlength=10)
    assert train_counts[0] == 6_000 and train_counts[-1] == 600
    assert np.all(np.diff(train_counts) < 0)  # decays from the first class to the last
    assert train_counts.max() / train_counts.min() == pytest.approx(10, rel=0.01)
    assert torch.equal(out.split("test").images, fmnist.split("test").images)
    assert torch.equal(out.split("test").labels, fmnist.split("test").labels)
    bias = describe_bias(fmnist, out)
    assert bias["kind"] == "class-imbalance" and bias["severity"] == "high"
    assert "10.0" in bias["description"] and "Ankle boot" in bias["description"]
    mild = derive(fmnist, "imbalance", {"keep": {"Bag": 0.5}})
    assert describe_bias(fmnist, mild)["severity"] == "low"
    assert np.bincount(mild.split("train").labels.numpy())[8] == 3_000


def test_downscale_keeps_the_smaller_size(digits: ImageDataset) -> None:
    assert derive(digits, "downscale", {"factor": 2}).image_size == (4, 4)
    assert derive(digits, "downscale", {"size": [3, 5]}).image_size == (3, 5)
    assert len(derive(digits, "downscale", {"factor": 2})) == len(digits)


def test_photometric_transforms() -> None:
    gray = small_dataset()
    assert torch.equal(derive(gray, "contrast", {"factor": 1.0}).images, gray.images)
    assert torch.equal(derive(gray, "brightness", {"factor": 1.0}).images, gray.images)
    assert derive(gray, "contrast", {"factor": 0.2}).images.float().std() < gray.images.float().std()
    assert derive(gray, "brightness", {"factor": 0.5}).images.float().mean() < gray.images.float().mean()
    assert derive(gray, "blur", {"sigma": 1.0}).images.float().std() < gray.images.float().std()
    rgb = small_dataset(channels=3)
    desaturated = derive(rgb, "color", {"factor": 0.0}).images.int()
    assert (desaturated.max(dim=1).values - desaturated.min(dim=1).values).max() <= 1
    with pytest.raises(DataError, match="RGB"):
        derive(gray, "color", {"factor": 0.5})


@pytest.mark.parametrize(
    ("how", "params"),
    [
        ("sharpen", {}),
        ("rotate", {}),
        ("rotate", {"degrees": "ninety"}),
        ("invert", {"amount": 1}),
        ("subset", {"fraction": 1.5}),
        ("subset", {"fraction": 0.5, "n": 3}),
        ("class_subset", {"classes": ["nope"]}),
        ("blur", {"sigma": 1, "kernel": 4}),
        ("downscale", {"size": [100, 100]}),
        ("imbalance", {"ratio": 0.5}),
        ("imbalance", {"keep": {"zzz": 0.5}}),
    ],
)
def test_bad_derivations_raise(how: str, params: dict) -> None:
    with pytest.raises(DataError):
        derive(small_dataset(), how, params)


# ---------------------------------------------------------------- image folders


def write_png(path: Path, size: tuple[int, int], mode: str = "L", value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_image_folder_with_splits_and_corrupt_files(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("cat", "dog"):
            for i in range(n):
                write_png(tmp_path / split / cls / f"{i}.png", (12, 10), value=40 * i)
    write_png(tmp_path / "train" / "dog" / "big.png", (30, 20))  # resized to the common 10x12
    (tmp_path / "train" / "cat" / "garbage.png").write_bytes(b"not a png at all")
    good = (tmp_path / "train" / "cat" / "0.png").read_bytes()
    (tmp_path / "train" / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "train" / "cat" / "notes.txt").write_text("ignored: not an image extension")

    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.skipped == 2
    assert ds.split_names == ("train", "test") and ds.class_names == ["cat", "dog"]
    assert profile_dataset(ds)["split_counts"] == {"train": 7, "test": 2}
    assert ds.images.shape[1:] == (1, 10, 12)  # (C, H, W): all gray, most common size
    assert ds.images[1, 0, 0, 0] == 40

    write_png(tmp_path / "test" / "dog" / "color.png", (12, 10), mode="RGB")
    assert load_image_folder(tmp_path, image_size=(5, 7)).images.shape[1:] == (3, 5, 7)


def test_flat_image_folder_and_empty_folder(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        write_png(tmp_path / "flat" / cls / "x.png", (4, 4))
    ds = load_dataset(str(tmp_path / "flat"))
    assert ds.split_names == ("train",) and len(ds) == 2 and ds.skipped == 0
    for split in ("train", "val"):
        write_png(tmp_path / "tv" / split / "a" / "x.png", (4, 4))
    assert load_image_folder(tmp_path / "tv").split_names == ("train", "val")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found under"):
        load_image_folder(tmp_path / "empty")


# ---------------------------------------------------------------- IDX and error paths


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> None:
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def test_idx_folder_round_trip(tmp_path: Path) -> None:
    images = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 1, 0], dtype=np.uint8))
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 4]) + bytes(range(12)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([2], dtype=np.uint8))
    (tmp_path / "classes.txt").write_text("zero\none\ntwo\n")
    ds = load_dataset(f"idx:{tmp_path}")
    assert ds.class_names == ["zero", "one", "two"]
    assert torch.equal(ds.images[:5, 0], torch.from_numpy(images))
    assert ds.split("test").images.flatten().tolist() == list(range(12))
    assert read_idx(tmp_path / "train-labels-idx1-ubyte").tolist() == [0, 1, 2, 1, 0]
    wide = np.array([[1, -2], [300, 4]], dtype=np.int32)
    write_idx(tmp_path / "wide", wide, type_code=0x0C)
    assert np.array_equal(read_idx(tmp_path / "wide"), wide)
    (tmp_path / "classes.txt").unlink()
    assert load_idx_folder(tmp_path).class_names == [str(i) for i in range(10)]


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x00\x08",  # shorter than a magic number
        b"\x08\x03\x00\x00" + bytes(40),  # wrong magic
        bytes([0, 0, 0x42, 1, 0, 0, 0, 4]) + bytes(4),  # unknown type code
        bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2]),  # header cut short
        bytes([0, 0, 8, 1, 0, 0, 0, 9]) + bytes(5),  # fewer bytes than the header says
        bytes([0, 0, 8, 1, 0, 0, 0, 2]) + bytes(3),  # more bytes than the header says
        gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 4]) + bytes(4))[:-6],  # truncated gzip
    ],
)
def test_malformed_idx_raises(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError):
        read_idx(path)


def test_missing_torchvision_dataset_says_how_to_fix() -> None:
    with pytest.raises(
        DataError, match=r"not on disk under /nonexistent; run online once with download=True"
    ):
        load_dataset("torchvision:MNIST:/nonexistent")
    with pytest.raises(DataError, match="no dataset class"):
        load_dataset("torchvision:NoSuchSet:/tmp")


def test_unknown_spec_lists_builtins(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fashion-mnist, digits, animal-mnist"):
        load_dataset("imagenet-42")
    with pytest.raises(DataError):
        load_dataset(str(tmp_path / "missing"))


def test_croissant_distribution_download_fails_clearly_offline(tmp_path, monkeypatch) -> None:
    """The real download path exists; without a network it stops with one sentence saying what to do."""
    from transfer.data import croissant

    monkeypatch.setattr(croissant, "CACHE", tmp_path)
    monkeypatch.setattr(croissant, "TIMEOUT_S", 3)
    meta = {
        "@type": "sc:Dataset",
        "name": "tiny",
        "distribution": [
            {
                "@type": "cr:FileObject",
                "name": "imgs",
                "contentUrl": "https://example.invalid/tiny.zip",
                "encodingFormat": "application/zip",
                "sha256": "0" * 64,
            }
        ],
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"cannot download https://example\.invalid/tiny\.zip"):
        load_dataset(f"croissant:{path}")
    fixture = CROISSANT / "leafscan-1.0.json"  # its images live in a git+https repository
    with pytest.raises(DataError, match="git\\+https repository"):
        load_dataset(f"croissant:{fixture}")


def test_croissant_distribution_downloads_over_http_and_loads(tmp_path, monkeypatch) -> None:
    """A Croissant file whose FileObjects are served over HTTP (a local server): the IDX files are
    fetched, checked against their sha256 and read; a wrong sha256 is refused with one sentence."""
    import functools
    import hashlib
    import http.server
    import threading

    from transfer.data import croissant

    monkeypatch.setattr(croissant, "CACHE", tmp_path / "cache")
    served = tmp_path / "served"
    served.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (served / name).write_bytes((FASHION_MNIST_DIR / name).read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"

        def describe(name: str, sha: dict[str, str]) -> Path:
            files = [
                {"@type": "cr:FileObject", "name": f, "contentUrl": f"{url}/{f}", "sha256": sha[f]}
                for f in sorted(sha)
            ]
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps({"@type": "sc:Dataset", "name": name, "distribution": files}))
            return path

        sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in served.iterdir()}
        path = describe("fashion-test-split", sha)
        data = load_dataset(f"croissant:{path}")
        assert data.images.shape == (10_000, 1, 28, 28) and data.split_names == ("train", "test")
        assert data.source == f"croissant:{path.resolve()}"
        assert torch.equal(data.images, load_dataset("fashion-mnist").split("test").images)

        wrong = describe("fashion-wrong", {**sha, "t10k-labels-idx1-ubyte.gz": "0" * 64})
        with pytest.raises(DataError, match="does not match the sha256"):
            load_dataset(f"croissant:{wrong}")
    finally:
        server.shutdown()
