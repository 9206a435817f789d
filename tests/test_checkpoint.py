"""Checkpoints are atomic and integrity-checked."""

import os

import pytest
import torch

from ssnas_core.checkpoint import LAST, PREV, load_checkpoint, read_checkpoint, save_checkpoint
from ssnas_core.errors import CheckpointError


def test_round_trip_keeps_tensors_and_previous_copy(tmp_path) -> None:
    save_checkpoint(tmp_path, {"epoch": 1, "w": torch.arange(4.0)})
    save_checkpoint(tmp_path, {"epoch": 2, "w": torch.arange(4.0) * 2})
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 2 and torch.equal(state["w"], torch.arange(4.0) * 2)
    assert read_checkpoint(tmp_path / PREV)["epoch"] == 1
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_bit_flip_is_detected_and_prev_is_used_with_a_warning(tmp_path) -> None:
    save_checkpoint(tmp_path, {"epoch": 1})
    save_checkpoint(tmp_path, {"epoch": 2})
    data = bytearray((tmp_path / LAST).read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / LAST).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(tmp_path, fallback_prev=False)
    with pytest.warns(UserWarning, match="resuming from"):
        assert load_checkpoint(tmp_path)["epoch"] == 1


def test_truncated_file_names_the_path(tmp_path) -> None:
    save_checkpoint(tmp_path, {"epoch": 1})
    (tmp_path / LAST).write_bytes((tmp_path / LAST).read_bytes()[:40])
    with pytest.raises(CheckpointError, match=str(tmp_path / LAST)):
        load_checkpoint(tmp_path, fallback_prev=False)


def test_missing_checkpoint_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="never finished an epoch"):
        load_checkpoint(tmp_path)


def test_a_crash_during_the_write_leaves_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    save_checkpoint(tmp_path, {"epoch": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(CheckpointError, match="cannot write a checkpoint .*disk full.*the last good one is kept"):
        save_checkpoint(tmp_path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)["epoch"] == 1
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
