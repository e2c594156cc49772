"""The token decoder (docs/design.md D3, D8): tied text-derived embeddings, causal pre-LN blocks, cross-attention to the
encoder memory with its padding mask, and the KV cache."""

import pytest
import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from ups_toolkit.errors import ConfigError
from ups_toolkit.models.decoder import UPSDecoder, VocabularyEmbedding

V, D_TEXT, D_ENC, D = 40, 12, 24, 32
T, S = 8, 10


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny tensors: a second thread only adds contention


def text_table(seed=0):
    table = torch.randn(V, D_TEXT, generator=torch.Generator().manual_seed(seed))
    table = table / table.norm(dim=1, keepdim=True)
    table[0] = 0
    return table


def make_decoder(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(vocab_size=V, d_text=D_TEXT, d_encoder=D_ENC, d_model=D, num_layers=2, num_heads=4, ffn=64,
                dropout=0.0, max_positions=12, pooled_feature="none")  # the tokens-only memory path
    args.update(kw)
    decoder = UPSDecoder(**args)
    decoder.vocab.load_text_table(text_table())
    with torch.no_grad():  # non-zero residual, bias, positions so every term is exercised
        for name, p in decoder.named_parameters():
            if p.dim() > 1 or name == "vocab.bias":
                p.normal_(0, 0.1)
    return decoder.eval()


def memory(n=3, seed=1, padded=4):
    g = torch.Generator().manual_seed(seed)
    temporal, spatial = torch.randn(n, T, D_ENC, generator=g), torch.randn(n, S, D_ENC, generator=g)
    mask = torch.zeros(n, S, dtype=torch.bool)
    mask[:, S - padded:] = True
    spatial[mask] = 0.0
    return temporal, spatial, mask


def tokens(n=3, length=7, seed=2):
    return torch.randint(1, V, (n, length), generator=torch.Generator().manual_seed(seed))


def test_embedding_is_projected_text_table_plus_residual_and_ties_input_and_output():
    emb = VocabularyEmbedding(V, D_TEXT, D, residual=True, logits="dot")
    emb.load_text_table(text_table())
    with torch.no_grad():
        emb.projection.weight.normal_()
        emb.residual.normal_()
        emb.bias.normal_()
    expected = text_table() @ emb.projection.weight.T + emb.residual
    ids = torch.tensor([[0, 5, 39]])
    assert torch.allclose(emb.embed(ids), expected[ids], atol=1e-6)  # training path: rows projected
    with torch.no_grad():
        assert torch.allclose(emb.embed(ids), expected[ids], atol=1e-6)  # decoding path: cached table
        h = torch.randn(2, D)
        assert torch.allclose(emb.logits(h), h @ expected.T + emb.bias, atol=1e-5)
    # the text table is a frozen, persistent buffer: saved with the weights, never trained
    assert "text_table" in emb.state_dict() and "text_table" not in dict(emb.named_parameters())


def test_cosine_logits_and_frozen_reading():
    emb = VocabularyEmbedding(V, D_TEXT, D, residual=False, logits="cosine", logit_scale_init=10.0)
    emb.load_text_table(text_table())
    assert emb.residual is None and emb.logit_scale.item() == 10.0
    h = torch.randn(3, D)
    e = text_table() @ emb.projection.weight.T
    expected = 10.0 * F.normalize(h, dim=-1) @ F.normalize(e, dim=-1, eps=1e-6).T
    assert torch.allclose(emb.logits(h), expected, atol=1e-5)


def test_cached_table_follows_parameter_updates():
    emb = VocabularyEmbedding(V, D_TEXT, D)
    emb.load_text_table(text_table())
    h = torch.randn(2, D)
    with torch.no_grad():
        before = emb.logits(h).clone()
    loss = emb.logits(h).logsumexp(-1).sum() + emb.embed(torch.tensor([[3]])).sum()
    loss.backward()
    assert emb.projection.weight.grad.abs().sum() > 0 and emb.residual.grad.abs().sum() > 0
    torch.optim.SGD(emb.parameters(), lr=1.0).step()
    with torch.no_grad():
        after = emb.logits(h)
        fresh = h @ (emb.projection(emb.text_table) + emb.residual).T + emb.bias
    assert not torch.allclose(before, after) and torch.allclose(after, fresh, atol=1e-6)


def test_text_table_shape_is_checked():
    emb = VocabularyEmbedding(V, D_TEXT, D)
    with pytest.raises(ConfigError, match=r"shape \(40, 11\).*\(40, 12\)"):
        emb.load_text_table(torch.zeros(V, D_TEXT - 1))


def test_self_attention_is_causal():
    decoder = make_decoder()
    temporal, spatial, mask = memory()
    ids = tokens()
    changed = ids.clone()
    changed[:, 4:] = (changed[:, 4:] + 7) % (V - 1) + 1
    with torch.no_grad():
        a = decoder(ids, temporal, spatial, mask)
        b = decoder(changed, temporal, spatial, mask)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)


