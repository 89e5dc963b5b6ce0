"""A training run end to end, whichever CLI started it: build (:func:`training.build.build_run`), train and
export (:func:`training.runner.fit`), then evaluate the exported model on each dataset's test set.

``python -m training.pretrain CFG.yaml`` reads the run config from YAML; ``python -m training.finetune`` maps its
flags onto the same :class:`~training.config.RunConfig` (written to ``OUT/config.json``, so
``python -m training.pretrain OUT/config.json`` repeats a fine-tuning run).
"""

from __future__ import annotations

import json
from pathlib import Path

from .build import TrainingRun, build_run, model_card, model_readme
from .config import RunConfig
from .runner import RunResult, check_output_dir, fit

__all__ = ["execute"]


def execute(cfg: RunConfig, *, resume: bool = False, base=None, log=print) -> tuple[RunResult, dict]:
    """Build, train, export and test one run; returns the fit result and the test reports (dataset -> metrics;
    ``OUT/test_metrics.json`` holds them, one dataset's report alone when the run has one dataset)."""
    check_output_dir(Path(cfg.out))  # before reading any data; fit() checks again with the model's size
    run = build_run(cfg, base=base, log=log)
    card = model_card(run)
    result = fit(run, resume=resume, card=card, readme=model_readme(run, card, Path(cfg.out) / "model"))
    return result, _test(run, result)


def _test(run: TrainingRun, result: RunResult) -> dict:
    from .evaluate import evaluate_model

    tested = [(d, t, s.test) for d, t, s in zip(run.cfg.datasets, run.tasks, run.splits)
              if s.test is not None and len(s.test)]
    if not tested or not result.is_global_zero:  # DDP: rank 0 tests the model it exported
        return {}
    out = Path(run.cfg.out)
    reports = {}
    for d, task, test in tested:
        head = run.model.heads[task.head].name if task.head is not None else None
        where = out / "test" if len(run.cfg.datasets) == 1 else out / "test" / d.name
        report = evaluate_model(result.model_dir, test, out=where, head=head, targets=d.targets)
        report["weights"] = result.exported  # the best-validation checkpoint the test metrics are of
        reports[d.name] = report
    single = len(run.cfg.datasets) == 1
    (out / "test_metrics.json").write_text(json.dumps(next(iter(reports.values())) if single else reports,
                                                      indent=1) + "\n")
    return reports
