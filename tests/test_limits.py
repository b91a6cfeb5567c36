"""One table of numeric limits (hifilight.limits): the CLI's flag checks and the service's request bounds read it."""

import pytest

from hifilight.commands.common import check_bounds
from hifilight.errors import HifiError
from hifilight.limits import LIMITS, Limit
from hifilight.serving import MAX_GUIDANCE, MAX_SEED, MAX_STEPS


def test_a_limit_names_its_range_and_its_multiple():
    limit = Limit(8, 64, served=32, multiple_of=8)
    assert limit.problem(16) is None and limit.problem(64) is None
    assert limit.problem(72) == "must be in 8..64" and limit.problem(4) == "must be in 8..64"
    assert limit.problem(40, served=True) == "must be in 8..32"  # the service's tighter ceiling
    assert limit.problem(12) == "must be a multiple of 8"
    assert limit.problem(float("nan")) == "must be in 8..64"


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_the_cli_refuses_what_the_table_refuses_and_names_the_flag(name):
    limit = LIMITS[name]
    check_bounds({name: limit.high})  # the edge is allowed
    with pytest.raises(HifiError, match=f"^--{name} must be in {limit.low}..{limit.high}, got"):
        check_bounds({name: limit.high + 1})
    with pytest.raises(HifiError, match=f"^--{name} must be in"):
        check_bounds({name: [limit.low, limit.low - 1]})  # lists are checked item by item


def test_the_service_bounds_are_the_tables_served_column():
    assert MAX_STEPS == LIMITS["steps"].served < LIMITS["steps"].high
    assert LIMITS["guidance"].served == MAX_GUIDANCE and LIMITS["seed"].served == MAX_SEED


def test_the_guidance_window_is_one_rule_named_in_each_callers_words():
    from hifilight.sampling.guidance import GuidanceSettings
    from hifilight.serving import GuideRequest, RequestError

    with pytest.raises(ValueError, match=r"--reference.guide.start 9 / --reference.guide.end 2: need 1 <= end"):
        GuidanceSettings(start=9, end=2).check(5, 7.5)
    with pytest.raises(RequestError, match=r"guide_start 9 / guide_end 2: need 1 <= guide_end <= guide_start"):
        GuideRequest(9, 2).settings(5, 20)
