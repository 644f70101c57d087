"""The per-example record: what happened to every training example at its presentation in every epoch."""

from __future__ import annotations

import math

import numpy as np
import torch

# The per-example record keeps at most this many (epoch, example) cells per run; past it, it keeps
# every k-th epoch (and the last): 2e7 cells are about 180 MB in memory, much less compressed.
EXAMPLE_CELLS = 20_000_000


class ExampleRecorder:
    """What happened to every training example at its presentation in every (recorded) epoch.

    Buffers of shape (L, n_fit), one row per member still training, live on the
    device and are filled from the logits the training step has anyway; they are
    read once per epoch. ``rows`` follows the members: row r is member r's record.
    """

    FIELDS = ("correct", "prob", "margin", "loss", "el2n", "pred")
    DTYPES = {"correct": (torch.bool, bool), "pred": (torch.int32, np.int32)}  # (on the device, kept); else floats

    def __init__(self, runs: int, n_fit: int, epochs: int, device):
        self.n_fit, self.device = n_fit, device
        self.stride = max(1, math.ceil(epochs * n_fit / EXAMPLE_CELLS))
        self.rows: list[dict[str, list]] = [{k: [] for k in ("epoch", *self.FIELDS)} for _ in range(runs)]

    def start_epoch(self, live: int) -> None:
        self.buf = {k: torch.zeros(live, self.n_fit, device=self.device,
                                   dtype=self.DTYPES.get(k, (torch.float32,))[0]) for k in self.FIELDS}

    @torch.no_grad()
    def batch(self, idx: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        """idx, y: (L, B); out: (L, B, classes) logits of the training step."""
        out = out.detach().float()
        logp = out.log_softmax(-1)
        lp_y = logp.gather(-1, y[..., None]).squeeze(-1)  # (L, B)
        p_y = lp_y.exp()
        z_y = out.gather(-1, y[..., None]).squeeze(-1)
        others = out.scatter(-1, y[..., None], float("-inf")).amax(-1)
        sq = (logp.exp() ** 2).sum(-1) - p_y ** 2 + (1 - p_y) ** 2  # ||softmax - onehot||^2
        rows = torch.arange(len(idx), device=idx.device)[:, None]
        pred = out.argmax(-1)
        for k, v in (("correct", pred == y), ("prob", p_y), ("margin", z_y - others),
                     ("loss", -lp_y), ("el2n", sq.clamp_min(0).sqrt()), ("pred", pred.int())):
            self.buf[k][rows, idx] = v

    def end_epoch(self, epoch: int, leaving: list[int]) -> None:
        """Keep this epoch for every member: every stride-th epoch, and a member's last (those ``leaving``)."""
        keep = [r for r in range(len(self.rows)) if (epoch - 1) % self.stride == 0 or r in leaving]
        if not keep:
            return
        host = {k: v.cpu() for k, v in self.buf.items()}
        for r in keep:
            row = self.rows[r]
            row["epoch"].append(epoch)
            for k in self.FIELDS:
                row[k].append(host[k][r].numpy().astype(self.DTYPES.get(k, (None, np.float16))[1]))

    def arrays(self, r: int) -> dict:
        """Member r's record, as rote.analysis.examples saves it."""
        row = self.rows[r]
        out = {"epoch": np.asarray(row["epoch"], dtype=np.int64),
               **{k: np.stack(row[k]) if row[k] else np.zeros((0, self.n_fit)) for k in self.FIELDS}}
        if len(row.get("pred", [])) != len(row["epoch"]):  # resumed from a checkpoint made before pred was kept
            out.pop("pred")
        return out

    def keep(self, rows: list[int]) -> None:
        """Follow the members: keep the records of the members at ``rows`` only."""
        self.rows = [self.rows[r] for r in rows]

    def state(self) -> list[dict]:
        """The records so far, for a checkpoint (lists are copied: the record goes on growing)."""
        return [{k: list(v) for k, v in row.items()} for row in self.rows]

    def load_state(self, rows: list[dict]) -> None:
        self.rows = [{"pred": [], **{k: list(v) for k, v in row.items()}} for row in rows]
