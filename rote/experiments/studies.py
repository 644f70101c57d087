"""The studies shipped with rote (rote/studies/*.yaml, package data): `rote studies`, `rote sweep NAME`."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from rote.errors import ConfigError


def _files() -> dict[str, Path]:
    root = resources.files("rote") / "studies"
    return {Path(p.name).stem: Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml")}


def resolve_study(name_or_path: str) -> Path:
    """A sweep file's path: the path itself when it exists, else the shipped study of that name."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        return path  # load_sweep reports a missing file
    studies = _files()
    if name_or_path not in studies:
        raise ConfigError(f"no sweep file '{name_or_path}' and no shipped study of that name; "
                          f"shipped studies: {', '.join(sorted(studies))} (see `rote studies`)")
    return studies[name_or_path]


def list_studies() -> list[dict]:
    """[{'name', 'path', 'summary': the header's first line, 'time': the time the header states, or ''}]."""
    out = []
    for name, path in sorted(_files().items()):
        header = [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]
        text = re.sub(r"\s*\([^)]*\)", "", " ".join(h for h in header if h))  # without the parentheses
        m = re.search(r"(\d+-core CPU|GPU):\s*(.*?)(?:[.;,](?:\s|$)|$)", text)
        out.append({"name": name, "path": path, "summary": next((h for h in header if h), ""),
                    "time": f"{m.group(1)}: {m.group(2)}" if m else ""})
    return out
