"""A tiny UPS model for tests: the shipped vocabulary and task files, a random text table (no text encoder needed),
a "tiny" DSTE and a 2-layer, 32-wide decoder."""

import functools

import torch

from ups_toolkit.tokenization import build_vocabulary

D_TEXT = 16
LAYOUTS = ["ntu25", "h36m17", "coco17"]


@functools.lru_cache(maxsize=1)
def shipped_vocabulary():
    return build_vocabulary()


def random_text_table(vocab, d_text: int = D_TEXT, seed: int = 0) -> torch.Tensor:
    """(|V|, d_text) L2-normalised random rows, PAD row 0: the shape and norms of a real text-embedding table."""
    table = torch.randn(len(vocab), d_text, generator=torch.Generator().manual_seed(seed))
    table = table / table.norm(dim=1, keepdim=True)
    table[vocab.pad_id] = 0.0
    return table


def tiny_config(**overrides):
    from ups_toolkit.models import UPSConfig

    vocab = shipped_vocabulary()
    encoder = dict(preset="tiny", layouts=LAYOUTS, num_blocks=2, drop_path=0.0, task_dim=16)
    encoder.update(overrides.pop("encoder", {}))
    values = dict(encoder=encoder, tasks=list(vocab.tasks) + ["retrieval"], d_model=32, decoder_layers=2,
                  decoder_heads=4, ffn=64, dropout=0.0)
    values.update(overrides)
    return UPSConfig(**values)


def tiny_model(seed: int = 0, **overrides):
    from ups_toolkit.models import UPSForSeq2Seq

    vocab = shipped_vocabulary()
    torch.manual_seed(seed)
    return UPSForSeq2Seq(tiny_config(**overrides), vocabulary=vocab, text_embeddings=random_text_table(vocab))


def random_pose(n: int, layout: str, channels: int = 3, persons: int = 1, seed: int = 0) -> torch.Tensor:
    from ups_toolkit.skeleton import get_layout

    joints = get_layout(layout).num_joints
    return torch.randn(n, 64, persons, joints, channels, generator=torch.Generator().manual_seed(seed))
