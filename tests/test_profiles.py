"""Run profiles: per-phase epochs, and the full profile runs the phase table."""

import dataclasses

import pytest

from ffcore.profiles import PROFILES, get_profile
from ffcore.schedule import PHASE_ORDER, get_phase


def test_short_profiles_stay_within_the_table_and_full_uses_it() -> None:
    for name in ("ci", "smoke", "study"):
        prof = get_profile(name)
        assert all(1 <= prof.epochs(p) <= get_phase(p).epochs for p in PHASE_ORDER), name
    assert get_profile("smoke").epochs(1) == get_profile("smoke").epochs("1")
    full = get_profile("full")
    assert [full.epochs(p) for p in PHASE_ORDER] == [get_phase(p).epochs for p in PHASE_ORDER]
    assert [get_profile("smoke").epochs(p) for p in PHASE_ORDER] == [12, 3, 4, 3]


def test_phase_epochs_need_one_entry_per_phase() -> None:
    with pytest.raises(ValueError, match="one entry per phase"):
        dataclasses.replace(PROFILES["smoke"], phase_epochs=(2, 2))
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("tiny")
