"""Padding masks for batched chunks: on in every DiT block, and passed to attention cheaply.

Chunks of unequal length share a batch padded to the longest; unless attention
ignores the padded frames, a chunk's audio depends on its batch-mates. Upstream's
`AttnProcessor` masks them when `attn_mask_enabled` (with flash-attn through
`flash_attn_varlen_func`, with torch through `scaled_dot_product_attention`);
`enable_padding_masks` switches that on. Batches of one are unaffected: `CFM.sample`
passes no mask for them.

With the torch backend upstream builds the mask as `mask[:, None, None, :]` expanded
to (batch, heads, n, n). Handing SDPA that expanded view makes PyTorch materialise a
float mask of that full size (upstream's own warning: "can consume large GPU
memory") and, on the CPU, fall off its fast kernel (a 2-chunk batch was ~5x slower
than its chunks one by one). The same mask as a (batch, 1, 1, n) view broadcasts
inside the kernel. `install_broadcast_masks` puts a thin wrapper around the
`torch.nn.functional` that `f5_tts.model.modules` calls: its
`scaled_dot_product_attention` passes a mask that is such an expansion (stride 0 over
heads and queries) as the un-expanded view, which is the same mask element for
element, and forwards everything else untouched. It is installed once per process,
is stateless, and changes no result.
"""

from __future__ import annotations

from typing import Any


class _FunctionalWithBroadcastMasks:
    def __init__(self, functional: Any) -> None:
        self._functional = functional

    def __getattr__(self, name: str) -> Any:
        return getattr(self._functional, name)

    def scaled_dot_product_attention(self, query, key, value, attn_mask=None, *args, **kwargs):
        if (
            attn_mask is not None
            and attn_mask.dim() == 4
            and attn_mask.stride(1) == 0
            and attn_mask.stride(2) == 0
        ):
            attn_mask = attn_mask[:, :1, :1, :]
        return self._functional.scaled_dot_product_attention(
            query, key, value, attn_mask, *args, **kwargs
        )


def install_broadcast_masks() -> None:
    from f5_tts.model import modules

    if not isinstance(modules.F, _FunctionalWithBroadcastMasks):
        modules.F = _FunctionalWithBroadcastMasks(modules.F)


def enable_padding_masks(model: Any) -> None:
    """Mask padded frames in attention for batches of more than one (both backends)."""
    install_broadcast_masks()
    for block in model.transformer.transformer_blocks:
        block.attn.processor.attn_mask_enabled = True
