"""Progress of a local search on stderr (stdout stays clean for `--json`)."""

from __future__ import annotations

from typing import Any

from crucible.api.tuningjob import TuningJobSpec
from crucible.tuning.budget import trial_limit


def format_params(params: dict[str, Any], order: list[str] | None = None) -> str:
    """`learningRate=0.0123 batchSize=64`: the last part of each path, numbers to 4 digits, in the
    search space's order (the study returns them sorted by name)."""
    parts = []
    for path in [*(order or []), *sorted(set(params) - set(order or []))]:
        if path not in params:
            continue
        value = params[path]
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{path.rsplit('.', 1)[-1]}={shown}")
    return " ".join(parts)


def format_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


class SilentDisplay:
    def start(self, spec: TuningJobSpec, resumed: int, workers: int) -> None:
        pass

    def trial_finished(self, record: dict[str, Any]) -> None:
        pass

    def update(self, summary: dict[str, Any], running: list[dict[str, Any]]) -> None:
        pass

    def stop(self) -> None:
        pass


class RichDisplay:
    """One progress bar over the trial budget; a line per finished trial."""

    STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.progress: Any = None
        self.task: Any = None
        self.order: list[str] = []

    def start(self, spec: TuningJobSpec, resumed: int, workers: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.order = list(spec.search_space)
        objective = f"{spec.objective.resolved_direction()} {spec.objective.metric}"
        where = "in-process" if workers == 1 else f"{workers} worker processes"
        self.console.print(
            f"Tuning: {len(spec.search_space)} parameters, {spec.sampler.type} sampler, "
            f"{spec.pruner.type} pruner, {objective}, {where}"
        )
        if resumed:
            self.console.print(f"Resuming the study: {resumed} trials already finished")
        self.progress = Progress(
            TextColumn("Trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task("trials", total=trial_limit(spec), detail="", completed=resumed)

    def trial_finished(self, record: dict[str, Any]) -> None:
        state = record["state"]
        style = self.STATE_STYLE.get(state, "white")
        label = "FAILED" if state == "FAIL" else state
        value = f" {format_value(record['value'])}" if state == "COMPLETE" else ""
        baseline = " (template)" if record.get("baseline") else ""
        reason = f": {record['reason']}" if record.get("reason") and state != "COMPLETE" else ""
        self.progress.console.print(
            f"trial {record['number']:>3}{baseline} [{style}]{label}[/]{value}  "
            f"{format_params(record['params'], self.order)}{reason}"
        )

    def update(self, summary: dict[str, Any], running: list[dict[str, Any]]) -> None:
        counts = summary["trialCounts"]
        best = summary["bestTrial"]
        detail = f"best {format_value(best['value'])} (#{best['number']})" if best else "best —"
        detail += f"  complete {counts['complete']} pruned {counts['pruned']} failed {counts['failed']}"
        for record in running:
            detail += f"  | #{record['number']} epoch {record['epochs']}"
            if record.get("last") is not None:
                detail += f" {format_value(record['last'])}"
        finished = counts["complete"] + counts["pruned"] + counts["failed"]
        self.progress.update(self.task, completed=finished, detail=detail)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def print_summary(summary: dict[str, Any], output_dir: Any) -> None:
    """The outcome: best parameters against the template's, counts, where the files are."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    best, baseline = summary["bestTrial"], summary["baselineTrial"]
    metric = summary["objective"]["metric"]
    if best:
        table = Table(title=f"Best trial #{best['number']} ({best['trainingRun']})")
        table.add_column("parameter")
        table.add_column("best")
        if baseline:
            table.add_column("template (trial 0)")
        for path, value in best["params"].items():
            row = [path, _cell(value)]
            if baseline:
                row.append(_cell(baseline["params"].get(path)))
            table.add_row(*row)
        row = [metric, format_value(best["value"])]
        if baseline:
            row.append(
                format_value(baseline["value"]) if baseline["state"] == "COMPLETE" else baseline["state"]
            )
        table.add_row(*row, style="bold")
        console.print(table)
    counts = summary["trialCounts"]
    colour = "green" if summary["phase"] == "Succeeded" else "red"
    console.print(
        f"[bold {colour}]{summary['phase']}[/]: {summary['reason']}  "
        f"(complete {counts['complete']}, pruned {counts['pruned']}, failed {counts['failed']}; "
        f"{summary.get('elapsedSeconds', 0):.0f} s)"
    )
    console.print(f"study:   {summary['studyName']} in {output_dir}/study.db")
    console.print(f"result:  {output_dir}/result.json")
    plots = summary.get("plots", {})
    for key in ("optimizationHistory", "paramImportances"):
        if plots.get(key):
            console.print(f"plot:    {plots[key]}")
    if plots.get("importancesNote"):
        console.print(f"         parameter importances: {plots['importancesNote']}")


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
