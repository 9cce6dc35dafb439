"""`movielens-tfx`: the command line.

  movielens-tfx run [--data PATH] [--output DIR] [--config tutorial|default] [--set KEY=VALUE ...]
                    [--split random|temporal|span] ...
  movielens-tfx replay --data PATH --output DIR [--span-days 7] [--window-spans N] [--from-span K] ...
  movielens-tfx recommend --user 42 [--timestamp T] [--history 50,172,...] [-k 10] [--index] [--json] [--output DIR]
  movielens-tfx compile --target vertex|kubeflow --image IMAGE --data URI --root URI [--project P]
                        [--vertex-training [--replicas N]] ...
  movielens-tfx submit --spec pipeline.json --project P [--variant both] [--span N] [--dry-run]

One pattern: each option is defined once, in a parent parser, and every
command takes the groups whose options its config honours:

  group      options                                              commands
  output     --output DIR                                         run, replay, recommend
  ingestion  --max-bad-rows, --window-spans, --drift-threshold,   run, replay, compile
             --stop-on-drift (the last three: split span)
  data       ingestion's, --split, --train-fraction               run, compile
  model      --config, --set                                      run, replay, compile
  gate       --value-floor, --min-improvement, --confidence,      run, replay, compile
             --training-noise
  metadata   --metadata-uri                                       run, replay, recommend
  runtime    metadata's, --beam-workers                           run, replay

An option is left out where it could not apply, and the command's help says
why: replay's split is always span; a compiled pipeline has its orchestrator's
ML Metadata and Beam (Dataflow); recommend serves a trained model; submit runs
the config compiled into the spec. One function, config_from_args, turns any
command's arguments into its PipelineConfig.

A run records the config it ran with: report.json's pipeline_config (the job's)
and ML Metadata (each run's, on its pipeline_run context: pipeline.local_runner).
`recommend` reads the config of the run that pushed the model it serves, else
report.json's; an output from before they were recorded gets the defaults, with
a note when they matter (the length of the user's history read from the data).

Every command is quiet: TensorFlow, absl, Beam and TFX logs and third-party
warnings go to a log file (run: <output>/run.log); --verbose shows them too.
A user error is one line, `error: ...`, exit code 2.
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
from typing import List, Optional, Tuple

from app import lock, report
from app.logs import log_file, quiet_logs
from components.serving_versions import served_versions
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


# PipelineConfig fields set by the option of the same name, where a command takes it (its parent parsers).
_CONFIG_OPTIONS = ("split", "train_fraction", "max_bad_rows", "window_spans", "stop_on_drift", "value_floor",
                   "min_improvement", "confidence", "training_noise", "beam_workers", "metadata_uri")


def config_from_args(args: argparse.Namespace, continuous: bool = False, **changes) -> PipelineConfig:
    """The PipelineConfig of any command's arguments, validated before anything runs.

    The named --config with every config option the command takes (its parent
    parsers': _CONFIG_OPTIONS, --drift-threshold, --output as the output
    directory, --data as the data path; without --data, run downloads --dataset),
    then `changes` (what the command itself decides: compile's --root as the
    output directory and its cloud settings, replay's span split), --variant's
    use_timestamps, `continuous` training's warm start (ModelConfig.continuous),
    and last --set, which overrides everything before it.
    """
    values = {name: getattr(args, name) for name in _CONFIG_OPTIONS if hasattr(args, name)}
    if hasattr(args, "drift_threshold"):
        values["drift_thresholds"] = drift_thresholds(args.drift_threshold)
    if hasattr(args, "output"):
        values["output_dir"] = args.output
    data_path = args.data
    if data_path is None:  # run: the --dataset archive, downloaded once and verified
        from movielens import download

        data_path = download.fetch(args.dataset)
    config = named_config(args.config, **{**values, "data_path": data_path, **changes})
    if getattr(args, "variant", None) is not None:
        config = config.with_model(use_timestamps=VARIANTS[args.variant])
    if continuous:  # each run starts from the deployed model
        config = config.replace(model=config.model.continuous())
    overrides = model_overrides(args.set or [])
    return config.with_model(**overrides) if overrides else config


def cmd_run(args) -> int:
    started = time.time()

    def progress(line: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {line}", flush=True)

    config = config_from_args(args)  # validated before anything runs
    # The output's lock first: a second run is refused at once, before the heavy imports
    # and before anything under the output (the log) is written.
    with lock.exclusive(args.output):
        log_path = log_file(args.output, "run")
        print(f"output: {os.path.abspath(args.output)} (log: {log_path}; metadata: {config.metadata_location})", flush=True)
        with quiet_logs(log_path, args.verbose):
            # TensorFlow, Beam and TFX print while importing: import them here.
            from app import report_html
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


def cmd_replay(args) -> int:
    started = time.time()

    def progress(line: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {line}", flush=True)

    # Validated before anything runs; data_path is set once the spans exist.
    config = config_from_args(args, continuous=not args.cold_start, split=SPAN_SPLIT)
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


def pushed_versions(serving_dir: str) -> List[tuple]:
    """[(version directory, problem or None)], newest first (components.serving_versions); a UserError when
    nothing was pushed."""
    versions = served_versions(serving_dir)
    if not versions:
        raise UserError(f"no pushed model in {serving_dir}: run `movielens-tfx run` first (only blessed models are pushed)")
    return versions


def load_served_model(serving_dir: str) -> tuple:
    """(version directory, loaded SavedModel, [skipped version: why]): the newest version that is
    complete and loads, falling back version by version."""
    import tensorflow as tf

    skipped = []
    for path, problem in pushed_versions(serving_dir):
        if problem is None:
            try:
                model = tf.saved_model.load(path)
                model.signatures["serving_default"]  # noqa: B018 - raises KeyError without it
                return path, model, skipped
            except Exception as error:  # noqa: BLE001 - a corrupted version: fall back to the next, say why
                problem = f"cannot be loaded: {str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__}"
        skipped.append(f"{os.path.basename(path)} ({problem})")
    raise UserError(f"no complete model in {serving_dir}: {', '.join(skipped)}")


def output_config(output_dir: str, metadata_uri: Optional[str] = None) -> Tuple[PipelineConfig, bool]:
    """(the config of the job that wrote `output_dir`, True) as its report.json records it; (the defaults,
    False) for an output without one (replay's, or one written before the config was recorded). Its
    output directory is `output_dir` (wherever the run was started from); --metadata-uri, when given,
    names the ML Metadata store instead of the recorded one."""
    config = _from_record(report.recorded_config(output_dir))
    found = config is not None
    config = (config or PipelineConfig(data_path="")).replace(output_dir=output_dir)
    return (config.replace(metadata_uri=metadata_uri) if metadata_uri is not None else config), found


def _from_record(recorded: Optional[dict]) -> Optional[PipelineConfig]:
    """The PipelineConfig of a recorded PipelineConfig.to_dict; None for none, or one this version cannot read."""
    try:
        return PipelineConfig.from_dict(recorded) if recorded is not None else None
    except (ConfigError, TypeError, ValueError):
        return None


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


def index_top_k(model, model_dir: str, request: dict, rated: set, k: int) -> tuple:
    """([score], [movie id], [title], the index's description): the top k of one request from an approximate
    index (retrieval.index) over the version's embeddings file, queried with its query_embedding signature;
    the user's rated movies never returned, as serving_default's exclusion."""
    import tensorflow as tf

    from retrieval import embeddings, index
    from retrieval.embeddings import QUERY_OUTPUT, QUERY_SIGNATURE

    if QUERY_SIGNATURE not in model.signatures or not tf.io.gfile.exists(embeddings.candidates_path(model_dir)):
        raise UserError(f"--index: {model_dir} has no {QUERY_SIGNATURE} signature or no "
                        f"{os.path.join(embeddings.EMBEDDINGS_DIR, embeddings.CANDIDATES_FILE)} (exported before "
                        "them): run the pipeline again, or ask without --index")
    query = model.signatures[QUERY_SIGNATURE](**request)[QUERY_OUTPUT].numpy()
    catalog = embeddings.read(model_dir)
    positions = {movie: i for i, movie in enumerate(catalog.ids)}
    excluded = [[positions[movie] for movie in rated if movie in positions]]
    ann = index.CandidateIndex(catalog.embeddings)
    scores, found = ann.search(query, k, excluded)[0]
    return scores.tolist(), [catalog.ids[p] for p in found], [catalog.titles[p] for p in found], ann.description


def cmd_recommend(args) -> int:
    # The arguments first: each is one line, before anything is loaded.
    if args.k < 1:
        raise UserError(f"-k {args.k}: must be at least 1")
    timestamp = check_int64(int(args.timestamp if args.timestamp is not None else time.time()), "--timestamp")
    history = parse_history(args.history) if args.history is not None else None
    config, recorded = output_config(args.output, args.metadata_uri)
    pushed_versions(config.model_serving_dir)  # no pushed model: said before anything is loaded
    if history is None and config.metadata_mysql is None and not os.path.exists(config.metadata_path):
        raise UserError(f"no ingested data in {args.output} ({config.metadata_path} does not exist): "
                        "give the user's movies with --history ID[:TIME],... ('' for none)")
    config_note = None
    with quiet_logs(log_file(args.output, "recommend", create=False), args.verbose):
        import tensorflow as tf

        model_dir, model, skipped = load_served_model(config.model_serving_dir)
        serve = model.signatures["serving_default"]
        catalog = int(model.movie_ids.shape[0]) if hasattr(model, "movie_ids") else None
        # The Trainer's export_top_k, as the served model itself has it.
        top = serve.structured_outputs["scores"].shape[1]
        if catalog is not None and args.k > catalog:
            raise UserError(f"-k {args.k}: the catalog of {model_dir} has {catalog} movies")
        if top is not None and args.k > top and not args.index:
            raise UserError(f"-k {args.k}: {model_dir} returns at most its top {top} movies "
                            f"(the Trainer's export_top_k): ask for -k {top} or fewer")
        if history is not None:
            source = "--history"
        else:  # the user's latest history in the data the pipeline ingested, as long as the run stored it
            from app.results import pushing_run_config, user_history
            from pipeline.local_runner import check_metadata

            check_metadata(config)  # a shared store: one line if it cannot be reached
            pushing = pushing_run_config(config, model_dir)  # the config of the run that pushed the model
            if pushing is not None:
                config = pushing.replace(output_dir=config.output_dir, metadata_uri=config.metadata_uri)
            elif not recorded:
                config_note = (f"{args.output} records no pipeline config (report.json, ML Metadata: it predates "
                               f"them): the user's history is read up to the default length, "
                               f"{config.ingested_history_length} movies")
            history = user_history(config, str(args.user), before=timestamp)
            source = "the data"
        # A rating time not given: taken as just before the request.
        history = [(movie, when if when is not None else max(timestamp - 1, INT64_MIN)) for movie, when in history]

        request = dict(
            user_id=tf.constant([str(args.user)]), timestamp=tf.constant([timestamp], tf.int64),
            history=tf.constant([[movie for movie, _ in history]], tf.string, shape=[1, len(history)]),
            history_timestamps=tf.constant([[when for _, when in history]], tf.int64, shape=[1, len(history)]),
        )
        rated = {movie for movie, _ in history}
        if args.index:
            scores, ids, titles, index_name = index_top_k(model, model_dir, request, rated, args.k)
        else:
            out = serve(**request)
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
    if config_note:
        print(f"note: {config_note}", file=sys.stderr)
    searched = "the catalog" if args.index else f"the model's top {len(scores)}"
    note = (f"only {len(items)} of the {args.k} asked: every other movie of {searched} is in the user's history "
            f"({len(history)} movies)") if len(items) < args.k else None
    if args.json:
        answer = {"user_id": str(args.user), "timestamp": timestamp, "model": model_dir,
                  "history": [movie for movie, _ in history], "recommendations": items}
        if args.index:
            answer["index"] = index_name
        if skipped:
            answer["skipped_versions"] = skipped
        if note:
            answer["note"] = note
        print(json.dumps(answer, allow_nan=False))
    else:
        print(printable(f"top {len(items)} for user {args.user} at timestamp {timestamp} (model {model_dir}"
                        f"{', ' + index_name if args.index else ''}); "
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
    if args.replicas is not None and not (args.vertex_training and args.project):
        raise UserError(f"--replicas {args.replicas} needs --vertex-training and --project (the replicas are "
                        "a Vertex AI Training job's machines)")
    cloud = None
    if args.project:
        cloud = CloudConfig(
            project=args.project, region=args.region, image=args.image,
            dataflow_machine_type=args.dataflow_machine_type, vertex_training=args.vertex_training,
            **({"training_replicas": args.replicas} if args.replicas is not None else {}),
        )
    with quiet_logs(log_file(os.path.dirname(os.path.abspath(args.output)), "compile"), args.verbose):
        from pipeline.kubeflow_runner import compile_pipeline

        # --root is the runs' output directory (--output is the spec); continuous training for --split span.
        config = config_from_args(args, continuous=args.split == SPAN_SPLIT, output_dir=args.root, cloud=cloud)
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


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="movielens-tfx", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    # The option groups (see the module docstring), each defined once; config_from_args reads them.
    # Every command takes --verbose.
    common = _parent()
    common.add_argument("--verbose", action="store_true",
                        help="show TensorFlow / Beam / TFX logs and warnings on the terminal (they always go to the log file)")

    output = _parent()
    output.add_argument("--output", default=_default("output_dir"),
                        help="the output directory: pipeline root, ML Metadata (SQLite), serving dir, report or timeline, logs")

    # Ingestion: what ExampleGen reads and keeps, and the continuous-training data (--split span).
    ingestion = _parent()
    ingestion.add_argument("--max-bad-rows", type=int, default=_default("max_bad_rows"),
                           help="quarantine up to N bad rows instead of failing")
    ingestion.add_argument("--window-spans", type=int, default=_default("window_spans"),
                           help="split span: the spans before a span that its run trains on (a compiled spec takes the "
                                "span itself as a parameter: submit --span)")
    ingestion.add_argument("--drift-threshold", action="append", metavar="FEATURE=VALUE",
                           help="split span: Jensen-Shannon divergence of FEATURE between a span and the previous one "
                                f"that is drift (default: {', '.join(f'{k}={v}' for k, v in _default('drift_thresholds'))}); "
                                "repeat per feature")
    ingestion.add_argument("--stop-on-drift", action="store_true",
                           help="split span: fail a span's run on drift instead of reporting it")
    # The split, for the commands that choose it (replay's is always span).
    data = argparse.ArgumentParser(add_help=False, parents=[ingestion])
    data.add_argument("--split", default=None, choices=SPLIT_METHODS,
                      help="default: the config's (tutorial: random; default: temporal); span: a span layout "
                           "(span-0/, span-1/, ...), the latest span gated on the ones before it")
    data.add_argument("--train-fraction", type=float, default=_default("train_fraction"),
                      help="split random or temporal: the share of the ratings trained on")

    # The model: a named config and hyperparameters over it (trainer.config.ModelConfig).
    model = _parent()
    model.add_argument("--config", default="default", choices=sorted(NAMED_CONFIGS))
    model.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a model hyperparameter, e.g. epochs=5 (repeat per setting)")

    # The gate's options (pipeline.evaluation), the same for every command that gates.
    gate = _parent()
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

    # Where a local run keeps ML Metadata and how it runs Beam.
    metadata = _parent()
    metadata.add_argument("--metadata-uri", default=_default("metadata_uri"),
                          help="a shared ML Metadata store on MySQL / MariaDB: mysql://user[:password]@host[:port]/database "
                          f"(password better in ${METADATA_PASSWORD_ENV}); default: SQLite in --output (recommend: the "
                          "store the run recorded in report.json, else SQLite in --output)")
    runtime = argparse.ArgumentParser(add_help=False, parents=[metadata])
    runtime.add_argument("--beam-workers", type=int, default=_default("beam_workers"),
                         help="Beam worker processes for ExampleGen, StatisticsGen, Transform, Evaluator (1: in-process)")

    run = sub.add_parser("run", parents=[common, output, data, model, gate, runtime],
                         help="train, evaluate and gate the baseline and the timestamp model")
    run.add_argument("--data", help="MovieLens directory or .zip (ml-100k, ml-1m or CSV layout), or a span layout "
                     "(--split span); default: download --dataset into ~/.cache/movielens-tfx, verified")
    run.add_argument("--dataset", default="ml-100k", help="archive to download when --data is not given")
    run.add_argument("--variants", default=",".join(VARIANTS), help="which models to train, in order")
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("replay", parents=[common, output, ingestion, model, gate, runtime],
                         help="continuous training: run the pipeline span by span (weekly), warm-started, gated on the next span",
                         description="Continuous training, span by span. The split is always span (no --split, "
                                     "--train-fraction): each span's run trains on the spans before it.")
    rep.add_argument("--data", required=True, help="a MovieLens directory or .zip (cut into spans under --output/spans), "
                     "or a span layout (span-0/, span-1/, ...)")
    rep.add_argument("--span-days", type=int, default=7, help="days per span when cutting flat data")
    rep.add_argument("--from-span", type=int, default=None, help="first span to gate on (default: the second span)")
    rep.add_argument("--to-span", type=int, default=None, help="last span (default: the last present)")
    rep.add_argument("--variant", default="timestamp", choices=tuple(VARIANTS), help="the model deployed")
    rep.add_argument("--cold-start", action="store_true", help="train every span from scratch (no warm start)")
    rep.set_defaults(func=cmd_replay)

    rec = sub.add_parser("recommend", parents=[common, output, metadata],
                         help="top-k movies for a user from the latest pushed model",
                         description="Top-k movies for a user from the latest pushed model, with the config of the run "
                                     "that pushed it (ML Metadata, else report.json). No data, model, gate or Beam "
                                     "options: the served model and the recorded config have them.")
    rec.add_argument("--user", required=True)
    rec.add_argument("--timestamp", type=int, default=None, help="seconds since the epoch (default: now)")
    rec.add_argument("--history", default=None, metavar="ID[:TIME],...",
                     help="the user's movies, most recent first (optionally with their rating time); "
                          "default: the user's latest ratings in the ingested data, as many as the run stored; '' for none")
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--index", action="store_true",
                     help="answer from an approximate index (faiss IVF) over the version's embeddings file, queried "
                          "with its query_embedding signature, instead of serving_default's exact top-K; -k up to "
                          "the catalog")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=cmd_recommend)

    comp = sub.add_parser("compile", parents=[common, data, model, gate],
                          help="write the pipeline spec for Vertex AI / Kubeflow Pipelines (offline)",
                          description="Writes the pipeline spec for Vertex AI / Kubeflow Pipelines, offline. No "
                                      "--metadata-uri: a compiled pipeline uses its orchestrator's ML Metadata. No "
                                      "--beam-workers: there Beam runs on Dataflow (--project, --dataflow-machine-type) "
                                      "or in each component's container.")
    comp.add_argument("--target", choices=("vertex", "kubeflow"), default="vertex")
    comp.add_argument("--output", default="pipeline.json", help="the spec file to write")
    comp.add_argument("--image", required=True, help="pipeline image built from the Dockerfile")
    comp.add_argument("--data", required=True, help="MovieLens directory or .zip as the pipeline sees it (gs://...)")
    comp.add_argument("--root", required=True, help="where runs write: gs://bucket/movielens-tfx (pipeline root, serving)")
    comp.add_argument("--project", help="Google Cloud project: Beam stages on Dataflow")
    comp.add_argument("--region", default=_default("region", CloudConfig))
    comp.add_argument("--dataflow-machine-type", default=_default("dataflow_machine_type", CloudConfig))
    comp.add_argument("--vertex-training", action="store_true", help="run the Trainer as a Vertex AI Training job")
    comp.add_argument("--replicas", type=int, default=None, metavar="N",
                      help="with --vertex-training: train on N machines (a chief and N - 1 workers, "
                           "MultiWorkerMirroredStrategy; default 1)")
    comp.set_defaults(func=cmd_compile)

    submit = sub.add_parser("submit", parents=[common], help="submit a compiled spec to Vertex AI Pipelines",
                            description="Submits a compiled spec to Vertex AI Pipelines, once per variant: the "
                                        "config is the spec's (compile's options).")
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
