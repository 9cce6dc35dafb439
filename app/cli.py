"""`movielens-tfx`: the command line.

  movielens-tfx run [--data PATH] [--output DIR] [--config tutorial|default]
                    [--split random|temporal] ...
  movielens-tfx replay --data PATH --output DIR [--span-days 7] [--window-spans N] [--from-span K]
  movielens-tfx recommend --user 42 [--timestamp T] [--history 50,172,...] [-k 10] [--json] [--output DIR]
  movielens-tfx compile --target vertex|kubeflow --image IMAGE --data URI --root URI [--project P]
  movielens-tfx submit --spec pipeline.json --project P [--variant both] [--span N] [--dry-run]

Every command is quiet: TensorFlow, absl, Beam and TFX logs and third-party
warnings go to a log file (run: <output>/run.log); --verbose shows them too.
"""

import core  # noqa: F401  (first: Keras 2 before TensorFlow loads)

# isort: split
import argparse
import dataclasses
import errno
import json
import math
import os
import sys
import time
import unicodedata
from typing import List, Optional

from app import lock
from app.logs import log_file, quiet_logs
from core.errors import ConfigError, UserError
from movielens.spans import SPAN_SPLIT, SPLIT_METHODS
from pipeline.config import METADATA_PASSWORD_ENV, VARIANTS, CloudConfig, PipelineConfig, named_config
from trainer.config import NAMED_CONFIGS

# Storage errors reported as such (with the path), not as a traceback.
_STORAGE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT}
# How SQLite (ML Metadata) and TensorFlow's file system report a full disk.
_DISK_FULL = ("database or disk is full", "No space left on device")


def user_error(error: BaseException, output_dir: Optional[str] = None) -> Optional[UserError]:
    """The first user-fixable error in `error`'s cause chain, if any.

    A UserError anywhere in the chain (a component raises it inside TFX's
    runner), or a storage error: no space, read-only, no permission.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        if isinstance(error, OSError) and error.errno in _STORAGE_ERRORS and error.filename:
            return UserError(f"cannot write {error.filename}: {error.strerror}")
        if output_dir and any(text in str(error) for text in _DISK_FULL):
            return UserError(f"cannot write {os.path.abspath(output_dir)}: no space left on the device "
                             f"({str(error).splitlines()[0][:200]})")
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _default(name: str, config_class=PipelineConfig):
    """The config class's default for `name` (the one place defaults are written)."""
    return {f.name: f.default for f in dataclasses.fields(config_class)}[name]


