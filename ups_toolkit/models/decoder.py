"""The autoregressive decoder of the UPS model over the unified vocabulary (docs/design.md D3, D8).

- Token embeddings from the frozen text table (D3): e_i = W t_i + r_i with the frozen, L2-normalised text embedding
  t_i (a persistent buffer, so every checkpoint carries it), a trainable projection W and a trainable, zero-initialised
  residual r_i (``vocab_residual: false`` drops r_i: the strictly frozen UPS reading), plus a per-token bias b_i. The
  same e_i embed the decoder inputs and score the outputs — tied by construction, one module computes both
  (:class:`VocabularyEmbedding`): ``dot`` logits h·e_i + b_i or ``cosine`` logits s·cos(h, e_i) + b_i.
- Pre-LN blocks (:class:`DecoderLayer`): causal self-attention, cross-attention to the encoder memory, GELU MLP, each
  wrapped as x + Dropout(f(LN x)); a final LayerNorm. Attention runs through PyTorch's ``scaled_dot_product_attention``.
- Encoder memory (D6): the temporal tokens (N, T, d_enc) and the spatial tokens (N, S_max, d_enc) concatenated,
  projected by Linear(d_enc → d_model) when the widths differ, plus a learned stream-type embedding (0 temporal,
  1 spatial); padded spatial slots are masked as keys. ``pooled_feature`` also hands the decoder DSTE's max-pooled
  global feature g (N, 2·d_enc), the feature a linear probe classifies (issue 14): ``memory`` appends
  Linear(2·d_enc → d_model)(g) as one more memory token (stream type 2), ``bos`` adds it to the first (BOS) input
  embedding; ``none`` leaves the decoder to find it in the tokens.
- KV cache: a transformers ``EncoderDecoderCache(DynamicCache(), DynamicCache())``. Self-attention appends the new
  keys/values with ``self_attention_cache.update(k, v, layer_idx)``; cross-attention computes its keys/values from the
  memory once, stores them in ``cross_attention_cache`` and sets ``is_updated[layer_idx]``, then reuses
  ``cross_attention_cache.layers[layer_idx].keys/values`` (the memory is not even built again).
- Learned positions, one per target position up to ``max_target_length`` (the longest configured grammar); a longer
  input raises :class:`~ups_toolkit.errors.ConfigError`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

POOLED_FEATURE_USES = ("none", "memory", "bos")


class VocabularyEmbedding(nn.Module):
    """Input embeddings and output classifier of the decoder, both from e_i = W t_i (+ r_i).

    text_table: (V, d_text) frozen buffer (rows L2-normalised, PAD = 0); projection W: Linear(d_text → d_model, no
    bias); residual r: (V, d_model) or None; bias b: (V,); logit_scale s: scalar (``cosine`` only).

    Without gradients (decoding) the (V, d_model) table is computed once and reused until a parameter changes (tracked
    by the tensors' version counters), so a decoding loop does not pay the V × d_text × d_model product per step.
    """

    def __init__(self, vocab_size: int, d_text: int, d_model: int, *, residual: bool = True, logits: str = "dot",
                 logit_scale_init: float = 10.0):
        super().__init__()
        self.logit_kind = logits
        self.register_buffer("text_table", torch.zeros(vocab_size, d_text))  # persistent: travels in checkpoints
        self.projection = nn.Linear(d_text, d_model, bias=False)
        self.residual = nn.Parameter(torch.zeros(vocab_size, d_model)) if residual else None
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init))) if logits == "cosine" else None
        self.logit_scale_init = float(logit_scale_init)
        self._cached_table = None
        self._cached_key = None

    @property
    def vocab_size(self) -> int:
        return self.text_table.shape[0]

    def _tensors(self):
        return [t for t in (self.text_table, self.projection.weight, self.residual) if t is not None]

    def table(self, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(V, d_model) token embeddings e_i = W t_i (+ r_i); with ``token_ids`` (K,) only those rows (K, d_model)."""
        if torch.is_grad_enabled() and any(t.requires_grad for t in self._tensors()):
            # training: project only the rows asked for (all V rows cost V x d_text x d_model per step, forward
            # and backward, and most of them are tokens the task's grammar never allows)
            return self._compute_table() if token_ids is None else self._rows(token_ids)
        key = tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in self._tensors())
        if self._cached_key != key:
            self._cached_table, self._cached_key = self._compute_table(), key
        return self._cached_table if token_ids is None else self._cached_table[token_ids]

    def _compute_table(self) -> torch.Tensor:
        table = self.projection(self.text_table.to(self.projection.weight.dtype))
        return table + self.residual if self.residual is not None else table

    def _rows(self, ids: torch.Tensor) -> torch.Tensor:
        """e_i for the token ids ``ids`` (any shape) → (*ids.shape, d_model), projecting only those rows."""
        rows = self.projection(self.text_table[ids].to(self.projection.weight.dtype))
        return rows + self.residual[ids] if self.residual is not None else rows

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, t) token ids → (N, t, d_model) input embeddings (no bias: b_i only shifts the logits)."""
        if torch.is_grad_enabled():  # training: project only the rows in use
            return self._rows(ids)
        return F.embedding(ids, self.table())

    def logits(self, hidden: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(..., d_model) decoder states → (..., V) logits, ``dot`` h·e_i + b_i or ``cosine`` s·cos(h, e_i) + b_i.

        ``token_ids`` (K,): score only these tokens → (..., K), column k for token ``token_ids[k]`` (the same
        values as those columns of the full logits: every row of the table is normalised on its own).
        """
        table = self.table(token_ids)
        bias = self.bias if token_ids is None else self.bias[token_ids]
        if self.logit_kind == "cosine":
            return self.logit_scale * F.normalize(hidden, dim=-1, eps=1e-6) @ F.normalize(table, dim=-1, eps=1e-6).T \
                + bias
        return hidden @ table.T + bias

    def load_text_table(self, table: torch.Tensor) -> None:
        """Copy a (V, d_text) text-embedding table into the frozen buffer."""
        table = torch.as_tensor(table, dtype=torch.float32)
        if tuple(table.shape) != tuple(self.text_table.shape):
            raise ConfigError(f"text embedding table has shape {tuple(table.shape)}, the model expects "
                              f"{tuple(self.text_table.shape)} (vocabulary size, d_text)")
        if not torch.isfinite(table).all():
            raise ConfigError("text embedding table holds NaN or infinite values")
        with torch.no_grad():
            self.text_table.copy_(table.to(self.text_table.device))


