"""The transfer loop in two calls: ``plan`` decides, ``run`` fine-tunes and records.

``plan(store, target, source, settings)`` does every piece of deciding once:

1. ranks the candidate sources for the target with the GNN scorer (``rank_target``);
2. with ``probe=K``, first probes the K best-ranked candidates that have no estimator scores on the
   target (LogME, H-score, k-NN, ... on a sample of it, recorded as SCORED_ON) and ranks again, so the
   ranking reads evidence about this target rather than only the history of others;
3. chooses the source: the given one, or the best-ranked one that can be fine-tuned here
   (``transfer.source_choice``);
4. probes the chosen pair when it was never measured (``probe_missing``), for the shift type and the
   generality curve the policy reads;
5. builds the settings: a preset, or ``auto`` (``transfer.policy``: every decision with its reason).

``run(plan)`` rebuilds the data the plan names, fine-tunes, records the run and its outcome in the
graph, and retrains the scorer on it when asked. The command line, the demo, the report and the server
call these two; a report renders a plan and does no work of its own.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kg import GraphStore
from kg.errors import KgError, is_user_error
from kg.lineage import trained_on
from ontology.vocab import Label

if TYPE_CHECKING:  # torch-heavy types, imported where used
    from gnn.scores import Recommendation
    from transfer.data import ImageDataset
    from transfer.finetune.engine import EpochReport, FinetuneResult
    from transfer.finetune.settings import FinetuneSettings
    from transfer.policy import Decision
    from transfer.probe.run import ProbeReport
    from transfer.source_choice import SourceChoice
    from transfer.zoo.record import ModelRecord

ALL = 1_000_000
"""``top`` that ranks every candidate."""
DEFAULT_PROBE_SAMPLES = 1000
PROBE_WORK_DIR = Path(".kgraft/probes")

Step = Callable[[str], None]
ProbeProgress = Callable[[str, int, int], None]
"""``(message, done, total)`` while candidates are probed."""


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Ranking:
    """The scorer's ranking for a target, and the probes run to inform it."""

    target_id: str
    candidates: tuple[Recommendation, ...]
    """Best first; every candidate the scorer ranked (or the ``top`` asked for)."""
    probes: tuple[ProbeReport, ...] = ()
    """Candidates probed on the target before this ranking (``probe=K``)."""
    notes: tuple[str, ...] = ()
    """The scorer's notes (stale, fallback basis) and candidates that could not be probed."""


@dataclass(frozen=True)
class TransferPlan:
    """What ``run`` will do and why: the source, the ranking it came from, the settings and their
    reasons, the data to build, and the probes run while planning."""

    store: GraphStore = field(repr=False, compare=False)
    target_id: str
    source_id: str
    choice: SourceChoice
    """The source with its rank, compatibility, basis, facts and skipped better-ranked models."""
    how: str
    """``given``, ``top-ranked`` or ``best fine-tunable``."""
    ranking: Ranking | None
    """``None`` when nothing was ranked (a given source with preset settings)."""
    settings: FinetuneSettings
    preset: str
    decisions: tuple[Decision, ...] = ()
    """The policy's decisions (``auto``), each with its reason."""
    source_dataset_id: str | None = None
    """The source's pretraining data, rebuilt by ``run`` for the forgetting figure when it can be."""
    probed: tuple[ProbeReport, ...] = ()
    """Every probe this plan ran (candidates and the chosen pair)."""
    scorer_id: str | None = None

    @property
    def probed_now(self) -> bool:
        """Whether the chosen pair was measured while planning."""
        return any(p.model_id == self.source_id for p in self.probed)

    @property
    def notes(self) -> tuple[str, ...]:
        """The ranking's notes and the choice's, once each."""
        ranked = self.ranking.notes if self.ranking is not None else ()
        return tuple(dict.fromkeys((*ranked, *self.choice.notes)))


# ----------------------------------------------------------------------------- ranking