def model_overrides(pairs: List[str]) -> dict:
    """ModelConfig changes from KEY=VALUE strings (VALUE parsed as JSON when it is JSON)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_config(args) -> PipelineConfig:
    data_path = args.data
    if data_path is None:
        from movielens import download

        data_path = download.fetch(args.dataset)
    config = named_config(
        args.config,
        data_path=data_path,
        output_dir=args.output,
        split=args.split,
        train_fraction=args.train_fraction,
        max_bad_rows=args.max_bad_rows,
        value_floor=args.value_floor,
        min_improvement=args.min_improvement,
        confidence=args.confidence,
        training_noise=args.training_noise,
        beam_workers=args.beam_workers,
        metadata_uri=args.metadata_uri,
    )
    overrides = model_overrides(args.set or [])
    return config.with_model(**overrides) if overrides else config


def cmd_run(args) -> int:
    started = time.time()

    def progress(line: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {line}", flush=True)

    config = build_config(args)  # validated before anything runs
    # The output's lock first: a second run is refused at once, before the heavy imports
    # and before anything under the output (the log) is written.
    with lock.exclusive(args.output):
        log_path = log_file(args.output, "run")
        print(f"output: {os.path.abspath(args.output)} (log: {log_path}; metadata: {config.metadata_location})", flush=True)
        with quiet_logs(log_path, args.verbose):
            # TensorFlow, Beam and TFX print while importing: import them here.
            from app import report, report_html
            from app.job import run_job

            result = run_job(config, variants=args.variants.split(","), progress=progress)
    print()
    print(report.table(result))
    print(f"\nreport: {os.path.join(config.output_dir, report_html.HTML_FILE)} (open it in a browser), "
          f"{os.path.join(config.output_dir, report.JSON_FILE)}, "
          f"{os.path.join(config.output_dir, report.MARKDOWN_FILE)}, {os.path.join(config.output_dir, report.PLOT_FILE)}")
    if result.get("tensorboard_logdir"):
        print(f"training curves: {report.tensorboard_command(result)}")
    return 0


def drift_thresholds(pairs: Optional[List[str]]) -> tuple:
    """--drift-threshold FEATURE=VALUE pairs, on top of the defaults."""
    out = dict(_default("drift_thresholds"))
    for pair in pairs or []:
        feature, sep, value = pair.partition("=")
        try:
            out[feature] = float(value) if sep and feature else None
        except ValueError:
            out[feature] = None
        if out[feature] is None:
            raise ConfigError(f"--drift-threshold expects FEATURE=NUMBER, got {pair!r}")
    return tuple(sorted(out.items()))


def cmd_replay(args) -> int:
    started = time.time()

    def progress(line: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {line}", flush=True)

    overrides = model_overrides(args.set or [])
    # Validated before anything runs; data_path is set once the spans exist.
    config = named_config(
        args.config, data_path=args.data, output_dir=args.output, split="span", window_spans=args.window_spans,
        value_floor=args.value_floor, min_improvement=args.min_improvement, confidence=args.confidence,
        training_noise=args.training_noise, drift_thresholds=drift_thresholds(args.drift_threshold),
        stop_on_drift=args.stop_on_drift, max_bad_rows=args.max_bad_rows,
    ).with_model(use_timestamps=VARIANTS[args.variant])
    if not args.cold_start:
        config = config.replace(model=config.model.continuous())
    if overrides:
        config = config.with_model(**overrides)
    # The output's lock before anything under it is written: a refused replay must not
    # touch <output>/spans/, which the running one trains and gates on.
    with lock.exclusive(args.output):
        log_path = log_file(args.output, "replay")
        print(f"output: {os.path.abspath(args.output)} (log: {log_path}; metadata: {config.metadata_location})", flush=True)
        with quiet_logs(log_path, args.verbose):
            from app import replay, timeline

            root = replay.prepare_data(args.data, args.output, args.span_days, args.max_bad_rows)
            entries = replay.replay(config.replace(data_path=root), args.from_span, args.to_span, progress=progress)
    print()
    print("\n".join(timeline.summary_lines(timeline.summary(entries))))
    print(f"\ntimeline: {os.path.join(args.output, timeline.MARKDOWN_FILE)}, {os.path.join(args.output, timeline.JSON_FILE)}, "
          f"{os.path.join(args.output, timeline.PLOT_FILE)}")
    return 0


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # the model's timestamps are int64 seconds since the epoch


def check_int64(value: int, what: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise UserError(f"{what} {value} is outside the int64 range of seconds since the epoch "
                        f"({INT64_MIN}..{INT64_MAX})")
    return value


def version_problem(version_dir: str) -> Optional[str]:
    """Why a served version cannot be loaded as it is (a missing file), or None when it is complete."""
    variables = os.path.join(version_dir, "variables")
    if not os.path.isfile(os.path.join(version_dir, "saved_model.pb")):
        return "no saved_model.pb"
    if not os.path.isfile(os.path.join(variables, "variables.index")):
        return "no variables/variables.index"
    if not any(name.startswith("variables.data-") for name in os.listdir(variables)):
        return "no variables/variables.data-*"
    return None


def served_versions(serving_dir: str) -> List[tuple]:
    """[(version directory, problem or None)], newest first, of a TF Serving model directory."""
    versions = [v for v in os.listdir(serving_dir) if v.isdigit()] if os.path.isdir(serving_dir) else []
    if not versions:
        raise UserError(f"no pushed model in {serving_dir}: run `movielens-tfx run` first (only blessed models are pushed)")
    paths = [os.path.join(serving_dir, v) for v in sorted(versions, key=int, reverse=True)]
    return [(path, version_problem(path)) for path in paths]


def latest_pushed_model(serving_dir: str) -> str:
    """The newest complete version directory under a TF Serving model directory (see version_problem)."""
    versions = served_versions(serving_dir)
    for path, problem in versions:
        if problem is None:
            return path
    raise UserError(f"no complete model in {serving_dir}: "
                    + ", ".join(f"{os.path.basename(path)} ({problem})" for path, problem in versions))


def load_served_model(serving_dir: str) -> tuple:
    """(version directory, loaded SavedModel, [skipped version: why]): the newest version that is
    complete and loads, falling back version by version."""
    import tensorflow as tf

    skipped = []
    for path, problem in served_versions(serving_dir):
        if problem is None:
            try:
                model = tf.saved_model.load(path)
                model.signatures["serving_default"]  # noqa: B018 - raises KeyError without it
                return path, model, skipped
            except Exception as error:  # noqa: BLE001 - a corrupted version: fall back to the next, say why
                problem = f"cannot be loaded: {str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__}"
        skipped.append(f"{os.path.basename(path)} ({problem})")
    raise UserError(f"no complete model in {serving_dir}: {', '.join(skipped)}")


def parse_history(text: str) -> List[tuple]:
    """--history "50,172:881250949,...": movie ids, most recent first, each optionally with its rating time."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        movie, sep, when = item.partition(":")
        if not movie:
            raise UserError(f"--history: {item!r}: no movie id before ':'")
        if sep and not when.lstrip("-").isdigit():
            raise UserError(f"--history: {item!r}: the rating time after ':' must be seconds since the epoch")
        out.append((movie, check_int64(int(when), f"--history: {item!r}: the rating time") if sep else None))
    return out


