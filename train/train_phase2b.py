"""The seed's command for phase 2b: `python train/train_phase2b.py [flags]` is
`python -m ffcore train --phase 2b [flags]` (same flags and defaults: dataset
./data/widerface/train/label.txt, checkpoints under ./weights/phase2b/)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from ffcore.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["train", "--phase", "2b", *sys.argv[1:]]))