def _recommend(
    store: GraphStore,
    target_id: str,
    top: int,
    scorer_id: str | None,
    regime: dict[str, int | None] | None = None,
) -> list[Recommendation]:
    from gnn.scores import StaleScorerWarning, recommend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleScorerWarning)  # said in the notes instead
        return recommend(store, target_id, top=top, scorer_id=scorer_id, **(regime or {}))


def estimator_kinds_on(store: GraphStore, target_id: str) -> dict[str, set[str]]:
    """Model id -> the transferability estimators recorded for it on ``target_id``."""
    from gnn.builder import ESTIMATOR_KINDS

    rows = store.query(
        "MATCH (m:Model)-[r:SCORED_ON]->(:Dataset {id: $t}) WHERE r.layer = $layer "
        "RETURN m.id AS model, r.kind AS kind",
        {"t": target_id, "layer": "penultimate"},
    )
    out: dict[str, set[str]] = {}
    for r in rows:
        if r["kind"] in ESTIMATOR_KINDS:
            out.setdefault(r["model"], set()).add(r["kind"])
    return out


def probe_candidates(
    store: GraphStore, target_id: str, candidates: tuple[Recommendation, ...], k: int
) -> tuple[list[str], list[str]]:
    """The ``k`` best-ranked candidates without estimator scores on the target that can be loaded here,
    and a note on the better-ranked ones that cannot."""
    from transfer.source_choice import not_finetunable

    if k <= 0:
        return [], []
    measured = estimator_kinds_on(store, target_id)
    chosen: list[str] = []
    unloadable = 0
    for rec in candidates:
        if len(chosen) == k:
            break
        if measured.get(rec.model_id):
            continue
        if not_finetunable(store, rec.model_id) is not None:
            unloadable += 1
            continue
        chosen.append(rec.model_id)
    notes = []
    if unloadable:
        notes.append(
            f"{unloadable} better-ranked candidate(s) without estimator scores on {target_id} cannot be "
            "loaded here (no classifier checkpoint on this machine), so they were not probed"
        )
    return chosen, notes


def _probe_one(
    store: GraphStore, model_id: str, target_id: str, samples: int, work_dir: Path | None, target: Any
) -> tuple[ProbeReport | None, str | None]:
    """Probe one pair; a candidate that cannot be probed is a note, not a failure."""
    from transfer.probe.run import probe

    try:
        return probe(store, model_id, target_id, n=samples, out_dir=work_dir, target=target), None
    except Exception as exc:
        if not is_user_error(exc):
            raise
        return None, f"could not probe {model_id} on {target_id}: {str(exc).rstrip('.')}"


def probe_many(
    store: GraphStore,
    target_id: str,
    model_ids: list[str],
    *,
    samples: int = DEFAULT_PROBE_SAMPLES,
    work_dir: Path | None = PROBE_WORK_DIR,
    progress: ProbeProgress | None = None,
) -> tuple[list[ProbeReport], list[str]]:
    """Probe each model on the target (its images rebuilt once); returns the reports and a note per model
    that could not be probed."""
    from transfer.register import materialise

    if not model_ids:
        return [], []
    try:
        target = materialise(store, target_id)
    except Exception as exc:
        if not is_user_error(exc):
            raise
        return [], [f"no probes: the target {target_id} cannot be rebuilt here ({str(exc).rstrip('.')})"]
    reports, notes = [], []
    for done, model_id in enumerate(model_ids):
        if progress is not None:
            progress(f"probing {model_id} on {target_id}", done, len(model_ids))
        report, note = _probe_one(store, model_id, target_id, samples, work_dir, target)
        if report is not None:
            reports.append(report)
        if note is not None:
            notes.append(note)
    if progress is not None:
        progress(f"probed {len(reports)} of {len(model_ids)} candidates", len(model_ids), len(model_ids))
    return reports, notes


