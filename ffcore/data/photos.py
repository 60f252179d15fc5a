"""Real photos with faces that ship with installed packages (no download): the checks of a model
on real faces (model cards, int8 calibration, the evaluation notebook's figure)."""

from __future__ import annotations

import numpy as np


def sample_photos() -> dict[str, np.ndarray]:
    """matplotlib's grace_hopper.jpg (always) and scikit-image's astronaut (when scikit-image is
    installed), BGR uint8; each shows one face."""
    import cv2
    from matplotlib import cbook

    photos = {
        "grace_hopper": cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    }
    try:
        from skimage import data as skdata

        photos["astronaut"] = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    except ImportError:
        pass
    return photos