def printable(text: str) -> str:
    """`text` safe to print on a terminal: control and format characters (ESC and the other C0 and C1
    controls, DEL, bidirectional overrides, ...) written as \\x.. / \\u.... escapes."""
    def escaped(ch: str) -> str:
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return "".join(escaped(ch) if unicodedata.category(ch).startswith("C") else ch for ch in text)


def cmd_recommend(args) -> int:
    config = PipelineConfig(data_path="", output_dir=args.output)
    # The arguments first: each is one line, before anything is loaded.
    if args.k < 1:
        raise UserError(f"-k {args.k}: must be at least 1")
    timestamp = check_int64(int(args.timestamp if args.timestamp is not None else time.time()), "--timestamp")
    history = parse_history(args.history) if args.history is not None else None
    served_versions(config.model_serving_dir)  # no pushed model: said before anything is loaded
    if history is None and config.metadata_mysql is None and not os.path.exists(config.metadata_path):
        raise UserError(f"no ingested data in {args.output} ({config.metadata_path} does not exist): "
                        "give the user's movies with --history ID[:TIME],... ('' for none)")
    with quiet_logs(log_file(args.output, "recommend", create=False), args.verbose):
        if history is not None:
            source = "--history"
        else:  # the user's latest history in the data the pipeline ingested
            from app.results import user_history

            history = user_history(config, str(args.user), before=timestamp)
            source = "the data"
        # A rating time not given: taken as just before the request.
        history = [(movie, when if when is not None else max(timestamp - 1, INT64_MIN)) for movie, when in history]

        import tensorflow as tf

        model_dir, model, skipped = load_served_model(config.model_serving_dir)
        serve = model.signatures["serving_default"]
        catalog = int(model.movie_ids.shape[0]) if hasattr(model, "movie_ids") else None
        top = serve.structured_outputs["scores"].shape[1]
        if catalog is not None and args.k > catalog:
            raise UserError(f"-k {args.k}: the catalog of {model_dir} has {catalog} movies")
        if top is not None and args.k > top:
            raise UserError(f"-k {args.k}: {model_dir} returns at most its top {top} movies "
                            f"(the Trainer's export_top_k): ask for -k {top} or fewer")
        out = serve(
            user_id=tf.constant([str(args.user)]), timestamp=tf.constant([timestamp], tf.int64),
            history=tf.constant([[movie for movie, _ in history]], tf.string, shape=[1, len(history)]),
            history_timestamps=tf.constant([[when for _, when in history]], tf.int64, shape=[1, len(history)]),
        )
        rated = {movie for movie, _ in history}
        scores = out["scores"].numpy()[0].tolist()
        ids = [m.decode("utf-8", "replace") for m in out["movie_ids"].numpy()[0].tolist()]
        titles = [t.decode("utf-8", "replace") for t in out["movie_titles"].numpy()[0].tolist()]
        # Never a rated movie: the model scores those -inf (or, exporting without exclude_history, returns
        # them); when fewer than k others are in its top, fewer rows are printed, with a note.
        items = [{"movie_id": movie, "title": title, "score": round(score, 4)}
                 for movie, title, score in zip(ids, titles, scores, strict=True)
                 if math.isfinite(score) and movie not in rated][:args.k]
    for line in skipped:
        print(f"note: serving version {line} skipped: using {os.path.basename(model_dir)}", file=sys.stderr)
    note = (f"only {len(items)} of the {args.k} asked: every other movie of the model's top {len(scores)} is in "
            f"the user's history ({len(history)} movies)") if len(items) < args.k else None
    if args.json:
        answer = {"user_id": str(args.user), "timestamp": timestamp, "model": model_dir,
                  "history": [movie for movie, _ in history], "recommendations": items}
        if skipped:
            answer["skipped_versions"] = skipped
        if note:
            answer["note"] = note
        print(json.dumps(answer, allow_nan=False))
    else:
        print(printable(f"top {len(items)} for user {args.user} at timestamp {timestamp} (model {model_dir}); "
                        f"history from {source}: {len(history)} movies, most recent first: "
                        f"{', '.join(movie for movie, _ in history[:10])}{' ...' if len(history) > 10 else ''}"))
        for rank, item in enumerate(items, start=1):
            print(f"{rank:>3}. {item['score']:8.4f}  {printable(item['title'])}")
        if note:
            print(f"note: {note}")
    return 0


