"""Everything a run builds before its first step: the synthetic demo data, the vocabulary and its text table, one
:class:`TaskState` per configured task (data, resolved task spec, codec), and the model (docs/design.md D3, D9)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..kinds import kind_of
from ..skeleton.transforms import deterministic_part
from ..tokenization.specs import TaskSpec, load_task
from .config import ExperimentConfig
from ..data.task_examples import (
    SplitData,
    TaskExamples,
    load_split,
    make_codec,
    resolve_coordinate_ranges,
)


@dataclass
class TaskState:
    """One configured task: its resolved spec (ranges fixed), settings, label set, and its train / eval data."""

    name: str
    index: int  # position in the config (the round-robin order and the per-sample generator stream)
    spec: TaskSpec
    settings: dict
    label_set: str | None
    train_split: SplitData | None = None
    eval_split: SplitData | None = None
    train_examples: TaskExamples | None = None
    eval_examples: TaskExamples | None = None
    ranges: dict = field(default_factory=dict)
    eval_truth: object = None  # what the kind scores against beyond the items (detection: segments per sequence)

    @property
    def kind(self):
        """The task's kind (:mod:`ups_toolkit.kinds`), which owns its examples, loss, decoding and scoring."""
        return kind_of(self.spec)

    def layout(self, train: bool) -> str:
        return (self.train_split if train else self.eval_split).layout


def main_first(accelerator):
    return accelerator.main_process_first() if accelerator is not None else nullcontext()


def prepare_synthetic(config: ExperimentConfig, accelerator=None) -> None:
    """Write the synthetic demo data to ``synthetic.dir`` when enabled and missing (the main process writes, the
    others wait)."""
    syn = config["synthetic"]
    if not syn["enabled"] or Path(syn["dir"]).exists():
        return
    from ..data.synthetic import write_synthetic

    with main_first(accelerator):
        if not Path(syn["dir"]).exists():
            write_synthetic(syn["dir"], num_per_class=syn["num_per_class"], seed=syn["seed"])


def build_vocabulary_and_table(config: ExperimentConfig, accelerator=None):
    """The unified vocabulary over every task file and label-set file, plus the label sets the configured datasets
    define themselves (after the files', so the ids of every other action token stay the same), and its text
    table. Returns (vocabulary, table (|V|, d_text) float32 numpy, description of the source)."""
    from ..tokenization.text_embedding import embed_vocabulary
    from ..tokenization.vocabulary import build_vocabulary

    voc = config["vocabulary"]
    roots = voc["roots"] or None
    vocab = build_vocabulary(roots=roots, label_sets=data_label_sets(config))
    with main_first(accelerator):  # the main process fills the cache, the others read it
        embeddings = embed_vocabulary(vocab, text_encoder=voc["text_encoder"], pooling=voc["pooling"],
                                      max_length=voc["max_length"], cache_dir=voc["cache_dir"])
    source = f"{voc['text_encoder']} (pooling {voc['pooling']}, max_length {voc['max_length']})"
    return vocab, embeddings.table, source


def data_label_sets(config: ExperimentConfig) -> dict:
    """The label sets the configured datasets define themselves: a task whose ``label_set`` names no label-set file
    trains the class names of its dataset under that name (the config check chose or gave the name)."""
    from ..data.prepared import describe_dataset
    from ..resources import list_resources
    from ..tokenization.specs import LabelSet

    files = list_resources("tokenizers", "labels", roots=config["vocabulary"]["roots"] or None)
    found = {}
    for name, settings in config["tasks"].items():
        label_set = settings.get("label_set")
        if label_set is None or label_set in files or label_set in found:
            continue
        for ref in (settings["train"], settings["eval"]):
            described = describe_dataset(ref["path"]) if ref else None
            if described is not None and described.class_names:
                found[label_set] = LabelSet(label_set, tuple(described.class_names), path=str(ref["path"]))
                break
        else:
            raise ConfigError(f"{config.source}: key 'tasks.{name}.label_set': {label_set!r} is no label-set file "
                              f"(tokenizers/labels/) and the task's data names no classes")
    return found


def task_spec(config: ExperimentConfig, name: str) -> TaskSpec:
    roots = config["vocabulary"]["roots"] or None
    spec = load_task(name, roots)
    overrides = config["tasks"][name]["overrides"]
    return spec.with_overrides(overrides, f"{spec.path} with {config.source} tasks.{name}.overrides") \
        if overrides else spec


def _check_classes(state: TaskState, split: SplitData, key: str, roots) -> None:
    """Parquet inputs skip the light class-name check: repeat it on the loaded split."""
    if state.label_set is None:
        return
    from ..resources import load_label_set
    from ..tokenization.vocabulary import normalise_name

    try:
        classes = load_label_set(state.label_set, roots=roots)
    except ConfigError:
        return  # a label set the data itself defines (its class names): nothing to compare
    if [normalise_name(c) for c in classes] != [normalise_name(c) for c in split.class_names]:
        raise ConfigError(f"key '{key}.path': the class names of {split.path} do not match label set "
                          f"{state.label_set!r} (key 'tasks.{state.name}.label_set')")


