"""A tiny RoBERTa text encoder built offline in a test (docs/dependencies.md §2), read back by AutoTokenizer/AutoModel.

The tokenizer is a byte-level BPE trained on the prompts with Hugging Face's ``tokenizers`` library; the model is a
seeded, randomly initialised ``RobertaModel``. Both are saved to one folder, as a hub model would be.
"""

from pathlib import Path

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0-4, RoBERTa's order


def build_tiny_roberta(folder: Path, texts: list[str], *, seed: int = 0, hidden_size: int = 32,
                       max_length: int = 64) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=1, special_tokens=SPECIALS, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", pad_token="<pad>",
                                        eos_token="</s>", unk_token="<unk>", mask_token="<mask>")
    tokenizer.save_pretrained(folder)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden_size, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        # RoBERTa positions start at pad_token_id + 1
        max_position_embeddings=max_length + 2,
    )
    torch.manual_seed(seed)
    RobertaModel(config).save_pretrained(folder)
    return folder
