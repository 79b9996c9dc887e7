"""Learning-rate schedules: what the learning rate is in each pass over the training set.

"constant": the seed's, ``learning_rate`` throughout. "burda": Burda, Grosse & Salakhutdinov
(2015), section 5: phases i = 1..8 of 3^(i-1) passes each, at ``learning_rate`` *
10^(-(i-1)/7); 1 + 3 + ... + 2187 = 3280 passes in all, from 1e-3 down to 1e-4.
"""

from __future__ import annotations

from .config import SCHEDULES

BURDA_PHASES = 8
BURDA_PASSES = sum(3**i for i in range(BURDA_PHASES))  # 3280


def burda_phase(epoch: int) -> int:
    """The phase i (1..8) that pass ``epoch`` (0-based) belongs to; 8 after the schedule ends."""
    end = 0
    for i in range(1, BURDA_PHASES + 1):
        end += 3 ** (i - 1)
        if epoch < end:
            return i
    return BURDA_PHASES


def learning_rate(schedule: str, base: float, epoch: int) -> float:
    """The learning rate of pass ``epoch`` (0-based) under ``schedule``."""
    if schedule == "constant":
        return base
    if schedule == "burda":
        return base * 10.0 ** (-(burda_phase(epoch) - 1) / 7.0)
    raise ValueError(f"schedule={schedule!r} is not supported; choose one of {list(SCHEDULES)}")


def default_epochs(schedule: str) -> int:
    """The number of passes a schedule is defined for: 75 (the seed's) or 3280 (Burda's)."""
    return BURDA_PASSES if schedule == "burda" else 75
