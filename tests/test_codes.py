"""The twin value definition: bits, hex, BIGINT and distances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from silse_spark import codes

twin_ints = st.integers(min_value=0, max_value=codes.MAX_TWIN_BITS)


def test_first_output_is_most_significant_bit() -> None:
    outputs = np.zeros(48)
    outputs[0] = 0.7
    assert codes.twin_values_from_outputs(outputs[None])[0] == ["800000000000"]
    outputs = np.zeros(48)
    outputs[47] = 0.5  # exactly the threshold counts as 1
    assert codes.twin_values_from_outputs(outputs[None])[0] == ["000000000001"]


def test_batch_of_outputs_gives_hex_and_matching_bigint() -> None:
    rng = np.random.default_rng(0)
    outputs = rng.random((100, 48))
    hexes, packed = codes.twin_values_from_outputs(outputs)
    assert packed.dtype == np.int64
    for h, p, row in zip(hexes, packed, outputs):
        assert codes.TWIN_VALUE_PATTERN.match(h)
        assert int(h, 16) == int(p)
        assert codes.bits_from_twin_value(h).tolist() == (row >= 0.5).astype(int).tolist()


@pytest.mark.parametrize("bad", ["ABCDEF012345", "abc", "0123456789abc", "0123456789ag", 12, None, " 0123456789ab"])
def test_validator_rejects_anything_but_12_lowercase_hex(bad: object) -> None:
    with pytest.raises(codes.InvalidTwinValueError, match="12 lowercase"):
        codes.validate_twin_value(bad)


def test_out_of_range_integer_is_rejected() -> None:
    with pytest.raises(codes.InvalidTwinValueError):
        codes.twin_value_from_int(1 << 48)
    with pytest.raises(codes.InvalidTwinValueError):
        codes.twin_value_from_int(-1)


def test_wrong_number_of_outputs_is_rejected() -> None:
    with pytest.raises(ValueError, match="48 bits"):
        codes.twin_bits_from_bits(np.zeros((2, 47)))


@given(twin_ints)
def test_hex_bits_int_round_trip(value: int) -> None:
    hexed = codes.twin_value_from_int(value)
    assert codes.is_twin_value(hexed)
    assert codes.int_from_twin_value(hexed) == value
    assert codes.twin_value_from_bits(codes.bits_from_twin_value(hexed)) == hexed


@given(twin_ints, twin_ints, twin_ints)
def test_hamming_is_a_metric(a: int, b: int, c: int) -> None:
    d = codes.hamming_distance
    assert d(a, b) == d(b, a)
    assert (d(a, b) == 0) == (a == b)
    assert d(a, c) <= d(a, b) + d(b, c)
    assert d(codes.twin_value_from_int(a), codes.twin_value_from_int(b)) == d(a, b)


@given(twin_ints, st.integers(min_value=0, max_value=2))
def test_neighbours_are_exactly_the_codes_within_radius(value: int, radius: int) -> None:
    found = set(codes.neighbours(value, radius))
    expected_count = sum([1, 48, 48 * 47 // 2][1 : radius + 1])
    assert len(found) == expected_count
    assert value not in found
    assert all(1 <= codes.hamming_distance(value, n) <= radius for n in found)
    assert all(0 <= n <= codes.MAX_TWIN_BITS for n in found)


def test_within_radius_brute_force() -> None:
    values = ["000000000000", "000000000001", "000000000003", "ffffffffffff"]
    assert codes.within_radius(values, "000000000000", 1) == values[:2]
    assert codes.within_radius(values, "000000000000", 2) == values[:3]
