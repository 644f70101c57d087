"""The torch install behind `make run`/`make test` picks the right build, checked without the network.

Stand-in wheels (a CPU `torch 2.13.0+cpu` on a "CPU index", a CUDA `torch 2.13.0`
that needs an nvidia package on a "PyPI") are served from this machine; pip
resolves what tools/install_torch.py asks for with --dry-run --report.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("install_torch", ROOT / "tools" / "install_torch.py")
install_torch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_torch)


def fake_wheel(folder: Path, name: str, version: str, requires=()) -> Path:
    """A minimal installable wheel: one module and its dist-info."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name.replace('-', '_')}/__init__.py", "")
        z.writestr(f"{dist}.dist-info/METADATA", meta)
        z.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def simple_index(root: Path, wheels: dict) -> None:
    """A PEP 503 index under root: root/<project>/index.html linking its wheels."""
    for project, files in wheels.items():
        d = root / project
        d.mkdir(parents=True)
        links = "".join(f'<a href="{f.name.replace("+", "%2B")}">{f.name}</a>\n' for f in files)
        (d / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
        for f in files:
            f.rename(d / f.name)


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    """(PyPI stand-in URL, CPU index stand-in URL, a URL nothing answers), served over HTTP on localhost."""
    root = tmp_path_factory.mktemp("indexes")
    build = root / "build"
    build.mkdir()
    simple_index(root / "pypi", {
        "torch": [fake_wheel(build, "torch", "2.13.0", ["nvidia-fake-cuda"])],
        "nvidia-fake-cuda": [fake_wheel(build, "nvidia-fake-cuda", "12.0")],
    })
    simple_index(root / "cpu", {"torch": [fake_wheel(build, "torch", "2.13.0+cpu")]})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/cpu"
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield f"{base}/pypi", f"{base}/cpu", dead
    server.shutdown()


def planned(capsys, *argv):
    """(variant, pip arguments, what the script printed before them) from `install_torch.py --print`."""
    assert install_torch.main(["--print", *argv]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    plan = json.loads(lines[-1])
    return plan["variant"], plan["pip"], "\n".join(lines[:-1])


def resolved(pypi: str, args: list[str], tmp_path: Path) -> dict:
    """{name: version} that pip would install for `args`, with pypi as the only configured index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # this machine's pip.conf must not add its own indexes
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, "-m", "pip", *args, "--index-url", pypi, "--dry-run", "--ignore-installed",
                          "--quiet", "--report", str(report)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}


def test_cpu_build_comes_from_the_cpu_index(indexes, capsys, tmp_path):
    pypi, cpu, _ = indexes
    variant, args, said = planned(capsys, "--variant", "cpu", "--cpu-index", cpu)
    assert variant == "cpu" and ["--extra-index-url", cpu] == args[-2:]
    assert "cannot be reached" not in said
    assert resolved(pypi, args, tmp_path) == {"torch": "2.13.0+cpu"}


def test_cuda_build_when_asked(indexes, capsys, tmp_path):
    pypi, cpu, _ = indexes
    variant, args, _ = planned(capsys, "--variant", "cuda", "--cpu-index", cpu)
    assert variant == "cuda" and cpu not in args
    assert resolved(pypi, args, tmp_path) == {"torch": "2.13.0", "nvidia-fake-cuda": "12.0"}


def test_unreachable_cpu_index_falls_back_to_the_configured_ones(indexes, capsys, tmp_path):
    pypi, _, dead = indexes
    variant, args, said = planned(capsys, "--variant", "cpu", "--cpu-index", dead)
    assert variant == "cpu" and dead not in args
    assert "cannot be reached" in said and said.count("\n") == 0  # one line
    # pip does not wait on the dead index, and still installs a torch (here the only one there is)
    assert resolved(pypi, args, tmp_path)["torch"] == "2.13.0"


def test_auto_is_cuda_only_with_a_gpu():
    assert install_torch.resolve("auto", has_gpu=False, cpu_index_reachable=True) == ("cpu", True)
    assert install_torch.resolve("auto", has_gpu=True, cpu_index_reachable=True) == ("cuda", False)
    assert install_torch.resolve("cpu", has_gpu=True, cpu_index_reachable=False) == ("cpu", False)
    with pytest.raises(ValueError, match="unknown torch variant"):
        install_torch.resolve("rocm", has_gpu=False, cpu_index_reachable=True)


def test_a_different_build_of_the_pin_is_replaced():
    assert "--force-reinstall" in install_torch.pip_args("torch==2.13.0", "cuda", False, replace=True)
    assert "--force-reinstall" not in install_torch.pip_args("torch==2.13.0", "cpu", True, replace=False)
