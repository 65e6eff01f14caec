"""Callbacks that record runs made with other training libraries through ``transfer.track``.

``transfer.integrations.lightning.KgraftCallback`` (PyTorch Lightning, extra ``kgraft[lightning]``) and
``transfer.integrations.hf.KgraftTrainerCallback`` (Hugging Face ``transformers.Trainer``, extra
``kgraft[hf]``). Each library is imported only by its own module, so neither is needed to import this
package.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def scalar_metrics(metrics: Mapping[str, Any], accuracy_key: str, prefix: str = "") -> dict[str, float]:
    """The finite scalar values of a library's metrics dict (tensors, NumPy or Python numbers), with
    ``accuracy_key`` renamed ``accuracy`` and ``prefix`` stripped from the other names; the rest dropped."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            number = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError, RuntimeError):  # strings, non-scalar tensors
            continue
        if not math.isfinite(number):
            continue
        out["accuracy" if key == accuracy_key else key.removeprefix(prefix)] = number
    return out
