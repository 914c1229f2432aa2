"""Where the control loop's task command comes from, episode by episode.

A :class:`CommandSource` yields :class:`Episode` s: the task command (for reach: the tool
target xyz, m, base frame) and how long to hold it.  :class:`PlantSignal` instead feeds a
policy input live, every tick, from what a perception system (in sim-in-the-loop: the
simulated plant) sees, e.g. the pose of a box to pick.  ``reset_s`` says what happens between
episodes: > 0 drives the robot back to the reset pose (the spec's default pose) for that long
and resets the policy, the way a sim evaluation starts each episode at home; 0 runs the
episodes back to back (continuous).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Episode:
    """One task command held for a while.

    Attributes:
        index: 0, 1, ... in the order run.
        command: The policy's ``command`` input, e.g. target xyz in m. Shape: (k,).
        duration_s: How long the policy runs with it, s (``inf``: until stopped).
    """

    index: int
    command: np.ndarray
    duration_s: float


@runtime_checkable
class CommandSource(Protocol):
    """Episodes for the loop, and the reset time between them (0: continuous)."""

    reset_s: float

    def episodes(self) -> Iterator[Episode]:
        """The episodes, in order; a fresh iterator on each call."""


def _check_common(hold_s: float, reset_s: float) -> None:
    if not hold_s > 0:
        raise ValueError(f"hold_s: {hold_s} must be > 0 s (inf: hold until stopped)")
    if not (reset_s >= 0 and math.isfinite(reset_s)):
        raise ValueError(f"reset_s: {reset_s} must be a finite number >= 0 s (0: continuous)")


@dataclass(frozen=True)
class FixedTargets:
    """A fixed list of commands, each held for ``hold_s``, the list run ``repeat`` times.

    Attributes:
        targets: One command per episode, e.g. ``((0.4, 0.1, 0.3), ...)`` in m.
        hold_s: Episode length, s.
        reset_s: Time to drive back to the reset pose before each episode, s (0: continuous).
        repeat: How many times to run the whole list.
    """

    targets: tuple[tuple[float, ...], ...]
    hold_s: float
    reset_s: float = 2.0
    repeat: int = 1

    def __post_init__(self) -> None:
        _check_common(self.hold_s, self.reset_s)
        if not self.targets:
            raise ValueError("targets: the list is empty; give at least one command")
        k = {len(t) for t in self.targets}
        if len(k) != 1:
            raise ValueError(f"targets: every command needs the same length, got lengths {k}")
        if self.repeat < 1:
            raise ValueError(f"repeat: {self.repeat} must be >= 1")

    def episodes(self) -> Iterator[Episode]:
        """Each target in order, ``repeat`` times."""
        i = 0
        for _ in range(self.repeat):
            for t in self.targets:
                yield Episode(i, np.asarray(t, np.float64), self.hold_s)
                i += 1


@dataclass(frozen=True)
class BoxTargets:
    """``count`` commands drawn uniformly from a box with a seeded generator.

    Use the box the task samples its targets from in training, so a sim-in-the-loop run
    meets the same distribution of targets as the sim evaluation.

    Attributes:
        lower: Box lower corner, e.g. xyz in m.
        upper: Box upper corner.
        count: Number of episodes.
        seed: Seed of ``numpy.random.default_rng``.
        hold_s: Episode length, s.
        reset_s: Time to drive back to the reset pose before each episode, s (0: continuous).
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    count: int
    seed: int
    hold_s: float
    reset_s: float = 2.0

    def __post_init__(self) -> None:
        _check_common(self.hold_s, self.reset_s)
        if len(self.lower) != len(self.upper) or not self.lower:
            raise ValueError(f"lower {list(self.lower)} and upper {list(self.upper)} need the "
                             f"same, non-zero length")
        if any(lo > hi for lo, hi in zip(self.lower, self.upper, strict=True)):
            raise ValueError(f"lower {list(self.lower)} must not exceed upper {list(self.upper)}")
        if self.count < 1:
            raise ValueError(f"count: {self.count} must be >= 1")

    def episodes(self) -> Iterator[Episode]:
        """The same ``count`` commands for the same seed."""
        rng = np.random.default_rng(self.seed)
        lo, hi = np.asarray(self.lower, np.float64), np.asarray(self.upper, np.float64)
        for i in range(self.count):
            yield Episode(i, rng.uniform(lo, hi), self.hold_s)


