"""The ``nnframe`` command line. The only module that prints."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import itertools
import json
import os
import re
import sys
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError, NNFrameError

DEFAULTS = {"hidden": "256,128", "activation": "relu", "output_activation": "softmax",
            "cost": "cross_entropy", "epochs": 20, "batch_size": 64, "learning_rate": 0.1,
            "seed": 0, "dtype": "float32", "subset": 0, "out": "runs/mnist", "optimizer": "sgd"}

# Named sets of train settings (--recipe NAME), each built only from nnframe's own pieces.
# A recipe fills only the options not typed; options are grouped so that typing one member
# of a group (--optimizer adam) keeps the recipe's other members (its momentum) out too.
RECIPES: dict[str, list[dict]] = {
    # The default: what `nnframe train` does with no options (98.1-98.3% in about 15 s).
    "fast": [],
    # The most accurate plain MLP measured here: wide, dropout, Nesterov momentum, a cosine
    # schedule with one warmup epoch: 98.81/98.75/98.76% for seeds 0/1/2, about 7 minutes on
    # 2 cores (docs/guide/cli.md, "Recipes").
    "accurate": [
        {"hidden": "1024,1024"}, {"dropout": "0.2,0.5"}, {"batch_size": 128},
        {"learning_rate": 0.05}, {"epochs": 80},
        {"optimizer": "sgd", "momentum": 0.9,
         "optimizer_option": [("nesterov", True, "nesterov=true")]},
        {"schedule": "cosine", "schedule_option": [("warmup", 1, "warmup=1")]},
    ],
}
# Within a group, the first key names the object (--optimizer, --schedule): typing it drops
# the recipe's whole group; otherwise each hyperparameter typed replaces only the recipe's.
_HYPERPARAMETER_LISTS = ("optimizer_option", "schedule_option")


def _apply_recipe(args, given: set[str]) -> None:
    """Fill the options of ``args.recipe`` that were not typed."""
    for group in RECIPES[args.recipe]:
        head = next(iter(group))
        if "--" + head.replace("_", "-") in given:
            continue
        for key, value in group.items():
            if key in _HYPERPARAMETER_LISTS:
                typed = getattr(args, key) or []
                names = {name for name, _, _ in typed} | {
                    name for name in SHORTCUTS if getattr(args, name, None) is not None}
                setattr(args, key, [*(v for v in value if v[0] not in names), *typed])
            elif "--" + key.replace("_", "-") not in given:
                setattr(args, key, value)


# The optimizer hyperparameters with options of their own: --momentum, --weight-decay.
SHORTCUTS = {"momentum": "--momentum", "weight_decay": "--weight-decay"}


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # No prefixes: `--data my.npz` must not silently mean `--data-dir my.npz`.
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    quiet = False  # a rank other than 0 of `mpiexec ... --distributed`: rank 0 says it
    typed: Sequence[str] = ()  # the command line, for the suggestions

    def error(self, message: str) -> None:  # one readable line, exit 2, no usage dump
        if self.quiet:
            self.exit(2)
        hint = self._suggestion(message) or f" (see `{self.prog} --help`)"
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")

    def _suggestion(self, message: str) -> str:
        """``; did you mean --x?`` for a mistyped option, from every command's options."""
        if not message.startswith("unrecognized arguments: "):
            return ""
        typed = next((word.split("=", 1)[0] for word in message.split()[2:]
                      if word.startswith("--")), None)
        if typed is None:
            return ""
        commands = {}
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands = action.choices
        command = next((word for word in self.typed if word in commands), None)
        known = set(commands[command]._option_string_actions if command
                    else self._option_string_actions)
        if typed in known:  # given twice, or a value that looks like an option
            return ""
        elsewhere = sorted(name for name, parser in commands.items()
                           if typed in parser._option_string_actions)
        if command and elsewhere:
            return (f"; {command} has no {typed} ({', '.join(elsewhere)} has it; see "
                    f"`{self.prog} {command} --help`)")
        close = difflib.get_close_matches(typed, sorted(known), n=1, cutoff=0.75)
        if not close:
            return ""
        return f"; did you mean {close[0]}? (see `{self.prog} --help`)"


class _Help(argparse.HelpFormatter):
    """Each option's default once, at the end of its line; none for flags or options
    without one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default == argparse.SUPPRESS
                or "default" in text
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def _err(message: str) -> None:
    print(f"nnframe: {message}", file=sys.stderr)


# -- helpers -------------------------------------------------------------------------------
def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"{option} takes comma-separated sizes such as 256,128, got "
                         f"{text!r}.") from None
    if any(v < 1 for v in values):
        raise InputError(f"{option} sizes must be >= 1, got {text!r}.")
    return values


MAX_LAYER_SIZE = 100_000
MAX_PARAMETERS = 200_000_000  # weights and biases: 0.8 GB each copy in float32


def _check_network_size(sizes: list[int], dtype: str) -> None:
    """Refuse a network too large to build before NumPy tries (and fails) to allocate it."""
    for size in sizes[1:-1]:
        if size > MAX_LAYER_SIZE:
            raise InputError(f"--hidden size {size:,} is larger than nnframe trains "
                             f"({MAX_LAYER_SIZE:,} per layer); use sizes such as 256,128.")
    parameters = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    if parameters > MAX_PARAMETERS:
        gib = parameters * np.dtype(dtype).itemsize / 2**30
        raise InputError(f"--hidden {','.join(map(str, sizes[1:-1]))} makes {parameters:,} "
                         f"weights ({gib:.1f} GiB per copy), more than nnframe trains "
                         f"({MAX_PARAMETERS:,}); use fewer or smaller hidden layers.")


def _check_numbers(args) -> None:
    """Refuse a nonsense number before anything is built, loaded or written."""
    import math

    checks = [("--epochs", args.epochs >= 1, "an integer >= 1"),
              ("--batch-size", args.batch_size >= 1, "an integer >= 1"),
              ("--learning-rate", math.isfinite(args.learning_rate) and args.learning_rate > 0,
               "a positive finite number such as 0.1"),
              ("--seed", args.seed >= 0, "an integer >= 0"),
              ("--subset", args.subset >= 0, "an integer >= 0 (0 means all images)")]
    for option, ok, what in checks:
        if not ok:
            value = getattr(args, option[2:].replace("-", "_"))
            raise InputError(f"{option} must be {what}, got {value}.")


def _option_value(text: str) -> bool | int | float | str:
    """A command-line hyperparameter value as a plain Python value: true/false, yes/no or
    on/off (any case) as a bool, as nnframe's switches read them, then an int, then a float
    (``1e-4``), else the string itself."""
    if text.lower() in ("true", "yes", "on", "false", "no", "off"):
        return text.lower() in ("true", "yes", "on")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _optimizer_option(text: str) -> tuple[str, bool | int | float | str, str]:
    """argparse type of --optimizer-option: ``NAME=VALUE`` as ``(name, plain value, text)``."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE, such as beta2=0.99 or nesterov=true, got {text!r}")
    return name, _option_value(value), text


