"""The model zoo: records of pretrained models, their architectures, layer groups and safe loading.

A ``ModelRecord`` (like timm's ``PretrainedCfg``) carries what fine-tuning needs to know about a model
and maps 1:1 onto the graph's Model node; ``load_model(record)`` rebuilds the model with its weights.
Sources: torchvision weight enums (read from the torch hub cache, never downloaded), the real digit CNNs
bundled with PyPI ``ccexam``, timm when installed, local checkpoints, and the CPU-trained demo zoo.
"""

from transfer.zoo.architectures import (
    CCExamDigitNet,
    CCExamSVHNNet,
    SmallCNN,
    architecture_family,
    build_model,
    head_name,
    import_timm,
    layer_groups,
)
from transfer.zoo.bundled import ccexam_records
from transfer.zoo.ccexam import CCEXAM_MODELS, ccexam_installed, ccexam_weights_path
from transfer.zoo.groups import (
    check_layer_groups,
    compress_groups,
    freeze_groups,
    group_index,
    group_parameter_names,
    group_parameters,
    param_count,
)
from transfer.zoo.loading import (
    build_for_record,
    check_state_dict,
    checkpoint_path,
    chop_head,
    file_checksum,
    load_model,
    read_state_dict,
    record_for_model,
    record_from_timm,
    record_from_torchvision,
    save_checkpoint,
    torchvision_cache_path,
)
from transfer.zoo.pretrain import DemoSettings, build_demo_zoo, default_demo_datasets
from transfer.zoo.record import ModelRecord, ZooError

__all__ = [
    "CCEXAM_MODELS",
    "CCExamDigitNet",
    "CCExamSVHNNet",
    "DemoSettings",
    "ModelRecord",
    "SmallCNN",
    "ZooError",
    "architecture_family",
    "build_demo_zoo",
    "build_for_record",
    "build_model",
    "ccexam_installed",
    "ccexam_records",
    "ccexam_weights_path",
    "check_layer_groups",
    "check_state_dict",
    "checkpoint_path",
    "chop_head",
    "compress_groups",
    "default_demo_datasets",
    "file_checksum",
    "freeze_groups",
    "group_index",
    "group_parameter_names",
    "group_parameters",
    "head_name",
    "import_timm",
    "layer_groups",
    "load_model",
    "param_count",
    "read_state_dict",
    "record_for_model",
    "record_from_timm",
    "record_from_torchvision",
    "save_checkpoint",
    "torchvision_cache_path",
]
