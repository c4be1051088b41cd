"""`ftsweep COMMAND [hydra overrides]`: the entry point. The logic lives in the modules it calls.

Heavy libraries (torch, ray, transformers) are imported by the command that needs them, so
`ftsweep --help` and config errors answer at once. Every error ends here as one line: a config
error (exit 2) or `ftsweep: error: TYPE: message` (exit 1; FTSWEEP_DEBUG=1 adds the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys

COMMANDS = {
    "train": "run one trial as a plain function call (no Ray), recorded in MLflow",
    "sweep": "run a sweep from sweeps/NAME.yaml with Ray Tune (sweep=NAME); rerun to resume",
    "report": "write RESULTS/NAME/report.md, .html and plots from a sweep's MLflow runs [target=GPU] [inputs=ID]",
    "adapters": "list a sweep's LoRA/QLoRA adapters with size and quality",
    "merge": "merge an adapter into its base model: out=DIR [run=ID] (default: the recommended run) [trust_remote_code=true] [register=NAME]",
    "plan": "estimate memory, hours and dollars per method and GPU layout, before launch (no weights)",
    "validate": "check a sweep before launch: every trial, its memory and cost (no Ray, no weights)",
    "auto": "design, run and confirm the cheapest sweep for model=, data=, hardware= within budget_usd= and/or time_budget_s= [target=GPU]; the winner merged into RESULTS/auto/merged; rerun to resume",
    "prepare": "prepare the built-in models (SmolLM2-135M from its package, tiny-llama) and DeepSpeed's CPU op",
}

# Command arguments that are not config keys: taken out before Hydra composes the rest.
EXTRA_ARGS = {
    "report": ("target", "inputs"),
    # trust_remote_code=true: run the base model's own code, where its conf/model file asks.
    # register=NAME: log the merged model with MLflow's transformers flavour and register it.
    "merge": ("run", "out", "trust_remote_code", "register"),
    "plan": ("examples", "tokens_per_example", "epochs", "max_gpus"),
    "prepare": ("force",),
    "auto": ("budget_usd", "time_budget_s", "target"),
}
DEFAULT_TARGET_GPU = "a100-80gb"

EPILOG = """examples:
  ftsweep train method=qlora method.lora_r=8 train.max_steps=20
  ftsweep sweep sweep=smoke results_dir=/tmp/x
  ftsweep validate sweep=lora_vs_full
  ftsweep sweep sweep=lora_vs_full train.max_steps=20
  ftsweep sweep sweep=./my_sweep.yaml   (conf/ and sweeps/ in the working directory count too)
  ftsweep report sweep=smoke results_dir=/tmp/x target=h100
  ftsweep merge sweep=smoke results_dir=/tmp/x out=/tmp/merged   (trust_remote_code=true: the base's own code)
  ftsweep merge sweep=smoke results_dir=/tmp/x out=/tmp/merged register=smoke-winner   (then: mlflow models serve -m models:/smoke-winner/1)
  ftsweep auto model=smollm2-135m data=knowledge hardware=cpu time_budget_s=2400

Overrides use Hydra syntax: group=option (model=, method=, data=, hardware=, sweep=) or key=value.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftsweep",
        description="Measure LoRA vs QLoRA vs full fine-tuning on your model, data and budget.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument(
            "overrides", nargs="*", help="Hydra overrides, e.g. method=lora train.max_steps=10"
        )
    return parser


def _console():
    from rich.console import Console

    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 160  # logs and pipes: wide tables instead of wrapped cells
    return console


def cmd_train(overrides: list[str]) -> int:
    from ftsweep.config import compose

    cfg = compose(overrides)
    from rich.markup import escape

    from ftsweep.tracking.redact import redact_uri
    from ftsweep.tracking.store import experiment_name, tracking_uri
    from ftsweep.trial.identity import run_name_for
    from ftsweep.trial.run import run_trial

    console = _console()
    console.print(
        f"training [bold]{run_name_for(cfg)}[/bold] on {cfg.model.name} / {cfg.data.name}"
    )
    try:
        result = run_trial(cfg, show_progress=True)
    except Exception as exc:  # recorded in MLflow already; the user gets one line, not a traceback
        from ftsweep.trial.outcome import stop_reason_for

        console.print(
            f"[red]ftsweep: trial failed ({stop_reason_for(exc)}): "
            f"{escape(redact_uri(f'{type(exc).__name__}: {exc}'))}[/red]"
        )
        return 1
    if result.stop_reason == "already_recorded":
        console.print(
            f"already recorded as MLflow run {result.run_id} (trial {result.trial_id}); "
            "change a knob, the seed, or tracking.experiment= to train again"
        )
    _print_metrics(console, result.metrics)
    console.print(f"experiment {experiment_name(cfg)!r} in {redact_uri(tracking_uri(cfg))}")
    return 0


