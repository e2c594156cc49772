"""The UPS model: DSTE encoder with dynamic routing + autoregressive decoder over the unified vocabulary (D6-D8).

``UPSForSeq2Seq`` is a Hugging Face ``PreTrainedModel`` + ``GenerationMixin``:

- ``model(pose=…, layout=…, task=…, labels=…)`` → :class:`UPSSeq2SeqOutput` with the weighted cross-entropy over the
  grammar-allowed tokens of each target position (the masks come from the task grammar,
  :mod:`ups_toolkit.tokenization.grammar`; ``loss_over: vocabulary`` is full-vocabulary CE for ablation);
- ``model.predict(pose, layout, task)``: our own batched, cached, grammar-constrained greedy loop for every grammar,
  keeping the axis-restricted bin distributions for soft-argmax coordinates and the token probabilities for
  detection scores;
- ``model.generate(pose=…, layout=…, task=…)``: transformers' ``generate()`` for token outputs, constrained by a
  :class:`GrammarLogitsProcessor` and driven by one complete ``GenerationConfig`` (:meth:`generation_config_for`);
- ``save_pretrained`` / ``from_pretrained`` (and ``AutoModel`` / ``AutoModelForSeq2SeqLM``, registered when this
  module is imported): ``config.json``, ``model.safetensors`` (the frozen text table included) and ``vocab.json``;
  a corrupt or mismatched checkpoint raises :class:`~ups_toolkit.errors.ConfigError` naming the file.

A batch holds one task and one layout (docs/design.md D5); the task picks the encoder route and the decoder's BOS/EOT.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.generation import LogitsProcessor, LogitsProcessorList
from transformers.utils import ModelOutput

from ..errors import ConfigError, UPSError
from ..kinds import kind_of
from ..tokenization.grammar import Grammar, build_grammar
from ..tokenization.targets import build_codec
from ..tokenization.vocabulary import Vocabulary
from .configuration_ups import UPSConfig
from .decoder import UPSDecoder, VocabularyEmbedding
from .dste import DSTE, Attention, CABranch, DSTEOutput, LayoutEmbedding
from .routing import TaskRouter, gumbel_temperature

VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"


# ----------------------------------------------------------------------------------------------------------------------
# outputs


@dataclass
class UPSEncoderOutput(ModelOutput):
    """Encoder outputs as ``generate()`` carries them between steps (every tensor batch-first, so beams expand them).

    temporal: (N, T, d_enc) temporal tokens; spatial: (N, S_max, d_enc) spatial tokens (padded slots 0);
    spatial_padding_mask: (N, S_max) bool, True on padding; pooled: (N, 2·d_enc) max-pooled feature g;
    routes: (N, num_layers) long, the block each encoder layer ran (the same for every row of a batch).
    """

    temporal: torch.FloatTensor | None = None
    spatial: torch.FloatTensor | None = None
    spatial_padding_mask: torch.BoolTensor | None = None
    pooled: torch.FloatTensor | None = None
    routes: torch.LongTensor | None = None

    @property
    def last_hidden_state(self) -> torch.FloatTensor:
        """(N, T + S_max, d_enc) every encoder token, temporal first; ``generate(encoder_outputs=...)`` reads the
        batch size from it."""
        return torch.cat([self.temporal, self.spatial], dim=1)


@dataclass
class UPSSeq2SeqOutput(ModelOutput):
    """loss: scalar weighted CE (with ``labels``); logits: (N, L, V) (with ``labels`` and the grammar loss, -inf on
    the tokens the task's grammar never allows: they are not computed); cache: the ``EncoderDecoderCache`` when one was
    passed or ``use_cache`` asked for one; decoder_hidden_state: (N, L, d_model) final-LN decoder states;
    encoder_pooled: (N, 2·d_enc); routes: (N, num_layers) encoder blocks used.

    ``past_key_values`` is the same object as ``cache``: transformers renamed the cache from ``past_key_values`` to
    ``cache`` in 5.24, and ``generate()`` before 5.24 reads it back from the old key (``ALL_CACHE_NAMES`` in
    ``transformers/generation/utils.py``), 5.24 and later from the new one.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: EncoderDecoderCache | None = None
    decoder_hidden_state: torch.FloatTensor | None = None
    encoder_pooled: torch.FloatTensor | None = None
    routes: torch.LongTensor | None = None
    past_key_values: EncoderDecoderCache | None = None


# ----------------------------------------------------------------------------------------------------------------------
# encoder wrapper


class UPSEncoder(nn.Module):
    """The DSTE behind a task-name interface, as ``generate()`` calls it: ``encoder(pose=…, layout=…, task=…)``.

    ``task_ids`` maps every configured task name to the router's task id (encoder-only tasks map to the id of their
    ``options.route_task``).
    """

    main_input_name = "pose"

    def __init__(self, config, task_ids: dict[str, int]):
        super().__init__()
        self.dste = DSTE(config)
        self.task_ids = dict(task_ids)

    def task_id(self, task: str | None) -> int | None:
        if task is None:
            if self.dste.router is not None:
                raise ValueError("this encoder routes per task: pass task=<name>")
            return None
        if task not in self.task_ids:
            raise ConfigError(f"task {task!r} is not configured in this model (tasks: {', '.join(self.task_ids)})")
        return self.task_ids[task]

    def layout(self, layout: str | None) -> str:
        if layout is None:
            layouts = self.dste.config.layouts
            if len(layouts) != 1:
                raise ValueError(f"pass layout=<name>: this encoder has layouts {', '.join(layouts)}")
            return layouts[0]
        return layout

    def encode(self, pose: torch.Tensor, layout: str | None = None, task: str | None = None) -> DSTEOutput:
        """pose (N, T, M, V, C) of one layout → :class:`~ups_toolkit.models.dste.DSTEOutput`, routed for ``task``."""
        return self.dste(pose, layout=self.layout(layout), task_id=self.task_id(task))

    def forward(self, pose: torch.Tensor, layout: str | None = None, task: str | None = None,
                return_dict: bool | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None) -> UPSEncoderOutput:
        # ``return_dict`` / ``output_*``: generate() passes them; the encoder has no attention maps to return.
        out = self.encode(pose, layout, task)
        n = out.pooled.shape[0]
        return UPSEncoderOutput(temporal=out.temporal, spatial=out.spatial,
                                spatial_padding_mask=out.spatial_padding_mask, pooled=out.pooled,
                                routes=out.routes.to(out.pooled.device).expand(n, -1))


# ----------------------------------------------------------------------------------------------------------------------
# grammar-constrained generation


class GrammarLogitsProcessor(LogitsProcessor):
    """Sets the scores of tokens the task grammar does not allow next to -inf (transformers ``generate()``).

    ``input_ids`` (B, t) start with the decoder start (BOS) token, which the grammar does not see.
    """

    def __init__(self, grammar: Grammar):
        self.grammar = grammar
        self.table = torch.as_tensor(grammar.table)  # (S, V) bool

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        states = torch.as_tensor(self.grammar.state(input_ids[:, 1:].cpu().numpy()))
        allowed = self.table[states].to(scores.device)
        return scores.masked_fill(~allowed, float("-inf"))


class GrammarTensors:
    """A grammar's masks as tensors on one device, for the training loss and decoding (built once, then cached).

    table (S, V) bool and first_allowed (S,) the first allowed token per state; tokens (K,) the sorted ids of every
    token the grammar allows somewhere, column (V,) a token's index in ``tokens`` (-1 outside), token_table (S, K)
    and first_allowed_column (S,) the same masks over those columns only.
    """

    def __init__(self, grammar: Grammar, device):
        self.grammar, self.device = grammar, device
        self.table = torch.as_tensor(grammar.table, device=device)
        self.first_allowed = self.table.to(torch.uint8).argmax(-1)
        self.tokens = torch.as_tensor(grammar.tokens, dtype=torch.long, device=device)
        self.column = torch.full((grammar.vocab_size,), -1, dtype=torch.long, device=device)
        self.column[self.tokens] = torch.arange(len(self.tokens), device=device)
        self.token_table = self.table[:, self.tokens]
        self.first_allowed_column = self.column[self.first_allowed]
        self._positional: dict[int, torch.Tensor | None] = {}

    def states(self, targets: torch.LongTensor) -> torch.LongTensor:
        """(N, L) state before each position of teacher-forced targets = ``grammar.states``, computed on the
        targets' device when the state depends on the position alone (no host round trip per step)."""
        length = targets.shape[1]
        if length not in self._positional:
            positional = self.grammar.positional_states(length)
            self._positional[length] = None if positional is None else torch.as_tensor(positional,
                                                                                       device=self.device)
        positional = self._positional[length]
        if positional is None:  # token-dependent states (segments)
            return torch.as_tensor(self.grammar.states(targets.cpu().numpy()), device=targets.device)
        is_eot = targets == self.grammar.eot_id
        after_eot = (is_eot.cumsum(1) - is_eot.long()) > 0
        return positional.expand_as(targets).masked_fill(after_eot, self.grammar.DONE)


# ----------------------------------------------------------------------------------------------------------------------
# checkpoint checks


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: {what} is not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} must be a JSON object")
    return data