class SelfAttention(nn.Module):
    """Causal multi-head self-attention with a KV cache. x (N, t, d) → (N, t, d)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float, layer_idx: int):
        super().__init__()
        self.num_heads, self.dropout, self.layer_idx = num_heads, dropout, layer_idx
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, cache=None) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        past = 0
        if cache is not None:
            past = cache.get_seq_length(self.layer_idx)
            k, v = cache.update(k, v, self.layer_idx)
        if past == 0:
            mask, causal = None, t > 1
        elif t == 1:  # one new token sees every cached one
            mask, causal = None, False
        else:  # several new tokens after a cached prefix: causal with an offset
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(diagonal=past)
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(n, t, d))


class CrossAttention(nn.Module):
    """Multi-head attention from decoder states (N, t, d) to the encoder memory (N, S, d) → (N, t, d).

    ``memory_mask`` (N, S) bool, True where a memory slot is padding. With a cache, keys and values are computed at
    the first call and reused afterwards (``memory`` may then be None).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float, layer_idx: int):
        super().__init__()
        self.num_heads, self.dropout, self.layer_idx = num_heads, dropout, layer_idx
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, memory_mask: torch.Tensor | None,
                cache=None) -> torch.Tensor:
        n, t, d = x.shape
        heads = self.num_heads
        q = self.q(x).view(n, t, heads, d // heads).transpose(1, 2)
        if cache is not None and cache.is_updated.get(self.layer_idx, False):
            layer = cache.cross_attention_cache.layers[self.layer_idx]
            k, v = layer.keys, layer.values
        else:
            s = memory.shape[1]
            k, v = self.kv(memory).view(n, s, 2, heads, d // heads).permute(2, 0, 3, 1, 4)
            if cache is not None:
                k, v = cache.cross_attention_cache.update(k, v, self.layer_idx)
                cache.is_updated[self.layer_idx] = True
        attn_mask = None if memory_mask is None else ~memory_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(n, t, d))


class DecoderLayer(nn.Module):
    """Pre-LN block: x += Drop(SelfAttn(LN x)); x += Drop(CrossAttn(LN x, memory)); x += Drop(MLP(LN x))."""

    def __init__(self, d_model: int, num_heads: int, ffn: int, dropout: float, layer_idx: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = SelfAttention(d_model, num_heads, dropout, layer_idx)
        self.norm2 = nn.LayerNorm(d_model)
        self.cross_attn = CrossAttention(d_model, num_heads, dropout, layer_idx)
        self.norm3 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ffn), nn.GELU(), nn.Linear(ffn, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, memory, memory_mask, cache=None):
        x = x + self.drop(self.self_attn(self.norm1(x), None if cache is None else cache.self_attention_cache))
        x = x + self.drop(self.cross_attn(self.norm2(x), memory, memory_mask, cache))
        return x + self.drop(self.mlp(self.norm3(x)))


class UPSDecoder(nn.Module):
    """Token decoder over the unified vocabulary, conditioned on the DSTE memory.

    ``forward(input_ids, temporal, spatial, spatial_padding_mask, cache)`` → (N, t, d_model) final-LN
    states; :meth:`logits` turns them into (N, t, V) scores.
    """

    def __init__(self, *, vocab_size: int, d_text: int, d_encoder: int, d_model: int = 512, num_layers: int = 3,
                 num_heads: int = 8, ffn: int = 2048, dropout: float = 0.1, max_positions: int = 64,
                 vocab_residual: bool = True, logits: str = "dot", logit_scale_init: float = 10.0,
                 pooled_feature: str = "bos"):
        super().__init__()
        if pooled_feature not in POOLED_FEATURE_USES:
            raise ConfigError(f"pooled_feature {pooled_feature!r} is not one of {', '.join(POOLED_FEATURE_USES)}")
        self.max_positions = max_positions
        self.pooled_feature = pooled_feature
        self.vocab = VocabularyEmbedding(vocab_size, d_text, d_model, residual=vocab_residual, logits=logits,
                                         logit_scale_init=logit_scale_init)
        self.positions = nn.Parameter(torch.zeros(max_positions, d_model))
        self.memory_proj = nn.Linear(d_encoder, d_model) if d_encoder != d_model else nn.Identity()
        # stream types: 0 temporal tokens, 1 spatial tokens (, 2 the pooled-feature token)
        self.stream_embedding = nn.Parameter(torch.zeros(3 if pooled_feature == "memory" else 2, d_model))
        self.pooled_proj = nn.Linear(2 * d_encoder, d_model) if pooled_feature != "none" else None
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(DecoderLayer(d_model, num_heads, ffn, dropout, i) for i in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def memory(self, temporal: torch.Tensor, spatial: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """(N, T, d_enc), (N, S, d_enc) → (N, T + S, d_model) projected tokens + stream-type embedding; with
        ``pooled_feature: memory`` one more token from ``pooled`` (N, 2·d_enc): (N, T + S + 1, d_model)."""
        t = temporal.shape[1]
        tokens = self.memory_proj(torch.cat([temporal, spatial], dim=1))
        stream = torch.ones(tokens.shape[1], dtype=torch.long, device=tokens.device)
        stream[:t] = 0
        tokens = tokens + self.stream_embedding[stream]
        if self.pooled_feature == "memory":
            token = self.pooled_proj(self._pooled(pooled)) + self.stream_embedding[2]
            tokens = torch.cat([tokens, token[:, None]], dim=1)
        return tokens

    def _pooled(self, pooled: torch.Tensor | None) -> torch.Tensor:
        if pooled is None:
            raise ValueError(f"this decoder reads the pooled encoder feature (pooled_feature: "
                             f"{self.pooled_feature}): pass pooled=")
        return pooled

    def memory_mask(self, temporal: torch.Tensor, spatial_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(N, memory length) bool, True on padded spatial slots; None when nothing is padded."""
        if spatial_padding_mask is None or not spatial_padding_mask.any():
            return None
        n, t = temporal.shape[:2]
        parts = [spatial_padding_mask.new_zeros(n, t), spatial_padding_mask]
        if self.pooled_feature == "memory":
            parts.append(spatial_padding_mask.new_zeros(n, 1))
        return torch.cat(parts, dim=1)

    def forward(self, input_ids: torch.Tensor, temporal: torch.Tensor, spatial: torch.Tensor,
                spatial_padding_mask: torch.Tensor | None = None, cache=None,
                pooled: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (N, t) new tokens (after the ``cache`` prefix, if any) → (N, t, d_model); ``cache`` is an
        ``EncoderDecoderCache``; ``pooled`` (N, 2·d_enc) the encoder's pooled feature (read when
        ``pooled_feature`` is not ``none``)."""
        n, t = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        if past + t > self.max_positions:
            raise ConfigError(
                f"decoder input reaches position {past + t} but the model has {self.max_positions} learned positions "
                f"(max_target_length, the longest configured grammar); raise max_target_length in UPSConfig"
            )
        x = self.vocab.embed(input_ids) + self.positions[past: past + t]
        if self.pooled_feature == "bos" and past == 0:  # position 0 holds BOS
            x = torch.cat([x[:, :1] + self.pooled_proj(self._pooled(pooled))[:, None], x[:, 1:]], dim=1)
        x = self.drop(x)
        cached = cache is not None and all(cache.is_updated.get(i, False) for i in range(len(self.layers)))
        memory = None if cached else self.memory(temporal, spatial, pooled)
        memory_mask = self.memory_mask(temporal, spatial_padding_mask)
        for layer in self.layers:
            x = layer(x, memory, memory_mask, cache)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(N, t, d_model) states → (N, t, V) logits, or (N, t, K) over ``token_ids`` (K,) only."""
        return self.vocab.logits(hidden, token_ids)


__all__ = ["CrossAttention", "DecoderLayer", "SelfAttention", "UPSDecoder", "VocabularyEmbedding"]
