"""What a measured AP is called, as a function of the run it comes from: "WIDER FACE AP" only
for the full profile on real data; under any other run (smoke, study, ci, or the synthetic set)
"AP under the WIDER FACE protocol on the synthetic val set", so a synthetic number is never
read as a WIDER FACE result. Every label, caption and number description that names an AP uses
``ap_label``."""

from __future__ import annotations

import os

from ffcore.paths import repo_path

WIDER_AP = "WIDER FACE AP"
SYNTHETIC_AP = "AP under the WIDER FACE protocol on the synthetic val set"


def is_synthetic(data_root: str | os.PathLike[str] | None) -> bool:
    """True for the embedded dataset: ``data_root`` None or a folder the synthetic generator
    wrote (its manifest)."""
    from ffcore.data.synthetic import read_manifest

    return data_root is None or read_manifest(repo_path(data_root)) is not None


def ap_label(profile: str, data_root: str | os.PathLike[str] | None = None) -> str:
    """The name of an AP measured by a ``profile`` run on ``data_root`` (see the module)."""
    if is_synthetic(data_root):
        return SYNTHETIC_AP
    if profile == "full":
        return WIDER_AP
    name = repo_path(data_root).name
    return f"AP under the WIDER FACE protocol on the val set of {name} ({profile} run)"


def ap_label_of_profile(profile: str) -> str:
    """``ap_label`` for a number that records only its profile (``numbers.json``): a full run
    needs real data (``ffcore.reproduce``), every other profile runs on the synthetic set."""
    return WIDER_AP if profile == "full" else SYNTHETIC_AP