def check_safetensors(path: Path) -> None:
    """Raise ConfigError naming ``path`` when it is not a complete safetensors file (e.g. a truncated copy)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ConfigError(f"{path}: not a safetensors file ({size} bytes, truncated or empty)")
            (header_size,) = struct.unpack("<Q", head)
            if header_size > size - 8:
                raise ConfigError(f"{path}: truncated safetensors file (header of {header_size} bytes announced, "
                                  f"file has {size} bytes)")
            header = json.loads(f.read(header_size))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the weights: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path}: corrupt safetensors header (not JSON)") from None
    try:
        data_bytes = max([int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"] + [0])
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        raise ConfigError(f"{path}: corrupt safetensors header (tensor entries without data_offsets)") from None
    expected = 8 + header_size + data_bytes
    if expected != size:
        state = "truncated" if size < expected else "has trailing bytes"
        raise ConfigError(f"{path}: safetensors file {state}: its header describes {expected} bytes, the file has "
                          f"{size}")


def _checkpoint_folder(name_or_path, kwargs: dict) -> Path | None:
    """The local folder of a checkpoint (``subfolder`` applied), or None for a hub id."""
    folder = Path(name_or_path).expanduser()
    if kwargs.get("subfolder"):
        folder = folder / kwargs["subfolder"]
    return folder if folder.is_dir() else None


def _hub_file(name_or_path, filename: str, kwargs: dict) -> Path:
    from transformers.utils import cached_file

    hub = {k: kwargs[k] for k in ("cache_dir", "force_download", "local_files_only", "token", "revision",
                                  "subfolder") if k in kwargs}
    try:
        return Path(cached_file(name_or_path, filename, **hub))
    except OSError as e:
        raise ConfigError(f"{name_or_path}: cannot get {filename}: {str(e).splitlines()[0]}") from None


def check_checkpoint(name_or_path, **kwargs) -> tuple[dict, Vocabulary]:
    """Validate a saved UPS model before loading it; returns (config.json dict, vocabulary).

    Checks: config.json readable with ``model_type`` "ups"; every safetensors file complete; vocab.json present,
    unedited (its own sha256) and the vocabulary the model's text table was built for (``config.vocab_sha256``).
    """
    folder = _checkpoint_folder(name_or_path, kwargs)

    def locate(filename: str) -> Path:
        if folder is None:
            return _hub_file(name_or_path, filename, kwargs)
        path = folder / filename
        if not path.is_file():
            raise ConfigError(f"{path}: missing (a saved UPS model holds {CONFIG_FILE}, {WEIGHTS_FILE} and "
                              f"{VOCAB_FILE})")
        return path

    config_path = locate(CONFIG_FILE)
    config = _read_json(config_path, "the model configuration")
    if config.get("model_type") != UPSConfig.model_type:
        raise ConfigError(f"{config_path}: model_type is {config.get('model_type')!r}, not a UPS model "
                          f"({UPSConfig.model_type!r})")
    index = folder / WEIGHTS_INDEX_FILE if folder is not None else None
    if index is not None and index.is_file():
        shards = sorted(set(_read_json(index, "the weights index").get("weight_map", {}).values()))
        for shard in shards:
            check_safetensors(locate(shard))
    else:
        check_safetensors(locate(WEIGHTS_FILE))
    vocab_path = locate(VOCAB_FILE)
    vocab = Vocabulary.load(vocab_path)
    if vocab.sha256 != config.get("vocab_sha256") or len(vocab) != config.get("vocab_size"):
        raise ConfigError(
            f"{vocab_path}: this vocabulary ({len(vocab)} tokens, sha256 {vocab.sha256[:12]}...) is not the one the "
            f"model's text table was built for ({config_path}: vocab_size {config.get('vocab_size')}, vocab_sha256 "
            f"{str(config.get('vocab_sha256'))[:12]}...)")
    return config, vocab


# ----------------------------------------------------------------------------------------------------------------------
# models


class UPSPreTrainedModel(PreTrainedModel):
    """Weight initialisation and Hugging Face plumbing shared by UPS models."""

    config_class = UPSConfig
    base_model_prefix = "ups"
    main_input_name = "pose"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        # transformers.initialization functions skip tensors already loaded from a checkpoint. Modules are visited
        # children first. Encoder: USDRL initialisation (docs/design.md D6). Decoder: Linears scaled by fan-in (below),
        # positions and stream embeddings N(0, 0.02²), vocabulary residual and bias 0 (the text-derived part is the
        # prior), cosine logit scale at its configured start.
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, CABranch):  # after its children: the k=1 convolution keeps PyTorch's default init
            module.query_proj.reset_parameters()
        elif isinstance(module, Attention):
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
        elif isinstance(module, LayoutEmbedding):
            init.trunc_normal_(module.spatial_pe, std=0.02)
        elif isinstance(module, DSTE):  # visited after its children
            # from_pretrained replaces non-persistent buffers with empty tensors and leaves them to this method;
            # rebuilt in the parameters' dtype, as .to(dtype) would leave them (from_pretrained(dtype=...) does not)
            module.reset_buffers()
            dtype = next(module.parameters()).dtype
            for owner in module.modules():
                for name in owner._non_persistent_buffers_set:
                    buffer = owner._buffers[name]
                    if buffer is not None and buffer.is_floating_point() and buffer.dtype != dtype:
                        owner._buffers[name] = buffer.to(dtype)
        elif isinstance(module, TaskRouter):
            init.normal_(module.block_embeddings, std=0.02)
            init.normal_(module.task_embeddings, std=0.02)
        elif isinstance(module, VocabularyEmbedding):
            if module.residual is not None:
                init.zeros_(module.residual)
            init.zeros_(module.bias)
            if module.logit_scale is not None:
                init.constant_(module.logit_scale, module.logit_scale_init)
        elif isinstance(module, UPSDecoder):  # visited after its children: overrides their Linear init
            # std 0.02 is tuned for widths of 512-1024 (GPT-2, BART); the decoder scales it with the fan-in as
            # PyTorch's default does, 1/sqrt(3·fan_in) (0.026 at 512, 0.10 at 32), so small CPU configurations keep
            # the signal from the encoder memory instead of damping it by 0.02·sqrt(d) per projection.
            for linear in module.modules():
                if isinstance(linear, nn.Linear):
                    init.trunc_normal_(linear.weight, std=(3 * linear.in_features) ** -0.5)
            init.normal_(module.positions, std=0.02)
            init.normal_(module.stream_embedding, std=0.02)


class UPSForSeq2Seq(UPSPreTrainedModel, GenerationMixin):
    """DSTE encoder (+ routing) and token decoder; see the module docstring.

    ``UPSForSeq2Seq(config, vocabulary=vocab, text_embeddings=table)`` builds a new model: ``table`` is the
    (|V|, d_text) text-embedding table of ``vocab`` (torch or numpy, rows L2-normalised, PAD row 0); the config's
    ``vocab_size``, ``d_text`` and ``vocab_sha256`` are filled in from them. ``from_pretrained`` restores both from
    the checkpoint.
    """

    def __init__(self, config: UPSConfig, vocabulary: Vocabulary | None = None, text_embeddings=None):
        if vocabulary is not None:
            if text_embeddings is None:
                raise ConfigError("a new UPS model needs text_embeddings, the (|V|, d_text) table of its vocabulary")
            text_embeddings = torch.as_tensor(text_embeddings, dtype=torch.float32)
            _bind_vocabulary(config, vocabulary, text_embeddings)
        elif config.vocab_size <= 0 or config.d_text <= 0:
            raise ConfigError("UPSForSeq2Seq needs a vocabulary: UPSForSeq2Seq(config, vocabulary=..., "
                              "text_embeddings=...), or from_pretrained(<saved model>)")
        super().__init__(config)
        encoder_config = config.encoder_config()
        self.encoder = UPSEncoder(encoder_config, _route_task_ids(config))
        self.decoder = UPSDecoder(
            vocab_size=config.vocab_size, d_text=config.d_text, d_encoder=encoder_config.d_model,
            d_model=config.d_model, num_layers=config.decoder_layers, num_heads=config.decoder_heads,
            ffn=config.ffn, dropout=config.dropout, max_positions=config.max_target_length,
            vocab_residual=config.vocab_residual, logits=config.logits, logit_scale_init=config.logit_scale_init,
            pooled_feature=config.pooled_feature)
        self.vocabulary = vocabulary
        self._specs = {name: config.task_spec(name) for name in config.tasks}
        self._kinds = {name: kind_of(spec) for name, spec in self._specs.items()}  # the loss asks them every step
        self._grammars: dict = {}
        self._codecs: dict = {}
        self.post_init()
        if text_embeddings is not None:
            self.decoder.vocab.load_text_table(text_embeddings)

    # ---- Hugging Face plumbing ---------------------------------------------------------------------------------------
    def get_encoder(self):
        return self.encoder

    def get_decoder(self):
        return self.decoder

    def get_input_embeddings(self):
        return self.decoder.vocab

    # ---- tasks, grammars, tokens -------------------------------------------------------------------------------------
    def _vocab(self) -> Vocabulary:
        if self.vocabulary is None:
            raise UPSError("this model has no vocabulary attached (build it with vocabulary=..., or load it with "
                           "from_pretrained)")
        return self.vocabulary

    def task_spec(self, task: str):
        if task not in self._specs:
            raise ConfigError(f"task {task!r} is not configured in this model (tasks: {', '.join(self._specs)})")
        return self._specs[task]

    def _decoder_task(self, task: str | None):
        if task is None:
            raise ValueError("pass task=<name>: the task picks the encoder route and the decoder's BOS/EOT tokens")
        spec = self.task_spec(task)
        if not spec.has_decoder:
            raise ConfigError(f"task {task!r} is encoder-only (output.grammar 'none'): use model.encode(...)")
        return spec

    def grammar(self, task: str, label_set: str | None = None, layout: str | None = None) -> Grammar:
        """The task grammar for one label set (action, segments) or one layout's joint count (coordinates)."""
        spec = self._decoder_task(task)
        kind = spec.output.grammar
        label_set = label_set or self.config.trained_label_sets.get(task)
        key = (task, spec.resolve_label_set(label_set) if kind != "coordinates" else None,
               spec.num_joints(self.encoder.layout(layout)) if kind == "coordinates" else None)
        if key not in self._grammars:
            if kind == "coordinates":
                self._grammars[key] = build_grammar(spec, self._vocab(), num_joints=key[2])
            else:
                self._grammars[key] = build_grammar(spec, self._vocab(), label_set=key[1])
        return self._grammars[key]

    def codec(self, task: str, label_set: str | None = None, layout: str | None = None):
        """The target codec of a task (coordinate ranges from the task spec stored in the config), built once per
        (task, label set or layout)."""
        spec = self._decoder_task(task)
        coordinates = spec.output.grammar == "coordinates"
        label_set = label_set or self.config.trained_label_sets.get(task)
        key = (task, self.encoder.layout(layout) if coordinates else spec.resolve_label_set(label_set))
        if key not in self._codecs:
            self._codecs[key] = (build_codec(spec, self._vocab(), layout=key[1]) if coordinates
                                 else build_codec(spec, self._vocab(), label_set=key[1]))
        return self._codecs[key]

    def _bos(self, task: str, n: int, device) -> torch.Tensor:
        return torch.full((n, 1), self._vocab().task_token(task), dtype=torch.long, device=device)

    # ---- routing -----------------------------------------------------------------------------------------------------
    def set_routing_temperature(self, step: int, total_steps: int) -> float:
        """Anneal the Gumbel temperature: τ = max(τ_end, τ_start·(τ_end/τ_start)^{step/total_steps}) (D7)."""
        tau = gumbel_temperature(step, total_steps, self.config.gumbel_temperature_start,
                                 self.config.gumbel_temperature_end)
        if self.encoder.dste.router is not None:
            self.encoder.dste.router.temperature = tau
        return tau

    def routes(self) -> dict:
        """Inference route per task: ``{task: {stream: [{"block", "probabilities"}, ...per layer]}}``."""
        routes = self.encoder.dste.routes(task_names=self.config.tasks if self.config.tasks else None)
        for name, task_id in self.encoder.task_ids.items():  # encoder-only tasks run their route_task's route
            routes[name] = routes[self.config.tasks[task_id]]
        return routes

    def encode(self, pose: torch.Tensor, layout: str | None = None, task: str | None = None) -> DSTEOutput:
        """Encoder only (retrieval, linear probe): pose (N, T, M, V, C) → DSTEOutput; ``task`` picks the route
        (an encoder-only task uses its ``options.route_task``)."""
        return self.encoder.encode(pose, layout, task)

    # ---- forward and loss --------------------------------------------------------------------------------------------
    def forward(self, pose: torch.Tensor | None = None, layout: str | None = None, task: str | None = None,
                labels: torch.LongTensor | None = None, label_weights: torch.Tensor | None = None,
                label_set: str | None = None, coordinates: torch.Tensor | None = None,
                decoder_input_ids: torch.LongTensor | None = None,
                encoder_outputs: UPSEncoderOutput | None = None, cache: EncoderDecoderCache | None = None,
                use_cache: bool | None = None, return_dict: bool | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                past_key_values: EncoderDecoderCache | None = None, cache_position: torch.LongTensor | None = None):
        """One batch of one task and one layout.

        pose: (N, T, M, V, C) float; labels: (N, L) target tokens after BOS ending with EOT, PAD (0, or -100) after;
        label_weights: (N, L) float, default 1 on targets, ``config.eot_weight`` on EOT, 0 on PAD;
        coordinates: the continuous targets of a coordinate task (lifting (N, F, J, 3), motion (N, K, J, 3) metres)
        for the kind's soft-argmax L1. ``loss`` is what training minimises: the cross-entropy plus
        ``config.auxiliary_weights[task]`` × the task kind's auxiliary term (``TaskKind.auxiliary_loss``);
        decoder_input_ids: default [BOS_task] + labels[:, :-1] (or [BOS_task] without labels);
        cache: an ``EncoderDecoderCache`` (decoding step by step; input_ids then hold the new tokens only);
        ``past_key_values`` is its name before transformers 5.24, which ``generate()`` there passes;
        ``cache_position``: passed by ``generate()`` before transformers 5.5 and unused (positions follow the cache
        length).
        """
        self._decoder_task(task)
        if past_key_values is not None:
            if cache is not None and cache is not past_key_values:
                raise ValueError("pass the decoder cache once: cache=... (past_key_values is its old name)")
            cache = past_key_values
        if encoder_outputs is None:
            if pose is None:
                raise ValueError("pass pose (N, T, M, V, C) or encoder_outputs")
            encoder_outputs = self.encoder(pose, layout=layout, task=task)
        elif not isinstance(encoder_outputs, UPSEncoderOutput):
            encoder_outputs = UPSEncoderOutput(*encoder_outputs)
        n, device = encoder_outputs.pooled.shape[0], encoder_outputs.pooled.device
        if labels is not None:
            labels = labels.masked_fill(labels == -100, self._vocab().pad_id)
            if decoder_input_ids is None:
                decoder_input_ids = torch.cat([self._bos(task, n, device), labels[:, :-1]], dim=1)
        elif decoder_input_ids is None:
            decoder_input_ids = self._bos(task, n, device)
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        hidden = self.decoder(decoder_input_ids, encoder_outputs.temporal, encoder_outputs.spatial,
                              encoder_outputs.spatial_padding_mask, cache, pooled=encoder_outputs.pooled)
        loss = None
        if labels is not None and self.config.loss_over == "grammar":
            # The grammar-restricted loss reads only the tokens the grammar allows somewhere (a recognition task:
            # its label set and EOT, 11 of ~3,900 tokens), so only those rows of the vocabulary table are
            # projected and scored. The other columns of ``logits`` are -inf: tokens this grammar never allows.
            tokens = self._grammar_tensors(self.grammar(task, label_set, layout), device).tokens
            logits = self.decoder.logits(hidden, tokens)
            loss = self.loss(logits, labels, label_weights, task=task, label_set=label_set, layout=layout,
                             over_grammar_tokens=True)
            logits = logits.new_full((*logits.shape[:-1], self.config.vocab_size), float("-inf")).index_copy(
                -1, tokens, logits)
        else:
            logits = self.decoder.logits(hidden)
            if labels is not None:
                loss = self.loss(logits, labels, label_weights, task=task, label_set=label_set, layout=layout)
        weight = self.config.auxiliary_weights.get(task, 0.0)
        if loss is not None and weight:
            extra = self._kinds[task].auxiliary_loss(self, logits, labels, coordinates, layout, weight)
            if extra is not None:
                loss = loss + extra
        out = UPSSeq2SeqOutput(loss=loss, logits=logits, cache=cache, decoder_hidden_state=hidden,
                               encoder_pooled=encoder_outputs.pooled, routes=encoder_outputs.routes,
                               past_key_values=cache)
        return out if return_dict is not False else out.to_tuple()

    def default_label_weights(self, labels: torch.LongTensor, task: str) -> torch.Tensor:
        """(N, L) float: 1 on target tokens, ``config.eot_weight`` on EOT, 0 on PAD."""
        eot = self._vocab().eot_token(task)
        weights = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
        weights = weights.masked_fill(labels == eot, self.config.eot_weight)
        return weights.masked_fill(labels == self._vocab().pad_id, 0.0)

    def loss(self, logits: torch.Tensor, labels: torch.LongTensor, label_weights: torch.Tensor | None = None, *,
             task: str, label_set: str | None = None, layout: str | None = None,
             over_grammar_tokens: bool = False) -> torch.Tensor:
        """Σ w·CE / Σ w over (N, L) positions, in fp32 (docs/design.md D9).

        ``config.loss_over == "grammar"``: the softmax runs over the tokens the grammar allows at each position given
        the teacher-forced prefix; a weighted target the grammar forbids raises UPSError (a bug in the targets).
        ``logits`` are (N, L, V), or with ``over_grammar_tokens`` (N, L, K): only the columns of the grammar's tokens
        (:attr:`~ups_toolkit.tokenization.grammar.Grammar.tokens`, as ``forward`` computes them) — the same loss.
        """
        logits = logits.float()
        weights = self.default_label_weights(labels, task) if label_weights is None else label_weights.float()
        targets = labels
        if self.config.loss_over == "grammar":
            grammar = self.grammar(task, label_set, layout)
            tensors = self._grammar_tensors(grammar, logits.device)
            states = tensors.states(labels)
            if over_grammar_tokens:
                table, first_allowed = tensors.token_table, tensors.first_allowed_column
                columns = tensors.column[labels]  # -1 for a token outside the grammar
            else:
                table, first_allowed, columns = tensors.table, tensors.first_allowed, labels
            allowed = table[states]  # (N, L, V or K)
            ok = allowed.gather(-1, columns.clamp_min(0)[..., None]).squeeze(-1) & (columns >= 0)
            bad = ~ok & (weights > 0)
            if bad.any():
                row, pos = (int(i) for i in bad.nonzero()[0])
                token = int(labels[row, pos])
                raise UPSError(f"task {task!r}: labels row {row} position {pos} holds token {token} "
                               f"({self._vocab().keys[token]!r}), which the {grammar.name} grammar does not allow "
                               f"there")
            # unweighted positions (PAD) get a harmless allowed target so every term stays finite
            targets = torch.where(ok, columns, first_allowed[states])
            logits = logits.masked_fill(~allowed, float("-inf"))
        elif over_grammar_tokens:
            raise ValueError("loss_over 'vocabulary' needs the logits of every token (over_grammar_tokens=False)")
        else:
            allowed = None
        log_z = torch.logsumexp(logits, -1)
        nll = log_z - logits.gather(-1, targets[..., None]).squeeze(-1)
        smoothing = self.config.label_smoothing
        if smoothing:
            # label smoothing over the tokens the softmax covers (the allowed set, or the whole vocabulary):
            # (1 - ε)·CE(target) + ε·mean over those tokens of CE(token); a position with one allowed token (EOT)
            # stays exactly 0
            finite = torch.ones_like(logits, dtype=torch.bool) if allowed is None else allowed
            mean_logit = logits.masked_fill(~finite, 0.0).sum(-1) / finite.sum(-1).clamp_min(1)
            nll = (1.0 - smoothing) * nll + smoothing * (log_z - mean_logit)
        return (nll * weights).sum() / weights.sum().clamp_min(torch.finfo(torch.float32).tiny)

    def _grammar_tensors(self, grammar: Grammar, device) -> GrammarTensors:
        """The grammar's masks as tensors on ``device``, built once per (grammar, device)."""
        key = ("tensors", id(grammar), str(device))
        if key not in self._grammars:
            self._grammars[key] = GrammarTensors(grammar, device)
        return self._grammars[key]

    def coordinate_expectation(self, logits: torch.Tensor, task: str, layout: str | None = None) -> torch.Tensor:
        """Soft-argmax coordinates from teacher-forced logits (N, L, V) → (N, F, J, A) in the task's unit (metres),
        differentiable: x̂ = lo + Δ·Σ_q p(q)·q over each position's axis-restricted bin distribution (D4)."""
        codec = self.codec(task, layout=layout)
        axis_logits = self._axis_logits(logits[:, : codec.n_values], codec)
        return codec.decode_expectation(axis_logits.float())

    def time_expectation_l1(self, logits: torch.Tensor, labels: torch.LongTensor, task: str) -> torch.Tensor:
        """Detection's ordinal loss: mean |E[b] - b*| / n_time_bins over the target positions that hold a temporal
        token, with E[b] the soft-argmax of the logits restricted to the task's temporal bins (teacher forcing).
        Cross-entropy alone treats bin 40 as just as wrong as bin 200 for a target of 41; this term gives the start
        and end tokens a gradient towards the right part of the window. 0 when no position holds a temporal token."""
        n_bins = self._decoder_task(task).output.n_time_bins
        offset = self._vocab().time_offset
        is_time = (labels >= offset) & (labels < offset + n_bins)
        if not bool(is_time.any()):
            return logits.new_zeros(())
        probabilities = logits[is_time][:, offset: offset + n_bins].float().softmax(dim=-1)  # (P, n_bins)
        expected = probabilities @ torch.arange(n_bins, device=logits.device, dtype=torch.float32)
        return ((expected - (labels[is_time] - offset).float()).abs() / n_bins).mean()

    def _axis_logits(self, logits: torch.Tensor, codec) -> torch.Tensor:
        """(N, F·J·A, V) logits of the coordinate positions → (N, F, J, A, n_bins), each restricted to its axis."""
        n, frames, joints, axes = logits.shape[0], *codec.shape
        n_bins = codec.quantizer.n_bins
        per_axis = logits.reshape(n, frames * joints, axes, -1)
        parts = [per_axis[:, :, a, int(off): int(off) + n_bins] for a, off in enumerate(codec.offsets)]
        return torch.stack(parts, dim=2).reshape(n, frames, joints, axes, n_bins)

    # ---- our cached greedy decoding ----------------------------------------------------------------------------------
    @torch.no_grad()
    def greedy_decode(self, encoder_outputs: UPSEncoderOutput, task: str, grammar: Grammar, *,
                      use_cache: bool = True, on_step=None) -> tuple[torch.LongTensor, torch.Tensor]:
        """Grammar-constrained greedy decoding of a batch; rows that emit EOT are padded until every row is done.

        Returns tokens (N, L) (without BOS) and the probability of each chosen token under the grammar-restricted
        distribution (N, L) (0 on padding). ``on_step(step, logits)`` sees each step's unmasked logits (N, V).
        """
        vocab = self._vocab()
        n, device = encoder_outputs.pooled.shape[0], encoder_outputs.pooled.device
        table = self._grammar_tensors(grammar, device).table
        eot, pad = vocab.eot_token(task), vocab.pad_id
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache()) if use_cache else None
        inputs = self._bos(task, n, device)
        tokens = torch.zeros(n, 0, dtype=torch.long, device=device)
        probs = torch.zeros(n, 0, device=device)
        finished = torch.zeros(n, dtype=torch.bool, device=device)
        for step in range(grammar.max_length):
            hidden = self.decoder(inputs[:, -1:] if use_cache else inputs, encoder_outputs.temporal,
                                  encoder_outputs.spatial, encoder_outputs.spatial_padding_mask, cache,
                                  pooled=encoder_outputs.pooled)
            logits = self.decoder.logits(hidden[:, -1]).float()
            if on_step is not None:
                on_step(step, logits)
            states = torch.as_tensor(grammar.state(tokens.cpu().numpy()), device=device)
            masked = logits.masked_fill(~table[states], float("-inf"))
            choice = masked.argmax(-1)
            p = masked.softmax(-1).gather(-1, choice[:, None]).squeeze(-1)
            choice = choice.masked_fill(finished, pad)
            tokens = torch.cat([tokens, choice[:, None]], dim=1)
            probs = torch.cat([probs, p.masked_fill(finished, 0.0)[:, None]], dim=1)
            inputs = torch.cat([inputs, choice[:, None]], dim=1)
            finished |= choice == eot
            if bool(finished.all()):
                break
        return tokens, probs

    @torch.no_grad()
    def predict(self, pose: torch.Tensor, layout: str | None, task: str, label_set: str | None = None, k: int = 5,
                use_cache: bool = True) -> dict:
        """Grammar-constrained greedy decoding of one batch (N sequences of one layout), in eval mode.

        action grammars → ``tokens`` (N, 2), ``topk_labels`` (N, k) class indices of the label set (ties to the lower
        index), ``topk_probs`` (N, k) softmax over the label set at step 1;
        coordinate grammars → ``tokens`` (N, F·J·A + 1), ``coordinates`` (N, F, J, A) bin values and
        ``coordinates_expectation`` (N, F, J, A) soft-argmax values, both in the task's unit (metres, before any
        de-normalisation such as adding the last observed frame);
        segment grammar → ``tokens`` (N, ≤ 3N_seg + 1), ``segments``: per sample a list of (label, start, end, score)
        with window-relative frames and score = probability of the ACTION token.
        Tensors are on the pose's device.
        """
        spec = self._decoder_task(task)
        was_training = self.training
        self.eval()
        try:
            grammar = self.grammar(task, label_set, layout)
            encoder_outputs = self.encoder(pose, layout=layout, task=task)
            kind = spec.output.grammar
            if kind == "action":
                return self._predict_action(encoder_outputs, task, grammar, k, use_cache)
            if kind == "coordinates":
                return self._predict_coordinates(encoder_outputs, task, grammar, layout, use_cache)
            return self._predict_segments(encoder_outputs, task, grammar, use_cache)
        finally:
            self.train(was_training)

    def _predict_action(self, encoder_outputs, task, grammar, k, use_cache) -> dict:
        codec = self.codec(task, label_set=grammar.label_set)
        first = {}
        tokens, _ = self.greedy_decode(encoder_outputs, task, grammar, use_cache=use_cache,
                                       on_step=lambda step, logits: first.setdefault(step, logits))
        class_logits = first[0][:, torch.as_tensor(codec.class_ids, device=first[0].device)]
        class_probs = class_logits.softmax(-1)
        k = min(k, codec.num_classes)
        topk = torch.as_tensor(codec.topk(first[0].cpu().numpy(), k), device=class_probs.device)
        return {"tokens": tokens, "topk_labels": topk, "topk_probs": class_probs.gather(-1, topk)}

    def _predict_coordinates(self, encoder_outputs, task, grammar, layout, use_cache) -> dict:
        codec = self.codec(task, layout=layout)
        axis_steps = []
        offsets = codec.offsets.tolist()
        n_bins, n_axes = codec.quantizer.n_bins, len(offsets)

        def keep(step, logits):
            if step < codec.n_values:
                offset = offsets[step % n_axes]
                axis_steps.append(logits[:, offset: offset + n_bins])

        tokens, _ = self.greedy_decode(encoder_outputs, task, grammar, use_cache=use_cache, on_step=keep)
        n = tokens.shape[0]
        axis_logits = torch.stack(axis_steps, dim=1).reshape(n, *codec.shape, n_bins)
        values = codec.decode(tokens.cpu().numpy())
        return {"tokens": tokens,
                "coordinates": torch.as_tensor(values, dtype=torch.float32, device=tokens.device),
                "coordinates_expectation": codec.decode_expectation(axis_logits).float()}

    def _predict_segments(self, encoder_outputs, task, grammar, use_cache) -> dict:
        codec = self.codec(task, label_set=grammar.label_set)
        tokens, probs = self.greedy_decode(encoder_outputs, task, grammar, use_cache=use_cache)
        rows, row_probs = tokens.cpu().numpy(), probs.cpu().numpy()
        segments = [[(s.label, s.start, s.end, s.score) for s in codec.decode(t, p)] for t, p in zip(rows, row_probs)]
        return {"tokens": tokens, "segments": segments}

    # ---- transformers generate() -------------------------------------------------------------------------------------
    def generation_config_for(self, task: str, label_set: str | None = None, layout: str | None = None, *,
                              use_cache: bool = True, num_beams: int = 1) -> GenerationConfig:
        """One complete GenerationConfig for a task: BOS_task as decoder start, EOT_task as EOS, PAD 0, at most the
        grammar's length, greedy (or beam search with ``num_beams``)."""
        grammar = self.grammar(task, label_set, layout)
        bos, eot = self._vocab().task_token(task), self._vocab().eot_token(task)
        return GenerationConfig(max_new_tokens=grammar.max_length, decoder_start_token_id=bos, bos_token_id=bos,
                                eos_token_id=eot, pad_token_id=self._vocab().pad_id, do_sample=False,
                                num_beams=num_beams, use_cache=use_cache)

    def generate(self, pose: torch.Tensor | None = None, layout: str | None = None, task: str | None = None,
                 label_set: str | None = None, generation_config: GenerationConfig | None = None,
                 logits_processor: LogitsProcessorList | None = None, **kwargs):
        """transformers ``generate()`` under the task grammar. Without ``generation_config`` the task's
        :meth:`generation_config_for` is used. Returns sequences (N, 1 + L) starting with BOS_task, PAD after EOT."""
        self._decoder_task(task)
        generation_config = generation_config or self.generation_config_for(task, label_set, layout)
        processors = LogitsProcessorList([GrammarLogitsProcessor(self.grammar(task, label_set, layout))])
        processors.extend(logits_processor or [])
        return super().generate(pose=pose, layout=layout, task=task, label_set=label_set,
                                generation_config=generation_config, logits_processor=processors, **kwargs)

    # ---- saving and loading ------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, **kwargs):
        """transformers' save (config.json, generation_config.json, model.safetensors) plus ``vocab.json``."""
        vocab = self._vocab()
        super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
        if is_main_process:
            vocab.save(Path(save_directory) / VOCAB_FILE)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load a saved UPS model with its vocabulary; a corrupt or mismatched checkpoint raises ConfigError naming
        the file (see :func:`check_checkpoint`)."""
        saved, vocab = check_checkpoint(pretrained_model_name_or_path, **kwargs)
        if "config" not in kwargs and "pooled_feature" not in saved:
            # saved before the option existed (issue 14): that decoder had no pooled-feature input
            kwargs["pooled_feature"] = "none"
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args,
                                              output_loading_info=True, **kwargs)
        problems = {name: sorted(info.get(name) or []) for name in ("missing_keys", "unexpected_keys",
                                                                    "mismatched_keys")}
        problems = {name: keys for name, keys in problems.items() if keys}
        if problems:
            name, keys = next(iter(problems.items()))
            raise ConfigError(f"{pretrained_model_name_or_path}: {WEIGHTS_FILE} does not fit this model: "
                              f"{name.replace('_', ' ')} {', '.join(map(str, keys[:5]))}"
                              f"{' ...' if len(keys) > 5 else ''}")
        _bind_vocabulary(model.config, vocab, model.decoder.vocab.text_table)
        model.vocabulary = vocab
        return (model, info) if want_info else model


def _bind_vocabulary(config: UPSConfig, vocab: Vocabulary, table: torch.Tensor) -> None:
    """Fill the config's vocabulary fields from a vocabulary and its text table; refuse a conflicting one."""
    if table.dim() != 2 or table.shape[0] != len(vocab):
        raise ConfigError(f"text_embeddings has shape {tuple(table.shape)}, expected ({len(vocab)}, d_text) for "
                          f"the {len(vocab)}-token vocabulary")
    for name, value in (("vocab_size", len(vocab)), ("d_text", int(table.shape[1])), ("vocab_sha256", vocab.sha256)):
        current = getattr(config, name)
        if current and current != value:
            raise ConfigError(f"UPSConfig {name} is {current!r} but the given vocabulary / text table has {value!r}")
        setattr(config, name, value)
    for task in config.tasks:
        if config.task_spec(task).has_decoder:
            vocab.task_token(task)  # ConfigError when the vocabulary lacks the task's tokens


def _route_task_ids(config: UPSConfig) -> dict[str, int]:
    """Task name → router task id; an encoder-only task routes like its ``options.route_task`` when configured."""
    ids = {name: i for i, name in enumerate(config.tasks)}
    for name in config.tasks:
        route = config.task_specs[name].get("options", {}).get("route_task")
        if route in ids and config.task_specs[name].get("output", {}).get("grammar") == "none":
            ids[name] = ids[route]
    return ids


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel`` / ``AutoModelForSeq2SeqLM`` know model type "ups" (no remote code)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

    AutoConfig.register(UPSConfig.model_type, UPSConfig, exist_ok=True)
    AutoModel.register(UPSConfig, UPSForSeq2Seq, exist_ok=True)
    AutoModelForSeq2SeqLM.register(UPSConfig, UPSForSeq2Seq, exist_ok=True)


register_auto_classes()

__all__ = [
    "GrammarLogitsProcessor", "GrammarTensors", "UPSEncoder", "UPSEncoderOutput", "UPSForSeq2Seq", "UPSPreTrainedModel",
    "UPSSeq2SeqOutput", "check_checkpoint", "check_safetensors", "register_auto_classes",
]
