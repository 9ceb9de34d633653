"""Options several commands share, declared once so their wording, defaults and checks cannot drift apart.

Commands whose values may also come from a configuration file (``compress``) pass ``from_config=True``:
the option then defaults to None (the file or the built-in default decides) and its help names the
built-in default in brackets.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

__all__ = [
    "DATA_FORMS",
    "MODEL_FILE",
    "Preprocessing",
    "budget_options",
    "data_option",
    "depth_option",
    "DEFAULT_DEPTH_THRESHOLD",
    "episodes_option",
    "json_option",
    "model_argument",
    "output_option",
    "parse_floats",
    "parse_size",
    "path_option",
    "task_option",
    "policy_option",
    "preprocessing_options",
    "round_to_option",
    "target_option",
    "workers_options",
    "valued_option",
]

DATA_FORMS = "class folder, zip/tar(.gz/.xz) archive, .npz, or a folder with NAME_train/NAME_test files"


class _ModelFile(click.ParamType):
    """A model file path, checked as ``load_model`` checks it: a missing, directory or empty MODEL is the
    loader's one-line error and exit 1 in every command, as a non-ONNX or truncated file is when it loads."""

    name = "model"

    def convert(self, value, param, ctx) -> Path:
        from agmc_onnx.errors import ModelLoadError
        from agmc_onnx.io import check_model_file

        try:
            return check_model_file(value)
        except ModelLoadError as exc:
            raise click.ClickException(str(exc)) from None


MODEL_FILE = _ModelFile()


def model_argument():
    """MODEL as ``model_path`` (a ``MODEL_FILE``)."""
    return click.argument("model_path", metavar="MODEL", type=MODEL_FILE)


def data_option(
    purpose: str = "Dataset",
    must_exist: bool = False,
    required: bool = True,
    flag: str = "--data",
    dest: str = "data_path",
):
    """``--data`` as ``data_path`` (or another dataset option, ``flag`` as ``dest``); without ``must_exist``
    the data loader reports a missing path itself."""
    # An explicit default (even None) would satisfy click's ``required``, so only optional --data gets one.
    default = {} if required else {"default": None}
    return click.option(
        flag,
        dest,
        required=required,
        type=click.Path(exists=must_exist, path_type=Path),
        help=f"{purpose}: {DATA_FORMS}.",
        **default,
    )


def output_option(help_text: str = "Where to write the model."):
    """``-o/--output``: a file the command writes atomically."""
    return click.option(
        "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help=help_text
    )


def valued_option(*names: str, type: click.ParamType, default=None, help: str | None = None):
    """An option that takes a value of ``type``; its default, when it has one, is shown in --help."""
    return click.option(*names, type=type, default=default, show_default=default is not None, help=help)


def path_option(*names: str, folder: bool = False, help: str):
    """An optional path the command writes or reads: a file, or a folder with ``folder``; default None."""
    kind = click.Path(file_okay=not folder, dir_okay=folder, path_type=Path)
    return click.option(*names, type=kind, default=None, help=help)


def json_option(help_text: str = "Print the result as JSON."):
    """``--json`` as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def _default(value, from_config: bool, help: str) -> dict:
    if from_config:
        return {"default": None, "help": f"{help} [{value}]"}
    return {"default": value, "show_default": True, "help": help}


def budget_options(from_config: bool = False) -> Callable:
    """``--flops`` and ``--latency`` (``flops``, ``latency``): the library checks that exactly one is given."""
    fraction = click.FloatRange(0.0, 1.0, min_open=True)
    default = " [0.5 when no budget is given]" if from_config else ""
    latency = click.option(
        "--latency",
        type=fraction,
        default=None,
        help="Budget: kept fraction of the original's median latency on --target, e.g. 0.6.",
    )
    flops = click.option(
        "--flops", type=fraction, default=None, help=f"Budget: kept fraction of MACs, e.g. 0.5 for 2× fewer.{default}"
    )
    return lambda function: flops(latency(function))


DEFAULT_DEPTH_THRESHOLD = 0.1

depth_option = click.option(
    "--depth",
    "depth_threshold",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    is_flag=False,
    flag_value=DEFAULT_DEPTH_THRESHOLD,
    default=None,
    help="Let the search delete residual branches: an action below this threshold "
    f"[{DEFAULT_DEPTH_THRESHOLD} when given alone] for a removable group deletes its branch "
    "(see `agmc-onnx inspect`).",
)


def target_option(
    help_text: str = "Latency target profile (execution provider, threads, batch size).", from_config: bool = False
):
    """``--target`` as ``target``, one of the cost module's profiles."""
    from agmc_onnx.cost import profile_names

    return click.option(
        "--target", type=click.Choice(profile_names()), **_default("mobile-cpu", from_config, help_text)
    )


def policy_option(from_config: bool = False):
    """``--policy``: the choices are the search's policy registry."""
    from agmc_onnx.search import POLICY_NAMES

    return click.option("--policy", type=click.Choice(POLICY_NAMES), **_default("agmc", from_config, "Search policy."))


