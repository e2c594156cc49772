"""The unified vocabulary and the task definitions (docs/design.md D3-D5).

- :mod:`.specs`: load and validate ``tokenizers/*.yaml``, ``tokenizers/labels/*.yaml`` and ``tasks/*.yaml``;
- :mod:`.vocabulary`: build the token table with stable ids, save/load ``vocab.json``;
- :mod:`.text_embedding`: one text-encoder embedding per prompt, cached as safetensors (imports torch lazily);
- :mod:`.targets`: task targets <-> tokens (labels, coordinate bins, segments), decoder inputs, padding;
- :mod:`.grammar`: allowed-token masks for constrained decoding.

A new task is a new ``tasks/<name>.yaml`` (plus a label set in ``tokenizers/labels/`` if it predicts classes): the
vocabulary gains its task and end-of-task tokens and its classes, and its grammar and codec come from its
``output.grammar``, with no code change.
"""

from .grammar import Grammar, build_grammar, max_target_length
from .ordinals import ordinal_words
from .specs import (
    CoordinateSpec,
    LabelSet,
    TaskSpec,
    VocabularySpec,
    load_coordinate_spec,
    load_label_set_spec,
    load_task,
    load_tasks,
    load_vocabulary_spec,
    task_paths,
)
from .targets import (
    CoordinateQuantizer,
    Segment,
    build_codec,
    collate_targets,
    decoder_input,
    quantisation_floor,
    ranges_from_percentiles,
)
from .text_embedding import DEFAULT_TEXT_ENCODER, OFFLINE_TEXT_ENCODER, embed_prompts, embed_vocabulary
from .vocabulary import Vocabulary, build_vocabulary, normalise_name

__all__ = [
    "CoordinateQuantizer", "CoordinateSpec", "DEFAULT_TEXT_ENCODER", "Grammar", "LabelSet", "OFFLINE_TEXT_ENCODER",
    "Segment", "TaskSpec", "Vocabulary", "VocabularySpec", "build_codec", "build_grammar", "build_vocabulary",
    "collate_targets", "decoder_input", "embed_prompts", "embed_vocabulary", "load_coordinate_spec",
    "load_label_set_spec", "load_task", "load_tasks", "load_vocabulary_spec", "max_target_length", "normalise_name",
    "ordinal_words", "quantisation_floor", "ranges_from_percentiles", "task_paths",
]
