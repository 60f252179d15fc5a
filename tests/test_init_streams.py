"""``build_model(variant, init_seed=S)``: every tensor two variants share is bit-identical."""

from __future__ import annotations

import itertools

import pytest
import torch

from ffcore.models import build_model
from ffcore.models.init_streams import init_stream, stream_seed

VARIANTS = ("none", "cbam", "eca_cbam")


def _shared(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in a if k in b and a[k].shape == b[k].shape]


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(VARIANTS, 2)))
def test_variants_share_every_common_tensor_exactly(first: str, second: str) -> None:
    a = build_model(first, init_seed=7).state_dict()
    b = build_model(second, init_seed=7).state_dict()
    shared = _shared(a, b)
    # backbone, neck, context and heads always; cbam/eca_cbam also share the SAM parts
    assert len(shared) >= 0.9 * min(len(a), len(b))
    if {first, second} == {"cbam", "eca_cbam"}:
        sam = [k for k in shared if ".spatial." in k]
        assert len(sam) == 6 * 6  # 6 blocks x (conv.weight, bn.{weight,bias,mean,var,count})
    differ = [k for k in shared if not torch.equal(a[k], b[k])]
    assert not differ, f"{first} vs {second}: {differ[:5]}"


def test_plain_build_does_not_share_the_heads() -> None:
    """Without init_seed the attention blocks shift the global draws (the defect fixed here)."""
    torch.manual_seed(7)
    a = build_model("none").state_dict()
    torch.manual_seed(7)
    b = build_model("eca_cbam").state_dict()
    assert not torch.equal(a["heads.cls.0.weight"], b["heads.cls.0.weight"])


def test_the_seed_matters_and_the_global_rng_is_untouched() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model("eca_cbam", init_seed=1).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    b = build_model("eca_cbam", init_seed=1).state_dict()
    c = build_model("eca_cbam", init_seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k in a if k.endswith("weight") and a[k].numel() > 1 and a[k].float().std() > 0]
    assert all(not torch.equal(a[k], c[k]) for k in weights)


def test_a_stream_is_the_generator_seeded_by_its_derived_seed() -> None:
    """Independent check: inside init_stream(S, name), torch.rand equals a fresh Generator
    seeded with stream_seed(S, name), which is sha256 of the name (first 8 bytes, 63 bits)."""
    import hashlib

    digest = hashlib.sha256(b"ffcore-init:3:neck").digest()
    assert stream_seed(3, "neck") == int.from_bytes(digest[:8], "little") & (2**63 - 1)
    with init_stream(3, "neck"):
        got = torch.rand(5)
    want = torch.rand(5, generator=torch.Generator().manual_seed(stream_seed(3, "neck")))
    assert torch.equal(got, want)
    assert stream_seed(3, "neck") != stream_seed(3, "heads") != stream_seed(4, "neck")
