"""The studies shipped with rote (rote/studies/*.yaml, package data): `rote studies`, `rote sweep NAME`."""

from __future__ import annotations

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
    """[{'name', 'path', 'summary': the header's first line, 'description': the file's description, whole,
    'time': the header's 'Time:' paragraph (or ''), 'runs', 'epochs': the most epochs a run may use}]."""
    from rote.experiments.sweep import load_sweep

    out = []
    for name, path in sorted(_files().items()):
        header = [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]
        # the header's paragraph that starts "Time:" (each shipped study has one)
        paragraphs = " ".join(h or "\n" for h in header).split("\n")
        time = next((" ".join(t.split())[len("Time:"):].strip() for t in paragraphs if t.strip().startswith("Time:")), "")
        sweep = load_sweep(path)
        out.append({"name": name, "path": path, "summary": next((h for h in header if h), ""),
                    "description": " ".join(sweep.description.split()), "time": time,
                    "runs": len({c.key() for c in sweep.configs}), "epochs": max(c.epochs for c in sweep.configs)})
    return out
