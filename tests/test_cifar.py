"""CIFAR-10 and Zhang et al.'s setup: loading, preprocessing, models, optimiser, study.

The real CIFAR-10 files cannot be used here, so the loader is tested on small
files in the official format (pickled dicts in cifar-10-batches-py/, in a
tarball or extracted) under a spec whose MD5s are those of the test files:
the seam is the spec handed to the loader, never an environment variable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rote.config import RunConfig
from rote.data import registry, sources
from rote.data.prepare import crop_center, input_shape, prepare, standardize_per_image
from rote.data.registry import CIFAR10, get_spec
from rote.data.formats import load as load_cifar
from rote.data.sources import ArchiveSource, CacheSource, load_dataset
from rote.errors import ConfigError, DataError
from rote.models import available_models, count_parameters, create_model
from rote.training.loop import train, train_many
from rote.training.optim import lr_at, make_optimizer

N = 4  # images per synthetic batch: 20 training and 4 test images
FOLDER = "cifar-10-batches-py"
STEMS = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]


def _batches() -> dict[str, bytes]:
    """Six batches and batches.meta as the publishers pickled them (protocol 2, bytes keys)."""
    rng = np.random.default_rng(0)
    out = {}
    for i, stem in enumerate(STEMS):
        entry = {
            b"batch_label": f"synthetic batch {i}".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, N)],
            b"data": rng.integers(0, 256, size=(N, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(N)],
        }
        out[stem] = pickle.dumps(entry, protocol=2)
    out["batches.meta"] = pickle.dumps({b"num_cases_per_batch": N, b"num_vis": 3072,
                                        b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                                                         b"dog", b"frog", b"horse", b"ship", b"truck"]}, protocol=2)
    return out


BATCHES = _batches()
# the real spec with the test files' MD5s and sizes: everything else (folder, tarball name) is CIFAR-10's
SPEC = dataclasses.replace(
    CIFAR10, name="cifar-test", title="CIFAR-test", n_train=5 * N, n_test=N,
    batches=tuple(dataclasses.replace(b, md5=hashlib.md5(BATCHES[b.stem]).hexdigest()) for b in CIFAR10.batches),
)


def entry(stem: str) -> dict:
    return pickle.loads(BATCHES[stem], encoding="bytes")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("ROTE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ROTE_DATA_DIR", raising=False)
    monkeypatch.setitem(registry.DATASETS, SPEC.name, SPEC)


def quiet(_msg: str) -> None:
    pass


def write_extracted(directory: Path, batches: dict[str, bytes] = BATCHES) -> Path:
    folder = directory / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for stem, data in batches.items():
        (folder / stem).write_bytes(data)
    return directory


def write_tarball(path: Path, batches: dict[str, bytes] = BATCHES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for stem, data in batches.items():
            info = tarfile.TarInfo(f"{FOLDER}/{stem}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def check_arrays(ds) -> None:
    assert ds.x_train.shape == (5 * N, 3, 32, 32) and ds.x_test.shape == (N, 3, 32, 32)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.image_shape == (3, 32, 32) and ds.classes == 10
    first, test = entry("data_batch_1"), entry("test_batch")
    # a row is the red, green and blue 32x32 planes one after another
    assert ds.x_train[0, 1, 5, 7] == first[b"data"][0, 1024 + 5 * 32 + 7]
    np.testing.assert_array_equal(ds.x_train[:N].reshape(N, -1), first[b"data"])
    np.testing.assert_array_equal(ds.x_train[4 * N:].reshape(N, -1), entry("data_batch_5")[b"data"])
    assert ds.y_train[:N].tolist() == first[b"labels"]
    assert ds.y_test.tolist() == test[b"labels"]


# ------------------------------------------------------------------ the spec


def test_cifar10_spec_pins_torchvisions_md5s():
    spec = get_spec("CIFAR-10")
    assert spec is CIFAR10 and spec.image_shape == (3, 32, 32) and spec.classes == 10
    assert (spec.n_train, spec.n_test) == (50_000, 10_000)
    assert spec.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert spec.archive_md5 == "c58f30108f718f92721af3b95e74349a"
    assert {b.stem: b.md5 for b in spec.batches} == {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    }
    assert get_spec("mnist").n_train == 60_000 and get_spec("fashion-mnist").n_test == 10_000


# ---------------------------------------------------------------- loading


def test_tarball_loads_through_the_real_loader(tmp_path):
    write_tarball(tmp_path / "data" / "cifar-10-python.tar.gz")
    ds = load_dataset(SPEC.name, tmp_path / "data", log=quiet)
    check_arrays(ds)
    assert ds.source == str(tmp_path / "data" / "cifar-10-python.tar.gz")


def test_tarball_path_itself_may_be_given(tmp_path):
    tarball = write_tarball(tmp_path / "cifar-10-python.tar.gz")
    check_arrays(load_dataset(SPEC.name, tarball, log=quiet))


def test_extracted_directory_loads(tmp_path):
    write_extracted(tmp_path / "data")
    check_arrays(load_dataset(SPEC.name, tmp_path / "data", log=quiet))
    # or the extracted folder itself
    check_arrays(load_cifar(SPEC, tmp_path / "data" / FOLDER))


def test_one_changed_byte_is_refused_naming_file_hashes_and_fix(tmp_path):
    bad = dict(BATCHES)
    data = bytearray(bad["data_batch_3"])
    data[len(data) // 2] ^= 0x01
    bad["data_batch_3"] = bytes(data)
    write_extracted(tmp_path / "data", bad)
    with pytest.raises(DataError) as err:
        load_dataset(SPEC.name, tmp_path / "data", log=quiet)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "data" / FOLDER / "data_batch_3") in msg
    assert SPEC.batches[2].md5 in msg and hashlib.md5(bad["data_batch_3"]).hexdigest() in msg
    assert "replace it" in msg and "cifar-10-python.tar.gz" in msg
    # the same batch in a tarball
    write_tarball(tmp_path / "tar" / "cifar-10-python.tar.gz", bad)
    with pytest.raises(DataError, match="data_batch_3: MD5 is"):
        load_dataset(SPEC.name, tmp_path / "tar", log=quiet)


def test_a_batch_is_never_unpickled_before_its_checksum_matched(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    hostile = dict(BATCHES, data_batch_1=pickle.dumps(Payload(), protocol=2))
    write_extracted(tmp_path / "data", hostile)
    with pytest.raises(DataError, match="MD5"):
        load_dataset(SPEC.name, tmp_path / "data", log=quiet)
    assert not marker.exists()


def test_real_pins_refuse_the_test_files(tmp_path):
    # the shipped spec is what a user gets: the synthetic files are not CIFAR-10
    write_extracted(tmp_path / "data")
    with pytest.raises(DataError, match="is not the expected CIFAR-10 data_batch_1: MD5 is"):
        load_dataset("cifar10", tmp_path / "data", log=quiet)


def test_missing_batch_and_empty_directory_are_named(tmp_path):
    write_extracted(tmp_path / "data", {k: v for k, v in BATCHES.items() if k != "test_batch"})
    with pytest.raises(DataError, match="lacks test_batch"):
        load_dataset(SPEC.name, tmp_path / "data", log=quiet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds neither cifar-10-batches-py/ nor cifar-10-python.tar.gz"):
        load_dataset(SPEC.name, tmp_path / "empty", log=quiet)


def test_download_caches_verified_batches_and_the_cache_is_used(tmp_path):
    tarball = write_tarball(tmp_path / "server" / "cifar-10-python.tar.gz")
    cache = tmp_path / "cache" / SPEC.name
    archive = ArchiveSource(SPEC, tarball.as_uri())
    ds = load_dataset(SPEC.name, sources=[CacheSource(SPEC, cache), archive], log=quiet)
    check_arrays(ds)
    assert sorted(p.name for p in cache.iterdir()) == sorted(STEMS)  # the batches, atomically; no tarball
    assert ds.source == str(cache)
    ds = load_dataset(SPEC.name, allow_download=False, log=quiet)
    assert ds.source == str(cache)
    # a corrupt cached batch is never used: it is deleted and fetched again
    (cache / "data_batch_2").write_bytes(b"not a batch")
    check_arrays(load_dataset(SPEC.name, sources=[CacheSource(SPEC, cache), archive], log=quiet))
    assert (cache / "data_batch_2").read_bytes() == BATCHES["data_batch_2"]


def test_a_bad_download_leaves_the_cache_untouched(tmp_path):
    bad = dict(BATCHES, test_batch=b"x" + BATCHES["test_batch"][1:])
    tarball = write_tarball(tmp_path / "server" / "cifar-10-python.tar.gz", bad)
    with pytest.raises(DataError, match="test_batch: MD5 is"):
        load_dataset(SPEC.name, sources=[ArchiveSource(SPEC, tarball.as_uri())], log=quiet)
    cache = tmp_path / "cache" / SPEC.name
    assert not cache.exists() or list(cache.iterdir()) == []


def test_default_sources_and_status(tmp_path):
    kinds = [type(s) for s in sources.default_sources("cifar10")]
    assert kinds == [CacheSource, ArchiveSource]
    assert sources.default_sources("cifar10")[1].describe() == CIFAR10.url
    assert [type(s) for s in sources.default_sources("cifar10", allow_download=False)] == [CacheSource]
    status = sources.dataset_status(SPEC.name)
    assert status["files"] == dict.fromkeys(STEMS, "missing") and not status["verified"]
    write_extracted(tmp_path / "data")
    status = sources.dataset_status(SPEC.name, tmp_path / "data")
    assert status["verified"] and status["path"] == str(tmp_path / "data" / FOLDER)
    (tmp_path / "data" / FOLDER / "data_batch_4").write_bytes(b"junk")
    status = sources.dataset_status(SPEC.name, tmp_path / "data")
    assert status["files"]["data_batch_4"].startswith("corrupt:") and not status["verified"]


# ---------------------------------------------------------- preprocessing


def tf_per_image_standardization(image: np.ndarray) -> np.ndarray:
    """What tf.image.per_image_standardization computes, on pixels in 0..255."""
    n = image.size
    return (image - image.mean()) / max(image.std(), 1.0 / math.sqrt(n))


def test_center_crop_takes_rows_and_columns_2_to_29():
    x = np.arange(2 * 3 * 32 * 32, dtype=np.float32).reshape(2, 3, 32, 32)
    out = crop_center(x, 28)
    assert out.shape == (2, 3, 28, 28)
    np.testing.assert_array_equal(out, x[:, :, 2:30, 2:30])
    assert crop_center(np.zeros((1, 1, 28, 28)), 28).shape == (1, 1, 28, 28)
    with pytest.raises(ConfigError, match="28x28"):
        crop_center(np.zeros((1, 3, 24, 24)), 28)


def test_per_image_whitening_matches_tensorflows_on_raw_pixels():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(3, 3, 28, 28)).astype(np.float64)
    raw[1] = 100.0  # flat: std 0, divided by the floor instead
    raw[2] = 100.0
    raw[2, 0, 0, 0] = 101.0  # nearly flat: std 0.020616 < 1/sqrt(2352) = 0.020620 on the 0..255 scale
    scaled = (raw / 255.0 - 0.5).astype(np.float32)  # rote's scaling
    out = standardize_per_image(scaled)
    assert out.dtype == np.float32 and out.shape == raw.shape
    for i in range(3):
        np.testing.assert_allclose(out[i], tf_per_image_standardization(raw[i]), rtol=1e-4, atol=1e-4)
    assert abs(out[0].mean()) < 1e-5 and abs(out[0].std() - 1) < 1e-4
    assert np.all(out[1] == 0)
    # the floor is TensorFlow's on 0..255 pixels; the same floor on rote's x/255 - 0.5 would give about 0.19
    assert out[2].max() == pytest.approx((1 - 1 / 2352) * math.sqrt(2352), rel=1e-4)


@pytest.fixture(scope="module")
def cifar_tiny(tmp_path_factory):
    return load_cifar(SPEC, write_extracted(tmp_path_factory.mktemp("cifar")))


def test_prepare_with_zhang_preprocessing(cifar_tiny):
    cfg = RunConfig.from_dict(dict(dataset=SPEC.name, n_train=20, val_split=0.2, labels="true", preprocess="zhang"))
    d = prepare(cifar_tiny, cfg)
    assert d.x_fit.shape == (16, 3, 28, 28) and d.x_val.shape == (4, 3, 28, 28) and d.x_test.shape == (4, 3, 28, 28)
    raw = cifar_tiny.x_train[:16, :, 2:30, 2:30].astype(np.float64)
    for i in (0, 7):
        np.testing.assert_allclose(d.x_fit[i], tf_per_image_standardization(raw[i]), atol=1e-4)
    raw_test = cifar_tiny.x_test[:, :, 2:30, 2:30].astype(np.float64)
    np.testing.assert_allclose(d.x_test[3], tf_per_image_standardization(raw_test[3]), atol=1e-4)
    assert input_shape((3, 32, 32), "zhang") == (3, 28, 28) and input_shape((3, 32, 32), "none") == (3, 32, 32)
    plain = prepare(cifar_tiny, RunConfig.from_dict(dict(dataset=SPEC.name, n_train=20, labels="true")))
    assert plain.x_fit.shape[1:] == (3, 32, 32)
    np.testing.assert_allclose(plain.x_fit[0], cifar_tiny.x_train[0] / 255.0 - 0.5, atol=1e-6)


@pytest.mark.parametrize("inputs", ["shuffled-pixels", "random-pixels", "gaussian"])
def test_input_corruptions_on_three_channel_images(cifar_tiny, inputs):
    base = dict(dataset=SPEC.name, n_train=20, val_split=0.0, labels="true", preprocess="zhang")
    clean = prepare(cifar_tiny, RunConfig.from_dict(base))
    d = prepare(cifar_tiny, RunConfig.from_dict({**base, "inputs": inputs}))
    assert d.x_fit.shape == clean.x_fit.shape == (20, 3, 28, 28) and d.x_test.shape == (4, 3, 28, 28)
    assert not np.allclose(d.x_fit, clean.x_fit)
    if inputs == "gaussian":
        assert abs(d.x_fit.mean() - clean.x_fit.mean()) < 0.05 and abs(d.x_fit.std() - clean.x_fit.std()) < 0.05
        return
    # a pixel moves with its three channels: the (R, G, B) triples of each image are the same multiset
    for i in (0, 5):
        before = sorted(map(tuple, clean.x_fit[i].reshape(3, -1).T.round(5)))
        after = sorted(map(tuple, d.x_fit[i].reshape(3, -1).T.round(5)))
        assert before == after


def test_preprocess_is_a_validated_recorded_setting():
    cfg = RunConfig.from_dict({"preprocess": "zhang"})
    assert cfg.to_dict()["preprocess"] == "zhang" and "preprocess" in cfg.describe()
    assert RunConfig().preprocess == "none"
    with pytest.raises(ConfigError, match="preprocess"):
        RunConfig.from_dict({"preprocess": "whiten"})
    # records made before the setting existed keep their keys; zhang is a different run
    import hashlib
    import json

    from rote.config import KEY_NEUTRAL

    without = {k: v for k, v in RunConfig().to_dict().items() if k not in KEY_NEUTRAL}
    blob = json.dumps(without, sort_keys=True, separators=(",", ":"))
    assert RunConfig().key() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert cfg.key() != RunConfig().key()


# ------------------------------------------------------------------ models

TABLE_1 = {  # Zhang et al. 2017, Table 1: parameters on 28x28x3 inputs
    "inception-small": 1_649_402,
    "inception-small-nobn": 1_649_402,
    "alexnet-small": 1_387_786,
    "mlp:512": 1_209_866,
    "mlp:512x512x512": 1_735_178,
}


@pytest.mark.parametrize("name, params", TABLE_1.items())
def test_parameter_counts_equal_table_1(name, params):
    assert count_parameters(create_model(name, in_shape=(3, 28, 28), classes=10)) == params


def test_inception_batch_norm_has_a_learned_offset_and_no_scale():
    bn = create_model("inception-small", in_shape=(3, 28, 28), classes=10)
    plain = create_model("inception-small-nobn", in_shape=(3, 28, 28), classes=10)
    convs = [m for m in bn.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in bn.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms) == 19 and all(c.bias is None for c in convs)
    assert all(not n.affine for n in norms)
    assert all(c.bias is not None for c in plain.modules() if isinstance(c, nn.Conv2d))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    # 28 -> 14 -> 7 and 336 channels before the mean pool
    trunk = bn[:-3]
    assert trunk(torch.zeros(2, 3, 28, 28)).shape == (2, 336, 7, 7)


def test_alexnet_small_shapes():
    m = create_model("alexnet-small", in_shape=(3, 28, 28), classes=10)
    x = torch.zeros(2, 3, 28, 28)
    shapes = []
    for layer in m:
        x = layer(x)
        if isinstance(layer, (nn.LocalResponseNorm, nn.Linear)):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(64, 14, 14), (64, 7, 7), (384,), (192,), (10,)]


def families() -> list[str]:
    return [("mlp:64" if f == "mlp" else "cnn:4" if f == "cnn" else f) for f in available_models()]


@pytest.mark.parametrize("hw", [32, 28])
@pytest.mark.parametrize("name", families())
def test_every_registered_model_trains_one_step_on_colour_images(name, hw):
    torch.manual_seed(0)
    model = create_model(name, in_shape=(3, hw, hw), classes=10, generator=torch.Generator().manual_seed(0))
    opt = make_optimizer(RunConfig.from_dict({"optimizer": "sgd", "lr": 0.01}), model.parameters())
    x, y = torch.randn(4, 3, hw, hw), torch.arange(4)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert math.isfinite(loss.item())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    assert model(x).shape == (4, 10)


def test_batch_norm_models_train_in_a_group_as_they_do_alone(cifar_tiny):
    # R stacked inception-small runs under vmap: each member normalises with its own batch and keeps its own
    # running statistics, which the validation (eval mode) uses. A small lr: at Zhang's 0.1 on batches of 6,
    # the last-bit differences between a vmapped and a plain convolution grow to 1e-2 within two epochs.
    cfgs = [RunConfig.from_dict(dict(dataset=SPEC.name, n_train=12, val_split=0.25, model="inception-small",
                                     preprocess="zhang", optimizer="sgd", lr=0.001, schedule="step", batch_size=6,
                                     epochs=2, stop_at="none", eval_every=1, labels=lab, seed=s, device="cpu"))
            for s, lab in [(0, "random"), (1, "true")]]
    datas = [prepare(cifar_tiny, c) for c in cfgs]
    grouped = train_many(cfgs, datas)
    for c, d, g in zip(cfgs, datas, grouped):
        s = train(c, d)
        cols = lambda r: [r.loss, r.acc, r.val_loss, r.val_acc, r.train_loss_full, r.train_acc_full]  # noqa: E731
        np.testing.assert_allclose([cols(r) for r in g.history], [cols(r) for r in s.history], atol=2e-4)
        assert g.test_loss == pytest.approx(s.test_loss, abs=2e-4)
        assert g.parameters == s.parameters == 1_649_402
        assert g.history[-1].val_loss != g.history[0].val_loss  # the running statistics moved


# ------------------------------------------------------------ optimiser, study


def test_zhang_study_plans_without_data_and_uses_their_optimiser(tmp_path):
    from rote.experiments import execute
    from rote.experiments.sweep import load_sweep

    sweep = load_sweep(Path(__file__).parent.parent / "rote" / "studies" / "zhang-cifar10.yaml")
    p = execute.plan(sweep, tmp_path / "store")  # the cache is empty: nothing is loaded
    assert len(p.todo) == len(sweep.configs) == 25 and not (tmp_path / "store").exists()
    models = {c.model for c in sweep.configs}
    assert models == set(TABLE_1)
    for c in sweep.configs:
        assert (c.dataset, c.preprocess, c.n_train, c.n_val) == ("cifar10", "zhang", 50_000, 0)
        assert (c.optimizer, c.momentum, c.schedule, c.step_every, c.step_gamma, c.batch_size) == \
            ("sgd", 0.9, "step", 1, 0.95, 128)
        assert c.lr == (0.1 if c.model.startswith("inception") else 0.01)
        assert lr_at(c, 1) == c.lr and lr_at(c, 3) == pytest.approx(c.lr * 0.95 ** 2)
    conditions = {(c.labels, c.inputs) for c in sweep.configs if c.model == "inception-small"}
    assert {("true", "none"), ("random", "none"), ("true", "shuffled-pixels"), ("true", "random-pixels"),
            ("true", "gaussian")} <= conditions
    opt = make_optimizer(sweep.configs[0], [torch.zeros(1, requires_grad=True)])
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    with pytest.raises(ConfigError, match="outside"):
        execute.plan(dataclasses.replace(sweep, configs=[dataclasses.replace(sweep.configs[0], n_train=50_001)]),
                     tmp_path / "store")