def _optimizer_settings(args) -> dict[str, bool | int | float | str]:
    """The hyperparameters given on the command line, each at most once."""
    given: dict[str, tuple[str, object]] = {}  # name -> (where it was given, value)
    for name, option in SHORTCUTS.items():
        value = getattr(args, name)
        if value is not None:
            given[name] = (f"{option} {value:g}", value)
    for name, value, text in args.optimizer_option or []:
        shown = f"--optimizer-option {text}"
        if name in given:
            raise InputError(f"the hyperparameter {name} is given twice, by {given[name][0]} "
                             f"and by {shown}; give it once.")
        given[name] = (shown, value)
    return {name: value for name, (_, value) in given.items()}


def _build_optimizer(args):
    """The optimizer named by --optimizer with the hyperparameters given, checked as
    `nnframe.get_optimizer` checks them."""
    from ._text import brief
    from .errors import PluginRuntimeError
    from .registry import get_optimizer, get_registry

    settings = _optimizer_settings(args)
    try:
        return get_optimizer(args.optimizer, **settings)
    except NNFrameError:
        raise
    except Exception as exc:  # a plugin's __init__ that fails its own way: still one line
        provider = get_registry().lookup("optimizer", args.optimizer).provider
        raise PluginRuntimeError(
            f"the optimizer {brief(args.optimizer)} ({provider.distribution} "
            f"{provider.version}) raised "
            f"{type(exc).__name__} when created with {brief(settings, 120)}: "
            f"{brief(str(exc), 200)}.") from None


def _describe(optimizer) -> str:
    settings = ", ".join(f"{key}={value!r}" for key, value in optimizer.hyperparameters.items())
    return f"{optimizer.name}({settings})"


def _load_data(args, *, quiet_notice: bool = False):
    from .datasets import MNISTSampleWarning, load_mnist, load_sample

    if getattr(args, "data", None):
        if getattr(args, "sample", False) or args.data_dir is not None:
            if getattr(args, "resume", None) and "--data" not in getattr(args, "given", ()):
                raise InputError(f"{args.resume} was trained on --data {args.data}, not on "
                                 "MNIST; resume it without --data-dir and --sample (or with "
                                 "--data FILE if the file has moved).")
            raise InputError("--data reads your own file; --data-dir and --sample are for "
                             "MNIST: give one of them.")
        from .userdata import load_data_file

        return load_data_file(args.data)
    if getattr(args, "sample", False):
        return load_sample()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MNISTSampleWarning)
        # The sample stands in only for the default location: a directory the user named
        # must hold MNIST (or receive it), never be silently replaced by 5,000 images.
        data = load_mnist(args.data_dir, download_missing=not args.no_download,
                          fallback=args.data_dir is None, progress=sys.stderr.isatty())
    for w in caught:
        if issubclass(w.category, MNISTSampleWarning) and not quiet_notice:
            _err(f"note: {w.message}")
    return data


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR", help="where the MNIST files are; missing files "
                   "are downloaded there, and without them the command fails (default: "
                   "$NNFRAME_DATA_DIR, else the per-user cache, where the embedded sample "
                   "stands in if MNIST cannot be had)")
    p.add_argument("--no-download", action="store_true",
                   help="never download; use local files (or, in the default location, the "
                   "embedded sample)")
    p.add_argument("--sample", action="store_true",
                   help="use the 5,000-image MNIST sample that ships inside nnframe")
    p.add_argument("--data", metavar="FILE",
                   help="your own data instead of MNIST: FILE.npz (x_train, y_train, optional "
                   "x_test, y_test), FILE.csv (label in the first column, a header row "
                   "detected) or X.npy,Y.npy")


# -- commands ------------------------------------------------------------------------------
CHECKPOINT = "checkpoint.pkl"  # in --out, rewritten atomically after every epoch
BEST = "best.pkl"  # in --out with --early-stopping: the best epoch so far
# What `nnframe train` records in a checkpoint's metadata to resume it.
TRAIN_KEY = "nnframe_train"
SAVED_SETTINGS = ("hidden", "activation", "output_activation", "cost", "epochs", "batch_size",
                  "learning_rate", "seed", "dtype", "subset", "optimizer", "dropout",
                  "schedule", "validation_split", "early_stopping", "out", "sample",
                  "data_dir", "no_download", "no_plot", "data", "scale")
# Options that --resume accepts: where the data and results are, and how far to train.
RESUME_OPTIONS = {"--resume", "--epochs", "--out", "--no-plot", "--data-dir", "--no-download",
                  "--sample", "--data", "--distributed", "--device"}


def _rates(text: str | None, hidden: int) -> list[float] | None:
    """--dropout as one rate per layer (input first, output 0), or None for no dropout."""
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 <= v < 1 for v in values):
        raise InputError(f"--dropout takes rates in [0, 1) such as 0.5 or 0.2,0.5, got "
                         f"{text!r}.")
    if len(values) == 1:  # every hidden layer
        return [0.0, *values * hidden, 0.0]
    if len(values) == 2:  # the input layer, then every hidden layer
        return [values[0], *[values[1]] * hidden, 0.0]
    if len(values) == hidden + 1:  # the input layer, then one per hidden layer
        return [*values, 0.0]
    raise InputError(f"--dropout has {len(values)} rates for {hidden} hidden layers; give "
                     "one rate for every hidden layer, INPUT,HIDDEN, or the input's then one "
                     f"per hidden layer ({hidden + 1} rates).")


