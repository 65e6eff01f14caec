"""``--source auto``: pick the source model to fine-tune for a target, the way the report ranks them.

The ranking is the GNN scorer's (``gnn.scores.recommend``, the same list the suitability report shows);
the choice is the best-ranked candidate that can actually be fine-tuned here:

* a classifier (``kind`` ``classifier``; the GNN scorer itself and other kinds are not sources);
* with a record the engine can rebuild and a checkpoint file on disk (external TransferGraph records,
  timm records without saved weights and moved checkpoints are skipped, each with the reason);
* not already trained on the target itself (that is no transfer: fine-tuned copies of earlier runs on
  this target would otherwise win their own ranking).

``choose_source`` builds the report and takes its ``chosen_source``, so that what the report recommends
and what ``finetune`` trains cannot differ; the test itself is ``transfer.report.ranking.not_finetunable``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kg import GraphStore
from kg.errors import KgError
from transfer.report.ranking import not_finetunable
from transfer.report.values import number


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
            compatibility=number(rec.compatibility),
            uncertainty=number(rec.uncertainty),
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

    from gnn.scores import StaleScorerWarning, pair_compatibility
    from gnn.train import latest_scorer

    if scorer_id is None and latest_scorer(store) is None:
        return None, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleScorerWarning)
        found = pair_compatibility(store, target_id, source_id, scorer_id=scorer_id)
    if found is None:
        return None, None, None
    score, basis = found
    return number(score.value), number(score.uncertainty), basis


def _report_row(document: dict[str, Any], model_id: str) -> dict[str, Any]:
    rows = document.get("ranking", {}).get("candidates", [])
    return next((r for r in rows if r.get("model_id") == model_id), {})


def choose_source(
    store: GraphStore,
    target_id: str,
    *,
    top: int = 10,
    scorer_id: str | None = None,
    probe_missing: bool = False,
    work_dir: Any = None,
    report_dir: Any = None,
    source: str | None = None,
) -> SourceChoice:
    """The source ``--source auto`` fine-tunes, with the suitability report on it.

    The report chooses by the same ranking and the same test (``not_finetunable``) as
    ``rank_sources``, which runs first so that a graph with nothing to fine-tune fails with the reasons
    per model; the report's ``chosen_source`` is what is fine-tuned, and the document travels in
    ``SourceChoice.report``. With ``report_dir`` the report is also written there (JSON, Markdown,
    HTML, atomically) and its paths travel in ``SourceChoice.report_paths``. A given ``source`` (an
    earlier choice to report on again) is taken as it is.
    """
    from transfer.report import build_report, chosen_source, write_report

    ranked = rank_sources(store, target_id, top=top, scorer_id=scorer_id) if source is None else None
    options = {"top": top, "scorer_id": scorer_id, "probe_missing": probe_missing, "work_dir": work_dir}
    paths = None
    if report_dir is None:
        document = build_report(store, target_id, source, **options)
    else:
        paths = write_report(store, target_id, source, out_dir=report_dir, **options)
        document = paths.document
    chosen = chosen_source(document)
    row = _report_row(document, chosen)
    same = ranked is not None and ranked.model_id == chosen
    return SourceChoice(
        model_id=chosen,
        rank=int(row["rank"]),
        compatibility=number(row.get("compatibility")),
        uncertainty=number(row.get("uncertainty")),
        basis=str(row.get("basis")),
        facts=tuple((row.get("facts") or {}).get("compatibility", ())),
        skipped=ranked.skipped if same else (),
        notes=ranked.notes if ranked is not None else (),
        report=document,
        report_paths=paths,
    )
