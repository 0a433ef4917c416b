"""wait_until arithmetic: local wall clock across daylight-saving changes, and bad dates."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from workflows.timing import moment_from, next_time_of_day, zone

BERLIN = zone("Europe/Berlin")
DAY = 86_400


@pytest.mark.parametrize(
    ("value", "offset", "expected"),
    [
        ("2027-10-31", DAY, datetime(2027, 11, 1, 9, 0, tzinfo=UTC)),  # autumn: back to CET
        ("2027-03-29", -DAY, datetime(2027, 3, 28, 8, 0, tzinfo=UTC)),  # spring: CEST that day
        (
            "2027-03-27T22:30:00+00:00",
            5 * DAY,
            datetime(2027, 4, 1, 8, 0, tzinfo=UTC),
        ),  # 23:30 local
        (date(2027, 6, 1), 0, datetime(2027, 6, 1, 8, 0, tzinfo=UTC)),
    ],
)
def test_offsets_move_the_local_wall_clock(value: object, offset: int, expected: datetime) -> None:
    assert moment_from(value, BERLIN, offset, "10:00") == expected


def test_the_first_release_arithmetic_is_kept_for_recorded_runs() -> None:
    old = moment_from("2027-10-31", BERLIN, DAY, "10:00", wall_clock=False)
    assert old == datetime(2027, 10, 31, 9, 0, tzinfo=UTC)  # the day early the fix corrects


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00", "9999-12-31"])
def test_dates_at_the_edge_of_time_are_a_clear_error(value: str) -> None:
    offset = -DAY if value.startswith("0001") else DAY
    with pytest.raises(ValueError, match="out of range") as caught:
        moment_from(value, BERLIN, offset)
    assert value not in str(caught.value), "no personal data (a birthday) in the message"


@pytest.mark.parametrize("value", ["tomorrow", 42, None])
def test_values_that_are_not_dates_are_a_clear_error(value: object) -> None:
    with pytest.raises(ValueError):
        moment_from(value, BERLIN)


def test_a_time_in_the_spring_gap_moves_forward_and_the_autumn_fold_takes_the_first() -> None:
    days = tuple(range(7))
    gap = next_time_of_day(datetime(2027, 3, 28, 0, 0, tzinfo=UTC), BERLIN, "02:30", days)
    assert gap == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)  # 03:30 summer time
    fold = next_time_of_day(datetime(2027, 10, 30, 12, 0, tzinfo=UTC), BERLIN, "02:30", days)
    assert fold == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # the first 02:30 (still CEST)


def test_an_unknown_timezone_falls_back_to_the_default() -> None:
    assert zone("Mars/Olympus", "Europe/Berlin") == BERLIN
    assert zone(None, "Nowhere/Atall").key == "UTC"
