"""Load and validate the declarative vocabulary and task files (docs/design.md D3-D5).

Three kinds of YAML feed the unified vocabulary:

- ``tokenizers/coordinates.yaml``: n_bins, one prompt template per coordinate axis, the temporal-bin family, and the
  task / end-of-task prompt templates;
- ``tokenizers/vocabulary.yaml``: which label sets join the vocabulary (in id order), synonym aliases, special tokens;
- ``tokenizers/labels/<name>.yaml``: one label set (``name``, ``classes`` in class-index order);
- ``tasks/<name>.yaml``: one task: display name, input, output grammar, metrics, options.

Every problem raises :class:`~ups_toolkit.errors.ConfigError` naming the file and the key (``output.ranges.x``).
Files are found through :mod:`ups_toolkit.resources`: ``roots`` are user project folders holding ``tokenizers/`` and
``tasks/``, searched before the checkout and the installed copies.
"""

from __future__ import annotations

import copy
import math
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError, Where
from ..resources import find_resource, list_resources

KINDS = ("2d", "3d")
GRAMMARS = ("action", "coordinates", "segments", "none")
RANGE_MODES = ("fixed", "percentiles")
COORDINATE_SPACES = ("root_relative", "residual_to_last_observed")

# Sampling modes of the task input and the settings each takes: (type, required, default, check, description).
SAMPLING_MODES: dict[str, dict[str, tuple]] = {
    # whole valid sequence resampled to `frames` (recognition, retrieval); in training, optionally a random span of
    # at least `train_crop` of it (temporal crop augmentation; evaluation always takes the whole sequence)
    "whole_sequence": {
        "train_crop": ((int, float), False, 1.0, lambda v: 0 < v <= 1, "a ratio in (0, 1]"),
    },
    # first ceil(r * n) valid frames resampled to `frames`, r from options.obs_ratios (early prediction)
    "observed_prefix": {},
    # `frames` consecutive frames around the target frame(s), edge-replicated at borders (pose estimation)
    "consecutive": {
        "stride": (int, False, 1, lambda v: v >= 1, "an integer >= 1"),
        "border": (str, False, "edge", lambda v: v in ("edge", "zero"), "'edge' or 'zero'"),
    },
    # the last `observed_frames` frames before the prediction point, resampled to `frames` (motion prediction)
    "observed_window": {
        "observed_frames": (int, True, None, lambda v: v >= 1, "an integer >= 1"),
    },
    # windows of `window` raw frames every `hop` frames, each resampled to `frames` (detection)
    "sliding_window": {
        "window": (int, True, None, lambda v: v >= 1, "an integer >= 1"),
        "hop": (int, True, None, lambda v: v >= 1, "an integer >= 1"),
    },
}

