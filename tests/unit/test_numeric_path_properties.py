"""Issue 15, item 8: properties of the whole numeric path, meters -> windows -> KPIs -> rollups (pure
code): any finite float64 readings per meter (any magnitude), in any order, with duplicates, give
finite energies, never negative per window, live amounts equal to the re-derivation, exact window
splits, and finite KPI windows that are never ``not_computable``. The invariants are those of the long
fuzzing run, ``bench/fuzz_pipeline.py`` (``check_readings``, ``check_split``); here hypothesis draws the
readings and shrinks any failure. ``PEAKWATCH_TEST_FUZZ_EXAMPLES`` raises the number of examples."""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_pipeline import FIELD, METERS, MIN, SITE, T0, check_readings, check_split, run
from peakwatch.domain.models import Reading

PROFILE = settings(
    max_examples=int(os.environ.get("PEAKWATCH_TEST_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
finite = st.floats(allow_nan=False, allow_infinity=False)  # every finite float64, subnormals included
times = st.integers(T0 - 5 * MIN, T0 + 90 * MIN)
readings = st.lists(
    st.builds(
        lambda meter, ts, value: Reading(site_id=SITE, meter_id=meter, ts_ms=ts, **{FIELD[meter]: value}),
        st.sampled_from(sorted(METERS)),
        times,
        finite,
    ),
    max_size=40,
)


@PROFILE
@given(readings, st.randoms(use_true_random=False))
def test_any_finite_readings_in_any_order_keep_every_invariant(
    sequence: list[Reading], rnd: random.Random
) -> None:
    check_readings(rnd, sequence)


@PROFILE
@given(readings, st.randoms(use_true_random=False))
def test_duplicated_readings_keep_every_invariant(sequence: list[Reading], rnd: random.Random) -> None:
    check_readings(rnd, sequence + (rnd.sample(sequence, len(sequence)) if sequence else []))


@PROFILE
@given(times, st.integers(1, 3 * 86_400_000), finite)
def test_any_finite_amount_splits_exactly(t0: int, span: int, amount: float) -> None:
    check_split(t0, span, amount)


def test_the_fuzzing_harness_in_small() -> None:
    """The CI-sized run of the long fuzz (docs/operations.md gives the 1M-sequence command)."""
    sequences = int(os.environ.get("PEAKWATCH_TEST_FUZZ_SEQUENCES", "1500"))
    assert run(sequences, seed=15) == sequences
