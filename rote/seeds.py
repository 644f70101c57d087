"""A run's random streams, all from one seed.

Its own module, below config and data, so that data (prepare) and config can
both import it without data importing config.
"""

from __future__ import annotations

import numpy as np


def seeds_for(seed: int) -> dict[str, int]:
    """Independent streams for each random choice of a run, all from one seed.

    Changing how one part draws (say, the label corruption) never shifts
    another (the initialisation or the data order). SeedSequence.spawn's
    children are positional (child i's spawn key is (i,)), so a new stream
    goes at the END of the names and the others keep their values.
    """
    names = ("labels", "inputs", "init", "order", "augment", "chance", "subset", "dropout")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for n, c in zip(names, children)}
