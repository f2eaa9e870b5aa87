"""The adding problem: the data as the task defines it, a user's own sequences, and one tiny
end-to-end run through training, predict and the inside analysis, with the minGRU cell (the
task and the cell that were added through the extension points)."""

from __future__ import annotations

import json

import pytest
import torch

from seqnets.data.adding import AddingDataModule, encode_sequence, make_adding_batch
from seqnets.errors import ConfigError
from seqnets.tasks.adding import CONSTANT_MSE, parse_sequences
from tests.conftest import cli_in_process, load_metrics, run_dirs, tiny


def test_two_markers_one_in_each_half_and_the_sum_of_their_values():
    lengths = torch.tensor([2, 7, 50, 50])
    batch = make_adding_batch(4, lengths, torch.Generator().manual_seed(0))
    values, markers = batch["x"].unbind(-1)
    for i, n in enumerate(lengths.tolist()):
        marked = markers[i].nonzero().flatten().tolist()
        assert len(marked) == 2 and marked[0] < n // 2 <= marked[1] < n
        assert torch.all(batch["x"][i, n:] == 0)  # padding is zero
        assert batch["y"][i] == pytest.approx(float(values[i, marked].sum()))


def test_always_answering_one_scores_the_constant_baseline():
    batch = make_adding_batch(20000, torch.full((20000,), 50), torch.Generator().manual_seed(1))
    assert float((batch["y"] - 1.0).pow(2).mean()) == pytest.approx(CONSTANT_MSE, abs=0.005)


def test_datamodule_lengths_and_bad_values():
    dm = AddingDataModule(train_len=[10, 20], min_eval_len=10, max_eval_len=40, eval_step=15)
    assert dm.eval_lengths() == [10, 25, 40]
    train = dm.train_batch(torch.Generator().manual_seed(0))
    assert "lengths" not in train and 10 <= train["x"].shape[1] <= 20  # one length a batch
    with pytest.raises(ConfigError, match=r"task.train_len \(min\)=1"):
        AddingDataModule(train_len=1)
    with pytest.raises(ConfigError, match=r"task\.eval_step"):
        AddingDataModule(eval_step=0)


def test_a_users_sequences():
    parsed = parse_sequences(["0.3 *0.5 0.1 *0.9", "1 2 3", "0.1 *x *0.2", "*nan *1"])
    assert parsed[0] == ([0.3, 0.5, 0.1, 0.9], [1, 3])
    assert "mark exactly two values with *" in parsed[1] and "(0 marked)" in parsed[1]
    assert "'x' is not a finite number" in parsed[2]
    assert "'nan' is not a finite number" in parsed[3]
    assert parse_sequences([0.2, "*0.5", 0.1, "*0.25"]) == [([0.2, 0.5, 0.1, 0.25], [1, 3])]
    assert encode_sequence([0.2, 0.5, 0.1, 0.25], [1, 3])["y"].item() == pytest.approx(0.75)
    with pytest.raises(ConfigError, match="give values with two starred"):
        parse_sequences("")


def test_adding_with_mingru_trains_predicts_and_looks_inside(tmp_path, capsys):
    args = tiny("task=adding", "model=mingru", "model.hidden=8", "task.train_len=[6,10]")
    args += ["task.max_eval_len=40", "task.eval_step=10"]
    code, err = cli_in_process(*args, cwd=tmp_path, capsys=capsys)
    assert code == 0, err
    (run,) = run_dirs(tmp_path)
    metrics = load_metrics(run)
    assert metrics["monitor"] == "val/mse" and metrics["test"]["test/mse"] >= 0
    assert [r["length"] for r in metrics["by_length"]] == [10, 20, 30, 40]
    inside = metrics["inside"]["running_sum"]
    assert inside["length"] == 10 and len(inside["mse"]) == 10
    assert (run / "figures" / "inside_adding_running_sum.png").exists()

    code, err = cli_in_process(
        f"ckpt_path={run}",
        'input=["0.3 *0.5 0.1 *0.9 0.2", "0.1 0.2"]',
        cwd=tmp_path,
        capsys=capsys,
        module="seqnets.predict",
    )
    assert code == 2 and "mark exactly two values" in err
    (predictions,) = (tmp_path / "outputs" / "predict").rglob("predictions.json")
    first = json.loads(predictions.read_text())["rows"][0]
    assert first["true"] == pytest.approx(1.4, abs=1e-6)
    assert "outside the training lengths" in first["text"]