# Options whose meaning the toolkit fixes; any other key in `options` is passed through untouched.
KNOWN_OPTIONS: dict[str, tuple] = {
    "obs_ratios": (lambda v: isinstance(v, list) and len(v) > 0 and all(_is_number(r) and 0 < r <= 1 for r in v)
                   and all(a < b for a, b in zip(v, v[1:])), "a non-empty increasing list of ratios in (0, 1]"),
    "obs_rounding": (lambda v: v in ("ceil", "floor_min3"), "'ceil' or 'floor_min3'"),
    "min_inside_fraction": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "nms_tiou": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "merge_touching": (lambda v: isinstance(v, bool), "true or false"),
    "flip_test": (lambda v: isinstance(v, bool), "true or false"),
    "knn_k": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "route_task": (lambda v: isinstance(v, str) and v != "", "a task name"),
}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Where(Where):
    """:class:`~ups_toolkit.errors.Where` with the checks of the YAML definition files (task, vocabulary,
    coordinates)."""

    def mapping(self, data, key: str | None, required: set[str], optional: set[str] = frozenset()) -> dict:
        if not isinstance(data, dict):
            raise self.error(key, f"expected a mapping, got {type(data).__name__}")
        prefix = f"{key}." if key else ""
        missing = sorted(required - set(data))
        if missing:
            raise self.error(prefix + missing[0], "missing")
        unknown = sorted(set(data) - required - set(optional), key=str)
        if unknown:
            allowed = ", ".join(sorted(required | set(optional)))
            raise self.error(prefix + str(unknown[0]), f"unknown key (allowed here: {allowed})")
        return data

    def integer(self, value, key: str, minimum: int = 1) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.error(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def text(self, value, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string, got {value!r}")
        return value

    def names(self, value, key: str, allow_empty: bool = False) -> tuple[str, ...]:
        if not isinstance(value, list) or (not value and not allow_empty):
            raise self.error(key, f"expected a {'' if allow_empty else 'non-empty '}list of names, got {value!r}")
        for i, item in enumerate(value):
            self.text(item, f"{key}[{i}]")
        if len(set(value)) != len(value):
            dup = next(v for v in value if value.count(v) > 1)
            raise self.error(key, f"{dup!r} is listed twice")
        return tuple(value)

    def template(self, value, key: str, fields: set[str]) -> str:
        self.text(value, key)
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as e:
            raise self.error(key, f"malformed template {value!r}: {e}") from None
        expected = " and ".join("{" + f + "}" for f in sorted(fields))
        if used != fields:
            raise self.error(key, f"template {value!r} must use exactly {expected}")
        return value


def load_yaml(path: str | Path) -> dict:
    """Parse one YAML file into a mapping; syntax errors name the file and line."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------------------------------
# tokenizers/coordinates.yaml


@dataclass(frozen=True)
class CoordinateSpec:
    """Coordinate-bin and temporal-bin families and the prompt templates of the vocabulary."""

    n_bins: int
    axis_prompts: dict[str, str]  # axis name -> template with {ordinal}, in family (id) order
    n_time_bins: int
    temporal_prompt: str
    task_prompt: str  # template with {task}
    eot_prompt: str  # default end-of-task template with {task}
    path: str = ""

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(self.axis_prompts)


def parse_coordinate_spec(data: dict, source) -> CoordinateSpec:
    w = _Where(source)
    w.mapping(data, None, {"n_bins", "axes", "temporal", "task_prompt", "eot_prompt"})
    n_bins = w.integer(data["n_bins"], "n_bins", minimum=2)
    axes = w.mapping(data["axes"], "axes", set(), set(data["axes"]) if isinstance(data["axes"], dict) else set())
    if not axes:
        raise w.error("axes", "expected at least one axis")
    prompts = {str(a): w.template(t, f"axes.{a}", {"ordinal"}) for a, t in axes.items()}
    temporal = w.mapping(data["temporal"], "temporal", {"n_bins", "prompt"})
    return CoordinateSpec(
        n_bins=n_bins,
        axis_prompts=prompts,
        n_time_bins=w.integer(temporal["n_bins"], "temporal.n_bins", minimum=1),
        temporal_prompt=w.template(temporal["prompt"], "temporal.prompt", {"ordinal"}),
        task_prompt=w.template(data["task_prompt"], "task_prompt", {"task"}),
        eot_prompt=w.template(data["eot_prompt"], "eot_prompt", {"task"}),
        path=str(source),
    )


def load_coordinate_spec(roots: list[str | Path] | None = None) -> CoordinateSpec:
    path = find_resource("tokenizers", "coordinates.yaml", roots=roots)
    return parse_coordinate_spec(load_yaml(path), path)


# --------------------------------------------------------------------------------------------------------------------
# tokenizers/vocabulary.yaml


@dataclass(frozen=True)
class VocabularySpec:
    """Label sets of the vocabulary (id order), synonym groups, and the keys of the special tokens."""

    label_sets: tuple[str, ...]
    aliases: dict[str, tuple[str, ...]]  # canonical class name -> its synonyms, as written in the file
    pad_key: str
    task_key: str  # template with {name}
    eot_key: str  # template with {name}
    path: str = ""


def parse_vocabulary_spec(data: dict, source) -> VocabularySpec:
    w = _Where(source)
    w.mapping(data, None, {"label_sets", "special_tokens"}, {"aliases"})
    aliases_raw = data.get("aliases") or {}
    if not isinstance(aliases_raw, dict):
        raise w.error("aliases", f"expected a mapping canonical name -> list of synonyms, got {aliases_raw!r}")
    aliases = {}
    for canonical, synonyms in aliases_raw.items():
        w.text(canonical, f"aliases.{canonical}")
        aliases[canonical] = w.names(synonyms, f"aliases.{canonical}")
    specials = w.mapping(data["special_tokens"], "special_tokens", {"pad", "task", "eot"})
    spec = VocabularySpec(
        label_sets=w.names(data["label_sets"], "label_sets", allow_empty=True),
        aliases=aliases,
        pad_key=w.text(specials["pad"], "special_tokens.pad"),
        task_key=w.template(specials["task"], "special_tokens.task", {"name"}),
        eot_key=w.template(specials["eot"], "special_tokens.eot", {"name"}),
        path=str(source),
    )
    if spec.task_key == spec.eot_key:
        raise w.error("special_tokens.eot", "must differ from special_tokens.task")
    return spec


def load_vocabulary_spec(roots: list[str | Path] | None = None) -> VocabularySpec:
    path = find_resource("tokenizers", "vocabulary.yaml", roots=roots)
    return parse_vocabulary_spec(load_yaml(path), path)


# --------------------------------------------------------------------------------------------------------------------
# tokenizers/labels/<name>.yaml


@dataclass(frozen=True)
class LabelSet:
    name: str
    classes: tuple[str, ...]  # class names in class-index order
    path: str = ""

    def __len__(self) -> int:
        return len(self.classes)


def load_label_set_spec(name: str, roots: list[str | Path] | None = None, *, wanted_by: str | None = None) -> LabelSet:
    """Load ``tokenizers/labels/<name>.yaml``; ``wanted_by`` ("tasks/x.yaml key 'output.label_sets'") is added to
    the not-found error so the user knows which file asked for it."""
    try:
        path = find_resource("tokenizers", f"labels/{name}.yaml", roots=roots)
    except ConfigError as e:
        raise ConfigError(f"label set {name!r}{f' (named in {wanted_by})' if wanted_by else ''}: {e}") from None
    data = load_yaml(path)
    w = _Where(path)
    # Other keys (e.g. spelling aliases a converter applies to raw file names) belong to their readers.
    w.mapping(data, None, {"name", "classes"}, set(data) if isinstance(data, dict) else set())
    if data["name"] != name:
        raise w.error("name", f"is {data['name']!r} but the file is named {name}.yaml")
    classes = w.names(data["classes"], "classes") if isinstance(data["classes"], list) else None
    if classes is None:
        raise w.error("classes", "expected a list of class-name strings")
    return LabelSet(name=name, classes=classes, path=str(path))


# --------------------------------------------------------------------------------------------------------------------
# tasks/<name>.yaml


@dataclass(frozen=True)
class InputSpec:
    kinds: tuple[str, ...]  # "2d" and/or "3d" keypoints
    layouts: tuple[str, ...]  # registered joint layouts the task accepts
    frames: int  # T, frames the encoder sees after resampling
    sampling: str  # one of SAMPLING_MODES
    params: dict = field(default_factory=dict)  # the sampling mode's settings, defaults filled in

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(int(k[0]) for k in self.kinds)


@dataclass(frozen=True)
class OutputSpec:
    grammar: str  # one of GRAMMARS
    label_sets: tuple[str, ...] = ()  # optional defaults (the first is used when none is given); any set works
    # coordinates grammar
    axes: tuple[str, ...] = ()  # decoded per joint in this order
    frames: int = 0  # F (pose, centre frame) or K (motion, future frames)
    space: str = ""  # one of COORDINATE_SPACES; values in metres
    ranges: dict = field(default_factory=dict)  # axis -> (lo, hi), metres; the fixed range or the fallback
    range_mode: str = "fixed"  # fixed | percentiles (training recomputes ranges from data percentiles)
    range_percentiles: tuple[float, float] = (0.1, 99.9)
    # segments grammar
    max_segments: int = 0  # N
    n_time_bins: int = 0  # temporal bins used, <= the vocabulary's temporal family
    sorted_starts: bool = True  # each T_START >= the previous one (targets are sorted by start)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    display_name: str  # the task prompt: "3D action recognition"
    eot_prompt: str | None  # template with {task}; None = coordinates.yaml's default
    input: InputSpec
    output: OutputSpec
    metrics: tuple[str, ...]
    options: dict
    path: str = ""
    raw: dict = field(default_factory=dict, repr=False, compare=False)  # the parsed YAML, for checkpoints
    kind: str | None = None  # a registered task kind (ups_toolkit.kinds); None: the one of (sampling, grammar)

    @property
    def has_decoder(self) -> bool:
        """False for encoder-only tasks (retrieval): no task or end-of-task token, no grammar."""
        return self.output.grammar != "none"

    @property
    def default_label_set(self) -> str | None:
        return self.output.label_sets[0] if self.output.label_sets else None

    def resolve_label_set(self, label_set: str | None = None) -> str:
        """``label_set``, else the task's default (the first of ``output.label_sets``). Any label set of the
        vocabulary will do: a dataset brings its classes; the task file's list only names defaults."""
        if label_set is None:
            if self.default_label_set is None:
                raise ConfigError(f"{self.path}: task {self.name!r} names no default label set (key "
                                  f"'output.label_sets'): give the label set")
            return self.default_label_set
        return label_set

    def num_joints(self, layout: str | None = None) -> int:
        """Joints of an accepted layout (default: the first one listed)."""
        from ..skeleton import get_layout

        layout = layout or self.input.layouts[0]
        if layout not in self.input.layouts:
            raise ConfigError(f"{self.path}: key 'input.layouts': task {self.name!r} does not accept layout "
                              f"{layout!r} (accepted: {', '.join(self.input.layouts)})")
        return get_layout(layout).num_joints

    def with_overrides(self, overrides: dict, source: str | None = None) -> "TaskSpec":
        """A copy with ``overrides`` deep-merged into the YAML and validated again (experiment configs use this to
        set, e.g., ``output.frames`` per dataset)."""
        merged = _deep_merge(copy.deepcopy(self.raw), overrides)
        return parse_task(merged, source or f"{self.path} (with overrides)", expected_name=self.name)


def _deep_merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


_GRAMMAR_KEYS = {  # required, optional keys of `output` per grammar
    "action": (set(), {"label_sets"}),
    "coordinates": ({"axes", "frames", "space", "ranges"}, {"range_mode", "range_percentiles"}),
    "segments": ({"max_segments", "n_time_bins"}, {"sorted_starts", "label_sets"}),
    "none": (set(), {"label_sets"}),
}


def _parse_input(w: _Where, data) -> InputSpec:
    from ..skeleton import layout_names

    w.mapping(data, "input", {"kind", "layouts", "frames", "sampling"},
              {k for mode in SAMPLING_MODES.values() for k in mode})
    kinds = data["kind"] if isinstance(data["kind"], list) else [data["kind"]]
    for kind in kinds:
        if kind not in KINDS:
            raise w.error("input.kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    layouts = w.names(data["layouts"], "input.layouts")
    known = set(layout_names())
    for i, layout in enumerate(layouts):
        if layout not in known:
            raise w.error(f"input.layouts[{i}]", f"unknown layout {layout!r}; known: {', '.join(sorted(known))}")
    sampling = data["sampling"]
    if sampling not in SAMPLING_MODES:
        raise w.error("input.sampling", f"{sampling!r} is not one of {', '.join(SAMPLING_MODES)}")
    params = {}
    settings = SAMPLING_MODES[sampling]
    for key in data:
        if key not in {"kind", "layouts", "frames", "sampling"} and key not in settings:
            raise w.error(f"input.{key}", f"is not a setting of sampling {sampling!r}"
                          f" (its settings: {', '.join(settings) or 'none'})")
    for key, (kind, required, default, check, expected) in settings.items():
        if key not in data:
            if required:
                raise w.error(f"input.{key}", f"missing (sampling {sampling!r} needs it)")
            params[key] = default
            continue
        value = data[key]
        if not isinstance(value, kind) or isinstance(value, bool) or not check(value):
            raise w.error(f"input.{key}", f"expected {expected}, got {value!r}")
        params[key] = value
    return InputSpec(kinds=tuple(kinds), layouts=layouts, frames=w.integer(data["frames"], "input.frames"),
                     sampling=sampling, params=params)


def _parse_output(w: _Where, data, coordinates: CoordinateSpec | None) -> OutputSpec:
    if not isinstance(data, dict):
        raise w.error("output", f"expected a mapping, got {type(data).__name__}")
    grammar = data.get("grammar")
    if grammar not in GRAMMARS:
        raise w.error("output.grammar", f"{grammar!r} is not one of {', '.join(GRAMMARS)}")
    required, optional = _GRAMMAR_KEYS[grammar]
    w.mapping(data, "output", required | {"grammar"}, optional)
    label_sets = tuple(w.names(data["label_sets"], "output.label_sets")) if "label_sets" in data else ()
    if grammar == "action":
        return OutputSpec(grammar, label_sets)
    if grammar == "none":
        return OutputSpec(grammar, label_sets)
    if grammar == "segments":
        n_time_bins = w.integer(data["n_time_bins"], "output.n_time_bins")
        if coordinates is not None and n_time_bins > coordinates.n_time_bins:
            raise w.error("output.n_time_bins", f"{n_time_bins} exceeds the {coordinates.n_time_bins} temporal "
                                                f"tokens of {coordinates.path} (key 'temporal.n_bins')")
        sorted_starts = data.get("sorted_starts", True)
        if not isinstance(sorted_starts, bool):
            raise w.error("output.sorted_starts", f"expected true or false, got {sorted_starts!r}")
        return OutputSpec(grammar, label_sets, max_segments=w.integer(data["max_segments"], "output.max_segments"),
                          n_time_bins=n_time_bins, sorted_starts=sorted_starts)
    # coordinates
    axes = w.names(data["axes"], "output.axes")
    if coordinates is not None:
        for i, axis in enumerate(axes):
            if axis not in coordinates.axes:
                raise w.error(f"output.axes[{i}]", f"{axis!r} is not an axis of {coordinates.path} "
                                                   f"(axes: {', '.join(coordinates.axes)})")
    if data["space"] not in COORDINATE_SPACES:
        raise w.error("output.space", f"{data['space']!r} is not one of {', '.join(COORDINATE_SPACES)}")
    ranges_raw = w.mapping(data["ranges"], "output.ranges", set(axes))
    ranges = {}
    for axis in axes:
        pair = ranges_raw[axis]
        if not (isinstance(pair, list) and len(pair) == 2 and all(_is_number(v) for v in pair) and pair[0] < pair[1]):
            raise w.error(f"output.ranges.{axis}", f"expected [lo, hi] with lo < hi (metres), got {pair!r}")
        ranges[axis] = (float(pair[0]), float(pair[1]))
    mode = data.get("range_mode", "fixed")
    if mode not in RANGE_MODES:
        raise w.error("output.range_mode", f"{mode!r} is not one of {', '.join(RANGE_MODES)}")
    pct = data.get("range_percentiles", [0.1, 99.9])
    if not (isinstance(pct, list) and len(pct) == 2 and all(_is_number(v) for v in pct)
            and 0 <= pct[0] < pct[1] <= 100):
        raise w.error("output.range_percentiles", f"expected [lo, hi] with 0 <= lo < hi <= 100, got {pct!r}")
    return OutputSpec(grammar, label_sets, axes=axes, frames=w.integer(data["frames"], "output.frames"),
                      space=data["space"], ranges=ranges, range_mode=mode,
                      range_percentiles=(float(pct[0]), float(pct[1])))


def parse_task(data: dict, source, *, expected_name: str | None = None,
               coordinates: CoordinateSpec | None = None) -> TaskSpec:
    """Validate one task definition. ``coordinates`` enables the checks against ``coordinates.yaml`` (axes exist,
    n_time_bins fits the temporal family)."""
    w = _Where(source)
    w.mapping(data, None, {"name", "display_name", "input", "output", "metrics"}, {"eot_prompt", "options", "kind"})
    name = w.text(data["name"], "name")
    if expected_name is not None and name != expected_name:
        raise w.error("name", f"is {name!r} but the file is named {expected_name}.yaml")
    if not name.replace("_", "").isalnum() or not name.islower():
        raise w.error("name", f"{name!r} must be lower-case letters, digits and underscores")
    output = _parse_output(w, data["output"], coordinates)
    eot = data.get("eot_prompt")
    if eot is not None:
        w.template(eot, "eot_prompt", {"task"})
        if output.grammar == "none":
            raise w.error("eot_prompt", "an encoder-only task (grammar none) has no end-of-task token")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise w.error("options", f"expected a mapping, got {type(options).__name__}")
    for key, value in options.items():
        if key in KNOWN_OPTIONS and not KNOWN_OPTIONS[key][0](value):
            raise w.error(f"options.{key}", f"expected {KNOWN_OPTIONS[key][1]}, got {value!r}")
    task_input = _parse_input(w, data["input"])
    if task_input.sampling == "observed_prefix" and "obs_ratios" not in options:
        raise w.error("options.obs_ratios", "missing (sampling 'observed_prefix' needs the observation ratios)")
    if task_input.sampling == "sliding_window" and output.grammar == "segments" and \
            output.n_time_bins > task_input.params["window"]:
        raise w.error("output.n_time_bins", f"{output.n_time_bins} bins for a window of "
                                            f"{task_input.params['window']} frames: at most one bin per frame")
    return TaskSpec(
        name=name,
        display_name=w.text(data["display_name"], "display_name").strip(),
        eot_prompt=eot,
        input=task_input,
        output=output,
        metrics=w.names(data["metrics"], "metrics"),
        options=dict(options),
        path=str(source),
        raw=copy.deepcopy(data),
        kind=w.text(data["kind"], "kind") if "kind" in data else None,
    )


def task_paths(roots: list[str | Path] | None = None) -> dict[str, Path]:
    """``{task name: file}`` of every ``tasks/*.yaml`` found (user roots first), sorted by name."""
    return list_resources("tasks", roots=roots)


def load_task(name: str, roots: list[str | Path] | None = None, coordinates: CoordinateSpec | None = None) -> TaskSpec:
    paths = task_paths(roots)
    if name not in paths:
        raise ConfigError(f"unknown task {name!r}; task files found: {', '.join(paths) or 'none'}")
    coordinates = coordinates or load_coordinate_spec(roots)
    return parse_task(load_yaml(paths[name]), paths[name], expected_name=name, coordinates=coordinates)


def load_tasks(names: list[str] | None = None, roots: list[str | Path] | None = None) -> list[TaskSpec]:
    """Task specs sorted by name (all task files when ``names`` is None). Cross-task references
    (``options.route_task``) must name a loaded decoder task."""
    coordinates = load_coordinate_spec(roots)
    names = sorted(task_paths(roots)) if names is None else sorted(set(names))
    tasks = [load_task(n, roots, coordinates) for n in names]
    decoder_tasks = {t.name for t in tasks if t.has_decoder}
    for task in tasks:
        route = task.options.get("route_task")
        if route is not None and route not in decoder_tasks:
            raise _Where(task.path).error("options.route_task",
                                          f"{route!r} is not a loaded task with a decoder "
                                          f"(loaded: {', '.join(sorted(decoder_tasks)) or 'none'})")
    return tasks
