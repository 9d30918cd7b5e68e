"""The clip queue: where the spot stage hands spotted micro-expression clips to recognition.

The pipeline owns it; the spot stage only puts and the recognition stage only takes, so
neither calls the other. A slow classifier never stalls spotting: a live run drops and
counts the clip there is no room for (``recog_backlog``), a replay waits for room.

The queue also keeps the crops of its clips alive. A clip names crop seqs, and a replay's
crop ring waits for its slowest reader rather than overwriting; `oldest` is the first crop
seq of the oldest clip of a camera not classified yet, and the spot stage holds that
camera's crops from there (`mestream.engine.sampling.CameraStream.hold_crops`). A clip
counts until the recognition stage says it is `done` with it, not merely taken.

Counters (in ``mestream.stats`` ``drops``, reported by the recognition stage):
``recog_backlog`` (live queue full), ``recog_abandoned`` (queued or waiting when the run
stopped) and the queue's part of ``recog_lost`` (micro events whose crops were gone before
they could be queued, `note_lost`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ClipJob", "ClipQueue", "QueuedClip"]


@dataclass(frozen=True)
class ClipJob:
    """One spotted interval to classify.

    Args:
        camera: the camera (key of the recognition stage's crop and frame rings).
        event_id: the `SpotEvent.event_id` the recognition answers.
        onset_frame, apex_frame, offset_frame: source frame ids (onset and apex as refined).
        first_seq, last_seq: the crop ring seqs covering onset..offset, inclusive.
        offset_host_ns: capture time of the offset frame (host monotonic ns).
        spot_published_ns: when the spot event was published (host monotonic ns).
    """

    camera: str
    event_id: int
    onset_frame: int
    apex_frame: int
    offset_frame: int
    first_seq: int
    last_seq: int
    offset_host_ns: int
    spot_published_ns: int


@dataclass(frozen=True)
class QueuedClip:
    """A job as the recognition stage takes it, with when it was queued (host monotonic ns)."""

    job: ClipJob
    queued_ns: int


class ClipQueue:
    """Bounded queue of `ClipJob` between one putter (spot) and one taker (recognition).

    Args:
        cameras: the cameras whose clips may be queued; another camera is refused at `put`.
        maxsize: clips held before a live `put` drops (``RecogConfig.queue``).
        wait_when_full: `put` waits for room (every camera is a replay) instead of dropping.
        stop: the run's stop event: a waiting `put` gives up once it is set.
    """

    def __init__(
        self,
        cameras: Iterable[str],
        maxsize: int,
        *,
        wait_when_full: bool,
        stop: threading.Event | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"clip queue: maxsize must be >= 1, got {maxsize} (recognise.queue)")
        self.cameras = tuple(cameras)
        self.wait_when_full = wait_when_full
        self.stop = stop if stop is not None else threading.Event()
        self._queue: queue.Queue[QueuedClip] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._outstanding: Counter[tuple[str, int]] = Counter()  # (camera, first_seq) of clips not done
        self._finishing = threading.Event()
        self._closed = threading.Event()
        self.backlog_drops = 0
        self.abandoned = 0
        self.lost = 0

    # -- the spot stage's side --------------------------------------------------------------------

    def put(self, job: ClipJob) -> bool:
        """Queue ``job``; False when it was dropped (queue full on a live run) or the run stops.

        Never blocks on a live run. With ``wait_when_full`` it waits for room, giving up
        promptly once ``stop`` is set or the taker has stopped (`close`).
        """
        if job.camera not in self.cameras:
            raise KeyError(
                f"clip queue: no crop ring for camera {job.camera!r} (cameras: {', '.join(self.cameras)})"
            )
        item = QueuedClip(job, time.monotonic_ns())
        with self._lock:
            self._outstanding[(job.camera, job.first_seq)] += 1
        if not self.wait_when_full:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                with self._lock:
                    self.backlog_drops += 1
                    self._release(job)
                return False
            return self._still_taken()
        while not (self.stop.is_set() or self._closed.is_set()):
            try:
                self._queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            return self._still_taken()
        with self._lock:
            self._release(job)
            self.abandoned += 1
        return False

    def note_lost(self) -> None:
        """A micro event whose crops were gone before it could be queued: counted as lost."""
        with self._lock:
            self.lost += 1

    def oldest(self, camera: str) -> int | None:
        """The first crop seq of the oldest clip of ``camera`` not done yet; a replay's crop
        ring must keep it."""
        with self._lock:
            seqs = [seq for (cam, seq), n in self._outstanding.items() if cam == camera and n > 0]
        return min(seqs, default=None)

    # -- the pipeline's side ----------------------------------------------------------------------

    def finish(self) -> None:
        """No more clips will come: the taker classifies what is queued, then returns."""
        self._finishing.set()

    @property
    def drained(self) -> bool:
        """`finish` was called and nothing is queued."""
        return self._finishing.is_set() and self._queue.empty()

    # -- the recognition stage's side -------------------------------------------------------------

    def take(self, max_clips: int, timeout: float) -> list[QueuedClip]:
        """Up to ``max_clips`` queued clips, waiting up to ``timeout`` s for the first; [] if none."""
        try:
            items = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(items) < max_clips:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def done(self, items: Iterable[QueuedClip]) -> None:
        """The taker finished with these clips (classified or lost): their crops may go."""
        with self._lock:
            for item in items:
                self._release(item.job)

    def close(self) -> None:
        """The taker stopped: later puts give up, and what is still queued is abandoned (counted)."""
        self._closed.set()
        self._abandon_queued()

    def _still_taken(self) -> bool:
        """After a put: True while the taker runs. A put that landed after `close` emptied the
        queue (it was waiting for the room that emptying made) would strand its clip, so it
        is abandoned and counted here instead."""
        if not self._closed.is_set():
            return True
        self._abandon_queued()
        return False

    def _abandon_queued(self) -> None:
        """Count and release whatever is queued; each item is taken by one caller only."""
        left = []
        while True:
            try:
                left.append(self._queue.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            self.abandoned += len(left)
            for item in left:
                self._release(item.job)

    def qsize(self) -> int:
        return self._queue.qsize()

    def drops(self) -> dict[str, int]:
        """The queue's drop counters under their ``mestream.stats`` names (``recog_lost``: its part)."""
        return {
            "recog_backlog": self.backlog_drops,
            "recog_lost": self.lost,
            "recog_abandoned": self.abandoned,
        }

    def _release(self, job: ClipJob) -> None:
        key = (job.camera, job.first_seq)
        self._outstanding[key] -= 1
        if self._outstanding[key] <= 0:
            del self._outstanding[key]