def _print_metrics(console, metrics: dict) -> None:
    from rich.table import Table

    from ftsweep.tracking.record import METRICS

    table = Table("metric", "value")
    for key in METRICS:
        if key in metrics:
            table.add_row(key, f"{metrics[key]:.6g}")
    console.print(table)


def cmd_sweep(overrides: list[str]) -> int:
    from ftsweep.config import compose

    cfg = compose(overrides)
    from ftsweep.sweep.run import run_sweep
    from ftsweep.sweep.summary import print_summary

    console = _console()
    console.print(f"sweep [bold]{cfg.sweep.name}[/bold]: {cfg.sweep.description.strip()}")
    outcome = run_sweep(cfg, console=console)
    print_summary(console, cfg, outcome)
    if outcome.interrupted:
        console.print("[yellow]sweep interrupted: run the same command again to resume it[/yellow]")
        return 130
    return 1 if outcome.errors and not outcome.results else 0


def split_extra_args(command: str, args: list[str]) -> tuple[dict[str, str], list[str]]:
    """`target=h100 sweep=x` -> ({"target": "h100"}, ["sweep=x"]) for the command's own arguments."""
    names = EXTRA_ARGS.get(command, ())
    extra: dict[str, str] = {}
    rest: list[str] = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in names:
            extra[key] = value
        else:
            rest.append(arg)
    return extra, rest


def cmd_report(overrides: list[str], extra: dict[str, str]) -> int:
    from ftsweep.config import compose

    cfg = compose(overrides, check_data=False)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from ftsweep.report.write import write_report
    from ftsweep.tracking.store import experiment_name, tracking_uri

    experiment = experiment_name(cfg)
    path = write_report(
        tracking_uri(cfg),
        experiment,
        cfg.results_path / experiment,
        extra.get("target", DEFAULT_TARGET_GPU),
        inputs=extra.get("inputs"),  # one group of runs trained and scored alike
    )
    print(f"report: {path}")
    print(f"        {path.with_suffix('.html')}")
    return 0


def cmd_adapters(overrides: list[str], extra: dict[str, str]) -> int:
    from ftsweep.config import compose

    cfg = compose(overrides, check_data=False)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from ftsweep.adapters.listing import format_adapters_table, list_adapters
    from ftsweep.tracking.store import experiment_name, tracking_uri

    print(format_adapters_table(list_adapters(tracking_uri(cfg), experiment_name(cfg))))
    return 0


def cmd_merge(overrides: list[str], extra: dict[str, str]) -> int:
    from pathlib import Path

    from ftsweep.config import ConfigError, compose

    if not extra.get("out"):
        raise ConfigError("out: required: the folder to write the merged checkpoint to (out=DIR)")
    cfg = compose(overrides, check_data=False)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from ftsweep.adapters import merge
    from ftsweep.tracking.store import experiment_name, tracking_uri

    remote_code = extra.get("trust_remote_code", "false").lower()
    if remote_code not in ("true", "false"):
        raise ConfigError(f"trust_remote_code={remote_code}: true or false")
    name = extra.get("register")
    if name is not None:
        from ftsweep.adapters import register

        register.check_model_name(name)  # before anything is merged or written
    uri = tracking_uri(cfg)
    row = merge.choose_run(uri, experiment_name(cfg), extra.get("run"))
    # A QLoRA run scored its adapter on the 4-bit base: its inputs are rebuilt before anything
    # is written, so that the merged model can be scored on the same test split.
    run_cfg = merge.run_config(cfg, row) if merge.scored_another_model(row) else None
    try:
        merged = merge.merge_run(row, uri, Path(extra["out"]), remote_code == "true")
    except merge.MergeMismatch as exc:
        print(f"ftsweep: merge refused: {exc}", file=sys.stderr)
        return 1
    print(f"merged checkpoint: {merged.out_dir}  (loads with AutoModelForCausalLM.from_pretrained)")
    quality = None
    if run_cfg is not None:
        print(merge.quantised_base_note(row), flush=True)
        quality = merge.score_merged(run_cfg, merged)
        merge.record_merged_quality(uri, row, quality)
        print("\n".join(merge.quality_lines(row, quality)))
    if name is not None:
        registered = register.register_merged(
            uri, merged, name, experiment_name(cfg), cfg.train.max_new_tokens, quality
        )
        print("\n".join(register.registered_lines(registered, uri)))
    return 0


