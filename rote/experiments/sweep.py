"""Sweep files: a base run and a grid over any run setting, plus seeds.

    # studies/corruption.yaml
    name: corruption
    base:                      # any `rote run` setting; the rest keep their defaults
      n_train: 3000
      epochs: 200
    grid:                      # every combination of these values
      labels: [true, "partial:0.2", "partial:0.4", random]
    seeds: 5                   # 5 means seeds 0-4; or a list: [0, 3, 7]

Conditions that are not a product of values (true labels; random labels;
shuffled pixels with true labels ...) go in ``cases``, a list of partial
settings; the runs are cases x grid x seeds, and either may be left out:

    cases:
      - {labels: true}
      - {labels: random}
      - {inputs: shuffled-pixels, labels: true}

A sweep file is checked completely before anything trains: an unknown key, a
bad value, an empty grid or a misspelt corruption is an error that names the
line and the field. A file is read only within bounds (its size, how deeply it
nests, how large YAML's aliases make it, how many runs it expands to), each
checked before the next step builds anything, so a hostile file is refused in
one short line rather than exhausting memory or time.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

import yaml

from rote.config import RunConfig, identify
from rote.errors import ConfigError

TOP_KEYS = ("name", "description", "base", "cases", "grid", "seeds", "expect_epochs", "save_model")
MAX_RUNS = 100_000  # a sweep that expands to more is almost surely a typo (and would not finish)
# Bounds on the file itself. The shipped studies are a few KB, nest 4 deep and hold under 200 values.
MAX_BYTES = 1 << 20
MAX_DEPTH = 32
# values and collections, every alias counted as the copy it stands for; a grid of 100,000 runs is a
# product of a few short lists, never 20,000 values written out
MAX_NODES = 20_000
MAX_QUOTE = 60  # characters of a user's value quoted in an error
MAX_MESSAGE = 300

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where installed: the same YAML, faster


def short(value: Any, limit: int = MAX_QUOTE) -> str:
    """repr(value), cut to ``limit`` characters: a user's value quoted in an error stays one short line."""
    if isinstance(value, (list, dict, tuple, set)) and len(value) > 20:
        return f"<a {type(value).__name__} of {len(value):,} items>"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    base: dict[str, Any]
    cases: list[dict]
    grid: dict[str, list]
    seeds: list[int]
    configs: list[RunConfig]
    source: str  # the file's text
    # the epochs a typical run is expected to take (a stated prior for the time estimate, used until the
    # store has finished runs of the same kind); None: unknown
    expect_epochs: Optional[int] = None
    # keep every run's final weights (model.pt), as `rote run --save-model`: a sweep's option, not a run
    # setting (it changes no number and no key)
    save_model: bool = False

    def conditions(self) -> list[dict]:
        """The grid points, without seeds."""
        keys = list(self.grid)
        points = [dict(zip(keys, vals)) for vals in itertools.product(*(self.grid[k] for k in keys))]
        return [{**case, **point} for case in (self.cases or [{}]) for point in points]


def _line(node) -> int:
    return node.start_mark.line + 1


def _find(mapping_node, key: str):
    for k, v in mapping_node.value:
        if k.value == key:
            return k, v
    return None, None


def load_sweep(path: Path) -> Sweep:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            blob = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read sweep file {path}: {e.strerror}") from None
    if len(blob) > MAX_BYTES:
        raise ConfigError(f"sweep file {path} is larger than {MAX_BYTES >> 20} MiB; a sweep file is a few lines "
                          f"of settings")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"sweep file {path} is not UTF-8 text (byte {e.start})") from None
    return parse_sweep(text, str(path))


