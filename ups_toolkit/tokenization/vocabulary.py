"""The unified vocabulary: every task's output as tokens of one table (docs/design.md D3).

Token families, in id order (each family is one contiguous id range), with their keys and prompts:

- ``pad``: ``<pad>`` = id 0, no prompt (its text-embedding row is zero);
- ``task``: one task (BOS) token per task with a decoder, ``<task:NAME>``, prompt ``"{task}"`` ("3D action
  recognition");
- ``action``: the union of the label sets deduplicated by normalised name, ``action:NORMALISED NAME``, prompt = the
  class name ("brushing teeth");
- ``coord_x``, ``coord_y``, ``coord_z``: n_bins bins per axis, ``coord_x:17``, prompt "The eighteenth horizontal
  coordinate";
- ``time``: temporal positions (detection), ``time:5``, prompt "The sixth temporal position";
- ``eot``: one end-of-task token per task with a decoder, ``<eot:NAME>``, prompt "3D action recognition ends here".

Ids are a pure function of the inputs (task names sorted, label sets in ``vocabulary.yaml`` order then those only a
task names, classes in class-index order), so building twice gives the same vocabulary. **Extending:** a label set
appended at the end keeps every task token and every existing action id; the coordinate, temporal and end-of-task
families then move up by the number of new actions, and a new task moves everything after the task family. A
trained model is bound to the ``vocab.json`` it was saved with; :meth:`Vocabulary.transfer_map` carries rows
(text embeddings, residuals, biases) from an old vocabulary to a new one by token key.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..errors import ConfigError
from .ordinals import ordinal_words
from .specs import (
    CoordinateSpec,
    LabelSet,
    TaskSpec,
    VocabularySpec,
    load_coordinate_spec,
    load_label_set_spec,
    load_tasks,
    load_vocabulary_spec,
)

FORMAT = "ups-vocabulary"
FORMAT_VERSION = 1


def normalise_name(name: str) -> str:
    """Dedup key of a class name: NFKC, casefold, ``_``/``-`` -> space, collapsed whitespace, trailing punctuation
    (Unicode category Po: ``. , ! ? ; :`` ...) stripped. "Squat_down." -> "squat down"."""
    text = unicodedata.normalize("NFKC", name).casefold().replace("_", " ").replace("-", " ")
    text = " ".join(text.split())
    while text and (unicodedata.category(text[-1]) == "Po" or text[-1].isspace()):
        text = text[:-1]
    return text


def display_name(name: str) -> str:
    """Prompt text of a class name: as written, but NFKC, ``_`` -> space and collapsed whitespace ("brush_hair" ->
    "brush hair"); case and hyphens are kept because the text encoder may use them."""
    return " ".join(unicodedata.normalize("NFKC", name).replace("_", " ").split())


@dataclass(frozen=True)
class _Family:
    name: str
    start: int
    stop: int


class Vocabulary:
    """Token table with stable ids; see the module docstring for the family layout.

    >>> vocab = build_vocabulary()                     # every task file and label set
    >>> vocab.label_set_ids("ntu60")[2]                # token id of NTU-60 class 2 ("brushing teeth")
    >>> vocab.prompts[vocab.coordinate_offset("x")]    # 'The first horizontal coordinate'
    """

    def __init__(self, *, keys, prompts, families, tasks, label_sets, aliases, n_bins, axes, n_time_bins):
        self.keys: list[str] = list(keys)
        self.prompts: list[str | None] = list(prompts)  # None only for PAD
        self.families: list[_Family] = [_Family(*f) for f in families]
        self.tasks: tuple[str, ...] = tuple(tasks)  # tasks with a decoder, in task-token order
        self._label_sets = {name: np.asarray(ids, dtype=np.int64) for name, ids in label_sets.items()}
        self.aliases: dict[str, str] = dict(aliases)  # normalised synonym -> normalised canonical name
        self.n_bins, self.axes, self.n_time_bins = int(n_bins), tuple(axes), int(n_time_bins)
        self._index = {key: i for i, key in enumerate(self.keys)}
        if len(self._index) != len(self.keys):
            raise ConfigError("vocabulary has duplicate token keys")
        self._family = {f.name: f for f in self.families}
        self._bounds = np.array([f.stop for f in self.families])
        self._sha256 = None

    # ---- sizes and families ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    @property
    def pad_id(self) -> int:
        return 0

    def family_slice(self, family: str) -> slice:
        f = self._family[family]
        return slice(f.start, f.stop)

    def family_of(self, ids) -> np.ndarray:
        """Family name of each token id, same shape as ``ids``."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"token ids must lie in [0, {len(self)})")
        names = np.array([f.name for f in self.families])
        return names[np.searchsorted(self._bounds, ids, side="right")]

    def family_sizes(self) -> dict[str, int]:
        return {f.name: f.stop - f.start for f in self.families}

    # ---- lookups -----------------------------------------------------------------------------------------------------
    def token_id(self, key: str) -> int:
        try:
            return self._index[key]
        except KeyError:
            raise KeyError(f"no token {key!r} in the vocabulary") from None

    def task_token(self, task: str) -> int:
        """Id of the task (BOS) token that starts every decoder input of ``task``."""
        return self._task_family_id("task", task)

    def eot_token(self, task: str) -> int:
        return self._task_family_id("eot", task)

    def _task_family_id(self, family: str, task: str) -> int:
        if task not in self.tasks:
            raise ConfigError(f"task {task!r} has no tokens in this vocabulary (tasks: {', '.join(self.tasks)})")
        return self._family[family].start + self.tasks.index(task)

    def action_token(self, name: str) -> int:
        """Id of the action token of a class name, after normalisation and aliases."""
        key = normalise_name(name)
        return self.token_id("action:" + self.aliases.get(key, key))

    @property
    def label_set_names(self) -> tuple[str, ...]:
        return tuple(self._label_sets)

    def label_set_ids(self, name: str) -> np.ndarray:
        """(K,) int64 token id of each class index of a label set."""
        if name not in self._label_sets:
            raise ConfigError(f"label set {name!r} is not in this vocabulary "
                              f"(label sets: {', '.join(self._label_sets)})")
        return self._label_sets[name].copy()

    def coordinate_offset(self, axis: str) -> int:
        """Id of bin 0 of an axis; bin q is ``offset + q``."""
        return self._family[f"coord_{axis}"].start

    @property
    def time_offset(self) -> int:
        """Id of temporal position 0; position k is ``time_offset + k``."""
        return self._family["time"].start

    # ---- serialisation -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "n_bins": self.n_bins,
            "axes": list(self.axes),
            "n_time_bins": self.n_time_bins,
            "tasks": list(self.tasks),
            "families": [[f.name, f.start, f.stop] for f in self.families],
            "keys": self.keys,
            "prompts": self.prompts,
            "label_sets": {name: ids.tolist() for name, ids in self._label_sets.items()},
            "aliases": self.aliases,
        }

    @property
    def sha256(self) -> str:
        """Digest of the whole table (keys, prompts, families, label-set maps)."""
        if self._sha256 is None:
            blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            self._sha256 = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        return self._sha256

    def save(self, path: str | Path) -> Path:
        """Write ``vocab.json`` atomically (``path`` may be a folder or a file name)."""
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.json"
        data = {**self.to_dict(), "sha256": self.sha256}
        atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1))
        return path

    @classmethod
    def from_dict(cls, data: dict, source: str = "vocab.json") -> "Vocabulary":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not a ups-toolkit vocabulary (key 'format' must be {FORMAT!r})")
        if data.get("version") != FORMAT_VERSION:
            raise ConfigError(f"{source}: key 'version': {data.get('version')!r} is not supported "
                              f"(this toolkit reads version {FORMAT_VERSION})")
        try:
            vocab = cls(keys=data["keys"], prompts=data["prompts"], families=data["families"], tasks=data["tasks"],
                        label_sets=data["label_sets"], aliases=data["aliases"], n_bins=data["n_bins"],
                        axes=data["axes"], n_time_bins=data["n_time_bins"])
        except KeyError as e:
            raise ConfigError(f"{source}: key {e.args[0]!r}: missing") from None
        if "sha256" in data and data["sha256"] != vocab.sha256:
            raise ConfigError(f"{source}: key 'sha256': the file was edited or corrupted "
                              f"(stored {data['sha256'][:12]}..., content {vocab.sha256[:12]}...)")
        return vocab

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read vocabulary: {e}") from None
        return cls.from_dict(data, str(path))

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.sha256 == other.sha256

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k} {v}" for k, v in self.family_sizes().items())
        return f"Vocabulary({len(self)} tokens: {sizes})"

    def transfer_map(self, old: "Vocabulary") -> np.ndarray:
        """(len(self),) int64: for each token of this vocabulary the id of the same key in ``old``, or -1 for a
        new token. ``new_rows = np.where(m >= 0, old_rows[m], init)`` carries trained rows over."""
        return np.array([old._index.get(key, -1) for key in self.keys], dtype=np.int64)




