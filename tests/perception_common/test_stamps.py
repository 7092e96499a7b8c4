"""perception_common.stamps: integer-nanosecond stamps, read and written one way."""

from types import SimpleNamespace

import pytest

from perception_common.stamps import NS, header_ns, set_stamp, split_ns, stamp_ns, stamp_text


@pytest.mark.parametrize("ns", [0, 1, NS - 1, NS, 1_733_000_000_123_456_789, -1, -NS - 5])
def test_split_and_join_round_trip(ns):
    sec, nanosec = split_ns(ns)
    assert 0 <= nanosec < NS and sec * NS + nanosec == ns
    t = set_stamp(SimpleNamespace(sec=0, nanosec=0), ns)
    assert stamp_ns(t) == ns and header_ns(SimpleNamespace(header=SimpleNamespace(stamp=t))) == ns


def test_large_stamps_stay_exact_and_text_has_nine_digits():
    t = SimpleNamespace(sec=1_733_000_000, nanosec=7)
    assert stamp_ns(t) == 1_733_000_000_000_000_007  # a float would lose the last digits
    assert stamp_text(t) == "1733000000.000000007"