def _build_schedule(args):
    """The schedule named by --schedule with its --schedule-option values, or None."""
    from .registry import get_schedule

    options: dict[str, object] = {}
    for name, value, text in args.schedule_option or []:
        if name in options:
            raise InputError(f"the schedule hyperparameter {name} is given twice (again by "
                             f"--schedule-option {text}); give it once.")
        options[name] = value
    if args.schedule is None:
        if options:
            raise InputError("--schedule-option needs --schedule NAME, such as --schedule "
                             "step --schedule-option step_size=5.")
        return None
    try:
        return get_schedule(args.schedule, **options)
    except NNFrameError:
        raise
    except Exception as exc:  # a plugin's __init__ failing its own way: still one line
        raise InputError(f"the schedule {args.schedule!r} cannot be created with "
                         f"{options}: {type(exc).__name__}: {str(exc)[:200]}.") from None


def _check_training_options(args) -> None:
    if args.validation_split is not None and not 0 < args.validation_split < 1:
        raise InputError(f"--validation-split must be a fraction between 0 and 1 such as 0.1, "
                         f"got {args.validation_split:g}.")
    if args.early_stopping is not None:
        if args.early_stopping < 0:
            raise InputError(f"--early-stopping takes a patience in epochs (>= 0), got "
                             f"{args.early_stopping}.")
        if not args.data:  # --data without a test part holds out 10% itself
            _check_held_out(args)


def _check_held_out(args) -> None:
    if args.early_stopping is not None and args.validation_split is None:
        raise InputError("--early-stopping needs --validation-split F (such as 0.1): it "
                         "watches the loss on images held out from the training set, "
                         "never the test set.")


def _resume_span(network, record: dict, total: int) -> None:
    """On --resume with another total of --epochs: say when nothing is left to train, and
    stretch the schedule over the new total (a cosine would otherwise restart from 0)."""
    from .schedules import ScheduleRun

    if total <= network.epochs:
        _err(f"note: the checkpoint has trained {network.epochs} epochs and --epochs is "
             f"{total}: nothing to train; give a larger total to train more.")
        return
    saved = record["settings"].get("epochs")
    run = network._schedule
    if run is not None and saved != total and run.first_epoch < total:
        network._schedule = ScheduleRun(run.schedule, run.first_epoch, total - run.first_epoch)
        _err(f"note: --epochs {total} instead of the saved {saved}: the schedule "
             f"{run.schedule.name!r} now spans epochs {run.first_epoch + 1}-{total} (the "
             "weights will differ from a run of that length from the start).")


