"""Layer groups: ordered lists of module-name prefixes that partition a model's parameters.

A parameter ``p`` belongs to prefix ``m`` when ``p == m`` or ``p`` starts with ``m + "."`` (so
``features.1`` never captures ``features.10``). A valid grouping covers every parameter exactly once;
fine-tuning freezes and sets learning rates group by group, input to output, the head's group last.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from transfer.zoo.record import ZooError

Groups = list[list[str]]


def covers(prefix: str, name: str) -> bool:
    """Whether the module prefix ``prefix`` covers parameter or module ``name``."""
    return bool(prefix) and (name == prefix or name.startswith(prefix + "."))


def group_index(name: str, groups: Sequence[Sequence[str]]) -> int | None:
    """Index of the first group with a prefix covering ``name``, or None."""
    for index, group in enumerate(groups):
        if any(covers(prefix, name) for prefix in group):
            return index
    return None


def check_layer_groups(model: nn.Module, groups: Sequence[Sequence[str]]) -> None:
    """Raise ``ZooError`` unless ``groups`` cover every parameter of ``model`` exactly once.

    Also refuses a prefix that covers no parameter (a typo would otherwise pass silently).
    """
    names = [name for name, _ in model.named_parameters()]
    for group in groups:
        for prefix in group:
            if not any(covers(prefix, name) for name in names):
                raise ZooError(f"layer group prefix {prefix!r} matches no parameter of the model.")
    for name in names:
        hits = [i for i, group in enumerate(groups) if any(covers(p, name) for p in group)]
        if not hits:
            raise ZooError(f"parameter {name!r} is in no layer group.")
        if len(hits) > 1 or sum(covers(p, name) for p in groups[hits[0]]) > 1:
            raise ZooError(f"parameter {name!r} is in more than one layer group prefix ({hits}).")


def group_parameter_names(model: nn.Module, groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """The parameter names of each group, in model order; checks the grouping first."""
    check_layer_groups(model, groups)
    out: list[list[str]] = [[] for _ in groups]
    for name, _ in model.named_parameters():
        out[group_index(name, groups)].append(name)  # type: ignore[index]
    return out


def group_parameters(model: nn.Module, groups: Sequence[Sequence[str]]) -> list[list[nn.Parameter]]:
    """The parameters of each group (for optimiser parameter groups or freezing)."""
    params = dict(model.named_parameters())
    return [[params[n] for n in names] for names in group_parameter_names(model, groups)]


def compress_groups(model: nn.Module, param_groups: Sequence[Iterable[str]]) -> Groups:
    """Shortest module prefixes for groups given as parameter names.

    Each parameter climbs to the highest enclosing module all of whose parameters are in its group,
    so ``["layer1.0.conv1.weight", ...every layer1 param]`` becomes ``["layer1"]``.
    """
    owner = {name: i for i, names in enumerate(param_groups) for name in names}
    all_names = [name for name, _ in model.named_parameters()]
    missing = [name for name in all_names if name not in owner]
    if missing:
        raise ZooError(f"parameter {missing[0]!r} is in no layer group.")

    def uniform(prefix: str, index: int) -> bool:
        return all(owner[n] == index for n in all_names if covers(prefix, n))

    out: Groups = [[] for _ in param_groups]
    for name in all_names:
        index, parts = owner[name], name.split(".")
        best = name
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if uniform(prefix, index):
                best = prefix
                break
        if not any(covers(p, best) for p in out[index]):
            out[index].append(best)
    return [group for group in out if group]


def split_evenly(items: Sequence[str], parts: int) -> Groups:
    """``items`` in order, cut into ``parts`` contiguous runs whose lengths differ by at most one."""
    parts = max(1, min(parts, len(items)))
    size, rest = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < rest else 0)
        out.append(list(items[start:end]))
        start = end
    return out


def count_group_params(model: nn.Module, groups: Sequence[Sequence[str]]) -> list[int]:
    """Number of scalar parameters in each group."""
    return [int(sum(p.numel() for p in ps)) for ps in group_parameters(model, groups)]


def freeze_groups(model: nn.Module, groups: Sequence[Sequence[str]], trainable_from: int) -> None:
    """Freeze groups ``0 .. trainable_from - 1`` and unfreeze the rest (fastai's ``freeze_to``)."""
    for index, params in enumerate(group_parameters(model, groups)):
        for p in params:
            p.requires_grad_(index >= trainable_from)


def param_count(model: nn.Module) -> int:
    """Total scalar parameters of ``model``."""
    return int(sum(p.numel() for p in model.parameters()))


__all__ = [
    "Groups",
    "check_layer_groups",
    "compress_groups",
    "count_group_params",
    "covers",
    "freeze_groups",
    "group_index",
    "group_parameter_names",
    "group_parameters",
    "param_count",
    "split_evenly",
]