def checkpointed_classifiers(store: GraphStore) -> list[str]:
    """Every classifier in the graph with a checkpoint to load, by id."""
    rows = store.query(
        "MATCH (m:Model) WHERE m.kind = $kind AND m.checkpoint IS NOT NULL RETURN m.id AS id ORDER BY id",
        {"kind": "classifier"},
    )
    return [r["id"] for r in rows]


def probe_models(
    store: GraphStore,
    target_id: str,
    models: list[str] | None = None,
    *,
    samples: int = DEFAULT_PROBE_SAMPLES,
    seed: int = 0,
    work_dir: Path | None = PROBE_WORK_DIR,
    progress: ProbeProgress | None = None,
) -> list[ProbeReport]:
    """Probe each of ``models`` (ids or names; ``None``: every checkpointed classifier) on the target
    and record the measurements. Unlike ``probe_many`` a model that cannot be probed is an error."""
    from transfer.probe.run import probe

    if models is None:
        model_ids = checkpointed_classifiers(store)
    else:
        model_ids = [store.resolve(m, (Label.MODEL,))[1] for m in models]
    reports = []
    for done, model_id in enumerate(model_ids):
        if progress is not None:
            progress(f"probing {model_id}", done, len(model_ids))
        reports.append(probe(store, model_id, target_id, n=samples, seed=seed, out_dir=work_dir))
    if progress is not None:
        progress(f"probed {len(reports)} models", len(model_ids), len(model_ids))
    return reports


def rank_target(
    store: GraphStore,
    target: str,
    *,
    top: int = 10,
    probe: int = 0,
    probe_samples: int = DEFAULT_PROBE_SAMPLES,
    scorer_id: str | None = None,
    work_dir: Path | None = PROBE_WORK_DIR,
    step: Step = _quiet,
    probe_progress: ProbeProgress | None = None,
    train_size: int | None = None,
    batch_size: int | None = None,
) -> Ranking:
    """The scorer's ``top`` source models for ``target`` (dataset id or name), best first.

    ``train_size`` and ``batch_size`` describe the regime the user will fine-tune under: a candidate
    whose recorded runs collapsed under a similar one is ranked by its expected z and warned about
    (``gnn.scores.recommend``).

    With ``probe=K`` the K best-ranked candidates (of the first ``max(top, K)``) that lack estimator
    scores on the target are probed first and the target is ranked again with the new SCORED_ON
    evidence (so the scorer runs twice then, once otherwise). Raises ``ScorerError`` when no scorer
    is trained.
    """
    target_id = store.resolve(target, (Label.DATASET,))[1]
    step(f"ranking sources for {target_id}")
    width = max(top, probe)
    regime = {"train_size": train_size, "batch_size": batch_size}
    recs = tuple(_recommend(store, target_id, width, scorer_id, regime))
    to_probe, notes = probe_candidates(store, target_id, recs, probe)
    reports, failed = probe_many(
        store, target_id, to_probe, samples=probe_samples, work_dir=work_dir, progress=probe_progress
    )
    if reports:
        step(f"ranking sources for {target_id} with the new measurements")
        recs = tuple(_recommend(store, target_id, width, scorer_id, regime))
    scorer_notes = tuple(dict.fromkeys(n for r in recs for n in r.notes))
    return Ranking(target_id, recs[:top], tuple(reports), (*scorer_notes, *notes, *failed))


def _every_candidate(store: GraphStore, ranking: Ranking, scorer_id: str | None) -> Ranking:
    """The same ranking with every candidate (asked for only when the first rows did not suffice)."""
    recs = tuple(_recommend(store, ranking.target_id, ALL, scorer_id))
    return Ranking(ranking.target_id, recs, ranking.probes, ranking.notes)


# ----------------------------------------------------------------------------- plan


def _given_choice(
    store: GraphStore, source_id: str, target_id: str, ranking: Ranking | None, settings: str
) -> SourceChoice:
    """The choice record of a source the caller named: its row of the ranking, else its pair score."""
    from transfer.source_choice import SourceChoice, choice_from_row, pair_score

    if ranking is not None:
        found = [r for r in ranking.candidates if r.model_id == source_id]
        if not found:
            raise NotACandidate(f"model {source_id!r} is not a candidate source for {target_id!r}.")
        return choice_from_row(found[0])
    score = pair_score(store, source_id, target_id) if settings == "auto" else (None, None, None)
    return SourceChoice(source_id, 0, score[0], score[1], score[2] or "not scored")