def cmd_compile(args) -> int:
    if args.target == "vertex" and not args.project:
        raise UserError("--target vertex needs --project (Dataflow and Vertex AI run in a Google Cloud project)")
    cloud = None
    if args.project:
        cloud = CloudConfig(
            project=args.project, region=args.region, image=args.image,
            dataflow_machine_type=args.dataflow_machine_type, vertex_training=args.vertex_training,
        )
    with quiet_logs(log_file(os.path.dirname(os.path.abspath(args.output)), "compile"), args.verbose):
        from pipeline.kubeflow_runner import compile_pipeline

        config = named_config(args.config, data_path=args.data, output_dir=args.root, split=args.split, cloud=cloud,
                              value_floor=args.value_floor, min_improvement=args.min_improvement,
                              confidence=args.confidence, training_noise=args.training_noise,
                              window_spans=args.window_spans)
        if config.split == SPAN_SPLIT:  # continuous training: each run starts from the deployed model
            config = config.replace(model=config.model.continuous())
        compile_pipeline(config, image=args.image, output=args.output)
    print(f"wrote {args.output} ({args.target}; image {args.image}; root {args.root})")
    return 0


def cmd_submit(args) -> int:
    with quiet_logs(log_file(os.path.dirname(os.path.abspath(args.spec)), "submit", create=False), args.verbose):
        return _submit(args)


