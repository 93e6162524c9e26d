"""The headline ratio of `make bench`: add-to-cart's req/s over the floor's, round by round."""

from __future__ import annotations

from bench.report import Record, paired_ratio


def record(rps_rounds: list[float]) -> Record:
    ordered = sorted(rps_rounds)
    return {"rps": ordered[len(ordered) // 2], "rps_rounds": rps_rounds}


def test_each_round_is_divided_by_the_floor_round_beside_it() -> None:
    # A burst of load from elsewhere halves the second round of both: the ratio of the
    # medians (2,000 / 4,000 = 0.5) blames the code, the paired rounds (0.8 each) do not.
    floor = record([5_000.0, 2_500.0, 4_000.0])
    small = record([4_000.0, 2_000.0, 3_200.0])
    value, detail = paired_ratio(small, floor)
    assert value is not None and round(value, 6) == 0.8
    assert "0.80, 0.80, 0.80" in detail


def test_the_median_of_the_paired_ratios() -> None:
    floor = record([4_000.0, 4_000.0, 4_000.0])
    small = record([1_000.0, 3_000.0, 3_600.0])
    value, _ = paired_ratio(small, floor)
    assert value == 0.75


def test_records_without_rounds_give_the_ratio_of_the_medians() -> None:
    value, detail = paired_ratio({"rps": 300.0}, {"rps": 400.0})
    assert value == 0.75
    assert "paired" not in detail