def test_padded_spatial_tokens_are_not_attended_and_memory_matters():
    decoder = make_decoder()
    temporal, spatial, mask = memory()
    ids = tokens()
    garbage = spatial.clone()
    garbage[mask] = 100.0
    other = spatial.clone()
    other[~mask] += 1.0
    with torch.no_grad():
        a = decoder(ids, temporal, spatial, mask)
        b = decoder(ids, temporal, garbage, mask)
        c = decoder(ids, temporal, other, mask)
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-3)


def test_memory_projection_and_stream_embedding():
    decoder = make_decoder()
    temporal, spatial, _ = memory(n=1)
    mem = decoder.memory(temporal, spatial)
    assert mem.shape == (1, T + S, D) and isinstance(decoder.memory_proj, torch.nn.Linear)
    expected = decoder.memory_proj(torch.cat([temporal, spatial], 1))
    assert torch.allclose(mem[:, :T], expected[:, :T] + decoder.stream_embedding[0], atol=1e-6)
    assert torch.allclose(mem[:, T:], expected[:, T:] + decoder.stream_embedding[1], atol=1e-6)
    same_width = make_decoder(d_encoder=D)
    assert isinstance(same_width.memory_proj, torch.nn.Identity)


def test_kv_cache_matches_full_forward_and_computes_cross_attention_once():
    decoder = make_decoder()
    temporal, spatial, mask = memory()
    ids = tokens()
    memory_calls = []
    hook = decoder.memory_proj.register_forward_hook(lambda *args: memory_calls.append(1))
    with torch.no_grad():
        full = decoder(ids, temporal, spatial, mask)
        assert len(memory_calls) == 1
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        steps = [decoder(ids[:, p:p + 1], temporal, spatial, mask, cache=cache) for p in range(ids.shape[1])]
    hook.remove()
    assert len(memory_calls) == 2  # the cached run built the memory once, at its first step
    assert cache.get_seq_length() == ids.shape[1]
    assert all(cache.is_updated[i] for i in range(2))
    assert cache.cross_attention_cache.layers[0].keys.shape == (3, 4, T + S, D // 4)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


def test_several_new_tokens_after_a_cached_prefix():
    decoder = make_decoder()
    temporal, spatial, mask = memory()
    ids = tokens()
    with torch.no_grad():
        full = decoder(ids, temporal, spatial, mask)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        first = decoder(ids[:, :3], temporal, spatial, mask, cache=cache)
        rest = decoder(ids[:, 3:], temporal, spatial, mask, cache=cache)
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-5)


def test_positions_beyond_the_longest_grammar_are_refused():
    decoder = make_decoder(max_positions=6)
    temporal, spatial, mask = memory()
    with pytest.raises(ConfigError, match="position 7 but the model has 6 learned positions.*max_target_length"):
        decoder(tokens(length=7), temporal, spatial, mask)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    with torch.no_grad():
        decoder(tokens(length=6), temporal, spatial, mask, cache=cache)
        with pytest.raises(ConfigError, match="position 7"):
            decoder(tokens(length=1), temporal, spatial, mask, cache=cache)


@pytest.mark.parametrize("use", ["memory", "bos"])
def test_pooled_feature_reaches_the_decoder_and_the_cache_keeps_it(use):
    # issue 14: the decoder may read DSTE's max-pooled feature g (the one a linear probe classifies)
    decoder = make_decoder(pooled_feature=use)
    temporal, spatial, mask = memory()
    pooled = torch.randn(3, 2 * D_ENC, generator=torch.Generator().manual_seed(5))
    ids = tokens()
    with torch.no_grad():
        a = decoder(ids, temporal, spatial, mask, pooled=pooled)
        b = decoder(ids, temporal, spatial, mask, pooled=pooled + 1.0)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        steps = [decoder(ids[:, p:p + 1], temporal, spatial, mask, cache=cache, pooled=pooled)
                 for p in range(ids.shape[1])]
    assert not torch.allclose(a, b, atol=1e-3)  # g matters
    assert torch.allclose(torch.cat(steps, 1), a, atol=1e-5)  # and step-by-step decoding sees it the same way
    if use == "memory":  # one more memory token, never masked
        assert decoder.memory(temporal, spatial, pooled).shape == (3, T + S + 1, D)
        assert decoder.memory_mask(temporal, mask).shape == (3, T + S + 1)
        assert not decoder.memory_mask(temporal, mask)[:, -1].any()
    with pytest.raises(ValueError, match="pass pooled="):
        decoder(ids, temporal, spatial, mask)
    with pytest.raises(ConfigError, match="pooled_feature 'sum'"):
        make_decoder(pooled_feature="sum")


def test_logits_over_some_tokens_equal_those_columns_of_the_full_logits():
    for kind in ("dot", "cosine"):
        emb = VocabularyEmbedding(V, D_TEXT, D, logits=kind)
        emb.load_text_table(text_table())
        with torch.no_grad():
            emb.residual.normal_()
            emb.bias.normal_()
        h = torch.randn(2, 3, D)
        ids = torch.tensor([2, 7, 30])
        assert emb.logits(h, ids).shape == (2, 3, 3)
        assert torch.allclose(emb.logits(h, ids), emb.logits(h)[..., ids], atol=1e-5)  # training path
        with torch.no_grad():
            assert torch.allclose(emb.logits(h, ids), emb.logits(h)[..., ids], atol=1e-5)  # cached table
