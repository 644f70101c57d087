"""docs/settings.md is generated from the code (tools/settings_doc.py) and must match it."""

from __future__ import annotations

import importlib.util
from dataclasses import fields
from pathlib import Path

from rote.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("settings_doc", ROOT / "tools" / "settings_doc.py")
settings_doc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(settings_doc)


def test_committed_settings_list_is_what_the_code_generates():
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == settings_doc.render(), "docs/settings.md is stale: run python tools/settings_doc.py"


def test_every_setting_is_listed_with_its_default_and_flag():
    text = settings_doc.render()
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines() if line.startswith("| `")}
    defaults = RunConfig()
    for f in fields(RunConfig):
        assert f.name in rows, f.name
        if f.name not in ("channels_last", "model_source", "data_source", "optimizer_source"):
            assert f"`--{f.name.replace('_', '-')}`" in rows[f.name]
            assert f"`{settings_doc._value(getattr(defaults, f.name))}`" in rows[f.name]
    assert "--tensorboard" in rows and "--out" in rows  # the options that are not settings, apart


def test_a_new_setting_makes_the_committed_list_stale(monkeypatch):
    import rote.cli

    monkeypatch.setitem(rote.cli.RUN_HELP, "seed", "a different help text")
    assert settings_doc.render() != (ROOT / "docs" / "settings.md").read_text()
    assert settings_doc.main(["--check"]) == 1


def test_readme_is_a_short_guide_whose_links_hold():
    import re

    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250 and "make run" in readme and "make test" in readme
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert "rote/studies/" not in text, f"{page.name}: a shipped study by its checkout path, not its name"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which is not there"
