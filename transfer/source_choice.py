"""``--source auto``: pick the source model to fine-tune for a target, the way the report ranks them.

The ranking is the GNN scorer's (``gnn.scores.recommend``, the same list the suitability report shows);
the choice is the best-ranked candidate that can actually be fine-tuned here:

* a classifier (``kind`` ``classifier``; the GNN scorer itself and other kinds are not sources);
* with a record the engine can rebuild and a checkpoint file on disk (external TransferGraph records,
  timm records without saved weights and moved checkpoints are skipped, each with the reason);
* not already trained on the target itself (that is no transfer: fine-tuned copies of earlier runs on
  this target would otherwise win their own ranking).

When the report package (``transfer.report``) is present, ``choose_source`` builds the report and takes
its ``chosen_source`` so that what the report recommends and what ``finetune`` trains cannot differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kg import GraphStore
from kg.errors import KgError
from ontology.vocab import Label


class NoCandidateSource(KgError):
    """No model in the graph can be fine-tuned on the target."""


@dataclass(frozen=True)
class SourceChoice:
    """The chosen source for a target and why."""

    model_id: str
    rank: int
    compatibility: float | None
    uncertainty: float | None
    basis: str
    """How compatibility was scored: ``outcomes``, ``estimators`` or ``self-supervised``."""
    facts: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    """Better-ranked models that cannot be fine-tuned, with the reason."""
    notes: tuple[str, ...] = ()
    report: dict[str, Any] | None = field(default=None, repr=False)
    report_paths: Any = None
    """``transfer.report.ReportPaths`` when ``choose_source`` wrote the report (``report_dir``)."""

    def reason(self) -> str:
        """One line: rank, compatibility with its uncertainty, and its basis."""
        if self.compatibility is None:
            score = "compatibility not scored"
        else:
            spread = f" ± {self.uncertainty:.3f}" if self.uncertainty is not None else ""
            score = f"compatibility {self.compatibility:.3f}{spread}"
        return f"rank {self.rank} of the scorer's ranking, {score} (basis: {self.basis})"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def not_finetunable(store: GraphStore, model_id: str, target_id: str | None = None) -> str | None:
    """Why ``model_id`` cannot be a fine-tuning source (for ``target_id``), or ``None`` when it can."""
    from transfer.zoo.loading import checkpoint_path
    from transfer.zoo.record import ModelRecord, ZooError

    props = store.node(Label.MODEL, model_id)
    if props is None:
        return "not in the graph"
    kind = props.get("kind") or "classifier"
    if kind != "classifier":
        return f"a {kind}, not a classifier"
    try:
        record = ModelRecord.from_properties(props)
        path = checkpoint_path(record)
    except ZooError as exc:
        return str(exc).rstrip(".")
    if not path.is_file():
        return f"its checkpoint {path} is missing"
    if target_id is not None:
        rows = store.query(
            "MATCH (:Model {id: $m})-[:TRAINED_ON]->(d:Dataset {id: $d}) RETURN d.id AS id",
            {"m": model_id, "d": target_id},
        )
        if rows:
            return "already trained on the target itself"
    return None


def _from_recommendations(store: GraphStore, target_id: str, recs: list[Any]) -> SourceChoice | None:
    skipped: list[tuple[str, str]] = []
    for rec in recs:
        why = not_finetunable(store, rec.model_id, target_id)
        if why:
            skipped.append((rec.model_id, why))
            continue
        return SourceChoice(
            model_id=rec.model_id,
            rank=rec.rank,
            compatibility=_number(rec.compatibility),
            uncertainty=_number(rec.uncertainty),
            basis=rec.basis,
            facts=tuple(rec.facts.get("compatibility", ())),
            skipped=tuple(skipped),
            notes=tuple(rec.notes),
        )
    return None


def rank_sources(
    store: GraphStore, target_id: str, *, top: int = 10, scorer_id: str | None = None
) -> SourceChoice:
    """The best-ranked fine-tunable source of ``gnn.scores.recommend`` for ``target_id``.

    Looks at the ``top`` first and widens to every model when none of them can be fine-tuned. Raises
    ``ScorerError`` when no scorer is trained and ``NoCandidateSource`` when no model qualifies.
    """
    import warnings

    from gnn.scores import StaleScorerWarning, recommend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleScorerWarning)  # said in the notes instead
        recs = recommend(store, target_id, top=top, scorer_id=scorer_id)
        choice = _from_recommendations(store, target_id, recs)
        if choice is None and len(recs) >= top:
            recs = recommend(store, target_id, top=1_000_000, scorer_id=scorer_id)
            choice = _from_recommendations(store, target_id, recs)
    if choice is None:
        raise NoCandidateSource(
            f"no model in the graph can be fine-tuned on {target_id}: "
            + (
                "; ".join(f"{m} is {why}" for m, why in _skips(store, target_id, recs)[:3])
                if recs
                else "the graph holds no source models"
            )
            + "; add one with `kgraft model add`."
        )
    return choice


def _skips(store: GraphStore, target_id: str, recs: list[Any]) -> list[tuple[str, str]]:
    return [(r.model_id, not_finetunable(store, r.model_id, target_id) or "") for r in recs]


def pair_score(
    store: GraphStore, source_id: str, target_id: str, *, scorer_id: str | None = None
) -> tuple[float | None, float | None, str | None]:
    """Compatibility, its uncertainty and basis for one pair from the latest scorer; ``None``s when the
    graph holds no scorer (the policy then uses its defaults)."""
    import warnings

    from gnn.scores import StaleScorerWarning, recommend
    from gnn.train import latest_scorer

    if scorer_id is None and latest_scorer(store) is None:
        return None, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleScorerWarning)
        recs = recommend(store, target_id, top=1_000_000, scorer_id=scorer_id)
    for rec in recs:
        if rec.model_id == source_id:
            return _number(rec.compatibility), _number(rec.uncertainty), rec.basis
    return None, None, None


def _report_api() -> tuple[Any, Any, Any] | None:
    """``(build_report, write_report, chosen_source)`` of the report package, or ``None`` while it is not
    installed."""
    try:
        from transfer.report import build_report, chosen_source, write_report
    except ImportError:
        return None
    return build_report, write_report, chosen_source


def _report_row(document: dict[str, Any], model_id: str) -> dict[str, Any]:
    rows = document.get("ranking", {}).get("candidates", [])
    return next((r for r in rows if r.get("model_id") == model_id), {})


def choose_source(
    store: GraphStore,
    target_id: str,
    *,
    top: int = 10,
    scorer_id: str | None = None,
    use_report: bool = True,
    probe_missing: bool = False,
    work_dir: Any = None,
    report_dir: Any = None,
    source: str | None = None,
) -> SourceChoice:
    """The source ``--source auto`` fine-tunes, with the report on it when the report package is present.

    The report picks the best-ranked candidate whose checkpoint loads; it does not know that a model
    already trained on the target (or a non-classifier) is no source to fine-tune. When the scorer's
    ranking puts such a model first, the report is built on this module's choice instead (``source=``),
    so the report's ``chosen_source`` and the model fine-tuned are always the same; the document travels
    in ``SourceChoice.report``. With ``report_dir`` the report is also written there (JSON, Markdown,
    HTML, atomically) and its paths travel in ``SourceChoice.report_paths``. A given ``source`` (an
    earlier choice to report on again) is taken as it is.
    """
    if source is not None:
        compatibility, uncertainty, basis = pair_score(store, source, target_id, scorer_id=scorer_id)
        ranked = SourceChoice(source, 0, compatibility, uncertainty, basis or "unscored")
    else:
        ranked = rank_sources(store, target_id, top=top, scorer_id=scorer_id)
    api = _report_api() if use_report else None
    if api is None:
        return ranked
    build_report, write_report, chosen_source = api
    report_would_differ = any(
        why.startswith("already trained") or why.endswith("not a classifier") for _, why in ranked.skipped
    )
    if report_would_differ or source is not None:
        source = ranked.model_id
    options = {"top": top, "scorer_id": scorer_id, "probe_missing": probe_missing, "work_dir": work_dir}
    paths = None
    if report_dir is None:
        document = build_report(store, target_id, source, **options)
    else:
        paths = write_report(store, target_id, source, out_dir=report_dir, **options)
        document = paths.document
    chosen = chosen_source(document)
    if chosen != ranked.model_id:  # the two filters disagree in a way not foreseen: trust the report's pick
        why = not_finetunable(store, chosen, target_id)
        if why:
            raise NoCandidateSource(f"the report recommends {chosen}, which is {why}.")
    row = _report_row(document, chosen)
    return SourceChoice(
        model_id=chosen,
        rank=int(row.get("rank") or ranked.rank),
        compatibility=_number(row.get("compatibility")),
        uncertainty=_number(row.get("uncertainty")),
        basis=str(row.get("basis") or ranked.basis),
        facts=tuple((row.get("facts") or {}).get("compatibility", ranked.facts)),
        skipped=ranked.skipped if chosen == ranked.model_id else (),
        notes=ranked.notes,
        report=document,
        report_paths=paths,
    )