class NotACandidate(KgError):
    """A named source is not among the scorer's candidates for the target."""


def build_settings(
    store: GraphStore,
    choice: SourceChoice,
    target_id: str,
    settings: str,
    *,
    epochs: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[FinetuneSettings, tuple[Decision, ...]]:
    """The settings for the pair: the ``auto`` policy fed the choice's compatibility, or a preset;
    ``epochs`` and ``overrides`` (any setting) are applied on top."""
    from transfer.finetune.settings import settings_for, with_changes
    from transfer.policy import inputs_from_graph, recommend_settings

    changes = dict(overrides or {})
    if epochs is not None:
        changes["epochs"] = epochs
    if settings != "auto":
        return settings_for(settings, **changes), ()
    inputs = inputs_from_graph(
        store,
        choice.model_id,
        target_id,
        epochs=changes.pop("epochs", 5),
        compatibility=choice.compatibility,
        uncertainty=choice.uncertainty,
    )
    chosen, decisions = recommend_settings(inputs)
    return (with_changes(chosen, **changes) if changes else chosen), tuple(decisions)


def _pair_measured(store: GraphStore, source_id: str, target_id: str) -> bool:
    rows = store.query(
        "MATCH (:Model {id: $s})-[r:SCORED_ON]->(:Dataset {id: $t}) RETURN count(r) AS n",
        {"s": source_id, "t": target_id},
    )
    return int(rows[0]["n"]) > 0


def _choose(
    store: GraphStore,
    target_id: str,
    given: str | None,
    ranking: Ranking | None,
    settings: str,
    width: int,
    scorer_id: str | None,
) -> tuple[SourceChoice, str, Ranking | None]:
    """The source (given, or the best fine-tunable of the ranking), how it was chosen, and the
    ranking, widened to every candidate only when its first ``width`` rows did not suffice."""
    from transfer.source_choice import NoCandidateSource, choose_from_ranking

    full = ranking is None or len(ranking.candidates) < width
    if given is not None:
        if ranking is not None and not full and given not in {r.model_id for r in ranking.candidates}:
            ranking = _every_candidate(store, ranking, scorer_id)
        return _given_choice(store, given, target_id, ranking, settings), "given", ranking
    assert ranking is not None
    try:
        choice = choose_from_ranking(store, target_id, ranking.candidates)
    except NoCandidateSource:
        if full:
            raise
        ranking = _every_candidate(store, ranking, scorer_id)
        choice = choose_from_ranking(store, target_id, ranking.candidates)
    return choice, ("top-ranked" if choice.rank == 1 else "best fine-tunable"), ranking


def plan(
    store: GraphStore,
    target: str,
    source: str = "auto",
    settings: str = "auto",
    *,
    top: int = 10,
    probe: int = 0,
    probe_missing: bool = False,
    probe_samples: int = DEFAULT_PROBE_SAMPLES,
    rank: bool = True,
    epochs: int | None = None,
    overrides: dict[str, Any] | None = None,
    scorer_id: str | None = None,
    work_dir: Path | None = PROBE_WORK_DIR,
    step: Step = _quiet,
    probe_progress: ProbeProgress | None = None,
) -> TransferPlan:
    """Plan fine-tuning a source on ``target`` (dataset id or name); see the module docstring.

    ``source`` is a model id or name, or ``auto`` (the best-ranked fine-tunable candidate).
    ``settings`` is ``auto`` (the policy) or a preset (``fastai``, ``full``, ``linear-probe``);
    ``epochs`` and ``overrides`` change any setting. ``probe=K`` probes the K most promising
    unmeasured candidates before ranking; ``probe_missing`` probes the chosen pair when it has no
    measurements. ``rank=False`` skips the ranking for a given source (the policy then scores the one
    pair). The ranking holds the first ``top`` candidates (at least 10), or every candidate when none
    of those can be fine-tuned (or the given source is not among them). The scorer ranks once (twice
    when probes added evidence, or when the first rows did not suffice); settings are built once.
    """
    target_id = store.resolve(target, (Label.DATASET,))[1]
    auto = source == "auto"
    given = None if auto else store.resolve(source, (Label.MODEL,))[1]
    ranking = None
    if auto or rank:
        ranking = rank_target(
            store,
            target_id,
            top=max(top, 10),
            probe=probe,
            probe_samples=probe_samples,
            scorer_id=scorer_id,
            work_dir=work_dir,
            step=step,
            probe_progress=probe_progress,
        )
    choice, how, ranking = _choose(store, target_id, given, ranking, settings, max(top, 10), scorer_id)
    probed = list(ranking.probes) if ranking is not None else []
    if probe_missing and not _pair_measured(store, choice.model_id, target_id):
        step(f"probing {choice.model_id} on {target_id}")
        from transfer.probe.run import probe as probe_pair

        probed.append(probe_pair(store, choice.model_id, target_id, n=probe_samples, out_dir=work_dir))
    step("settings")
    chosen, decisions = build_settings(store, choice, target_id, settings, epochs=epochs, overrides=overrides)
    pretrained = trained_on(store, choice.model_id)
    return TransferPlan(
        store=store,
        target_id=target_id,
        source_id=choice.model_id,
        choice=choice,
        how=how,
        ranking=ranking,
        settings=chosen,
        preset=settings,
        decisions=decisions,
        source_dataset_id=pretrained[0] if pretrained else None,
        probed=tuple(probed),
        scorer_id=scorer_id,
    )


def plan_finetune(
    store: GraphStore,
    target: str,
    source: str = "auto",
    settings: str = "auto",
    *,
    probe: int = 0,
    epochs: int | None = None,
    overrides: dict[str, Any] | None = None,
    step: Step = _quiet,
    probe_progress: ProbeProgress | None = None,
) -> TransferPlan:
    """``plan`` as fine-tuning asks for it (``kgraft finetune``): with ``source="auto"`` the candidates
    are ranked (after probing up to ``probe`` unmeasured ones) and the chosen pair is probed when it
    was never measured; a given source is neither ranked nor probed (``auto`` settings then score
    the one pair)."""
    auto = source == "auto"
    return plan(
        store,
        target,
        source,
        settings,
        probe=probe if auto else 0,
        probe_missing=auto,
        rank=auto,
        epochs=epochs,
        overrides=overrides,
        step=step,
        probe_progress=probe_progress,
    )


# ----------------------------------------------------------------------------- run


def describe_epoch(report: EpochReport) -> str:
    """One line on a finished epoch: its stage, training loss and evaluation accuracy."""
    return (
        f"epoch {report.epoch}/{report.epochs} stage {report.stage}: loss {report.train_loss:.3f}, "
        f"{report.eval_split} acc {report.eval_accuracy:.3f}"
    )


def default_run_dir(p: TransferPlan) -> Path:
    """``.kgraft/runs/SOURCE--TARGET--PRESET``."""
    from kg.ids import slug

    return Path(".kgraft/runs") / f"{slug(p.source_id)}--{slug(p.target_id)}--{p.preset}"


def _source_data(p: TransferPlan, note: Step) -> Any:
    """The source's pretraining data when the graph can rebuild it (for the forgetting figure)."""
    from transfer.register import materialise

    if p.source_dataset_id is None:
        return None
    try:
        return materialise(p.store, p.source_dataset_id)
    except Exception as exc:  # external pretraining data (ccexam's MNIST, USPS, SVHN)
        if not is_user_error(exc):
            raise
        note(f"no forgetting measurement ({exc})")
        return None


@dataclass(frozen=True)
class RunInputs:
    """What every process of a run needs, rebuilt from the plan's graph once: the source's record, the
    target's images, the settings, the run folder, and the source's pretraining data (for forgetting).

    Plain data (picklable): under ``torchrun`` rank 0 builds it and broadcasts it to the other ranks,
    which have no store (``transfer.finetune.torchrun``).
    """

    source: ModelRecord
    target: ImageDataset
    target_id: str
    settings: FinetuneSettings
    out_dir: Path
    source_data: ImageDataset | None = None
    source_dataset_id: str | None = None


def prepare_run(
    p: TransferPlan, *, out_dir: Path | None = None, step: Step = _quiet, note: Step = _quiet
) -> RunInputs:
    """Rebuild what the plan names from its graph: the source's record, the target, and the source's
    pretraining data when it can be rebuilt (``note`` says when it cannot)."""
    from transfer.register import materialise
    from transfer.zoo.record import ModelRecord

    record = ModelRecord.from_properties(p.store.node(Label.MODEL, p.source_id))
    step(f"rebuilding {p.target_id}")
    target = materialise(p.store, p.target_id)
    source_data = _source_data(p, note)
    return RunInputs(
        source=record,
        target=target,
        target_id=p.target_id,
        settings=p.settings,
        out_dir=out_dir or default_run_dir(p),
        source_data=source_data,
        source_dataset_id=p.source_dataset_id if source_data is not None else None,
    )


def execute(
    inputs: RunInputs,
    store: GraphStore | None,
    *,
    resume: bool = False,
    measure_baseline: bool = False,
    progress: Callable[[EpochReport], None] | None = None,
) -> FinetuneResult:
    """Fine-tune as ``inputs`` say and record the run in ``store`` (rank 0's; ``None`` on the others)."""
    from transfer.finetune.engine import finetune

    return finetune(
        inputs.source,
        inputs.target,
        inputs.settings,
        out_dir=inputs.out_dir,
        store=store,
        target_id=inputs.target_id,
        source_dataset=inputs.source_data,
        source_dataset_id=inputs.source_dataset_id,
        resume=resume,
        progress=progress,
        measure_baseline=measure_baseline,
    )


def run(
    p: TransferPlan,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    measure_baseline: bool = False,
    progress: Callable[[EpochReport], None] | None = None,
    retrain_scorer: Path | None = None,
    step: Step = _quiet,
    note: Step = _quiet,
) -> FinetuneResult:
    """Carry out a plan: rebuild the target (and the source's pretraining data, for forgetting),
    fine-tune with the plan's settings, record the run and its outcome in the plan's graph, and with
    ``retrain_scorer`` (a folder) retrain the GNN scorer on the new outcome when it is stale.

    ``note`` receives what could not be measured (one line each); ``progress`` every epoch's report.
    ``run`` is ``prepare_run`` then ``execute``; under ``torchrun`` the entry point calls the two itself,
    with a broadcast between them.
    """
    inputs = prepare_run(p, out_dir=out_dir, step=step, note=note)
    step(f"fine-tuning {p.source_id} on {p.target_id}")
    result = execute(inputs, p.store, resume=resume, measure_baseline=measure_baseline, progress=progress)
    if retrain_scorer is not None and result.finished:
        step("GNN scorer learns from the new outcome")
        ensure_scorer(p.store, retrain_scorer)
    return result


def ensure_scorer(store: GraphStore, out_dir: Path) -> tuple[str, str | None]:
    """The id of an up-to-date GNN scorer, training one when there is none or it is stale; returns
    (scorer id, why it was trained or ``None``)."""
    from gnn.builder import build_hetero
    from gnn.scores import stale_message
    from gnn.train import latest_scorer, train_scorer

    info = latest_scorer(store)
    if info is None:
        why = "no scorer yet"
    else:
        why = stale_message(info, build_hetero(store)[0])
        if why is None:
            return info.id, None
    return train_scorer(store, out_dir, seed=0).id, why
