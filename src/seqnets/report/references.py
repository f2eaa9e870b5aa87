"""The reference reports' published numbers (../shared/docs/SPEC.md), keyed by the report's
experiment names: the bar every seqnets figure is set against."""

from __future__ import annotations

# Section 1: test accuracy (%). Report A: batch 64, 5 epochs (its RNN row: 10 epochs);
# report B: batch 500, 10 epochs.
MNIST = {
    "mnist/rnn_128": {"A": 97.19, "B": 94.42},
    "mnist/rnn_256": {"A": None, "B": 94.86},
    "mnist/rnn_128_2layers": {"A": None, "B": 96.83},
    "mnist/lstm_64": {"A": 97.80, "B": None},
    "mnist/lstm_128": {"A": 98.58, "B": 97.38},
    "mnist/gru_128": {"A": 98.52, "B": 97.06},
    "mnist/birnn_128": {"A": None, "B": 95.60},
    "mnist/bilstm_128": {"A": 98.60, "B": 97.82},
    "mnist/lstm_128_l2": {"A": 98.52, "B": None},
}
# Report A's time to train and test, seconds, on its own machine.
MNIST_TIME_A = {
    "mnist/rnn_128": 631,
    "mnist/lstm_128": 418,
    "mnist/lstm_64": 409,
    "mnist/gru_128": 565,
    "mnist/bilstm_128": 765,
    "mnist/lstm_128_l2": 261,
}

# Section 2: report A reached 100 % with LSTM at hidden 10 and GRU at hidden 5 and 10; RNN
# lower (no figure given).
REMEMBER_100 = {"remember/lstm_h10", "remember/gru_h5", "remember/gru_h10"}

# Section 3: report A's bit accuracy at length 20 (one run, 100 sums per length).
BINARY_ADD_A_BIT_AT_20 = {
    "binary_add/h3_ce_L3": 0.61,
    "binary_add/h3_mse_L3": 0.48,
    "binary_add/h5_ce_L3": 0.97,
    "binary_add/h5_mse_L3": 0.94,
    "binary_add/h5_ce_L7": 0.99,
}
# Report B: accuracy averaged over lengths 1..20, %.
BINARY_ADD_B_MEAN_1_20 = {
    "binary_add/h3_ce_L3": 92.3,
    "binary_add/h10_ce_L3": 100.0,
    "binary_add/h5_ce_L3": 81.3,
    "binary_add/h5_ce_L5": 99.8,
    "binary_add/h5_ce_L10": 100.0,
}
