import datetime as dt

import pytest

from ewsready.builds import BuildError, lookup, parse_build, product_line


@pytest.mark.parametrize(
    "text, build",
    [
        ("15.1.2507.39", (15, 1, 2507, 39)),
        ("15.01.2507.039", (15, 1, 2507, 39)),
        ("Version 15.1 (Build 2507.6)", (15, 1, 2507, 6)),
        ("14.03.0496.000", (14, 3, 496, 0)),
    ],
)
def test_parse_build(text, build):
    assert parse_build(text) == build


@pytest.mark.parametrize("text", ["", "15.1", "15.1.x.2", "Version 15"])
def test_bad_builds(text):
    with pytest.raises(BuildError):
        parse_build(text)


@pytest.mark.parametrize(
    "build, product",
    [
        ((15, 2, 2562, 17), "Exchange SE"),
        ((15, 2, 1748, 49), "Exchange 2019"),
        ((15, 1, 2507, 6), "Exchange 2016"),
        ((15, 0, 1497, 2), "Exchange 2013"),
        ((14, 3, 123, 4), "Exchange 2010"),
        ((8, 3, 83, 6), "Exchange 2007"),
    ],
)
def test_product_line(build, product):
    assert product_line(build) == product


def test_lookup_names_the_update_level_and_support_end():
    info = lookup((15, 1, 2507, 6))
    assert (info.level, info.release.name, info.ended) == (
        "Exchange 2016 CU23",
        "Exchange 2016 CU23",
        dt.date(2025, 10, 14),
    )
    assert info.out_of_support(dt.date(2025, 10, 14))
    assert not info.out_of_support(dt.date(2025, 10, 13))


def test_table_covers_every_product():
    for build in [
        (8, 0, 685, 25),
        (14, 3, 123, 4),
        (15, 0, 1497, 2),
        (15, 2, 2562, 17),
    ]:
        assert lookup(build).release is not None
