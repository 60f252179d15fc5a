"""Round trip and edge cases of the official WIDER FACE ground-truth .mat layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ffcore.data.wider_mat import GroundTruth, read_ground_truth, write_ground_truth


def _sample() -> GroundTruth:
    boxes = [
        [np.array([[10, 20, 30, 40], [5, 5, 0, 12], [1, 2, -3, 4]], float), np.zeros((0, 4))],
        [np.array([[0.5, 1.5, 8, 9]])],
    ]
    keep = {
        "easy": [[np.array([1]), np.zeros(0, int)], [np.zeros(0, int)]],
        "medium": [[np.array([1, 2]), np.zeros(0, int)], [np.array([1])]],
        "hard": [[np.array([1, 2, 3]), np.zeros(0, int)], [np.array([1])]],
    }
    return GroundTruth(
        events=["0--Parade", "1--Handshaking"],
        images=[["0_Parade_1", "0_Parade_2"], ["1_Hand_7"]],
        boxes=boxes,
        keep=keep,
    )


def test_round_trip(tmp_path: Path) -> None:
    gt = _sample()
    write_ground_truth(tmp_path, gt)
    back = read_ground_truth(tmp_path)
    assert back.events == gt.events and back.images == gt.images
    assert back.num_images == 3 and back.num_faces == 4
    for e in range(2):
        for i in range(len(gt.images[e])):
            np.testing.assert_array_equal(back.boxes[e][i], gt.boxes[e][i])
            assert back.boxes[e][i].shape[1] == 4
            for s in ("easy", "medium", "hard"):
                np.testing.assert_array_equal(back.keep[s][e][i], gt.keep[s][e][i])
                assert back.keep[s][e][i].dtype == np.int64
    # the written layout is the official one: cell columns, uint8 keep columns
    raw = scipy.io.loadmat(str(tmp_path / "wider_face_val.mat"))
    assert raw["event_list"].shape == (2, 1) and raw["file_list"][0, 0].shape == (2, 1)
    assert raw["face_bbx_list"][0, 0][0, 0].shape == (3, 4)
    hard = scipy.io.loadmat(str(tmp_path / "wider_hard_val.mat"))["gt_list"]
    assert hard[0, 0][0, 0].dtype == np.uint8 and hard[0, 0][0, 0].shape == (3, 1)


def _write_official_by_hand(d: Path, keep_cell: np.ndarray) -> None:
    """The real layout built with plain scipy, independent of write_ground_truth."""

    def cell(items: list[object]) -> np.ndarray:
        out = np.empty((len(items), 1), dtype=object)
        for i, it in enumerate(items):
            out[i, 0] = it
        return out

    scipy.io.savemat(
        str(d / "wider_face_val.mat"),
        {
            "event_list": cell(["0--Parade"]),
            "file_list": cell([cell(["a", "b", "c"])]),
            "face_bbx_list": cell(
                [cell([np.ones((2, 4)), np.ones((300, 4)), np.array([[1.0, 2, 3, 4]])])]
            ),
        },
    )
    for s in ("easy", "medium", "hard"):
        scipy.io.savemat(str(d / f"wider_{s}_val.mat"), {"gt_list": cell([keep_cell])})


def test_empty_keep_lists_and_uint16(tmp_path: Path) -> None:
    keep = np.empty((3, 1), dtype=object)
    keep[0, 0] = np.zeros((0, 0), dtype=np.uint8)
    keep[1, 0] = np.array([[1], [299], [300]], dtype=np.uint16)
    keep[2, 0] = np.zeros((0, 1), dtype=np.uint16)
    _write_official_by_hand(tmp_path, keep)
    gt = read_ground_truth(tmp_path)
    assert [k.tolist() for k in gt.keep["hard"][0]] == [[], [1, 299, 300], []]
    assert gt.boxes[0][1].shape == (300, 4)


def test_missing_files_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="wider_face_val.mat"):
        read_ground_truth(tmp_path)
    keep = np.empty((3, 1), dtype=object)
    keep[0, 0] = np.array([[1]], np.uint8)
    keep[1, 0] = np.array([[301]], np.uint16)  # out of range: image has 300 faces
    keep[2, 0] = np.array([[1]], np.uint8)
    _write_official_by_hand(tmp_path, keep)
    with pytest.raises(ValueError, match=r"wider_easy_val.mat.*'b'.*1\.\.300"):
        read_ground_truth(tmp_path)
    (tmp_path / "wider_medium_val.mat").unlink()
    keep[1, 0] = np.array([[3]], np.uint16)
    _write_official_by_hand(tmp_path, keep)
    (tmp_path / "wider_hard_val.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="wider_hard_val.mat"):
        read_ground_truth(tmp_path)
    scipy.io.savemat(str(tmp_path / "wider_hard_val.mat"), {"other": np.ones(2)})
    with pytest.raises(ValueError, match="no variable 'gt_list'"):
        read_ground_truth(tmp_path)
