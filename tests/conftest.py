"""Test setup: make `microgpt` importable from a plain checkout, and pick a Hypothesis profile.

Profiles:
  ci   deterministic (derandomize=True), few examples, no deadline, no slow explain phase; loaded when
       the CI variable is set.
  dev  random examples, a few more of them; the default on a developer's machine.
HYPOTHESIS_PROFILE=<name> overrides the choice.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from hypothesis import Phase, settings

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # running pytest from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    print_blob=True,
    database=None,  # no replay of failures saved by earlier runs: the same examples every time
    phases=[p for p in Phase if p is not Phase.explain],  # explain re-runs failures slowly; CI wants speed
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

# A suite started under nohup (or from a shell that ignores SIGHUP) would pass that on to every command it
# starts, which microgpt then rightly keeps ignoring, and the tests of a closed terminal's SIGHUP could not
# send one. A Python handler instead keeps this process deaf to it and lets each child start with the default.
if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, lambda signum, frame: None)


def pytest_sessionfinish(session, exitstatus) -> None:
    """A run that collected no test must not pass silently (pytest's exit 5 becomes a failure)."""
    if exitstatus == 5:
        print("\nno tests were collected: failing the run", file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture
def split_every_op(monkeypatch):
    """Hand-offs and the lock's turns cost nothing: every run_split cuts its range into the fewest parts that
    make the longest part shortest, all of about one size (the calling thread's range is no longer than the
    others'), so small test arrays take the threaded paths with real work in every part."""
    from microgpt.autograd import parallel

    for name in ("MIN_PART_WORK", "MORE_PART_WORK", "CALL_WORK", "HANDOFF"):
        monkeypatch.setattr(parallel, name, 0)
