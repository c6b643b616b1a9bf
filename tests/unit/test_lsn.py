"""LSN arithmetic of module_utils/_postgres/sql.py: what every lag figure rests on."""

from __future__ import annotations

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import (  # noqa: E402
    format_lsn,
    lsn_diff,
    max_lsn,
    parse_lsn,
    segment_name_suffix,
)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("0/0", 0),
        ("0/3000148", 0x3000148),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("16/b374d848", (0x16 << 32) | 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", (1 << 64) - 1),
        (" 1/0 ", 1 << 32),
    ],
)
def test_parse_lsn(text, position):
    assert parse_lsn(text) == position


@pytest.mark.parametrize("bad", ["", "0", "0/", "/1", "x/1", "1/2/3", "123456789/0", "0/123456789", "-1/0"])
def test_parse_lsn_rejects_what_is_not_an_lsn(bad):
    with pytest.raises(ValueError, match="not a PostgreSQL LSN"):
        parse_lsn(bad)


def test_parse_and_format_keep_none():
    assert parse_lsn(None) is None
    assert format_lsn(None) is None


@pytest.mark.parametrize("text", ["0/0", "0/3000148", "16/B374D848", "FFFFFFFF/FFFFFFFF", "1/0"])
def test_format_round_trips_as_postgres_prints(text):
    assert format_lsn(parse_lsn(text)) == text


def test_format_drops_leading_zeros_like_postgres():
    assert format_lsn(parse_lsn("00000001/000000A0")) == "1/A0"


def test_lsn_diff_across_the_32_bit_boundary():
    # 0/FFFFFFFF is one byte before 1/0: the high part is not a segment number.
    assert lsn_diff("1/0", "0/FFFFFFFF") == 1
    assert lsn_diff("0/FFFFFFFF", "1/0") == -1


def test_lsn_diff_mixes_text_and_positions():
    assert lsn_diff("0/3000148", "0/3000000") == 0x148
    assert lsn_diff(parse_lsn("0/3000148"), "0/3000000") == 0x148
    assert lsn_diff("0/3000148", 0x3000000) == 0x148
    assert lsn_diff("0/3000000", "0/3000000") == 0


def test_lsn_diff_unknown_side_is_none():
    assert lsn_diff(None, "0/1") is None
    assert lsn_diff("0/1", None) is None


def test_one_mebibyte_of_lag():
    assert lsn_diff("0/5100000", "0/5000000") == 1048576


def test_max_lsn_ignores_unknowns():
    assert max_lsn("0/5000000", None, "0/4FFFFFF") == "0/5000000"
    assert max_lsn("1/0", "0/FFFFFFFF") == "1/0"
    assert max_lsn(None, None) is None
    assert max_lsn() is None


def test_segment_name_suffix_names_the_wal_file_holding_an_lsn():
    mb16 = 16 * 1024 * 1024
    assert segment_name_suffix("0/3000148", mb16) == "0000000000000003"
    assert segment_name_suffix("1/FF000000", mb16) == "00000001000000FF"
    assert segment_name_suffix("16/B374D848", 64 * 1024 * 1024) == "000000160000002C"