def _resume(args, given: set[str]):
    """The checkpoint to continue, with its saved settings copied onto ``args``."""
    from .persistence import load

    extra = sorted(given - RESUME_OPTIONS)
    if extra:
        them = "it" if len(extra) == 1 else "them"
        raise InputError(f"--resume continues {args.resume} with its saved settings, so "
                         f"{', '.join(extra)} cannot be given; drop {them} (only --epochs, "
                         "--out, --no-plot, --distributed, --device and the data options may "
                         "change).")
    network = load(args.resume, device=args.device)
    record = network.metadata.get(TRAIN_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise InputError(f"{args.resume} holds no `nnframe train` settings, so it cannot be "
                         "resumed from the command line; continue it in Python with "
                         "nnframe.load(path).train(...).")
    for key, value in record["settings"].items():
        if key in SAVED_SETTINGS and ((f"--{key.replace('_', '-')}" not in given)
                                      or key not in ("epochs", "out", "no_plot", "data_dir",
                                                     "no_download", "sample", "data")):
            setattr(args, key, value)
    return network, record


def _fingerprint(x: np.ndarray, y: np.ndarray) -> dict:
    """What identifies the training images and their order (checked on --resume)."""
    return {"rows": len(y), "inputs_crc32": zlib.crc32(np.ascontiguousarray(x).data),
            "labels_crc32": zlib.crc32(np.ascontiguousarray(y, dtype=np.int64).data)}


def _held_out(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows to train on and rows held out for validation (each digit in its share, drawn
    with ``seed``); both keep the data's order."""
    from .datasets import stratified_subset

    count = min(max(1, round(fraction * len(y))), len(y) - 1)
    held = np.sort(stratified_subset(y, count, seed=seed + 1))
    keep = np.setdiff1d(np.arange(len(y)), held, assume_unique=True)
    return keep, held


def _classes(data) -> int:
    """The number of classes of user data: its largest label + 1, at least 2."""
    top = int(data.y_train.max())
    if data.y_test is not None:
        top = max(top, int(data.y_test.max()))
    return max(top + 1, 2)


def _cmd_train(args) -> int:
    ranks = getattr(args, "ranks", None)
    if ranks is None:
        return _train(args)
    from . import distributed

    stage = {"trained": False}
    try:
        return _train(args, ranks, stage)
    except BaseException as exc:
        # Before training, a rank that fails alone (a file missing on its node) joins the
        # agreement that starts training, so the others stop with its message instead of
        # waiting; training agrees on its faults itself; after it, rank 0 works alone.
        if stage["trained"] or distributed.agreed(exc):
            raise
        ranks.agree(exc)
        raise  # pragma: no cover - agree raises


def _train(args, ranks=None, stage=None) -> int:
    from .callbacks import EarlyStopping, ModelCheckpoint, ProgressBar
    from .network import NeuralNetwork

    given = getattr(args, "given", set())
    record = None
    if args.recipe != "fast" and args.resume:
        raise InputError("--recipe sets up a new run; --resume continues a checkpoint with "
                         "its saved settings: give one of them.")
    _apply_recipe(args, given)
    if args.resume:
        network, record = _resume(args, given)
        try:  # one line naming the package if a plugin is missing
            network._optimizer_run()
            network._schedule_run(None, 0)
        except NNFrameError as exc:  # the advice for Python callers, in command-line terms
            message = re.sub(r"pass (optimizer|schedule)= to train to start a new one",
                             "start a new run (without --resume)", str(exc))
            raise type(exc)(message) from None
        optimizer = schedule = None  # both continue with their saved state
    _check_numbers(args)
    _check_training_options(args)
    if args.scale != "none" and not args.data:
        raise InputError("--scale is for your own data (--data FILE); MNIST is already "
                         "scaled to [0, 1].")
    data = None
    if args.data:  # the network's shape comes from the data: read it first
        data = _load_data(args)
        classes = _classes(data)
    if not args.resume:
        hidden = _int_list(args.hidden, "--hidden") if args.hidden.strip() else []
        names = [a.strip() for a in args.activation.split(",") if a.strip()]
        if len(names) == 1:
            names = names * len(hidden)
        if len(names) != len(hidden):
            raise InputError(f"--activation has {len(names)} names for {len(hidden)} hidden "
                             "layers; give one name for all, or one per hidden layer.")
        sizes = ([data.x_train.shape[1], *hidden, classes] if data is not None
                 else [784, *hidden, 10])
        _check_network_size(sizes, args.dtype)
        dropout = _rates(args.dropout, len(hidden))
        extra = {"dropout": dropout} if dropout is not None else {}
        # Build first: an unknown activation or cost fails before any data is loaded.
        network = NeuralNetwork(len(sizes), sizes, [None, *names, args.output_activation],
                                args.cost, dtype=args.dtype, seed=args.seed,
                                device=args.device, **extra)
        optimizer = _build_optimizer(args)  # an unknown name or hyperparameter fails here too
        schedule = _build_schedule(args)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {str(out)!r} cannot be used as the output directory "
                         f"({exc.strerror or exc}); give a directory that exists or can be "
                         "created.") from None
    if data is None:
        data = _load_data(args)
    elif (data.x_train.shape[1], classes) != (network.num_nodes[0], network.num_nodes[-1]):
        raise InputError(f"{args.resume} takes {network.num_nodes[0]} inputs and "
                         f"{network.num_nodes[-1]} classes, but {args.data} has "
                         f"{data.x_train.shape[1]} and {classes}; give the --data it was "
                         "trained with.")
    x_train, y_train = data.x_train, data.y_train
    x_test, y_test = data.x_test, data.y_test
    if args.data and x_test is None and args.validation_split is None:
        args.validation_split = 0.1
        print(f"note: {args.data} has no test part, so 10% of it is held out to measure "
              "accuracy (--validation-split 0.1); give --validation-split F to choose.",
              flush=True)
    _check_held_out(args)
    subset = ""
    if args.subset and args.subset < len(y_train):
        from .datasets import stratified_subset

        rows = stratified_subset(y_train, args.subset, seed=args.seed)
        x_train, y_train = x_train[rows], y_train[rows]
        counts = np.bincount(y_train, minlength=network.num_nodes[-1])
        each = (f"{counts.min()}" if counts.min() == counts.max()
                else f"{counts.min()}-{counts.max()}")
        subset = f" (--subset: drawn at random with seed {args.seed}, {each} of each digit)"
    if args.validation_split is not None:
        keep, held = _held_out(y_train, args.validation_split, args.seed)
        validation = (x_train[held], y_train[held])
        x_train, y_train = x_train[keep], y_train[keep]
        what, each = ("samples", "class") if args.data else ("images", "digit")
        described = (f"{len(held):,} training {what} held out (--validation-split "
                     f"{args.validation_split:g}, each {each} in its share, seed {args.seed})")
        name = "validation"
    else:
        validation = (x_test, y_test)
        described = "the test set (no --validation-split)"
        name = "test"
    fingerprint = _fingerprint(x_train, y_train)
    if args.data:
        from .userdata import SCALE_KEY, apply_scale, fit_scale

        scale = fit_scale(args.scale, x_train)  # from the rows trained on only
        network.metadata[SCALE_KEY] = scale
        x_train = apply_scale(scale, x_train)
        validation = (apply_scale(scale, validation[0]), validation[1])
        if x_test is not None:
            x_test = apply_scale(scale, x_test)
    # Without a test part, the final accuracy is measured on the held-out rows.
    final_name = "test" if x_test is not None else "validation"
    if x_test is None:
        x_test, y_test = validation
    if record is not None and record.get("data") != fingerprint:
        raise InputError(f"{args.resume} was trained on other images than {data.source} "
                         "gives with its saved --subset and --validation-split; give the "
                         "--data-dir, --sample or --data it was trained with.")
    total = args.epochs
    if record is not None:
        _resume_span(network, record, total)
    settings = {k: getattr(args, k) for k in SAVED_SETTINGS}
    # Paths as absolute ones: a checkpoint resumes from any working directory.
    settings["out"] = str(Path(args.out).resolve())
    if args.data:
        settings["data"] = ",".join(str(Path(part).resolve()) for part in args.data.split(","))
    network.metadata[TRAIN_KEY] = {"settings": settings, "data": fingerprint}
    opt = optimizer if optimizer is not None else network.optimizer
    unit = "samples" if args.data else "images"
    tested = (f" and {len(x_test):,} test {unit}" if final_name == "test"
              else f" {unit} (no test part: accuracy is measured on the held-out rows)")
    print(f"{network}\noptimizer: {_describe(opt)}, learning rate "
          f"{args.learning_rate:g}, batch size {args.batch_size}\ndata: {data.source}, "
          f"{len(x_train):,} training{subset}{tested}", flush=True)
    if schedule is not None:  # started by this run
        print(f"schedule: {_describe(schedule)}, over epochs 1-{total}", flush=True)
    elif network.schedule is not None:  # continued
        run = network._schedule
        print(f"schedule: {_describe(run.schedule)}, over epochs "
              f"{run.first_epoch + 1}-{run.first_epoch + run.num_epochs}", flush=True)
    if args.data and args.scale != "none":
        print(f"input scaling: --scale {args.scale}, fitted on the training rows and stored "
              "with the model", flush=True)
    elif args.data and not args.resume:
        peak = float(np.abs(x_train).max())
        if peak >= 2:
            _err(f"note: the inputs reach {peak:g} and are not scaled; networks learn best "
                 "from inputs of about 0 to 1: --scale max (pixels 0-255 become 0-1) or "
                 "--scale standard.")
    if args.validation_split is not None:
        print(f"validation: {described}", flush=True)
    remaining = max(total - network.epochs, 0)
    if args.resume:
        print(f"resuming {args.resume} after epoch {network.epochs} of {total}", flush=True)
    if ranks is not None:
        if ranks.size > 1:
            print(f"distributed: {ranks.size} ranks, each batch of {args.batch_size} split "
                  "across them; rank 0 prints and writes", flush=True)
            if args.batch_size < ranks.size:
                _err(f"note: a batch of {args.batch_size} leaves {ranks.size - args.batch_size} "
                     f"of the {ranks.size} ranks without rows in every step; a --batch-size of "
                     f"at least {ranks.size} (or fewer ranks) uses them all.")
        else:
            print("distributed: 1 rank, so the same as without --distributed (start with "
                  "mpiexec -n N nnframe train --distributed ... to train on N)", flush=True)
    callbacks = [ProgressBar(initial_epoch=network.epochs, total_epochs=total,
                             validation_name="val" if name == "validation" else "test")]
    if args.early_stopping is not None:
        stopper = EarlyStopping("val_loss", patience=args.early_stopping,
                                restore_best_weights=True)
        best = ModelCheckpoint(out / BEST, "val_loss", save_best_only=True)
        if args.resume:
            _continue_early_stopping(network, stopper, best, out / BEST)
        callbacks += [best, stopper]
    callbacks.append(ModelCheckpoint(out / CHECKPOINT))  # after the stop: a stopped run's
    model_path = out / "model.pkl"                        # checkpoint has its final weights
    network.train(args.batch_size, x_train, y_train, remaining, args.learning_rate,
                  optimizer=optimizer, schedule=schedule,
                  seed=None if args.resume else args.seed, validation_data=validation,
                  callbacks=callbacks, distributed=ranks is not None and ranks.comm)
    if ranks is not None:
        stage["trained"] = True
        if ranks.rank:  # the files and the report are rank 0's
            return 0
    if args.early_stopping is not None and stopper.stopped_epoch:
        network.metadata[TRAIN_KEY]["settings"]["epochs"] = total = network.epochs
        network.save(out / CHECKPOINT)  # finished: resuming it trains nothing more
        epochs = "epoch" if args.early_stopping == 1 else "epochs"
        print(f"early stopping: val_loss did not improve for {args.early_stopping} {epochs}; "
              f"the weights of epoch {int(np.argmin(network.history['val_loss'])) + 1} "
              "are restored", flush=True)
    network.save(model_path)
    accuracy = network.check_accuracy(None, x_test, y_test)
    from . import _validation

    targets, _ = _validation.labels(y_test, len(y_test), network.num_nodes[-1], network.dtype)
    test_loss = float(network._loss.loss(network._infer(x_test.astype(network.dtype)),
                                         network._backend.asarray(targets)))
    from ._files import atomic_write

    history_path = out / "history.json"
    settings = {k: getattr(args, k) for k in (*DEFAULTS, "dropout", "schedule",
                                              "validation_split", "early_stopping")}
    settings["epochs"] = total
    settings["optimizer"] = network.optimizer.name  # as registered, whatever the case typed
    settings["optimizer_hyperparameters"] = network.optimizer.hyperparameters
    if network.schedule is not None:
        settings["schedule"] = network.schedule.name
        settings["schedule_hyperparameters"] = network.schedule.hyperparameters
    settings["data"], settings["scale"] = args.data, args.scale
    record = {"network": repr(network), "data": data.source,
              f"{final_name}_accuracy": accuracy, f"{final_name}_loss": test_loss,
              "validation": described, "settings": settings, **network.history}
    atomic_write(history_path, json.dumps(record, indent=2).encode(), error=NNFrameError)
    written = [f"model:      {model_path}", f"checkpoint: {out / CHECKPOINT}",
               f"history:    {history_path}"]
    if not args.no_plot:
        try:
            from .plotting import plot_history

            plot = plot_history(network.history, out / "history.png", title=repr(network),
                                validation_label=name)
            written.append(f"plot:       {plot}")
        except NNFrameError as exc:
            _err(f"note: no plot written: {exc}")
    if final_name == "test":
        print(f"test accuracy: {accuracy:.2f}% on {len(y_test):,} test {unit}")
    else:
        print(f"validation accuracy: {accuracy:.2f}% on the {len(y_test):,} held-out samples "
              f"({args.data} has no test part; this is not a test accuracy)")
    print("\n".join(written))
    return 0


def _continue_early_stopping(network, stopper, best, best_path: Path) -> None:
    """Give a resumed run's EarlyStopping and best-model checkpoint what the interrupted run
    had seen: its validation losses so far and the weights of its best epoch."""
    from .persistence import load

    values = network.history.get("val_loss", [])
    weights = None
    if best_path.exists() and values:
        saved = load(best_path, device=network._backend)
        if saved.epochs == int(np.argmin(values)) + 1:  # Keras' first best, as replayed
            weights = [p.copy() for p in saved.parameters()]
    stopper._carry_over(values, weights)
    best._carry_over(values)


def _load_model(path: str, trusted: bool):
    from .persistence import load

    return load(path, trusted=trusted)


def _cmd_evaluate(args) -> int:
    network = _load_model(args.model, args.trusted)
    inputs, classes = network.num_nodes[0], network.num_nodes[-1]
    if args.data:
        from .userdata import SCALE_KEY, apply_scale

        data = _load_data(args)
        if data.x_test is not None:
            x, truth, what = data.x_test, data.y_test, "test samples"
        else:
            x, truth, what = data.x_train, data.y_train, "samples (the file has no test part)"
        if x.shape[1] != inputs:
            raise InputError(f"{args.model} takes {inputs} inputs but {args.data} has "
                             f"{x.shape[1]} values per sample; give data shaped as the model "
                             "was trained on.")
        if truth.max() >= classes:
            raise InputError(f"{args.data} has the label {int(truth.max())}, but {args.model} "
                             f"has {classes} classes (0 to {classes - 1}).")
        x = apply_scale(network.metadata.get(SCALE_KEY), x)
    else:
        if inputs != 784 or classes != 10:
            raise InputError(f"{args.model} has {inputs} inputs and {classes} outputs; MNIST "
                             "needs 784 and 10 (give --data FILE for a model trained on your "
                             "own data).")
        data = _load_data(args)
        x, truth, what = data.x_test, data.y_test, "test images"
    predicted = network.predict_classes(x)
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    accuracy = 100.0 * np.trace(matrix) / len(truth)
    print(f"model: {args.model}\n{network}\ndata: {data.source}, {len(truth):,} {what}")
    print(f"accuracy: {accuracy:.2f}%\n\nper-class accuracy:")
    for digit in range(classes):
        total = matrix[digit].sum()
        share = 100.0 * matrix[digit, digit] / total if total else float("nan")
        print(f"  {digit}: {share:6.2f}%  ({matrix[digit, digit]}/{total})")
    print("\nconfusion matrix (rows: true digit, columns: predicted):")
    print("      " + "".join(f"{d:>6}" for d in range(classes)))
    for digit in range(classes):
        print(f"  {digit:>2}  " + "".join(f"{v:>6}" for v in matrix[digit]))
    return 0


IMAGE_LIMIT = 64 * 2**20  # bytes; far above any digit photo, far below a memory problem


def read_digit(path: str) -> np.ndarray:
    """A picture of one digit as the model's input: float32 (28, 28) in [0, 1], MNIST-style.

    The file is read whole through `nnframe._files.read_regular` (regular files only,
    at most ``IMAGE_LIMIT`` bytes), so a FIFO or ``/dev/zero`` is refused at once; then
    `nnframe.images.read_image` opens it (refusing decompression bombs before they are
    decoded) and `nnframe.images.to_mnist` finds the digit, scales it into a 20x20 box
    and centres it in 28x28 as MNIST's digits are.
    """
    from ._files import read_regular
    from .images import read_image, to_mnist

    data = read_regular(path, limit=IMAGE_LIMIT, what="PNG or JPEG image file", error=InputError)
    image = read_image(data, str(path))
    try:
        return to_mnist(image)
    except InputError as exc:  # "no digit was found in the image": say which image
        raise InputError(f"{str(path)!r}: {exc}") from None


def _mnist_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _score_name(network) -> str:
    name = network.activation_function[-1]
    return "softmax probability" if name == "softmax" else f"{name} output"


def _predict_rows(args) -> int:
    """One predicted class per input row of ``--data``, in order, on stdout."""
    from .userdata import SCALE_KEY, apply_scale, load_inputs

    network = _load_model(args.model, args.trusted)
    rows = load_inputs(args.data, network.num_nodes[0])
    rows = apply_scale(network.metadata.get(SCALE_KEY), rows)
    out = network._infer(rows.astype(network.dtype))
    order = np.argsort(-out, axis=1, kind="stable")
    lines = []
    for i, row in enumerate(order):
        if args.top > 1:
            lines.append(" ".join(f"{int(c)}:{float(out[i, c]):.3f}" for c in row[:args.top]))
        else:
            lines.append(str(int(row[0])))
    print("\n".join(lines), flush=True)
    return 0


def _cmd_predict(args) -> int:
    from ._files import atomic_write

    if args.top < 1:
        raise InputError(f"--top must be an integer >= 1, got {args.top}.")
    if not args.model.endswith(".pkl") and any(p.endswith(".pkl") for p in args.images):
        raise InputError(f"{args.model!r} is not a model file but an image comes later: the "
                         "model comes first, `nnframe predict MODEL.pkl IMAGE ...`.")
    if args.data:
        if args.images:
            raise InputError("give either --data FILE or image files, not both.")
        return _predict_rows(args)
    if not args.images:
        raise InputError("give the images to predict (`nnframe predict MODEL IMAGE ...`) or "
                         "--data FILE with input rows.")
    network = _load_model(args.model, args.trusted)
    if network.num_nodes[0] != 784:
        raise InputError(f"{args.model} takes {network.num_nodes[0]} inputs, not 28x28 images.")
    what = _score_name(network)
    failed = 0
    for path in args.images:
        try:  # one bad file is named and skipped; the others are still predicted
            pixels = read_digit(path)
        except NNFrameError as exc:
            _err(f"error: {exc}")
            failed += 1
            continue
        saved = ""
        if args.save_input:
            target = Path(path).with_name(Path(path).stem + ".mnist.png")
            try:  # an unwritable directory: still predict, then say so
                atomic_write(target, _mnist_png(pixels), error=InputError)
                saved = f" [model input: {target}]"
            except NNFrameError as exc:
                _err(f"error: {exc}")
                failed += 1
        out = network._infer(pixels.reshape(1, 784).astype(network.dtype))[0]
        order = np.argsort(-out, kind="stable")
        digit = int(order[0])
        line = f"{path}: {digit} (score {float(out[digit]):.3f} = {what})"
        if args.top > 1:
            line += f"; top {min(args.top, len(out))}: " + ", ".join(f"{int(d)} {float(out[d]):.3f}"
                                         for d in order[:args.top])
        print(line + saved, flush=True)
    return 1 if failed else 0


def _cmd_data(args) -> int:
    from .datasets import download, resolve_data_dir, sample_path, status

    directory = resolve_data_dir(args.data_dir)
    if args.fetch:
        download(directory, progress=sys.stderr.isatty(), deadline=args.deadline)
    print(f"MNIST directory: {directory}")
    report = status(directory)
    for name, state in report.items():
        print(f"  {name:<26} {state}")
    complete = all(s.startswith("ok") for s in report.values())
    sample = sample_path()
    print(f"embedded sample: {sample}")
    if not complete and not args.fetch:
        print("full MNIST is incomplete: run `nnframe data --fetch` to download it.")
    return 0


def _check_plugins() -> int:
    """Run the conformance kit over every installed plugin: one line per activation, cost
    and optimizer, with every failed check under it."""
    from .testing import conformance_cases

    results: dict[str, tuple[str, list[str]]] = {}
    for case in conformance_cases():
        provider, failures = results.setdefault(case.label, (case.provider, []))
        try:
            case()
        except AssertionError as exc:
            check = case.check.name if case.check else "loads"
            failures.append(f"{check}: {exc}")
    failed = 0
    # Every label names its kind ("activation:gelu", "cost:huber", "optimizer:lion"); columns
    # fit the longest.
    labels = {label: label if ":" in label else f"activation:{label}" for label in results}
    width = max((len(v) for v in labels.values()), default=0)
    pwidth = max((len(provider) for provider, _ in results.values()), default=0)
    for label, (provider, failures) in results.items():
        shown = labels[label]
        if failures:
            failed += 1
            print(f"FAIL {shown:<{width}}  {provider:<{pwidth}}  {failures[0]}")
            for more in failures[1:]:
                print(f"     {'':<{width}}  {'':<{pwidth}}  {more}")
        else:
            print(f"ok   {shown:<{width}}  {provider}")
    if failed:
        print(f"{failed} of {len(results)} plugin objects failed the conformance checks.")
        return 1
    print(f"all checks passed ({len(results)} objects).")
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import get_registry

    if args.check:
        return _check_plugins()
    registry = get_registry()
    from .registry import KINDS

    for kind in KINDS:
        print(f"{kind.capitalize()}s:")
        for name, entry in sorted(registry.entries[kind].items()):
            p = entry.provider
            print(f"  {name:<22} {p.distribution} {p.version}  ({p.plugin})")
    if registry.conflicts:
        print("Conflicting names (unusable until one provider is uninstalled):")
        for (kind, name), providers in sorted(registry.conflicts.items()):
            who = ", ".join(f"{p.distribution} {p.version}" for p in providers)
            print(f"  {kind} {name!r}: {who}")
    if registry.failures:
        print("Failed to load:")
        for failure in registry.failures:
            print(f"  {failure.describe()}")
    return 0


DOWNLOAD_DEADLINE = 300.0  # the default of nnframe.datasets.download, without importing it


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnframe", description="Train and use multilayer perceptrons "
                     "whose activations and costs are plugins.")
    parser.add_argument("--version", action="version", version=f"nnframe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("train", help="train an MLP on MNIST and report test accuracy",
                       description="Train on MNIST, print the test accuracy, and write the "
                       "model (.pkl), the history (JSON) and a plot (PNG) to --out.")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="fast", type=str.lower,
                   help="a named set of the options below: 'accurate' trains the most "
                   "accurate MLP measured here (about 98.8%% in about 7 minutes on 2 cores); "
                   "options you type still win")
    p.add_argument("--hidden", default=DEFAULTS["hidden"], metavar="SIZES",
                   help="hidden layer sizes, comma-separated (input 784 and output 10 are "
                   "added; with --data, the data's width and number of classes)")
    p.add_argument("--activation", default=DEFAULTS["activation"], metavar="NAMES",
                   help="hidden activation: one name for all layers or one per layer; any "
                   "registered name (see `nnframe plugins`)")
    p.add_argument("--output-activation", default=DEFAULTS["output_activation"],
                   metavar="NAME", help="output layer activation")
    p.add_argument("--cost", default=DEFAULTS["cost"], metavar="NAME", help="cost function")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], metavar="N",
                   help="passes over the training images (>= 1)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], metavar="N",
                   help="images per step (>= 1)")
    p.add_argument("--learning-rate", type=float, default=DEFAULTS["learning_rate"],
                   metavar="RATE", help="the optimizer's base step size (> 0); 0.1 suits sgd, "
                   "adam and its kin usually want about 0.001")
    p.add_argument("--optimizer", default=DEFAULTS["optimizer"], metavar="NAME",
                   help="the update rule: any registered optimizer (see `nnframe plugins`), "
                   "such as sgd, adam, adamw, rmsprop, adagrad")
    p.add_argument("--momentum", type=float, metavar="M",
                   help="the optimizer's momentum hyperparameter (sgd, rmsprop), same as "
                   "--optimizer-option momentum=M")
    p.add_argument("--weight-decay", type=float, metavar="W",
                   help="the optimizer's weight_decay hyperparameter, same as "
                   "--optimizer-option weight_decay=W")
    p.add_argument("--optimizer-option", type=_optimizer_option, action="append",
                   metavar="NAME=VALUE",
                   help="set any hyperparameter of the optimizer, such as beta2=0.99 or "
                   "nesterov=true (repeatable); values are read as true/false (or yes/no, "
                   "on/off), integers, numbers such as 1e-4, or else text; others keep their "
                   "defaults")
    p.add_argument("--schedule", metavar="NAME",
                   help="the learning rate per epoch: any registered schedule (see `nnframe "
                   "plugins`), such as step, exponential, cosine (default: the same rate "
                   "every epoch)")
    p.add_argument("--schedule-option", type=_optimizer_option, action="append",
                   metavar="NAME=VALUE",
                   help="set a hyperparameter of the schedule, such as step_size=5 or "
                   "warmup=2 (repeatable), read as --optimizer-option values are")
    p.add_argument("--dropout", metavar="RATES",
                   help="dropout while training: one rate for every hidden layer (0.5), "
                   "INPUT,HIDDEN (0.2,0.5), or the input's then one per hidden layer; rates "
                   "in [0, 1)")
    p.add_argument("--validation-split", type=float, metavar="F",
                   help="hold out this fraction of the training images (each digit in its "
                   "share, drawn with --seed) and validate on it after every epoch; without "
                   "it, every epoch is validated on the test set")
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="stop when the validation loss has not improved for PATIENCE epochs "
                   "and keep the best epoch's weights (needs --validation-split)")
    p.add_argument("--resume", metavar="FILE",
                   help="continue an interrupted run from its checkpoint (--out/"
                   f"{CHECKPOINT}) with its saved settings, up to its --epochs unless a new "
                   "--epochs is given")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                   help="seed for initialisation and shuffling")
    p.add_argument("--dtype", choices=["float32", "float64"], default=DEFAULTS["dtype"],
                   help="floating-point type of the weights and the arithmetic")
    p.add_argument("--device", default="cpu", metavar="NAME",
                   help="where to train: cpu (NumPy, the default) or cuda (a CUDA GPU through "
                   "CuPy: pip install 'nnframe[cuda12]' or 'nnframe[cuda13]'); the saved "
                   "model loads on either")
    p.add_argument("--subset", type=int, default=DEFAULTS["subset"], metavar="N",
                   help="train on N training images drawn at random (--seed) with each digit "
                   "in its share; 0 means all")
    p.add_argument("--out", default=DEFAULTS["out"], metavar="DIR",
                   help=f"where model.pkl, {CHECKPOINT} (after every epoch), history.json and "
                   "history.png go")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel training on MPI: start as `mpiexec -n N nnframe train "
                   "--distributed ...`; each batch is split across the N ranks, which end "
                   "with the same weights; rank 0 prints and writes (needs "
                   "pip install 'nnframe[mpi]')")
    _add_data_options(p)
    p.add_argument("--scale", choices=["none", "max", "standard"], default="none",
                   help="with --data: scale the inputs, by the training inputs' largest "
                   "absolute value (max: uint8 pixels become 0-1) or to mean 0 and standard "
                   "deviation 1 per column (standard); stored with the model, so evaluate "
                   "and predict --data scale the same way")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix",
                       description="Evaluate a saved model on the MNIST test set, or on --data "
                       "FILE (its test part, else all its rows).")
    p.add_argument("model", help="a model file written by `nnframe train` (.pkl)")
    p.add_argument("--trusted", action="store_true",
                   help="allow a model with embedded code (only for files you trust)")
    _add_data_options(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="predict digits in PNG/JPEG images",
                       description="Print the digit a saved model sees in each image, with "
                       "its score: the model's output for that digit (for a softmax output, "
                       "the probability it gives the digit, 0 to 1). Each picture is prepared "
                       "as MNIST's digits were: the digit is found on its background, made "
                       "light on dark, scaled into a 20x20 box and centred in 28x28. An "
                       "unreadable image is named on stderr and skipped; the exit status is "
                       "then 1.")
    p.add_argument("model", help="a model file (.pkl)")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="PNG or JPEG files")
    p.add_argument("--data", metavar="FILE",
                   help="predict every row of FILE instead of images, printing one class per "
                   "line (with --top K: K class:score pairs): X.npy, a .csv of input rows (a "
                   "leading label column is dropped) or a .npz (x_test, else x_train); the "
                   "model's stored --scale is applied")
    p.add_argument("--top", type=int, default=1, metavar="K",
                   help="list the K best digits, each with its score")
    p.add_argument("--save-input", action="store_true",
                   help="write the 28x28 picture the model sees beside each image "
                   "(digit.png -> digit.mnist.png), to check the preparation")
    p.add_argument("--trusted", action="store_true",
                   help="allow a model with embedded code (only for files you trust)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("plugins", help="list installed activations and costs",
                       description="List every activation, cost and optimizer with the "
                       "distribution "
                       "that provides it, and any plugin that failed to load.")
    p.add_argument("--check", action="store_true",
                   help="run the conformance kit over every installed plugin; exit 1 if any "
                   "object fails")
    p.set_defaults(func=_cmd_plugins)

    p = sub.add_parser("data", help="show where MNIST is, and fetch it",
                       description="Show the MNIST directory and the state of each file; "
                       "--fetch downloads and verifies missing files.")
    p.add_argument("--data-dir", metavar="DIR", help="the MNIST directory to inspect "
                   "(default: $NNFRAME_DATA_DIR, else the per-user cache)")
    p.add_argument("--fetch", action="store_true", help="download missing or bad files "
                   "(always tries, even just after a failed download)")
    p.add_argument("--deadline", type=_seconds, default=DOWNLOAD_DEADLINE, metavar="SECONDS",
                   help="give up on a mirror after this long for one file and try the next")
    p.set_defaults(func=_cmd_data)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"nnframe: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    # A warning (a switch nnframe does not understand, a plugin that failed to load) is one
    # line on stderr, like the errors, not Python's file:line dump with a source line.
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # Options are read before MPI starts: the launcher's variables tell the ranks apart.
    rank = next((os.environ[v] for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
                 if v in os.environ), "0")
    _Parser.quiet = "--distributed" in argv and rank != "0"
    _Parser.typed = argv
    args = parser.parse_args(argv)
    size = next((os.environ[v] for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
                 if v in os.environ), "1")
    if (getattr(args, "command", None) == "train" and not args.distributed and size != "1"
            and rank == "0"):
        _err(f"note: running under mpiexec with {size} ranks but without --distributed: each "
             "rank trains on its own and they write the same files; add --distributed to "
             "train one network together.")
    # The options typed (not defaulted): --resume accepts only a few.
    args.given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.ranks = None
    if getattr(args, "distributed", False):
        from .distributed import Ranks, communicator

        try:
            args.ranks = Ranks(communicator(True))
        except NNFrameError as exc:
            _err(f"error: {exc}")
            return 1
    if args.ranks is not None and args.ranks.rank:  # only rank 0 prints
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), \
                contextlib.redirect_stderr(quiet):
            return _run(args)
    return _run(args)


# What `train(distributed=True)` says about ranks that differ, in command-line terms.
_DISTRIBUTED_WORDS = (
    ("call train with the same arguments", "run nnframe train with the same options"),
    ("but num_epochs is", "but --epochs is"), ("but batch_size is", "but --batch-size is"),
    ("but learning_rate is", "but --learning-rate is"),
    ("(the same arrays, or memmaps of the same file)", "(the same files)"),
)


def _run(args) -> int:
    try:
        return args.func(args)
    except NNFrameError as exc:
        message = str(exc)
        if hasattr(args, "device"):  # the advice in command-line terms: --device cpu
            message = re.sub(r"\bdevice='(\w+)'", r"--device \1", message)
        if getattr(args, "ranks", None) is not None:  # ranks that differ, in options
            for python, option in _DISTRIBUTED_WORDS:
                message = message.replace(python, option)
        _err(f"error: {message}")
        return 1
    except OSError as exc:
        _err(f"error: {exc}")
        return 1
    except MemoryError as exc:  # the last line of defence: never a traceback
        detail = f" ({str(exc)[:160]})" if str(exc) else ""
        _err(f"error: out of memory{detail}; use a smaller network (--hidden), fewer or "
             "smaller images, or a smaller --batch-size.")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