def _submit(args) -> int:
    from pipeline import kubeflow_runner

    names = list(VARIANTS) if args.variant == "both" else [args.variant]
    for name in names:
        try:
            arguments = kubeflow_runner.job_arguments(args.spec, name, args.project, args.region, args.service_account,
                                                      span=args.span)
        except (ValueError, KeyError, OSError) as e:
            raise UserError(f"submit: {e}") from None
        if args.dry_run:
            print(json.dumps(arguments, indent=2))
            continue
        # The timestamp run is gated against the blessed baseline: wait for it.
        resource = kubeflow_runner.submit(arguments, wait=len(names) > 1 and name != names[-1])
        print(f"submitted {name}: {resource}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="movielens-tfx", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    # Every command takes --verbose.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="show TensorFlow / Beam / TFX logs and warnings on the terminal (they always go to the log file)")

    # The gate's options (pipeline.evaluation), the same for every command that gates.
    gate = argparse.ArgumentParser(add_help=False)
    gate.add_argument("--value-floor", type=float, default=_default("value_floor"),
                      help="a fixed minimum eval top-100 accuracy to bless (default: the best baseline's, with the "
                           "interval of the gain over it above 0)")
    gate.add_argument("--min-improvement", type=float, default=_default("min_improvement"),
                      help="the lower bound of the interval of the top-100 gain over the latest blessed model must "
                           "be above this to bless")
    gate.add_argument("--confidence", type=float, default=_default("confidence"),
                      help="the confidence level of the gate's intervals (users resampled)")
    gate.add_argument("--training-noise", type=float, default=_default("training_noise"),
                      help="the standard deviation of the top-100 difference between two trainings of one config "
                           "(A/A runs: bench/gate_bench.py aa); widens every interval; 0: the users' interval alone")

    run = sub.add_parser("run", parents=[common, gate], help="train, evaluate and gate the baseline and the timestamp model")
    run.add_argument("--data", help="MovieLens directory or .zip (ml-100k, ml-1m or CSV layout); "
                     "default: download --dataset into ~/.cache/movielens-tfx, verified")
    run.add_argument("--dataset", default="ml-100k", help="archive to download when --data is not given")
    run.add_argument("--output", default=_default("output_dir"), help="pipeline root, metadata, serving dir, report, log")
    run.add_argument("--config", default="default", choices=sorted(NAMED_CONFIGS))
    run.add_argument("--split", default=None, choices=SPLIT_METHODS,
                     help="default: the config's (tutorial: random; default: temporal)")
    run.add_argument("--train-fraction", type=float, default=_default("train_fraction"))
    run.add_argument("--max-bad-rows", type=int, default=_default("max_bad_rows"),
                     help="quarantine up to N bad rows instead of failing")
    run.add_argument("--variants", default=",".join(VARIANTS), help="which models to train, in order")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a model hyperparameter, e.g. epochs=5")
    run.add_argument("--beam-workers", type=int, default=_default("beam_workers"),
                     help="Beam worker processes for ExampleGen, StatisticsGen, Transform, Evaluator (1: in-process)")
    run.add_argument("--metadata-uri", default=_default("metadata_uri"),
                     help="a shared ML Metadata store on MySQL / MariaDB: mysql://user[:password]@host[:port]/database "
                     f"(password better in ${METADATA_PASSWORD_ENV}); default: SQLite in --output")
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("replay", parents=[common, gate],
                         help="continuous training: run the pipeline span by span (weekly), warm-started, gated on the next span")
    rep.add_argument("--data", required=True, help="a MovieLens directory or .zip (cut into spans under --output/spans), "
                     "or a span layout (span-0/, span-1/, ...)")
    rep.add_argument("--output", default=_default("output_dir"), help="pipeline root, metadata, serving dir, timeline, log")
    rep.add_argument("--span-days", type=int, default=7, help="days per span when cutting flat data")
    rep.add_argument("--window-spans", type=int, default=_default("window_spans"), help="spans each run trains on")
    rep.add_argument("--from-span", type=int, default=None, help="first span to gate on (default: the second span)")
    rep.add_argument("--to-span", type=int, default=None, help="last span (default: the last present)")
    rep.add_argument("--config", default="default", choices=sorted(NAMED_CONFIGS))
    rep.add_argument("--variant", default="timestamp", choices=tuple(VARIANTS), help="the model deployed")
    rep.add_argument("--cold-start", action="store_true", help="train every span from scratch (no warm start)")
    rep.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a model hyperparameter")
    rep.add_argument("--drift-threshold", action="append", metavar="FEATURE=VALUE",
                     help="Jensen-Shannon divergence of FEATURE between a span and the previous one that is drift "
                     f"(default: {', '.join(f'{k}={v}' for k, v in _default('drift_thresholds'))}); repeat per feature")
    rep.add_argument("--stop-on-drift", action="store_true", help="fail a span's run on drift instead of reporting it")
    rep.add_argument("--max-bad-rows", type=int, default=_default("max_bad_rows"))
    rep.set_defaults(func=cmd_replay)

    rec = sub.add_parser("recommend", parents=[common], help="top-k movies for a user from the latest pushed model")
    rec.add_argument("--user", required=True)
    rec.add_argument("--timestamp", type=int, default=None, help="seconds since the epoch (default: now)")
    rec.add_argument("--history", default=None, metavar="ID[:TIME],...",
                     help="the user's movies, most recent first (optionally with their rating time); "
                          "default: the user's latest ratings in the ingested data; '' for none")
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--json", action="store_true")
    rec.add_argument("--output", default=_default("output_dir"))
    rec.set_defaults(func=cmd_recommend)

    comp = sub.add_parser("compile", parents=[common, gate], help="write the pipeline spec for Vertex AI / Kubeflow Pipelines (offline)")
    comp.add_argument("--target", choices=("vertex", "kubeflow"), default="vertex")
    comp.add_argument("--output", default="pipeline.json", help="the spec file to write")
    comp.add_argument("--image", required=True, help="pipeline image built from the Dockerfile")
    comp.add_argument("--data", required=True, help="MovieLens directory or .zip as the pipeline sees it (gs://...)")
    comp.add_argument("--root", required=True, help="where runs write: gs://bucket/movielens-tfx (pipeline root, serving)")
    comp.add_argument("--config", default="default", choices=sorted(NAMED_CONFIGS))
    comp.add_argument("--split", default=None, choices=SPLIT_METHODS,
                      help="default: the config's (tutorial: random; default: temporal)")
    comp.add_argument("--window-spans", type=int, default=_default("window_spans"),
                      help="--split span: the spans each run trains on (the span itself is a parameter: submit --span)")
    comp.add_argument("--project", help="Google Cloud project: Beam stages on Dataflow")
    comp.add_argument("--region", default=_default("region", CloudConfig))
    comp.add_argument("--dataflow-machine-type", default=_default("dataflow_machine_type", CloudConfig))
    comp.add_argument("--vertex-training", action="store_true", help="run the Trainer as a Vertex AI Training job")
    comp.set_defaults(func=cmd_compile)

    submit = sub.add_parser("submit", parents=[common], help="submit a compiled spec to Vertex AI Pipelines")
    submit.add_argument("--spec", default="pipeline.json")
    submit.add_argument("--project", required=True)
    submit.add_argument("--region", default=_default("region", CloudConfig))
    submit.add_argument("--variant", default="both", choices=(*VARIANTS, "both"))
    submit.add_argument("--service-account", default="")
    submit.add_argument("--span", type=int, default=None,
                        help="a span-aware spec (compile --split span): the span to ingest and gate on (default: the latest)")
    submit.add_argument("--dry-run", action="store_true", help="print the PipelineJob arguments, submit nothing")
    submit.set_defaults(func=cmd_submit)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "variants", None) is not None:
        unknown = set(args.variants.split(",")) - set(VARIANTS)
        if unknown or not args.variants:
            parser().error(f"--variants: unknown {', '.join(sorted(unknown))} (use {','.join(VARIANTS)})")
    try:
        return args.func(args)
    except Exception as error:  # noqa: BLE001 - a UserError becomes a message, anything else re-raises
        found = user_error(error, getattr(args, "output", None))
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