def cmd_auto(overrides: list[str], extra: dict[str, str]) -> int:
    from ftsweep.auto.command import cmd_auto as run_auto

    return run_auto(overrides, extra)


def cmd_plan(overrides: list[str], extra: dict[str, str]) -> int:
    from ftsweep.config import ConfigError, compose

    cfg = compose(overrides, check_data=False)
    from ftsweep.methods import method_names
    from ftsweep.planning.fit import rows_used
    from ftsweep.planning.measured import measured_rows
    from ftsweep.planning.plan import Workload, format_plan_table, plan, write_plan_json
    from ftsweep.tracking.store import tracking_uri

    try:
        numbers = {k: int(v) for k, v in extra.items()}
    except ValueError:
        raise ConfigError(
            f"{extra}: examples, tokens_per_example, epochs and max_gpus are integers"
        ) from None
    workload_keys = {"examples", "tokens_per_example", "epochs"}
    workload = Workload(**{k: v for k, v in numbers.items() if k in workload_keys})
    chosen = {o.split("=", 1)[0] for o in overrides}
    # The finished runs in RESULTS calibrate memory and speed where they match an option.
    measured = measured_rows(tracking_uri(cfg), cfg.model.name)
    options = plan(
        cfg,
        # A method or hardware the user names narrows the plan; the defaults do not.
        methods=[cfg.method.name] if "method" in chosen else method_names(),
        hardware=[cfg.hardware.name] if "hardware" in chosen else None,
        workload=workload,
        measured=measured or None,
        **({"max_gpus": numbers["max_gpus"]} if "max_gpus" in numbers else {}),
    )
    print(format_plan_table(options))
    used = rows_used(options, measured)
    if used:
        names = ", ".join(f"{row['run_name']} ({row['run_id'][:8]})" for row in used)
        print(f"calibrated from {len(used)} measured run{'s' * (len(used) > 1)}: {names}")
    else:
        print(
            "not calibrated: no finished run of this model in the results store matches an option"
        )
    path = write_plan_json(options, cfg.results_path / "plan.json")
    print(f"plan: {path}")
    return 0


def cmd_validate(overrides: list[str], extra: dict[str, str]) -> int:
    """`ftsweep validate sweep=NAME`: what the sweep would run, checked, without running it."""
    from ftsweep.config import compose

    cfg = compose(overrides)
    from ftsweep.sweep.validate import validate_sweep

    validate_sweep(cfg)
    return 0


def cmd_prepare(overrides: list[str], extra: dict[str, str]) -> int:
    from ftsweep.models.builtin import prepare_builtin_models

    for name, path in prepare_builtin_models(force=extra.get("force") == "true").items():
        print(f"{name}: {path}")
    # Built here once, so no trial's wall time includes compiling it.
    from ftsweep.trial.deepspeed_ops import extensions_dir, load_deepspeed_ops

    op = load_deepspeed_ops()
    print(f"deepspeed op: {op} in {extensions_dir()}" if op else "deepspeed op: none needed")
    return 0


def main(argv: list[str] | None = None) -> int:
    from ftsweep.config import ConfigError

    args = _parser().parse_args(argv)
    handlers = {
        "train": lambda rest, extra: cmd_train(rest),
        "sweep": lambda rest, extra: cmd_sweep(rest),
        "report": cmd_report,
        "adapters": cmd_adapters,
        "merge": cmd_merge,
        "plan": cmd_plan,
        "validate": cmd_validate,
        "prepare": cmd_prepare,
        "auto": cmd_auto,
    }
    extra, rest = split_extra_args(args.command, args.overrides)
    try:
        return handlers[args.command](rest, extra)
    except ConfigError as exc:
        print(f"ftsweep: config error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftsweep: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # never a bare traceback: one redacted line (FTSWEEP_DEBUG=1: all)
        if os.environ.get("FTSWEEP_DEBUG") == "1":
            import traceback

            from ftsweep.tracking.redact import redact_uri

            print(redact_uri(traceback.format_exc()), file=sys.stderr, end="")
        hint = "" if os.environ.get("FTSWEEP_DEBUG") == "1" else " (FTSWEEP_DEBUG=1 shows where)"
        print(f"ftsweep: error: {type(exc).__name__}: {_one_line(exc)}{hint}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """An exception's message as one redacted line (its first line, secrets in URIs ***)."""
    from ftsweep.tracking.redact import redact_uri

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return redact_uri(lines[0] if lines else "(no message)")


if __name__ == "__main__":
    sys.exit(main())
