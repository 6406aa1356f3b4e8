"""``tiny-test``: a Llama-architecture model small enough to train in milliseconds.

Built from a config with a byte-level BPE tokenizer trained on a fixed corpus, under a fixed
seed, so every process builds the very same weights and the test suite needs no files.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from promptlooper.training.backend.chat import CHATML
from promptlooper.training.backend.rng import seeded

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 512
SEED = 1234

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Classify the support ticket: my card was charged twice. Answer: billing.",
    "Translate to French: hello, good morning, thank you, goodbye.",
    "What is the capital of France? The capital of France is Paris.",
    "system user assistant You are a helpful assistant.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 + - * / = ( ) [ ] { } : ; , . ? ! ' \"",
    "Once upon a time there was a small model that learned to count: one two three four.",
    "Positive negative neutral yes no true false red green blue.",
]


def build_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML,
    )


def build_model(tokenizer: PreTrainedTokenizerFast, max_seq_len: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_seq_len,
        tie_word_embeddings=True,
        initializer_range=0.1,  # wide enough that a LoRA learns visibly in a few steps
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with seeded(SEED):
        return LlamaForCausalLM(config)
