"""Normalisation choices of the transformers trainer: which `transformers` architecture each
(arch, norm) pair builds. Every choice is one of transformers' own model classes, switched by
its own config, so `save_pretrained` writes a model that `AutoModelFor...from_pretrained`
opens as the very model that was trained (a LayerNorm swapped for an RMSNorm inside a GPT-2
would load back as a LayerNorm, silently).

    arch  norm            builds                 what else comes with it
    gpt2  pre-layernorm   GPT-2 (the default)    -
          post-layernorm  OPT with               GPT-2's block otherwise: learned positions,
                          do_layer_norm_before   GELU MLP of 4x width, biases; q/k/v as three
                          = false                projections; no final norm (each block ends
                                                 normalised); OPT's init (no residual scaling)
          pre-rmsnorm     Llama                  rotary positions, a gated SiLU MLP (8/3 x
                                                 width: GPT-2's MLP parameters), no biases,
                                                 attention-only dropout
    bert  post-layernorm  BERT (the default)     -

Every one trains causal_lm and classify (gpt2) or mlm and classify (bert): transformers has
the ...ForCausalLM and ...ForSequenceClassification of GPT-2, OPT and Llama, and BERT's.

Left out: a pre-norm BERT (transformers' RoBERTa-PreLayerNorm numbers positions from the pad
id, so the pad id would size the position table); an RMSNorm with GPT-2's learned positions
and GELU MLP, and post-norm in a Llama block (we found no transformers architecture with
either; StableLM, a Llama block with LayerNorm, would isolate LayerNorm vs RMSNorm).
"""

from __future__ import annotations

from typing import Any

#: the norms each arch builds, its own first (the default)
NORMS: dict[str, tuple[str, ...]] = {
    "gpt2": ("pre-layernorm", "post-layernorm", "pre-rmsnorm"),
    "bert": ("post-layernorm",),
}
EPS = 1e-5  # GPT-2's and BERT's LayerNorm epsilon, given to OPT and Llama too


def chosen(arch: str, norm: str | None) -> str:
    """The norm a model of `arch` gets: `norm`, else the arch's own."""
    return norm or NORMS[arch][0]


def problem(arch: str, norm: str | None, pretrained: bool) -> str | None:
    """Why (arch, norm) builds nothing, in one line, or None."""
    if norm is None:
        return None
    if pretrained:
        return (f'norm = "{norm}" with pretrained: a pretrained model comes with its own '
                "normalisation; leave norm unset, or drop pretrained to build one")
    if norm not in NORMS[arch]:
        builds = "; ".join(f"{a}: {', '.join(n)}" for a, n in NORMS.items())
        return f'norm = "{norm}" does not exist for arch "{arch}"; the norms each arch builds: ' \
            f"{builds}"
    return None


def config(arch: str, norm: str | None, shape: dict[str, Any], **extra: Any) -> Any:
    """The transformers config of (arch, norm): `shape` holds vocab_size, context, n_embd,
    n_layer, n_head, dropout and eos_id; `extra` goes to the config (num_labels)."""
    build = {("gpt2", "pre-layernorm"): _gpt2, ("gpt2", "post-layernorm"): _opt_post,
             ("gpt2", "pre-rmsnorm"): _llama, ("bert", "post-layernorm"): _bert}
    return build[arch, chosen(arch, norm)](**shape, **extra)


def _gpt2(vocab_size, context, n_embd, n_layer, n_head, dropout, eos_id, **extra) -> Any:
    from transformers import GPT2Config

    d = dropout
    return GPT2Config(vocab_size=vocab_size, n_positions=context, n_embd=n_embd,
                      n_layer=n_layer, n_head=n_head, resid_pdrop=d, embd_pdrop=d,
                      attn_pdrop=d, summary_first_dropout=d, bos_token_id=eos_id,
                      eos_token_id=eos_id, **extra)


def _opt_post(vocab_size, context, n_embd, n_layer, n_head, dropout, eos_id, **extra) -> Any:
    from transformers import OPTConfig

    # GPT-2's sizes and activation: the block differs from GPT-2's in where it normalises
    return OPTConfig(vocab_size=vocab_size, max_position_embeddings=context,
                     hidden_size=n_embd, word_embed_proj_dim=n_embd, ffn_dim=4 * n_embd,
                     num_hidden_layers=n_layer, num_attention_heads=n_head,
                     do_layer_norm_before=False, activation_function="gelu_new",
                     dropout=dropout, attention_dropout=dropout, bos_token_id=eos_id,
                     eos_token_id=eos_id, **extra)


def _llama(vocab_size, context, n_embd, n_layer, n_head, dropout, eos_id, **extra) -> Any:
    from transformers import LlamaConfig

    # a gated MLP of 8/3 x width (rounded up to 8) has about GPT-2's 4x MLP parameters, and
    # the head tied to the embedding as GPT-2's is: the models compare at one size
    return LlamaConfig(vocab_size=vocab_size, max_position_embeddings=context,
                       hidden_size=n_embd, intermediate_size=-(-8 * n_embd // 24) * 8,
                       num_hidden_layers=n_layer, num_attention_heads=n_head,
                       rms_norm_eps=EPS, attention_dropout=dropout, tie_word_embeddings=True,
                       bos_token_id=eos_id, eos_token_id=eos_id, **extra)


def _bert(vocab_size, context, n_embd, n_layer, n_head, dropout, eos_id, **extra) -> Any:
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=n_embd, num_hidden_layers=n_layer,
                      num_attention_heads=n_head, intermediate_size=4 * n_embd,
                      max_position_embeddings=context, hidden_dropout_prob=dropout,
                      attention_probs_dropout_prob=dropout, **extra)
