"""The chain's pieces that need no training: phase-3 variants, the study_2x profile and its
data, the cell result's format, the per-seed rows of the long format and old CSVs."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from ffcore.config import TrainConfig
from ffcore.profiles import get_profile
from ffcore.report.study_frame import OLD_COLUMNS as OLD_PER_SEED_COLUMNS
from ffcore.report.study_frame import PER_SEED_COLUMNS, PerSeedError, load_results, read_per_seed
from ffcore.report.study_frame import final_rows as phase3_rows
from ffcore.schedule import PHASE3_VARIANTS, PHASES, get_phase
from ffcore.study import Cell, CellResult, PhaseResult, StudySpec, cell_phase3_variants

REGULARISERS = ("mixup_alpha", "head_dropout", "grad_clip", "variant")


def test_phase3_variants_switch_off_only_their_regularisers() -> None:
    p3 = PHASES["3"]
    assert PHASE3_VARIANTS["as_specified"] is p3
    assert (p3.mixup_alpha, p3.head_dropout, p3.grad_clip) == (0.2, True, 5.0)
    off = {
        "no_mixup": (None, True, 5.0),
        "no_dropout": (0.2, False, 5.0),
        "no_regularisers": (None, False, None),
    }
    for name, (mixup, dropout, clip) in off.items():
        v = PHASE3_VARIANTS[name]
        assert (v.mixup_alpha, v.head_dropout, v.grad_clip, v.variant) == (
            mixup,
            dropout,
            clip,
            name,
        )
        same = {f.name for f in dataclasses.fields(v)} - set(REGULARISERS)
        assert {f: getattr(v, f) for f in same} == {f: getattr(p3, f) for f in same}  # lr, T_0 ...
        assert v.folder == f"phase3_{name}" and v.checkpoint_name == p3.checkpoint_name
        assert get_phase("3", name) is v
    assert p3.folder == "phase3" and p3.lr == 1e-4


def test_a_variant_is_phase_3_only_and_named() -> None:
    assert TrainConfig(phase="3", phase3_variant="no_mixup").phase3_variant == "no_mixup"
    with pytest.raises(ValueError, match="phase-3 variant 'no_mixup' asked for phase 2b"):
        TrainConfig(phase="2b", phase3_variant="no_mixup")
    with pytest.raises(ValueError, match="unknown phase-3 variant 'no_clip'"):
        TrainConfig(phase="3", phase3_variant="no_clip")
    with pytest.raises(ValueError, match="unknown phase-3 variant"):
        StudySpec("ci", "out", "data", phase3_variants=("as_specified",))
    spec = StudySpec("ci", "out", "data", phase3_variants=("no_mixup", "no_dropout"))
    assert cell_phase3_variants(Cell("eca_cbam_phased", 3), spec) == ("no_mixup", "no_dropout")
    assert cell_phase3_variants(Cell("cbam_phased", 3), spec) == ()


def test_study_2x_doubles_the_epochs_on_the_study_data(monkeypatch) -> None:
    from ffcore.data import synthetic
    from ffcore.paths import DEFAULT_DATA_ROOT

    study, twice = get_profile("study"), get_profile("study_2x")
    assert [twice.epochs(p) for p in ("1", "2a", "2b", "3")] == [24, 6, 8, 6]
    assert [2 * study.epochs(p) for p in ("1", "2a", "2b", "3")] == [24, 6, 8, 6]
    same = {f.name for f in dataclasses.fields(study)} - {"name", "phase_epochs", "dataset"}
    assert {f: getattr(twice, f) for f in same} == {f: getattr(study, f) for f in same}
    assert twice.dataset_name == study.dataset_name == "study"
    # the dataset folder is the study's: found there, nothing generated
    monkeypatch.setattr(synthetic, "_matches", lambda manifest, params: True)
    assert synthetic.ensure_dataset(profile="study_2x") == DEFAULT_DATA_ROOT / "study"
    assert synthetic.ensure_dataset(profile="ci") == DEFAULT_DATA_ROOT / "ci"


def test_the_study_command_refuses_an_unknown_variant_before_any_work(tmp_path, capsys) -> None:
    from ffcore.cli import main

    code = main(["study", "--profile", "ci", "--out", str(tmp_path / "s"),
                 "--phase3-variants", "no_mixup,no_clip"])  # fmt: skip
    assert code == 2 and "--phase3-variants" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _phase(pid: str, variant: str = "as_specified", ap: float | None = None) -> PhaseResult:
    whole = None if ap is None else {"easy": ap, "medium": ap - 0.1, "hard": ap - 0.5,
                                     "landmarks": {"nme": 0.05}}  # fmt: skip
    splits = {"half_a": {"easy": 0.4, "medium": 0.3, "hard": 0.2}}
    if ap is not None:
        splits |= {
            "half_b": {"easy": 0.6, "medium": 0.5, "hard": 0.1},
            "first96": dict(splits["half_a"]),
        }
    return PhaseResult(
        phase=pid, phase3_variant=variant, checkpoint=f"weights/phase{pid}/x.pth", epochs=2,
        final_loss=1.5, probe_losses=(2.0, 1.0), ap=whole, ap_splits=splits,
        num_faces=None if ap is None else {"easy": 3}, train_seconds=1.0,
        train_cpu_seconds=2.0, eval_seconds=0.5, eval_cpu_seconds=0.25,
        attention_state=(True, True), dropout_on=pid == "3",
    )  # fmt: skip


def _cell() -> CellResult:
    times = {"1": {"wall": 10.0, "cpu": 20.0}, "2a": {"wall": 1.0, "cpu": 2.0},
             "2b": {"wall": 3.0, "cpu": 6.0}, "3": {"wall": 5.0, "cpu": 7.0},
             "3_no_mixup": {"wall": 4.0, "cpu": 9.0}}  # fmt: skip
    phases = (_phase("1"), _phase("2a"), _phase("2b"), _phase("3", ap=0.9),
              _phase("3", "no_mixup", ap=0.8))  # fmt: skip
    return CellResult(
        cell="eca_cbam_phased_seed2", configuration="eca_cbam_phased", variant="eca_cbam",
        schedule="phased", seed=2, init_seed=2, profile="ci", data_root="d", backbone_init=None,
        phase_epochs={"1": 2, "2a": 2, "2b": 2, "3": 2}, torch_threads=1,
        cpu_capability="AVX2", phases=phases, phase_seconds=times,
    )  # fmt: skip


def test_cell_result_round_trips_and_knows_what_is_done() -> None:
    cell = _cell()
    back = CellResult.from_dict(json.loads(json.dumps(cell.to_dict())))
    assert back == cell
    assert cell.complete and cell.has(("no_mixup",)) and not cell.has(("no_dropout",))
    partial = dataclasses.replace(cell, phases=cell.phases[:2])
    assert not partial.complete and partial.final is None
    assert partial.with_phase(cell.phases[3]).with_phase(cell.phases[2]).phases == cell.phases[:4]
    # the chain's training seconds up to a phase; a variant's: phases 1-2b and its own phase 3
    assert cell.train_seconds("2a") == (11.0, 22.0)
    assert cell.train_seconds("3") == (19.0, 35.0)
    assert cell.train_seconds("3", "no_mixup") == (18.0, 37.0)


def test_per_seed_rows_follow_the_long_format(tmp_path) -> None:
    cell = _cell()
    (tmp_path / cell.cell).mkdir()
    (tmp_path / cell.cell / "result.json").write_text(json.dumps(cell.to_dict()))
    frame = load_results(tmp_path)
    assert list(frame.columns) == list(PER_SEED_COLUMNS) == [
        "profile", "configuration", "phase3_variant", "phase", "seed", "subset", "ap",
        "ap_half_a", "ap_half_b", "ap_first96", "nme", "train_seconds", "train_cpu_seconds",
        "eval_seconds", "eval_cpu_seconds", "torch_threads", "cpu_capability",
    ]  # fmt: skip
    assert len(frame) == 5 * 3
    assert list(frame.phase[::3]) == ["1", "2a", "2b", "3", "3"]
    assert list(frame.phase3_variant[::3]) == ["as_specified"] * 4 + ["no_mixup"]
    early = frame[frame.phase != "3"]
    assert early.ap.isna().all() and early.ap_half_b.isna().all() and early.nme.isna().all()
    assert (early[early.subset == "easy"].ap_half_a == 0.4).all()
    main = phase3_rows(frame)
    assert len(main) == 3 and list(main.ap[:2]) == [0.9, pytest.approx(0.8)]
    assert main.ap.iloc[2] == pytest.approx(0.4) and main.ap_half_b.iloc[0] == 0.6
    assert list(main.train_seconds) == [19.0] * 3 and main.nme.iloc[0] == 0.05
    variant = frame[frame.phase3_variant == "no_mixup"]
    assert list(variant.train_cpu_seconds) == [37.0] * 3 and variant.ap.iloc[0] == 0.8
    assert set(frame.cpu_capability) == {"AVX2"} and set(frame.seed) == {2}
    # through the CSV and back
    frame.to_csv(tmp_path / "per_seed.csv", index=False)
    back = read_per_seed(tmp_path / "per_seed.csv")
    assert list(back.phase[::3]) == ["1", "2a", "2b", "3", "3"]
    assert len(phase3_rows(back)) == 3


def test_an_old_per_seed_csv_reads_as_phase_3_as_specified(tmp_path) -> None:
    rows = [
        {c: 1.0 for c in OLD_PER_SEED_COLUMNS}
        | {"configuration": "none", "seed": 0, "subset": subset, "profile": "study"}
        for subset in ("easy", "medium", "hard")
    ]
    pd.DataFrame(rows, columns=list(OLD_PER_SEED_COLUMNS)).to_csv(tmp_path / "old.csv", index=False)
    back = read_per_seed(tmp_path / "old.csv")
    assert list(back.columns) == list(PER_SEED_COLUMNS)
    assert back.phase.tolist() == ["3"] * 3 and back.phase3_variant.tolist() == ["as_specified"] * 3
    assert (back.cpu_capability == "").all() and back.ap.tolist() == [1.0] * 3
    assert len(phase3_rows(back)) == 3


def test_a_folder_of_study_folders_reads_both_schedules(tmp_path) -> None:
    cell = _cell()
    for profile in ("ci", "ci_2x"):
        folder = tmp_path / profile / cell.cell
        folder.mkdir(parents=True)
        record = dataclasses.replace(cell, profile=profile).to_dict()
        (folder / "result.json").write_text(json.dumps(record))
    frame = load_results(tmp_path)
    assert sorted(set(frame.profile)) == ["ci", "ci_2x"] and len(frame) == 2 * 5 * 3
    # one study folder read alone still gives its own cells only
    assert set(load_results(tmp_path / "ci_2x").profile) == {"ci_2x"}
    # the same cell twice (a copied folder) is an error naming both files
    twin = tmp_path / "copy" / cell.cell
    twin.mkdir(parents=True)
    (twin / "result.json").write_text((tmp_path / "ci" / cell.cell / "result.json").read_text())
    with pytest.raises(ValueError, match=r"two results of ci eca_cbam_phased seed 2: .*copy"):
        load_results(tmp_path)


def test_a_study_read_while_cells_run_keeps_whole_seeds(tmp_path) -> None:
    """Seed 1's thesis cell has no no_mixup variant yet and seed 2 has only the none cell:
    the frame read from the folder is the valid grid of seed 0, and says what it left out."""
    from ffcore.report.study_frame import study_frame, validate_per_seed

    base = _cell()
    main_chain = base.phases[:4]
    cells = [
        dataclasses.replace(base, seed=0, cell="eca_cbam_phased_seed0"),
        dataclasses.replace(base, seed=1, cell="eca_cbam_phased_seed1", phases=main_chain),
    ]
    cells += [dataclasses.replace(base, configuration="none", variant="none", seed=s,
                                  cell=f"none_seed{s}", phases=main_chain) for s in (0, 1, 2)]  # fmt: skip
    for c in cells:
        (tmp_path / c.cell).mkdir()
        (tmp_path / c.cell / "result.json").write_text(json.dumps(c.to_dict()))
    notes: list[str] = []
    frame, origin = study_frame(tmp_path, None, tmp_path / "absent.csv", report=notes.append)
    assert origin == str(tmp_path) and set(frame.seed) == {0}
    assert notes == [
        "ci: 5 cell(s) trained without a recorded environment (commit and package versions)",
        "ci: seed(s) 1, 2 left out (not every cell of them is complete yet)",
    ]
    assert len(frame) == (4 + 1 + 4) * 3  # eca: 4 phases + no_mixup; none: 4 phases
    validate_per_seed(frame, "frame")  # a valid grid
    with pytest.raises(PerSeedError):  # the frame as loaded is not
        validate_per_seed(load_results(tmp_path), "frame")


def test_cells_of_first_seed_extend_a_committed_csv(tmp_path) -> None:
    """A new machine keeps only the committed CSV (seeds 0-1); the cells of ``study
    --first-seed 2`` add seed 2, and cells of seeds the CSV holds check that the machine
    trains its numbers: equal, they are kept once; different, they are refused unless another
    machine is allowed explicitly, and then only the new whole seeds join."""
    from ffcore.report.study_frame import study_frame, write_per_seed

    def cell(conf: str, seed: int, ap: float = 0.9) -> CellResult:
        base = _cell()
        phases = (*base.phases[:3], _phase("3", ap=ap), base.phases[4])
        return dataclasses.replace(base, configuration=conf, seed=seed, phases=phases,
                                   cell=f"{conf}_seed{seed}")  # fmt: skip

    def folder(name: str, cells: list[CellResult]):
        for c in cells:
            (tmp_path / name / c.cell).mkdir(parents=True)
            (tmp_path / name / c.cell / "result.json").write_text(json.dumps(c.to_dict()))
        return tmp_path / name

    grid = [cell(conf, s) for s in (0, 1, 2) for conf in ("none", "eca_cbam_phased")]
    everything = folder("all", grid)
    csv = write_per_seed(load_results(folder("old", grid[:4])), tmp_path / "figures")
    # seed 2 whole, one cell of seed 0 and the whole of seed 1 (a check), an unfinished cell
    fresh = folder("new", [grid[0], *grid[2:]])
    unfinished = dataclasses.replace(grid[0], seed=3, cell="none_seed3", phases=grid[0].phases[:2])
    folder("new", [unfinished])
    notes: list[str] = []
    frame, origin = study_frame(fresh, None, tmp_path / "absent.csv", notes.append, extends=csv)
    pd.testing.assert_frame_equal(frame, load_results(everything))
    assert origin == f"{csv} and the cells of {fresh}"
    assert notes[-2:] == [
        f"ci: 3 cell(s) of {fresh} re-train seed(s) 0, 1 of {csv} to the last digit",
        f"ci: seed(s) 2 from {fresh} added to the 2 of {csv}",
    ]
    # another machine: none seed 0 differs by 0.0625 AP; refused, or its seed 2 joins
    other = folder("other", [cell("none", 0, ap=0.9625), *grid[4:]])
    with pytest.raises(ValueError, match=r"ci: none seed 0 of .*other differ from .* \(largest "
                       r"AP/NME difference 0.0625\): not the same training.*allow_other_machine"):  # fmt: skip
        study_frame(other, None, tmp_path / "absent.csv", extends=csv)
    notes = []
    frame, _ = study_frame(other, None, tmp_path / "absent.csv", notes.append, extends=csv,
                           allow_other_machine=True)  # fmt: skip
    pd.testing.assert_frame_equal(frame, load_results(everything))  # seed 0 from the CSV
    assert notes[-2].startswith(f"ci: none seed 0 of {other} differ from {csv} (largest AP/NME "
                                "difference 0.0625): another machine's training")  # fmt: skip
    # a cell outside the CSV's grid is no check: refused
    lone = folder("lone", [dataclasses.replace(cell("cbam_joint", 0), variant="cbam")])
    with pytest.raises(ValueError, match="ci cbam_joint seed 0 .* is not in .*'s grid"):
        study_frame(lone, None, tmp_path / "absent.csv", extends=csv)
    # no cells yet: the CSV alone; a CSV to report alone and one to extend: refused
    frame, origin = study_frame(tmp_path / "none", None, tmp_path / "absent.csv", extends=csv)
    assert origin == str(csv) and set(frame.seed) == {0, 1}
    with pytest.raises(ValueError, match="give one of them"):
        study_frame(fresh, csv, tmp_path / "absent.csv", extends=csv)


def test_cells_record_the_code_and_packages_that_trained_them(tmp_path) -> None:
    from ffcore.report.study_frame import cell_environments, read_cells
    from ffcore.study import cell_environment

    env = cell_environment()
    assert set(env) == {"git_commit", "git_dirty", "versions", "cpu"}
    assert env["versions"]["torch"] == __import__("torch").__version__.split("+")[0]
    recorded = {"git_commit": "0123456789abcdef", "git_dirty": True,
                "versions": {"torch": "2.14.1", "numpy": "2.4.6"}, "cpu": "AMD EPYC"}  # fmt: skip
    running = _cell().phases[:2]  # seed 3 has not reached phase 3: not counted as trained
    for seed, environment, phases in ((0, recorded, None), (1, recorded, None), (2, {}, None),
                                      (3, recorded, running)):  # fmt: skip
        cell = dataclasses.replace(_cell(), seed=seed, cell=f"c{seed}", environment=environment)
        cell = dataclasses.replace(cell, phases=phases or cell.phases)
        (tmp_path / cell.cell).mkdir()
        (tmp_path / cell.cell / "result.json").write_text(json.dumps(cell.to_dict()))
        assert CellResult.from_dict(cell.to_dict()).environment == environment
    cells = read_cells(tmp_path)
    assert [path.parent.name for path, _ in cells] == ["c0", "c1", "c2", "c3"]
    assert cell_environments(tmp_path, cells) == cell_environments(tmp_path)
    assert cell_environments(tmp_path) == [
        "ci: 2 cell(s) trained at commit 0123456+ (torch 2.14.1, numpy 2.4.6) on AMD EPYC",
        "ci: 1 cell(s) trained without a recorded environment (commit and package versions)",
    ]


def test_cpu_model_reads_the_first_processor() -> None:
    from ffcore.study import cpu_model

    info = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
            "model name\t: AMD EPYC\nflags\t\t: fpu avx2\n\nprocessor\t: 1\n"
            "model name\t: Other\n")  # fmt: skip
    assert cpu_model(info) == "AMD EPYC (AuthenticAMD cpu family 26 model 2)"
    assert cpu_model("model name : Intel Xeon\n") == "Intel Xeon"
    assert cpu_model("") != ""  # no cpuinfo: the platform's name for it


def test_a_cells_cost_counts_every_phase_scored_and_every_variant(tmp_path) -> None:
    """Phase seconds of ``_cell``: CPU 20 / 2 / 6 / 7 for phases 1-3 and 9 for the no_mixup
    phase 3; each of the 5 phase results scored in 0.25 CPU s."""
    from ffcore.report.study_stats import cell_costs, cost_table

    cell = _cell()
    (tmp_path / cell.cell).mkdir()
    (tmp_path / cell.cell / "result.json").write_text(json.dumps(cell.to_dict()))
    frame = load_results(tmp_path)
    costs = cell_costs(frame)
    assert costs.to_dict("records") == [{
        "profile": "ci", "configuration": "eca_cbam_phased", "seed": 2,
        "train_cpu": 20 + 2 + 6 + 7 + 9, "eval_cpu": 5 * 0.25,
    }]  # fmt: skip
    only_final = cell_costs(phase3_rows(frame))  # the older layout: the final model alone
    assert list(only_final.train_cpu) == [35.0] and list(only_final.eval_cpu) == [0.25]
    assert cost_table(frame)["cell CPU s (mean)"].tolist() == [44 + 1.25]


def test_difference_tables_name_configurations_and_variants_in_words() -> None:
    from ffcore.report.study import difference_table

    frame = pd.DataFrame([{
        "profile": "study", "configuration": "eca_cbam_phased", "variant": "no_dropout",
        "subset": "hard", "n": 4, "mean": 2.4, "low": 1.3, "high": 3.5, "p_holm": 0.048,
        "verdict": "significantly higher",
    }])  # fmt: skip
    row = difference_table(frame, ["profile", "configuration", "variant", "subset"]).iloc[0]
    assert (row.configuration, row.variant) == ("ECA-CBAM phased", "no head dropout")
    assert (row.difference, row["95% CI"], row["Holm p"]) == (2.4, "[+1.3, +3.5]", 0.048)


def test_the_phase_table_has_a_row_per_phase_and_a_column_per_subset() -> None:
    from ffcore.report.study import phase_table

    trajectory = pd.DataFrame([
        {"profile": "study", "configuration": "none", "phase": "1", "subset": s, "n": 4,
         "mean": m, "low": m - 1.0, "high": m + 1.5}
        for s, m in (("easy", 98.04), ("medium", 93.0), ("hard", 65.12))
    ] + [{"profile": "study", "configuration": "none", "phase": "2a", "subset": "easy", "n": 1,
          "mean": 97.0, "low": float("nan"), "high": float("nan")}])  # fmt: skip
    table = phase_table(trajectory)
    assert list(table.columns) == [
        "profile",
        "configuration",
        "phase",
        "n",
        "easy",
        "medium",
        "hard",
    ]
    first, second = table.iloc[0], table.iloc[1]
    assert (first.configuration, first.phase, first.n) == ("no attention", "1", 4)
    assert (first.easy, first.hard) == ("98.0 [97.0, 99.5]", "65.1 [64.1, 66.6]")
    assert second.easy == "97.0" and pd.isna(second.medium)  # one seed: no interval