def _alias_table(spec: VocabularySpec) -> tuple[dict[str, str], dict[str, str]]:
    """(normalised synonym -> normalised canonical, normalised canonical -> canonical as written)."""
    to_canonical, canonical_text = {}, {}
    for canonical, synonyms in spec.aliases.items():
        key = normalise_name(canonical)
        if key in to_canonical:
            raise ConfigError(f"{spec.path}: key 'aliases.{canonical}': {canonical!r} is already a synonym of "
                              f"{canonical_text[to_canonical[key]]!r}")
        if key in canonical_text:
            raise ConfigError(f"{spec.path}: key 'aliases.{canonical}': the same name is listed twice as canonical")
        canonical_text[key] = canonical
        for synonym in synonyms:
            s = normalise_name(synonym)
            if s == key:
                continue  # a spelling variant the normalisation already merges
            if s in to_canonical or s in canonical_text:
                other = canonical_text[to_canonical.get(s, s)]
                raise ConfigError(f"{spec.path}: key 'aliases.{canonical}': synonym {synonym!r} already belongs to "
                                  f"the group of {other!r}")
            to_canonical[s] = key
    return to_canonical, canonical_text


def build_vocabulary(
    tasks: list[TaskSpec] | None = None,
    *,
    vocabulary_spec: VocabularySpec | None = None,
    coordinate_spec: CoordinateSpec | None = None,
    label_sets: dict[str, LabelSet] | None = None,
    roots: list[str | Path] | None = None,
) -> Vocabulary:
    """Build the unified vocabulary.

    ``tasks``: the task specs (default: every ``tasks/*.yaml``); ``roots``: user folders holding ``tokenizers/``
    and ``tasks/`` searched first; ``label_sets``: already-loaded label sets by name (others load from files).
    """
    tasks = load_tasks(roots=roots) if tasks is None else sorted(tasks, key=lambda t: t.name)
    if len({t.name for t in tasks}) != len(tasks):
        raise ConfigError(f"task names must be unique, got {[t.name for t in tasks]}")
    vspec = vocabulary_spec or load_vocabulary_spec(roots)
    cspec = coordinate_spec or load_coordinate_spec(roots)
    decoder_tasks = [t for t in tasks if t.has_decoder]
    for task in decoder_tasks:
        if task.output.grammar == "segments" and task.output.n_time_bins > cspec.n_time_bins:
            raise ConfigError(f"{task.path}: key 'output.n_time_bins': {task.output.n_time_bins} exceeds the "
                              f"{cspec.n_time_bins} temporal tokens of {cspec.path} (key 'temporal.n_bins')")
        for axis in task.output.axes:
            if axis not in cspec.axes:
                raise ConfigError(f"{task.path}: key 'output.axes': {axis!r} is not an axis of {cspec.path}")

    # label sets: vocabulary.yaml order, then those only a task names (in task order)
    wanted: dict[str, str] = {name: f"{vspec.path} key 'label_sets'" for name in vspec.label_sets}
    for task in tasks:
        for name in task.output.label_sets:
            wanted.setdefault(name, f"{task.path} key 'output.label_sets'")
    given = dict(label_sets or {})
    for name in given:  # label sets a dataset brings (its own class names), after the files'
        wanted.setdefault(name, "the data")
    sets = [given[n] if n in given else load_label_set_spec(n, roots, wanted_by=why) for n, why in wanted.items()]

    keys: list[str] = [vspec.pad_key]
    prompts: list[str | None] = [None]
    families = [("pad", 0, 1)]

    def family(name: str, items: list[tuple[str, str]]) -> None:
        start = len(keys)
        for key, prompt in items:
            keys.append(key)
            prompts.append(prompt)
        families.append((name, start, len(keys)))

    family("task", [(vspec.task_key.format(name=t.name), cspec.task_prompt.format(task=t.display_name))
                    for t in decoder_tasks])

    to_canonical, canonical_text = _alias_table(vspec)
    action_ids: dict[str, int] = {}  # normalised canonical name -> token id
    actions: list[tuple[str, str]] = []
    set_maps: dict[str, list[int]] = {}
    first_action = len(keys)
    for label_set in sets:
        ids, seen = [], {}
        for index, cls_name in enumerate(label_set.classes):
            norm = normalise_name(cls_name)
            if not norm:
                raise ConfigError(f"{label_set.path}: key 'classes[{index}]': {cls_name!r} is empty after "
                                  "normalisation")
            canonical = to_canonical.get(norm, norm)
            if canonical in seen:
                raise ConfigError(
                    f"{label_set.path}: key 'classes[{index}]': {cls_name!r} names the same action as "
                    f"classes[{seen[canonical]}] {label_set.classes[seen[canonical]]!r} (after normalisation"
                    f"{' and aliases' if canonical != norm else ''}); one label set needs distinct actions")
            seen[canonical] = index
            if canonical not in action_ids:
                action_ids[canonical] = first_action + len(actions)
                text = canonical_text[canonical] if canonical != norm else cls_name
                actions.append(("action:" + canonical, display_name(text)))
            ids.append(action_ids[canonical])
        set_maps[label_set.name] = ids
    family("action", actions)

    for axis, template in cspec.axis_prompts.items():
        family(f"coord_{axis}", [(f"coord_{axis}:{q}", template.format(ordinal=ordinal_words(q + 1)))
                                 for q in range(cspec.n_bins)])
    family("time", [(f"time:{k}", cspec.temporal_prompt.format(ordinal=ordinal_words(k + 1)))
                    for k in range(cspec.n_time_bins)])
    family("eot", [(vspec.eot_key.format(name=t.name),
                    (t.eot_prompt or cspec.eot_prompt).format(task=t.display_name)) for t in decoder_tasks])

    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(f"{vspec.path}: key 'special_tokens': token key {dup!r} is produced twice")
    return Vocabulary(keys=keys, prompts=prompts, families=families, tasks=[t.name for t in decoder_tasks],
                      label_sets=set_maps, aliases={s: c for s, c in to_canonical.items()},
                      n_bins=cspec.n_bins, axes=cspec.axes, n_time_bins=cspec.n_time_bins)
