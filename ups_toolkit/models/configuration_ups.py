"""``UPSConfig``: the Hugging Face configuration of the UPS model (docs/design.md D3, D6-D8).

One config describes the whole model: the DSTE encoder (``encoder``, :class:`~ups_toolkit.models.dste.DSTEConfig`
fields), the tasks it serves (``tasks``: names in task-id order, ``task_specs``: their parsed YAML, coordinate ranges
resolved by training), the decoder shape and the vocabulary it was built for (``vocab_size``, ``d_text``,
``vocab_sha256``). A saved model is therefore self-contained: ``config.json`` + ``model.safetensors`` (the frozen text
table included) + ``vocab.json``.

transformers 5 pitfalls handled here (docs/dependencies.md §2): ``tie_word_embeddings`` is set explicitly (False:
input and output embeddings are one module, nothing to tie); ``is_encoder_decoder`` goes in through ``kwargs``
before ``super().__init__`` (an explicit keyword breaks ``from_pretrained``, which calls ``cls(**config_dict)``);
``attribute_map`` gives ``generate()`` the standard names it builds its cache from.
"""

from __future__ import annotations

from dataclasses import field

from transformers import PreTrainedConfig

from ..errors import ConfigError

LOGIT_KINDS = ("dot", "cosine")
LOSS_SUPPORTS = ("grammar", "vocabulary")
POOLED_FEATURE_USES = ("none", "memory", "bos")  # as decoder.POOLED_FEATURE_USES (this module imports no torch)


