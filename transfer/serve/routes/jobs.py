"""Long work as jobs (reports, probes, fine-tuning): start one (token needed: each writes the graph),
then poll its progress."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field

from kg.errors import NotFound
from ontology.vocab import Label
from transfer.serve import reports
from transfer.serve.jobs import Progress
from transfer.serve.routes.common import config, handle, jobs
from transfer.serve.routes.write import require_token

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class ReportJob(BaseModel):
    """What ``kgraft report`` takes."""

    target: str = Field(description="Target dataset (id or name).")
    source: str | None = Field(default=None, description="Source model; default: the best-ranked one.")
    top: int = Field(default=10, ge=1, le=200)
    probe: bool = Field(default=True, description="Probe the chosen pair when it was never measured.")


class ProbeJob(BaseModel):
    """What ``kgraft probe`` takes."""

    dataset: str = Field(description="Target dataset (id or name).")
    models: list[str] = Field(min_length=1, max_length=100, description="Source models (ids or names).")
    samples: int = Field(default=1000, ge=10, le=100_000)
    seed: int = 0


class FinetuneJob(BaseModel):
    """What ``kgraft finetune`` takes."""

    target: str = Field(description="Target dataset (id or name).")
    source: str = Field(
        default="auto", description="Source model (id or name), or auto: the best-ranked one."
    )
    settings: Literal["auto", "fastai", "full", "linear-probe"] = "auto"
    epochs: int | None = Field(
        default=None, ge=1, le=1000, description="Total epochs (overrides the preset)."
    )
    probe: int = Field(
        default=0,
        ge=0,
        le=100,
        description="With source auto: probe the K most promising unmeasured candidates.",
    )


@router.post("/report", status_code=202, dependencies=[Depends(require_token)])
def start_report(request: Request, body: Annotated[ReportJob, Body()]) -> dict[str, Any]:
    """Write a suitability report as a job; its result names the report (``/reports/{name}``)."""
    cfg, graph = config(request), handle(request)
    with graph.read() as store:  # a bad target fails now, not inside the job
        target_id = store.resolve(body.target, (Label.DATASET,))[1]

    def work(progress: Progress) -> dict[str, Any]:
        with graph.write() as store:
            return reports.make_report(
                store,
                cfg.reports_dir,
                target_id,
                body.source,
                top=body.top,
                probe_missing=body.probe,
                probes_dir=cfg.probes_dir,
                progress=progress,
            )

    return jobs(request).submit("report", f"report for {target_id}", work).as_dict()


@router.post("/probe", status_code=202, dependencies=[Depends(require_token)])
def start_probe(request: Request, body: Annotated[ProbeJob, Body()]) -> dict[str, Any]:
    """Probe source models on a target (estimators, shift tests, generality curve) as a job; each
    measurement is recorded as SCORED_ON."""
    cfg, graph = config(request), handle(request)
    with graph.read() as store:
        dataset_id = store.resolve(body.dataset, (Label.DATASET,))[1]
        model_ids = [store.resolve(m, (Label.MODEL,))[1] for m in body.models]

    def work(progress: Progress) -> list[dict[str, Any]]:
        from transfer.probe.run import probe

        out = []
        for i, model_id in enumerate(model_ids):
            progress.advance(i, len(model_ids), f"probing {model_id} on {dataset_id}")
            with graph.write() as store:
                r = probe(store, model_id, dataset_id, n=body.samples, seed=body.seed, out_dir=cfg.probes_dir)
            out.append({"model": model_id, "estimators": r.estimators, "shift_type": r.shift_type})
        progress.advance(len(model_ids), len(model_ids), "done")
        return out

    description = f"probe {len(model_ids)} model(s) on {dataset_id}"
    return jobs(request).submit("probe", description, work).as_dict()


@router.post("/finetune", status_code=202, dependencies=[Depends(require_token)])
def start_finetune(request: Request, body: Annotated[FinetuneJob, Body()]) -> dict[str, Any]:
    """Fine-tune a source on a target as a job (``transfer.loop.plan_finetune`` then ``run``, as
    ``kgraft finetune`` does); the run and its TRANSFERRED_TO outcome are recorded in the graph, and
    the job's result is the run's summary."""
    cfg, graph = config(request), handle(request)
    auto = body.source == "auto"
    with graph.read() as store:  # a bad target or source fails now, not inside the job
        target_id = store.resolve(body.target, (Label.DATASET,))[1]
        source_id = "auto" if auto else store.resolve(body.source, (Label.MODEL,))[1]

    def work(progress: Progress) -> dict[str, Any]:
        from transfer.loop import default_run_dir, describe_epoch, plan_finetune, run

        with graph.write() as store:
            the_plan = plan_finetune(
                store, target_id, source_id, body.settings, probe=body.probe, epochs=body.epochs,
                step=progress.step,
            )  # fmt: skip
            epochs = the_plan.settings.epochs
            progress.advance(0, epochs, f"fine-tuning {the_plan.source_id} on {target_id}")

            def on_epoch(report: Any) -> None:
                progress.advance(report.epoch, report.epochs, describe_epoch(report))

            run_name = f"{default_run_dir(the_plan).name}--{uuid.uuid4().hex[:8]}"
            result = run(
                the_plan,
                out_dir=cfg.probes_dir.parent / "runs" / run_name,
                progress=on_epoch,
                step=progress.step,
            )
        return {k: v for k, v in result.summary().items() if k != "epochs"}

    description = f"fine-tune {source_id} on {target_id} ({body.settings})"
    return jobs(request).submit("finetune", description, work).as_dict()


@router.get("/{job_id}")
def job_status(request: Request, job_id: str) -> dict[str, Any]:
    """A job's status, progress (``done`` of ``total``, ``fraction``), message, result or error."""
    job = jobs(request).get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r} (finished jobs are kept until the server restarts).")
    return job.as_dict()


@router.get("")
def job_list(request: Request) -> list[dict[str, Any]]:
    """Every job this server remembers, newest first."""
    return [j.as_dict() for j in jobs(request).all()]
