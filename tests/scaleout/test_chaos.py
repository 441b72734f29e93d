"""A short chaos run in the suite; bench/chaos.py runs long ones (see tests/scaleout/chaos.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scaleout.chaos import FAULTS, Config, describe, run_chaos


@pytest.mark.timeout(300)
async def test_every_member_sees_every_message_once_in_order_through_faults(
    tmp_path: Path,
) -> None:
    report = await run_chaos(Config(duration=50, root=tmp_path, log=print))
    print(describe(report))
    assert report.problems == [], describe(report)
    assert set(report.faults) == set(FAULTS), "each kind of fault struck at least once"
    assert report.acked == report.created > 1000
    assert report.stats["send_error_unavailable"] > 0, "no send met the database down"
    assert report.stats["resume_too_far_behind"] > 0, "no client fell behind far enough to page"
    assert report.stats["resyncs"] > 0, "no process told its clients to resume after Redis"