class UPSConfig(PreTrainedConfig):
    r"""Configuration of :class:`~ups_toolkit.models.modeling_ups.UPSForSeq2Seq`.

    Args:
        encoder: DSTE encoder fields (:class:`~ups_toolkit.models.dste.DSTEConfig`), optionally with ``preset``
            (``paper``, ``base``, ``small``, ``tiny``) whose values the other keys override. Stored resolved (every
            field, no preset), with ``num_tasks`` = ``len(tasks)``.
        tasks: task names; their order gives the task ids the router embeds. Encoder-only tasks (retrieval) may be
            listed; they use the route of their ``options.route_task``.
        task_specs: ``{name: task YAML as a dict}``; missing names are read from ``tasks/<name>.yaml``. Values may be
            :class:`~ups_toolkit.tokenization.specs.TaskSpec` objects (their ``raw`` dict is stored).
        d_model, decoder_layers, decoder_heads, ffn, dropout: the pre-LN decoder (D8).
        max_target_length: learned decoder positions; default (None) = the longest grammar of the configured tasks.
        vocab_size, d_text, vocab_sha256: filled in from the vocabulary and text table the model is built with.
        vocab_residual: e_i = W t_i + r_i with a trainable residual r_i (True), or the strictly frozen reading
            e_i = W t_i (False).
        logits: ``dot`` (h·e_i + b_i) or ``cosine`` (s·cos(h, e_i) + b_i, learnable s initialised to
            ``logit_scale_init``).
        eot_weight: default loss weight of end-of-task tokens (targets 1, PAD 0).
        loss_over: ``grammar`` (cross-entropy over the grammar-allowed tokens at each position) or ``vocabulary``
            (full-vocabulary cross-entropy, for ablation).
        label_smoothing: ε of label smoothing over the tokens the loss's softmax covers (0 = plain cross-entropy).
        auxiliary_weights: ``{task: λ}``, the weight of the task kind's term added to the cross-entropy by
            ``forward(labels=..., coordinates=...)`` (lifting, motion prediction: L1 on soft-argmax coordinates;
            detection: the temporal-bin L1); training fills it from ``training.l1_weight`` / the task's
            ``l1_weight``. Missing tasks: 0.
        trained_label_sets: ``{task: label set}`` the model was trained on; decoding uses it when no label set is
            given (else the task file's first ``output.label_sets``).
        pooled_feature: how the decoder reads DSTE's max-pooled global feature g: ``bos`` (default: projected and
            added to the BOS input embedding), ``memory`` (one more memory token) or ``none`` (only through the
            temporal/spatial tokens; models saved before this option existed load as ``none``). Issue 14: on a
            validation split of NW-UCLA ``bos`` helped and ``memory`` did not (BENCHMARKS.md).
        gumbel_temperature_start, gumbel_temperature_end: routing temperature annealing (D7).
        text_embedding_source: where the text table came from (encoder id, pooling); informational only.

    Example::

        >>> from ups_toolkit.models import UPSConfig, UPSForSeq2Seq
        >>> config = UPSConfig(encoder=dict(preset="tiny", layouts=["ntu25", "h36m17"], num_blocks=2),
        ...                    tasks=["action_recognition_3d", "pose_estimation_2d3d"], d_model=256)
        >>> config.num_hidden_layers, config.hidden_size        # decoder layers and width, as generate() reads them
        (3, 256)
        >>> model = UPSForSeq2Seq(config, vocabulary=vocab, text_embeddings=table)  # doctest: +SKIP
    """

    model_type = "ups"
    attribute_map = {
        "num_hidden_layers": "decoder_layers",
        "hidden_size": "d_model",
        "num_attention_heads": "decoder_heads",
    }

    encoder: dict = field(default_factory=dict)
    tasks: list = field(default_factory=list)
    task_specs: dict = field(default_factory=dict)
    d_model: int = 512
    decoder_layers: int = 3
    decoder_heads: int = 8
    ffn: int = 2048
    dropout: float = 0.1
    max_target_length: int = 0
    vocab_size: int = 0
    d_text: int = 0
    vocab_sha256: str = ""
    vocab_residual: bool = True
    logits: str = "dot"
    logit_scale_init: float = 10.0
    eot_weight: float = 1.0
    loss_over: str = "grammar"
    label_smoothing: float = 0.0
    auxiliary_weights: dict = field(default_factory=dict)
    trained_label_sets: dict = field(default_factory=dict)
    pooled_feature: str = "bos"
    gumbel_temperature_start: float = 1.0
    gumbel_temperature_end: float = 0.1
    text_embedding_source: str = ""
    tie_word_embeddings: bool = False

    def __init__(
        self,
        encoder: dict | None = None,
        tasks=(),
        task_specs: dict | None = None,
        d_model: int = 512,
        decoder_layers: int = 3,
        decoder_heads: int = 8,
        ffn: int = 2048,
        dropout: float = 0.1,
        max_target_length: int | None = None,
        vocab_size: int = 0,
        d_text: int = 0,
        vocab_sha256: str = "",
        vocab_residual: bool = True,
        logits: str = "dot",
        logit_scale_init: float = 10.0,
        eot_weight: float = 1.0,
        loss_over: str = "grammar",
        label_smoothing: float = 0.0,
        auxiliary_weights: dict | None = None,
        trained_label_sets: dict | None = None,
        pooled_feature: str = "bos",
        gumbel_temperature_start: float = 1.0,
        gumbel_temperature_end: float = 0.1,
        text_embedding_source: str = "",
        **kwargs,
    ):
        self.tasks = [str(t) for t in tasks]
        self.task_specs = _task_spec_dicts(self.tasks, task_specs or {})
        self.encoder = _resolve_encoder(dict(encoder or {}), num_tasks=max(1, len(self.tasks)))
        self.d_model, self.decoder_layers, self.decoder_heads = int(d_model), int(decoder_layers), int(decoder_heads)
        self.ffn, self.dropout = int(ffn), float(dropout)
        self.vocab_size, self.d_text, self.vocab_sha256 = int(vocab_size), int(d_text), str(vocab_sha256)
        self.vocab_residual, self.logits = bool(vocab_residual), str(logits)
        self.logit_scale_init, self.eot_weight, self.loss_over = float(logit_scale_init), float(eot_weight), loss_over
        self.label_smoothing, self.pooled_feature = float(label_smoothing), str(pooled_feature)
        self.auxiliary_weights = {str(t): float(w) for t, w in (auxiliary_weights or {}).items()}
        self.trained_label_sets = {str(t): str(n) for t, n in (trained_label_sets or {}).items()}
        self.gumbel_temperature_start = float(gumbel_temperature_start)
        self.gumbel_temperature_end = float(gumbel_temperature_end)
        self.text_embedding_source = str(text_embedding_source)
        needed = self.longest_target()
        self.max_target_length = needed if not max_target_length else int(max_target_length)
        self._check(needed)
        kwargs["is_encoder_decoder"] = True
        kwargs["tie_word_embeddings"] = False  # one module computes input and output embeddings (docs/design.md D3)
        super().__init__(**kwargs)

    def _check(self, needed: int) -> None:
        problems = []
        if len(set(self.tasks)) != len(self.tasks):
            problems.append(f"tasks lists a name twice: {self.tasks}")
        if self.d_model < 2 or self.decoder_heads < 1 or self.d_model % self.decoder_heads:
            problems.append(f"d_model {self.d_model} must be divisible by decoder_heads {self.decoder_heads}")
        for name in ("decoder_layers", "ffn"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout {self.dropout} must lie in [0, 1)")
        if self.logits not in LOGIT_KINDS:
            problems.append(f"logits {self.logits!r} is not one of {', '.join(LOGIT_KINDS)}")
        if self.loss_over not in LOSS_SUPPORTS:
            problems.append(f"loss_over {self.loss_over!r} is not one of {', '.join(LOSS_SUPPORTS)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(f"label_smoothing {self.label_smoothing} must lie in [0, 1)")
        if self.pooled_feature not in POOLED_FEATURE_USES:
            problems.append(f"pooled_feature {self.pooled_feature!r} is not one of {', '.join(POOLED_FEATURE_USES)}")
        unknown = [t for t in self.auxiliary_weights if t not in self.tasks]
        if unknown or any(w < 0 for w in self.auxiliary_weights.values()):
            problems.append(f"auxiliary_weights must be >= 0 and name configured tasks, got {self.auxiliary_weights}")
        if self.eot_weight < 0:
            problems.append(f"eot_weight {self.eot_weight} must be >= 0")
        if not 0 < self.gumbel_temperature_end <= self.gumbel_temperature_start:
            problems.append("Gumbel temperatures need 0 < gumbel_temperature_end <= gumbel_temperature_start, got "
                            f"{self.gumbel_temperature_start} -> {self.gumbel_temperature_end}")
        if self.max_target_length < needed:
            problems.append(f"max_target_length {self.max_target_length} is shorter than the longest grammar of the "
                            f"configured tasks ({needed} tokens)")
        if problems:
            raise ConfigError("invalid UPS config: " + "; ".join(problems))

    def task_spec(self, name: str):
        """The :class:`~ups_toolkit.tokenization.specs.TaskSpec` of a configured task, parsed from ``task_specs``."""
        from ..tokenization.specs import parse_task

        if name not in self.task_specs:
            raise ConfigError(f"task {name!r} is not configured in this model (tasks: {', '.join(self.tasks)})")
        return parse_task(self.task_specs[name], f"UPSConfig task_specs[{name!r}]", expected_name=name)

    def longest_target(self) -> int:
        """Longest target (EOT included) over the configured tasks: the decoder positions needed."""
        from ..tokenization.grammar import max_target_length

        return max([max_target_length(self.task_spec(name)) for name in self.tasks] + [1])

    def encoder_config(self):
        """The encoder's :class:`~ups_toolkit.models.dste.DSTEConfig`."""
        from .dste import DSTEConfig

        return DSTEConfig(**self.encoder)


def _task_spec_dicts(tasks: list[str], given: dict) -> dict:
    """``{name: YAML dict}`` for every configured task: given ones (dicts or TaskSpecs), the rest from task files."""
    import copy

    unknown = sorted(set(given) - set(tasks))
    if unknown:
        raise ConfigError(f"task_specs names {unknown[0]!r}, which is not in tasks ({', '.join(tasks) or 'none'})")
    specs = {}
    missing = [name for name in tasks if name not in given]
    if missing:
        from ..tokenization.specs import load_tasks

        specs.update({spec.name: copy.deepcopy(spec.raw) for spec in load_tasks(missing)})
    for name, value in given.items():
        raw = getattr(value, "raw", value)
        if not isinstance(raw, dict):
            raise ConfigError(f"task_specs[{name!r}] must be a task YAML mapping or a TaskSpec, "
                              f"got {type(value).__name__}")
        specs[name] = copy.deepcopy(raw)
    return {name: specs[name] for name in tasks}


def _resolve_encoder(encoder: dict, num_tasks: int) -> dict:
    """Every DSTEConfig field, the preset applied; ``num_tasks`` follows the task list."""
    from .dste import DSTEConfig, PRESETS

    preset = encoder.pop("preset", None)
    given_tasks = encoder.pop("num_tasks", None)
    if given_tasks is not None and int(given_tasks) != num_tasks:
        raise ConfigError(f"encoder num_tasks {given_tasks} differs from the {num_tasks} configured tasks "
                          "(leave it out: it follows tasks)")
    fields = set(DSTEConfig.__dataclass_fields__)
    unknown = sorted(set(encoder) - fields)
    if unknown:
        raise ConfigError(f"encoder: unknown key {unknown[0]!r} (DSTE fields: {', '.join(sorted(fields))}, preset)")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"encoder: unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")
    values = {**PRESETS.get(preset, {}), **encoder, "num_tasks": num_tasks}
    return DSTEConfig(**values).to_dict()


__all__ = ["UPSConfig"]
