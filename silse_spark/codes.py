"""The twin value: silse's 48-bit image code, its text form and its distances.

This module is the single definition of a twin value. The model emits 48
sigmoid outputs ``w1..w48``; output ``i`` is thresholded at 0.5 (``w >= 0.5``
gives bit 1). The bits are packed **big-endian**: ``w1`` is the most
significant bit of the 48-bit integer, ``w48`` the least significant. The text
form is that integer as exactly 12 lowercase hexadecimal characters, so the
first hex character holds ``w1..w4``; prefix grouping on the text therefore
groups on the first outputs of the model.

The same integer is stored as a Spark ``BIGINT`` (``twin_bits``; always in
``[0, 2**48)`` so it is never negative) so that SQL can compute a Hamming
distance with ``bit_count(a ^ b)``.

Examples
--------
>>> import numpy as np
>>> bits = np.zeros(48, dtype=np.uint8); bits[0] = 1
>>> twin_value_from_bits(bits)
'800000000000'
>>> hamming_distance('800000000000', '800000000003')
2
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from itertools import combinations

import numpy as np

CODE_BITS = 48
"""Number of bits in a twin value."""

CODE_HEX_LENGTH = CODE_BITS // 4
"""Number of hex characters in a twin value (12)."""

BIT_THRESHOLD = 0.5
"""A model output ``>= BIT_THRESHOLD`` becomes bit 1."""

MAX_TWIN_BITS = (1 << CODE_BITS) - 1
TWIN_VALUE_PATTERN = re.compile(r"^[0-9a-f]{12}$")
"""Regular expression every twin value matches."""

_WEIGHTS = (1 << np.arange(CODE_BITS - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)


class InvalidTwinValueError(ValueError):
    """A string or integer is not a valid twin value."""


def validate_twin_value(value: object) -> str:
    """Return ``value`` if it is a valid twin value, else raise.

    Raises
    ------
    InvalidTwinValueError
        If ``value`` is not 12 lowercase hex characters.

    Examples
    --------
    >>> validate_twin_value('0123456789ab')
    '0123456789ab'
    """
    if not isinstance(value, str) or not TWIN_VALUE_PATTERN.match(value):
        raise InvalidTwinValueError(
            f"invalid twin value {value!r}: expected exactly {CODE_HEX_LENGTH} lowercase "
            "hex characters (regex ^[0-9a-f]{12}$); lower-case it or pad it with leading zeros"
        )
    return value


def is_twin_value(value: object) -> bool:
    """True if ``value`` is a valid twin value string."""
    return isinstance(value, str) and TWIN_VALUE_PATTERN.match(value) is not None


def bits_from_outputs(outputs: np.ndarray) -> np.ndarray:
    """Threshold model outputs in (0, 1) to bits (``uint8``), shape preserved.

    >>> bits_from_outputs(np.array([0.2, 0.5, 0.9])).tolist()
    [0, 1, 1]
    """
    return (np.asarray(outputs) >= BIT_THRESHOLD).astype(np.uint8)


def twin_bits_from_bits(bits: np.ndarray) -> np.ndarray:
    """Pack bits of shape ``(..., 48)`` big-endian into ``int64`` integers.

    >>> int(twin_bits_from_bits(np.eye(48, dtype=np.uint8)[47]))
    1
    """
    bits = np.asarray(bits)
    if bits.shape[-1] != CODE_BITS:
        raise ValueError(
            f"expected {CODE_BITS} bits in the last axis, got shape {bits.shape}; "
            "pass the 48 sigmoid outputs of a silse model"
        )
    packed = (bits.astype(np.uint64) * _WEIGHTS).sum(axis=-1, dtype=np.uint64)
    return packed.astype(np.int64)


def twin_value_from_int(value: int) -> str:
    """Format a 48-bit integer as a twin value.

    >>> twin_value_from_int(255)
    '0000000000ff'
    """
    value = int(value)
    if not 0 <= value <= MAX_TWIN_BITS:
        raise InvalidTwinValueError(
            f"twin bits {value} out of range: expected an integer in [0, 2**48)"
        )
    return f"{value:012x}"


def int_from_twin_value(value: str) -> int:
    """Parse a twin value into its 48-bit integer (the ``twin_bits`` column).

    >>> int_from_twin_value('0000000000ff')
    255
    """
    return int(validate_twin_value(value), 16)


def twin_value_from_bits(bits: np.ndarray) -> str:
    """Turn one vector of 48 bits (w1 first) into a twin value."""
    return twin_value_from_int(int(twin_bits_from_bits(np.asarray(bits).reshape(CODE_BITS))))


def twin_values_from_outputs(outputs: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Turn a batch of model outputs ``(n, 48)`` into twin values and ``twin_bits``.

    >>> twin_values_from_outputs(np.full((1, 48), 0.9))[0]
    ['ffffffffffff']
    """
    packed = twin_bits_from_bits(bits_from_outputs(outputs))
    return [f"{int(v):012x}" for v in packed], packed


def bits_from_twin_value(value: str) -> np.ndarray:
    """Unpack a twin value into its 48 bits (w1 first)."""
    packed = int_from_twin_value(value)
    return ((packed >> np.arange(CODE_BITS - 1, -1, -1)) & 1).astype(np.uint8)


def hamming_distance(a: str | int, b: str | int) -> int:
    """Number of differing bits between two twin values (hex strings or ints).

    Equal to Spark SQL's ``bit_count(a.twin_bits ^ b.twin_bits)``.

    >>> hamming_distance('000000000000', 'ffffffffffff')
    48
    """
    ia = int_from_twin_value(a) if isinstance(a, str) else int(a)
    ib = int_from_twin_value(b) if isinstance(b, str) else int(b)
    return int(ia ^ ib).bit_count()


def neighbours(value: int, radius: int) -> Iterator[int]:
    """Yield every 48-bit integer at Hamming distance 1..``radius`` from ``value``.

    >>> sorted(neighbours(0, 1))[:3]
    [1, 2, 4]
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    for r in range(1, radius + 1):
        for positions in combinations(range(CODE_BITS), r):
            flip = 0
            for p in positions:
                flip |= 1 << p
            yield value ^ flip


def within_radius(values: Iterable[str], query: str, radius: int) -> list[str]:
    """The values among ``values`` within ``radius`` bits of ``query`` (brute force)."""
    q = int_from_twin_value(query)
    return [v for v in values if hamming_distance(q, int_from_twin_value(v)) <= radius]