def episodes_option(from_config: bool = False, zero_applies_agent: bool = False):
    """``--episodes``; ``zero_applies_agent``: 0 means "apply the saved --agent as is" (``search``)."""
    if zero_applies_agent:
        help_text = "Search episodes (0: apply the policy of --agent as is, one evaluation)."
        return click.option("--episodes", type=click.IntRange(min=0), **_default(100, from_config, help_text))
    return click.option("--episodes", type=click.IntRange(min=1), **_default(100, from_config, "Search episodes."))


def workers_options(from_config: bool = False) -> Callable:
    """``--workers`` and ``--ray-address``: rewards evaluated in parallel on Ray (the ``ray`` extra)."""
    workers = click.option(
        "--workers",
        type=click.IntRange(min=1),
        **_default(
            1,
            from_config,
            "Reward evaluations in parallel on this many Ray workers; the agent proposes as many episodes per "
            "round. 1: in this process, without Ray.",
        ),
    )
    address = click.option(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Join this Ray cluster (HOST:PORT, ray://HOST:PORT or auto) instead of starting a local runtime.",
    )
    return lambda function: workers(address(function))


def round_to_option(from_config: bool = False):
    return click.option(
        "--round-to",
        type=click.IntRange(min=1),
        **_default(8, from_config, "Kept channels per group are a multiple of this (CPU kernels prefer 8)."),
    )


def _numbers(value: str, kind: type, expected: str) -> tuple:
    """``1,2,3`` or ``1 2 3`` as a tuple of ``kind``; anything else is a ``BadParameter`` saying ``expected``."""
    try:
        return tuple(kind(part) for part in value.replace(",", " ").split())
    except ValueError:
        raise click.BadParameter(f"expected {expected}, got {value!r}") from None


def parse_floats(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """Click callback: "0.49,0.48,0.45" (commas or spaces) -> (0.49, 0.48, 0.45)."""
    if value is None:
        return None
    numbers = _numbers(value, float, "numbers separated by commas")
    if not numbers:
        raise click.BadParameter("expected at least one number")
    return numbers


def parse_size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """Click callback: "224,224" (height, width) -> (224, 224)."""
    if value is None:
        return None
    size = _numbers(value, int, "HEIGHT,WIDTH in pixels")
    if len(size) != 2 or min(size) < 1:
        raise click.BadParameter(f"expected HEIGHT,WIDTH in pixels, got {value!r}")
    return size


@dataclass(frozen=True)
class Preprocessing:
    """What the preprocessing options say; a new option is one field here and one entry in ``_OPTIONS``."""

    layout: str | None = None
    color: str | None = None
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = None
    cache_dir: Path | None = None

    def overrides(self) -> dict:
        """The preprocessing fields that were given (``PreprocessSpec`` names), for a config or a spec."""
        names = ("layout", "color", "size", "mean", "std", "scale")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def spec(self, model):
        """The model's preprocessing spec (from its metadata) with these options overriding it."""
        from agmc_onnx.data import spec_from_model

        return spec_from_model(model, **self.overrides())

    def spec_for(self, model, load):
        """``(dataset, spec)``: ``load(spec)`` reads the data; spec is None for arrays keyed by input name.

        A model whose input is not an image has no spec; that is an error only when the data are images.
        """
        from agmc_onnx.data import ImageDataset
        from agmc_onnx.errors import DataError

        try:
            spec = self.spec(model)
        except DataError:
            spec = None
        dataset = load(spec)
        if not isinstance(dataset, ImageDataset):
            return dataset, None
        return dataset, spec if spec is not None else self.spec(model)  # the second call raises the reason


_OPTIONS = (
    click.option(
        "--layout",
        type=click.Choice(["NCHW", "NHWC"]),
        default=None,
        help="Model input layout [the model's metadata, else detected from its input shape].",
    ),
    click.option("--color", type=click.Choice(["RGB", "BGR"]), default=None, help="Channel order [RGB]."),
    click.option("--size", callback=parse_size, help="Resize images to HEIGHT,WIDTH [the model's input size]."),
    click.option(
        "--mean", callback=parse_floats, help="Per-channel mean, e.g. 0.4914,0.4822,0.4465 (overrides the model)."
    ),
    click.option("--std", callback=parse_floats, help="Per-channel std (overrides the model's metadata)."),
    click.option("--scale", type=float, default=None, help="Pixel scale before mean/std (default 1/255)."),
    click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where decoded images are cached [default: ~/.cache/agmc-onnx].",
    ),
)


def preprocessing_options(function: Callable) -> Callable:
    """Adds the preprocessing options; the command receives them as one ``preprocessing: Preprocessing``."""
    names = [f.name for f in dataclasses.fields(Preprocessing)]

    @functools.wraps(function)
    def command(*args, **kwargs):
        values = {name: kwargs.pop(name) for name in names}
        return function(*args, preprocessing=Preprocessing(**values), **kwargs)

    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def task_option(function: Callable) -> Callable:
    """``--task``: what the search rewards (and, in compress, how fine-tuning learns)."""
    return click.option(
        "--task",
        type=click.Choice(["auto", "accuracy", "fidelity"]),
        default=None,
        help="accuracy: top-1 against labels; fidelity: agreement with the original's outputs (no labels "
        "needed); auto: fidelity when the data have no labels or their classes do not fit the model [auto].",
    )(function)
