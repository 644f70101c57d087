"""Install the torch build this machine should have, before rote itself is installed.

`make run` and `make test` call this with the virtual environment's python.
From PyPI, `torch==X` on Linux is the CUDA build (about 3 GB with its nvidia
packages), which a machine without an NVIDIA GPU cannot use. So:

    variant auto   cpu, unless `nvidia-smi -L` lists a GPU (then cuda)
    variant cpu    the pinned version with PyTorch's CPU index as an extra
                   index; there `==2.13.0` also matches `2.13.0+cpu`, and pip
                   prefers it. Where that index cannot be reached, the
                   configured indexes alone (a line says so, and says which
                   build they gave)
    variant cuda   the pinned version from the configured indexes (PyPI's
                   Linux wheel is the CUDA build); --index URL picks another,
                   e.g. https://download.pytorch.org/whl/cu128

    python tools/install_torch.py [--variant auto|cpu|cuda] [--pin torch==2.13.0]
                                  [--index URL] [--print]

--print shows the pip command and installs nothing. Uses only the standard
library, as it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PIN = "torch==2.13.0"
VARIANTS = ("auto", "cpu", "cuda")


def has_nvidia_gpu() -> bool:
    """True when nvidia-smi runs and lists at least one GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def reachable(index: str, timeout: float = 5.0) -> bool:
    """True when the index answers for torch within `timeout` seconds.

    Asked first because pip retries an unreachable index for minutes before
    it goes on without it.
    """
    url = index.rstrip("/") + "/torch/"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except Exception:  # DNS failure, refused, timeout, 404: all mean "not usable"
        return False


def resolve(variant: str, has_gpu: bool, cpu_index_reachable: bool) -> tuple[str, bool]:
    """(the variant to install, whether to add the CPU index)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown torch variant {variant!r}; use one of {', '.join(VARIANTS)}")
    if variant == "auto":
        variant = "cuda" if has_gpu else "cpu"
    return variant, variant == "cpu" and cpu_index_reachable


def pip_args(pin: str, variant: str, use_cpu_index: bool, cpu_index: str = CPU_INDEX,
             index: str | None = None, replace: bool = False) -> list[str]:
    """The arguments after `python -m pip` that install torch.

    replace: the other build of the same version is installed; pip would call
    it satisfied (2.13.0+cpu matches ==2.13.0) without --force-reinstall.
    """
    args = ["install", pin]
    if replace:
        args.append("--force-reinstall")
    if variant == "cpu" and use_cpu_index:
        args += ["--extra-index-url", cpu_index]
    if index:
        args += ["--extra-index-url", index]
    return args


def installed_build(pin: str) -> str | None:
    """'cpu' or 'cuda' when the pinned torch is already installed in this python, else None.

    Reads torch/version.py without importing torch (which takes seconds).
    """
    from importlib import metadata

    want = pin.split("==", 1)[1] if "==" in pin else None
    try:
        have = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None
    if want is None or have.split("+")[0] != want.split("+")[0]:
        return None
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return None
    text = (Path(spec.origin).parent / "version.py").read_text(errors="replace")
    m = re.search(r"^cuda\s*(?::[^=]*)?=\s*(.+)$", text, re.M)
    return "cpu" if m is None or m.group(1).strip() == "None" else "cuda"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default=os.environ.get("TORCH_VARIANT", "auto"), choices=VARIANTS)
    p.add_argument("--pin", default=PIN, help=f"the torch requirement (default {PIN})")
    p.add_argument("--cpu-index", default=CPU_INDEX, help=argparse.SUPPRESS)  # tests point it at a local index
    p.add_argument("--index", default=os.environ.get("TORCH_INDEX") or None,
                   help="an extra index for torch, e.g. one CUDA version's")
    p.add_argument("--print", action="store_true", help="print the pip command and install nothing")
    a = p.parse_args(argv)

    variant, _ = resolve(a.variant, has_nvidia_gpu() if a.variant == "auto" else False, False)
    have = installed_build(a.pin)
    if have == variant and not a.print:
        print(f"torch: {a.pin} ({have} build) is already installed")
        return 0
    ok = variant == "cpu" and reachable(a.cpu_index)
    variant, use_cpu_index = resolve(variant, False, ok)
    args = pip_args(a.pin, variant, use_cpu_index, a.cpu_index, a.index, replace=have is not None and have != variant)
    if variant == "cpu" and not use_cpu_index:
        print(f"torch: {a.cpu_index} cannot be reached; installing {a.pin} from the configured indexes, "
              "which may give the CUDA build (it runs on a CPU too, but is about 3 GB)")
    if a.print:
        print(json.dumps({"variant": variant, "pip": args}))
        return 0
    print(f"torch: installing the {variant} build: pip {' '.join(args)}")
    rc = subprocess.call([sys.executable, "-m", "pip", "install", "-q", *args[1:]])
    if rc != 0:
        print(f"torch: pip failed (exit {rc}); try again, or install torch yourself and rerun", file=sys.stderr)
        return rc
    got = installed_build(a.pin)
    print(f"torch: {a.pin} installed, the {got} build")
    if got is not None and got != variant:
        print(f"torch: asked for the {variant} build, got the {got} build "
              f"(the configured indexes hold only that one for {a.pin})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