def build_tasks(config: ExperimentConfig, vocab, *, train: bool = True, evaluate: bool = True,
                model_specs: dict[str, TaskSpec] | None = None) -> list[TaskState]:
    """One TaskState per configured task. ``model_specs`` (evaluating a saved model): the specs stored in the model,
    whose coordinate ranges are used as they are; otherwise percentile ranges are resolved from the training split."""
    roots = config["vocabulary"]["roots"] or None
    states = []
    for index, (name, settings) in enumerate(config["tasks"].items()):
        spec = model_specs[name] if model_specs is not None else task_spec(config, name)
        state = TaskState(name, index, spec, settings, settings["label_set"] if kind_of(spec).uses_labels else None)
        key = f"tasks.{name}"
        if train and settings["train"] is not None:
            state.train_split = load_split(settings["train"], spec, f"{key}.train")
            _check_classes(state, state.train_split, f"{key}.train", roots)
            state.train_examples = TaskExamples(spec, state.train_split, settings, train=True,
                                                transforms=settings["transforms"])
            if model_specs is None:
                spec, state.ranges = resolve_coordinate_ranges(spec, state.train_examples, config["seed"])
                state.spec = spec
                state.train_examples.spec = spec
            state.train_examples.codec = make_codec(spec, vocab, state.label_set, state.train_split.layout)
        elif train and model_specs is None and kind_of(spec).coordinate_targets \
                and spec.output.range_mode == "percentiles":
            raise ConfigError(f"key '{key}.train': task {name!r} resolves its coordinate ranges from training data "
                              f"(output.range_mode percentiles); give a train dataset or fixed ranges")
        if evaluate and settings["eval"] is not None:
            state.eval_split = load_split(settings["eval"], spec, f"{key}.eval")
            _check_classes(state, state.eval_split, f"{key}.eval", roots)
            transforms = settings["eval_transforms"]
            if transforms is None:
                transforms = deterministic_part(settings["transforms"])
            state.eval_examples = TaskExamples(spec, state.eval_split, settings, train=False, transforms=transforms)
            state.eval_examples.codec = make_codec(spec, vocab, state.label_set, state.eval_split.layout)
            state.eval_truth = state.kind.evaluation_truth(state.eval_split)
        states.append(state)
    return states


def encoder_layouts(states: list[TaskState]) -> tuple[list[str], dict[str, int]]:
    """Layouts the encoder needs and the persons per layout (the largest M among the datasets of that layout)."""
    persons: dict[str, int] = {}
    for state in states:
        for split in (state.train_split, state.eval_split):
            if split is not None:
                persons[split.layout] = max(persons.get(split.layout, 0), split.persons)
    return list(persons), persons


def build_model_config(config: ExperimentConfig, states: list[TaskState], text_source: str):
    """UPSConfig from the ``model`` section, the layouts and persons of the data, and the resolved task specs."""
    from ..models.configuration_ups import UPSConfig
    from ..skeleton import get_layout

    model = dict(config["model"])
    model.pop("encoder_init", None)  # weights, not shape: build_model loads them
    encoder = dict(model.pop("encoder", {}) or {})
    layouts, persons = encoder_layouts(states)
    encoder.setdefault("layouts", layouts)
    missing = [l for l in layouts if l not in encoder["layouts"]]
    if missing:
        raise ConfigError(f"{config.source}: key 'model.encoder.layouts': the data needs layout {missing[0]!r}")
    encoder.setdefault("max_persons", max(persons.values()))
    layout_persons = {l: p for l, p in persons.items() if p != encoder["max_persons"]}
    encoder.setdefault("layout_persons", layout_persons)
    encoder.setdefault("num_frames", states[0].spec.input.frames)
    tokens = max(encoder["layout_persons"].get(l, encoder["max_persons"]) * get_layout(l).num_joints
                 for l in encoder["layouts"])
    encoder.setdefault("max_spatial_tokens", tokens)
    # the weight of each task kind's auxiliary loss term, part of what forward(labels=...) returns
    default_l1 = config["training"]["l1_weight"]
    weights = {s.name: s.settings["l1_weight"] if s.settings["l1_weight"] is not None else default_l1
               for s in states}
    model.setdefault("auxiliary_weights", {name: w for name, w in weights.items() if w})
    # the label set each task trains: what decoding uses when none is given
    model.setdefault("trained_label_sets", {s.name: s.label_set for s in states if s.label_set is not None})
    try:
        return UPSConfig(encoder=encoder, tasks=[s.name for s in states],
                         task_specs={s.name: s.spec.raw for s in states}, text_embedding_source=text_source,
                         **model)
    except ConfigError as e:
        raise ConfigError(f"{config.source}: key 'model': {e}") from None


def build_model(config: ExperimentConfig, states: list[TaskState], vocab, table, text_source: str):
    from ..models.modeling_ups import UPSForSeq2Seq

    model = UPSForSeq2Seq(build_model_config(config, states, text_source), vocabulary=vocab, text_embeddings=table)
    init = config["model"].get("encoder_init")
    if init:
        init_encoder(model.encoder.dste, init, states)
    return model


def init_encoder(dste, path, states: list[TaskState]) -> str:
    """``model.encoder_init``: start the DSTE from a pretraining export (``encoder.safetensors``, by its metadata) or
    from a released USDRL checkpoint (mapped by :mod:`~ups_toolkit.models.usdrl_weights` into the layout of the
    first NTU-25 dataset, else the first layout). Routed encoders get the weights in every block. Files whose keys
    or shapes do not fit raise DataFormatError naming the file. Returns what was loaded, for the log."""
    from safetensors import safe_open

    from ..pretraining.model import ENCODER_FORMAT, load_encoder_weights

    is_export = False
    try:
        with safe_open(str(path), framework="pt") as f:
            is_export = (f.metadata() or {}).get("format") == ENCODER_FORMAT
    except Exception:  # not safetensors: a torch checkpoint of the reference code
        is_export = False
    if is_export:
        report = load_encoder_weights(dste, path)
        return f"{path}: {len(report.loaded)} encoder tensors from a pretraining export"
    from ..models.usdrl_weights import load_usdrl_weights

    layouts = list(dste.config.layouts)
    layout = "ntu25" if "ntu25" in layouts else layouts[0]
    report = load_usdrl_weights(dste, path, layout=layout)
    return f"{path}: {len(report.loaded)} encoder tensors from a USDRL checkpoint (layout {layout})"
