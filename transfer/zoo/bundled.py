"""Model records of the pretrained weights that installed packages bundle (PyPI ``ccexam``).

Apart from ``ccexam.py`` (the package's facts and files) so that loading a checkpoint
(``loading.checkpoint_path``, which finds ccexam's installed files) and building these records
(which uses ``loading.record_for_model``) never import each other.
"""

from __future__ import annotations

import importlib.metadata

from transfer.zoo.architectures import build_model
from transfer.zoo.ccexam import CCEXAM_MODELS, DIGIT_CLASSES, HOMEPAGE, ccexam_installed, ccexam_weights_path
from transfer.zoo.loading import file_checksum, record_for_model
from transfer.zoo.record import ModelRecord


def ccexam_records() -> list[ModelRecord]:
    """Records of the three bundled ccexam models, with paths and checksums of the installed weight files."""
    version = importlib.metadata.version("ccexam") if ccexam_installed() else None
    records = []
    for name, spec in CCEXAM_MODELS.items():
        path = ccexam_weights_path(name)
        channels, height, _ = spec.input_size
        model = build_model(spec.architecture, len(DIGIT_CLASSES), channels, height)
        records.append(
            record_for_model(
                model,
                spec.architecture,
                id=f"ccexam.{name}",
                name=f"ccexam {name} CNN",
                input_size=spec.input_size,
                mean=spec.mean,
                std=spec.std,
                interpolation="bilinear",
                checkpoint=str(path),
                checksum=file_checksum(path),
                license="MIT",
                source=f"ccexam:{name}",
                version=version,
                pretrained_on=spec.pretrained_on,
                metrics=dict(spec.reported),
                class_names=DIGIT_CLASSES,
                description=spec.description,
                extra={"homepage": HOMEPAGE, "package_file": f"ccexam/{spec.weights}"},
            )
        )
    return records


__all__ = ["ccexam_records"]