def _check_shape(text: str, where: str) -> None:
    """Refuse a file that nests deeper than MAX_DEPTH or stands for more than MAX_NODES values once its
    aliases are expanded, from YAML's flat event stream: before anything is composed or built, so that
    neither deep nesting (recursion) nor an alias bomb (billion laughs) can grow."""
    stack: list[list] = []  # per open collection: [anchor, its expanded size so far]
    sizes: dict[str, int] = {}  # anchor -> the expanded size of what it names
    total = 0
    for ev in yaml.parse(text, Loader=_Loader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack.append([ev.anchor, 1])
            if len(stack) > MAX_DEPTH:
                raise ConfigError(f"{where} line {ev.start_mark.line + 1}: nests deeper than {MAX_DEPTH} levels; "
                                  f"a sweep file is a few levels of settings")
            continue
        if isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, n = stack.pop()
        elif isinstance(ev, yaml.ScalarEvent):
            anchor, n = ev.anchor, 1
        elif isinstance(ev, yaml.AliasEvent):
            anchor, n = None, sizes.get(ev.anchor, 1)
        else:
            continue
        if anchor is not None:
            sizes[anchor] = n
        if stack:
            stack[-1][1] += n
            n = stack[-1][1]
        else:
            total += n
            n = total
        if n > MAX_NODES:
            raise ConfigError(f"{where} line {ev.start_mark.line + 1}: holds more than {MAX_NODES:,} values "
                              f"(counting what YAML aliases stand for); a sweep of many runs is a product of short "
                              f"lists")


def parse_sweep(text: str, where: str = "<sweep>") -> Sweep:
    where = where if len(where) <= 200 else "..." + where[-197:]
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_BYTES >> 20} MiB; a sweep file is a few lines of settings")
    try:
        _check_shape(text, where)
        loader = _Loader(text)
        try:
            root = loader.get_single_node()  # composed once: the lines for errors, then the values
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}{at}: not valid YAML ({str(getattr(e, 'problem', e))[:100]})") from None
    if not isinstance(data, dict) or root is None:
        raise ConfigError(f"{where}: a sweep file is a mapping with keys {', '.join(TOP_KEYS)}")

    def err(node, msg):
        msg = msg if len(msg) <= MAX_MESSAGE else msg[:MAX_MESSAGE - 3] + "..."
        return ConfigError(f"{where} line {_line(node)}: {msg}")

    for k, _ in root.value:
        if k.value not in TOP_KEYS:
            raise err(k, f"unknown key {short(k.value)}; a sweep file has {', '.join(TOP_KEYS)}")
    name = str(data.get("name") or Path(where).stem)
    if name.startswith(".") or re.search(r"[/\\\x00-\x1f]", name):
        raise err(_find(root, "name")[1] or root, f"name {short(name)} must be a plain name (no '/', no leading '.'): "
                  f"it names the store's folder under sweeps/")
    base = data.get("base") or {}
    _, base_node = _find(root, "base")
    if not isinstance(base, dict):
        raise err(base_node, "'base' must be a mapping of run settings")

    # the shape first, then the count of runs, and only then every value: a typo that expands to
    # millions of runs is refused at once, not after validating each of its values
    cases = data.get("cases") or []
    _, cases_node = _find(root, "cases")
    if cases_node is not None and (not isinstance(data.get("cases"), list) or not cases):
        raise err(cases_node, "'cases' must be a non-empty list of mappings of run settings")
    for case, c_node in zip(cases, cases_node.value if cases_node is not None else []):
        if not isinstance(case, dict) or not case:
            raise err(c_node, "each case must be a non-empty mapping of run settings, e.g. {labels: random}")
    grid = data.get("grid") or {}
    _, grid_node = _find(root, "grid")
    if grid_node is not None and not isinstance(data.get("grid"), dict):
        raise err(grid_node, "'grid' must map run settings to non-empty lists of values")
    # neither: a sweep over seeds of the base run alone; an empty grid given is a mistake, not that
    if grid_node is not None and not grid and not cases:
        raise err(grid_node, "'grid' must map at least one run setting to a non-empty list of values "
                  "(or give 'cases', or leave both out for a sweep over the seeds of the base run)")
    for (k, v_node), (key, values) in zip(grid_node.value if grid_node is not None else [], grid.items()):
        if not isinstance(values, list) or not values:
            raise err(v_node, f"grid field {short(key)} needs a non-empty list of values, e.g. {short(key)}: [a, b]")
        if key == "seed":
            raise err(k, "put seeds under the top-level 'seeds' key, not in the grid")

    seeds_raw = data.get("seeds", 1)
    _, seeds_node = _find(root, "seeds")
    n_conditions = max(1, len(cases)) * math.prod(len(v) for v in grid.values())
    if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool) and seeds_raw >= 1:
        n_seeds = seeds_raw
    elif isinstance(seeds_raw, list) and seeds_raw and all(isinstance(s, int) and not isinstance(s, bool)
                                                            for s in seeds_raw):
        n_seeds = len(seeds_raw)
    else:
        raise err(seeds_node or root, "'seeds' must be a positive count (5 means 0-4) or a list of integers >= 0")
    if n_conditions * n_seeds > MAX_RUNS:
        raise err(seeds_node or grid_node or root, f"the sweep expands to {n_conditions * n_seeds:,} runs "
                  f"({n_conditions:,} conditions x {n_seeds:,} seeds); at most {MAX_RUNS:,} are allowed")
    if isinstance(seeds_raw, list):
        if any(s < 0 for s in seeds_raw):
            raise err(seeds_node, f"'seeds' lists a negative seed ({short(min(seeds_raw))}); seeds are >= 0")
        if len(set(seeds_raw)) != len(seeds_raw):
            raise err(seeds_node, "'seeds' lists a seed twice")

    base_cfg = _settings(base, base_node, RunConfig(), err)
    seen_cases: dict = {}
    for case, c_node in zip(cases, cases_node.value if cases_node is not None else []):
        c_key = _settings(case, c_node, base_cfg, err).key()
        if c_key in seen_cases:
            raise err(c_node, f"this case repeats the case on line {seen_cases[c_key]}")
        seen_cases[c_key] = _line(c_node)
    for (k, v_node), (key, values) in zip(grid_node.value if grid_node is not None else [], grid.items()):
        for value, item in zip(values, v_node.value):
            _settings({key: value}, None, base_cfg, err, node=item)
        if len(set(map(str, values))) != len(values):
            raise err(v_node, f"grid field {short(key)} lists a value twice")

    seeds = list(range(seeds_raw)) if isinstance(seeds_raw, int) else list(seeds_raw)
    save_model = data.get("save_model", False)
    if not isinstance(save_model, bool):
        raise err(_find(root, "save_model")[1], f"'save_model' must be true or false, got {short(save_model)}")
    expect = data.get("expect_epochs")
    if "expect_epochs" in data and not (isinstance(expect, int) and not isinstance(expect, bool) and expect >= 1):
        raise err(_find(root, "expect_epochs")[1], f"'expect_epochs' must be a positive whole number of epochs "
                  f"(the prior for the time estimate), got {short(expect)}")

    sweep = Sweep(name=name, description=str(data.get("description") or ""), base=base, cases=cases, grid=grid,
                  seeds=seeds, configs=[], source=text, expect_epochs=expect, save_model=save_model)
    conditions = []
    for point in sweep.conditions():
        try:
            conditions.append(identify(RunConfig.from_dict({**point, "seed": seeds[0]}, base=base_cfg)))
        except ConfigError as e:
            raise err(grid_node or cases_node or root, f"condition {short(point, 120)}: {e}") from None
    # the seed is the only field that changes, and every seed is checked above (>= 0): no need to validate
    # the whole config again per seed. Seed-major order: every condition's first seed runs before any
    # condition's second, so a sweep stopped half-way holds a balanced comparison, not one arm.
    configs = [dataclasses.replace(cfg, seed=seed) for seed in seeds for cfg in conditions]
    return Sweep(**{**sweep.__dict__, "configs": configs})


def _settings(values: dict, mapping_node, base: RunConfig, err, node=None) -> RunConfig:
    known = {f.name for f in fields(RunConfig)}
    for key, value in values.items():
        n = node
        if not isinstance(key, str):
            raise err(node or mapping_node, f"{short(key)} is not the name of a run setting")
        if mapping_node is not None:
            k_node, v_node = _find(mapping_node, key)
            n = v_node if key.replace("-", "_") in known else k_node
        if key.replace("-", "_") == "seed" and mapping_node is not None:
            raise err(n, "put seeds under the top-level 'seeds' key")
        try:
            base = RunConfig.from_dict({key: value}, base=base)
        except ConfigError as e:
            raise err(n, f"field {short(key)}: {e}") from None
    return base