@dataclass(frozen=True)
class PlantSignal:
    """``count`` episodes whose policy input ``signal`` is read from the plant at every tick.

    The source only describes the episodes; whoever owns the plant binds it (:meth:`bind`) to
    ``read`` (the signal now, e.g. a box pose from a simulated vision system) and ``layout``
    (lay out the scene's objects for a new episode, drawn from the task's own distribution).
    The control loop calls :meth:`start` when an episode's run phase begins.

    Attributes:
        signal: The policy input it feeds, e.g. ``"object_pose"``.
        count: Number of episodes.
        seed: Seeds the scene layouts (and the reading noise) of the run.
        hold_s: Episode length, s.
        reset_s: Time to drive back to the reset pose before each episode, s (0: continuous).
        noise: Std of Gaussian noise the reader adds, in the signal's unit (0: none).
        read: Returns the signal now. Shape: (k,). Set by :meth:`bind`.
        layout: Lays out a new episode's objects. Set by :meth:`bind`.
    """

    signal: str
    count: int
    seed: int
    hold_s: float
    reset_s: float = 2.0
    noise: float = 0.0
    read: Callable[[], np.ndarray] | None = field(default=None, compare=False, repr=False)
    layout: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_common(self.hold_s, self.reset_s)
        if not self.signal:
            raise ValueError("signal: name the policy input it feeds, e.g. 'object_pose'")
        if self.count < 1:
            raise ValueError(f"count: {self.count} must be >= 1")
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise ValueError(f"noise: {self.noise} must be a finite std >= 0")

    def bind(self, read: Callable[[], np.ndarray], layout: Callable[[], None]) -> PlantSignal:
        """This source wired to a plant's reader and scene layout."""
        return replace(self, read=read, layout=layout)

    def episodes(self) -> Iterator[Episode]:
        """``count`` episodes with an empty command (the input comes from :meth:`sample`)."""
        for i in range(self.count):
            yield Episode(i, np.zeros(0), self.hold_s)

    def start(self, episode: Episode) -> None:
        """Lay out the scene for ``episode`` (the loop's ``on_episode_start``)."""
        if self.layout is None:
            raise RuntimeError(f"plant_signal {self.signal!r} is not bound to a plant")
        self.layout()

    def sample(self) -> np.ndarray:
        """The signal now, float32. Shape: (k,)."""
        if self.read is None:
            raise RuntimeError(f"plant_signal {self.signal!r} is not bound to a plant")
        return np.asarray(self.read(), np.float32)


@dataclass
class PhaseChange:
    """What :meth:`EpisodeSchedule.advance` did at a phase boundary.

    Attributes:
        ended: The episode whose run phase just ended (judge it now), or None.
        started: The episode whose run phase just began, or None.
        reset_policy: Whether the policy's recurrent inputs should be reset for ``started``.
        done: No episode is left.
    """

    ended: Episode | None = None
    started: Episode | None = None
    reset_policy: bool = False
    done: bool = False


class EpisodeSchedule:
    """The phases of a run: per episode, a reset phase (when ``reset_s`` > 0), then a run phase.

    Args:
        source: The episodes; None for one endless episode with an empty command.
        can_reset: Whether a reset pose is known; without one there is no reset phase.
    """

    def __init__(self, source: CommandSource | None, can_reset: bool = True) -> None:
        self._it = iter(source.episodes() if source is not None
                        else [Episode(0, np.zeros(0), math.inf)])
        self._reset_s = source.reset_s if source is not None and can_reset else 0.0
        self.phase, self.end = "run", -math.inf
        self.episode: Episode | None = None

    def advance(self, now: float) -> PhaseChange | None:
        """Move to the next phase when the current one is over at time ``now`` (s)."""
        if now < self.end:
            return None
        change = PhaseChange(ended=self.episode if self.phase == "run" else None)
        if self.phase == "reset":
            self._run(now, change, reset_policy=True)
            return change
        first = self.episode is None
        self.episode = next(self._it, None)
        if self.episode is None:
            change.done, self.end = True, math.inf
        elif self._reset_s > 0:
            self.phase, self.end = "reset", now + self._reset_s
        else:
            self._run(now, change, reset_policy=first)
        return change

    def _run(self, now: float, change: PhaseChange, reset_policy: bool) -> None:
        ep = self.episode
        if ep is not None:
            self.phase, self.end = "run", now + ep.duration_s
            change.started, change.reset_policy = ep, reset_policy
