"""The one place numbers are written for people (results/formatting.py) and the one nanotron
schedule (nanotron/schedule.py): the values every former copy printed or computed."""

from __future__ import annotations

import math

import pytest

from zagreus_utils.nanotron import logs
from zagreus_utils.nanotron.schedule import NanotronSchedule, lr_at
from zagreus_utils.results import formatting as fmt


def test_counts_tokens_bytes_and_durations():
    assert fmt.human(182_000) == "182K" and fmt.human(4.8e11) == "480B" and fmt.human(0.5) == "0.5"
    assert fmt.count(437_760_960) == "437.8M" and fmt.count(12) == "12"
    assert fmt.params(1.234e9) == "1.23B" and fmt.params(437_760_960) == "437.8M"
    assert fmt.tokens(480e9) == "480B" and fmt.tokens(12_345) == "12.3k" and fmt.tokens(math.nan) == "—"
    assert fmt.size_bytes(1.5e9) == "1.5 GB" and fmt.size_bytes(12) == "12 B" and fmt.size_bytes(None) == "—"
    assert fmt.memory(1.5 * 2**30) == "1.50 GiB" and fmt.memory(12 * 2**20) == "12.0 MiB"
    assert fmt.integer(1_234_567) == "1,234,567" and fmt.percent(0.123) == "12.3%" and fmt.integer(None) == "—"
    assert fmt.duration(131 * 86400 + 6339) == "131 days, 1:45:39" and fmt.duration(59) == "0:00:59"


def test_one_log_line_parser_gives_fields_as_written_and_as_numbers():
    line = ("\x1b[32m12/21 01:39:51 [INFO|DP=0|TP=0|lrdn0007]:\x1b[0m iteration: 211364 / 1500000 | "
            "consumed_tokens: 480B | lr: 0.0001 | eta: 131 days, 1:45:39")
    fields = logs.fields(line)
    assert fields == {"iteration": "211364 / 1500000", "consumed_tokens": "480B", "lr": "0.0001",
                      "eta": "131 days, 1:45:39"}
    row = logs.parse_line(line)
    assert row["consumed_tokens"] == logs.number(fields["consumed_tokens"]) == 4.8e11
    assert row["eta_seconds"] == logs.parse_eta(fields["eta"]) and logs.fields("no step here") is None


def test_schedule_defaults_are_nanotrons():
    # no lr_decay_steps: nanotron decays over train_steps - warmup - decay start (nanotron/helpers.py)
    s = NanotronSchedule.from_section({"learning_rate": "3e-3", "lr_warmup_steps": 100,
                                       "lr_decay_starting_step": 1000, "min_decay_lr": 1e-5}, 3000)
    assert s.decay_steps == 1900 and lr_at(2900, s) == pytest.approx(1e-5)
    assert lr_at(1950, s) == pytest.approx((3e-3 + 1e-5) / 2) and s(50) == pytest.approx(0.5)
