"""The frame ring: one camera writer, many stage readers, no locks on the write path.

Frames go into one preallocated block; the face, flow and spot stages read it at their own
pace. At 500 fps the writer cannot afford locks, allocation or a loop over readers, so the
contract is the one Polygraphy's TensorRT runner states for its output buffers: **slots are
reused, and a reader copies what it keeps.**

- Storage is zeroed once, at construction: the first pass over an untouched 146 MB
  ``np.empty`` ring ran at 1,381 frames/s instead of ~94,000, faulting in pages on the
  camera thread.
- Slot metadata (`META_DTYPE`): ``seq`` (monotonic from 0), the camera's ``frame_id``,
  ``device_ns``, ``host_ns`` (host monotonic clock at arrival, as
  `mestream.cameras.base.now_ns`) and ``wall_ns`` (host wall clock).
- Seqlock: the writer sets a slot's ``seq`` to -1 before touching its pixels and publishes
  the new ``seq`` (then ``head``) after; a reader checks the slot's ``seq`` before and after
  its copy and raises `Overwritten` rather than return mixed data. Seqs never repeat (no ABA).
  Views (``copy=False``) are only checked when returned: call `FrameRing.is_valid` after
  using one; ``True`` means nothing read from it was touched.
- Threads: one writer; any number of readers, one `ReaderCursor` per thread; no locks but
  the one that wakes a sleeping reader (below). The seqlock needs stores to become visible in
  program order, as on x86-64; on weakly ordered CPUs (ARM) the cross-process case leans on
  the GIL hand-off's barriers, not a guarantee.
- Waiting costs nothing: a caught-up `ReaderCursor.next` sleeps on the ring's `Waker` until
  the writer's next commit, `finish` or `close`, and a writer in `wait_for_room` sleeps until
  a reader moves on. The notify takes no lock while nobody sleeps (about 50 ns); a write that
  wakes a sleeping reader took 6.9 µs instead of 1.3 µs, and the reader returned 26 µs after
  the write began (p50, ``bench/ring_bench.py``). A stage reading several rings shares one
  waker between them (`FrameRing.add_waker`) and compares `FrameRing.updates`. When readers
  polled instead (sleeps of 0.2 to 5 ms), a 1-camera pipeline whose camera sent nothing
  woke 1,945 times a second and used 4.0 % of a core (4 cameras: 10.5 %); now 65 times and
  0.4 % (4 cameras: 0.6 %), and a paced reader gets its frame 0.1 ms after capture instead
  of 0.34 (``bench/idle_bench.py``, bench/RESULTS.md). Threading primitives do not cross
  processes: a cursor of an attached ring polls every ``poll_interval``.
- Processes: ``FrameRing(..., shm_name="x")`` puts header, metadata and pixels in one
  `multiprocessing.shared_memory` segment; ``FrameRing.attach("x")`` maps it read-only
  elsewhere, reading capacity, shape and dtype from the header. The creator unlinks on
  `close`; attachers only unmap. Python 3.11's resource tracker would unlink the segment when
  a process that merely attached exits, so `attach` keeps it out of the tracker. Cursors are
  per process: `FrameRing.stats` lists the calling process's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["META_DTYPE", "FrameRing", "NotWritten", "Overwritten", "ReaderCursor", "RingBatch", "RingClosed"]
__all__ += ["RingError", "RingFrame", "Waker"]

log = logging.getLogger("mestream")

META_DTYPE = np.dtype(
    [("seq", "<i8"), ("frame_id", "<i8"), ("device_ns", "<i8"), ("host_ns", "<i8"), ("wall_ns", "<i8")]
)

_WRITING = -1  # slot seq while the writer owns the slot
_CLOSED_SLOT = -2  # slot seq in the placeholders a closed ring reads from

# Segment layout: a header page, the metadata table, then the pixels (page-aligned).
_MAGIC = 0x314E4952534D454D  # b"MEMSRIN1" little-endian
_LAYOUT_VERSION = 1
_PAGE = 4096
_MAX_NDIM = 4
_DTYPE_AT, _DTYPE_LEN = 256, 32  # dtype.str, ASCII, inside the header page
# int64 header words
_H_MAGIC, _H_VERSION, _H_CAPACITY, _H_NDIM, _H_SHAPE = 0, 1, 2, 3, 4  # shape takes 4 words
_H_META_OFF, _H_PIX_OFF, _H_TOTAL = 8, 9, 10
_H_HEAD, _H_DROPS, _H_RESETS, _H_FINISHED = 11, 12, 13, 14


class RingError(LookupError):
    """Base of the errors a ring read raises."""


class Overwritten(RingError):
    """The frame was replaced (or was being replaced) by a newer one before the read finished."""

    def __init__(self, seq: int, oldest: int, head: int) -> None:
        super().__init__(
            f"frame seq {seq} was overwritten (oldest readable seq is now {oldest}, head {head}); "
            "the reader fell a whole ring behind the writer"
        )
        self.seq, self.oldest, self.head = seq, oldest, head


class NotWritten(RingError):
    """The frame does not exist yet; a `ReaderCursor` polls or waits for frames instead."""

    def __init__(self, seq: int, head: int) -> None:
        super().__init__(f"frame seq {seq} is not written yet (head is {head})")
        self.seq, self.head = seq, head


class RingClosed(RingError):
    """The ring was closed in this process; its memory is gone."""


@dataclass(frozen=True, slots=True)
class RingFrame:
    """One frame read from the ring; ``pixels`` is a copy unless read with ``copy=False``."""

    seq: int
    frame_id: int
    device_ns: int
    host_ns: int
    wall_ns: int
    pixels: np.ndarray


@dataclass(frozen=True, slots=True)
class RingBatch:
    """Consecutive frames: ``pixels`` ``[n, *shape]``, ``meta`` a `META_DTYPE` array
    (``batch.meta["frame_id"]``)."""

    pixels: np.ndarray
    meta: np.ndarray

    def __len__(self) -> int:
        return len(self.meta)


class Waker:
    """Where threads sleep until another thread changes what they wait for, instead of polling.

    A waiter passes `wait` a ``ready`` test over shared state (a ring's `updates`, its
    readers' positions); whoever changes that state calls `notify` afterwards. One waker may
    be notified by several rings (`FrameRing.add_waker`), so a stage that reads many rings
    sleeps on all of them at once.

    `notify` takes no lock and costs one attribute test while nobody sleeps: a waiter counts
    itself asleep *before* it runs ``ready``, and a notifier changes the state *before* it
    looks at that count, so either the notifier sees the sleeper and wakes it (under the
    lock), or the sleeper's ``ready`` sees the change. That needs the two threads' stores to
    be seen in program order, which the GIL gives (each hand-off is a full barrier); a wait
    also ends after its timeout whatever happens.
    """

    __slots__ = ("_cond", "_sleepers")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._sleepers = 0

    def notify(self) -> None:
        """Wake every thread sleeping in `wait`: call it after changing what they wait for."""
        if self._sleepers:
            with self._cond:
                self._cond.notify_all()

    def wait(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Sleep until ``ready()`` is true (True) or ``timeout`` seconds pass (False); None waits
        without a limit. ``ready`` runs under the waker's lock, so it must be quick and never
        notify this waker."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._sleepers += 1
            try:
                while not ready():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._sleepers -= 1


_tracker_lock = threading.Lock()


def _open_untracked(name: str) -> shared_memory.SharedMemory:
    """Attach without registering with the resource tracker.

    On 3.11 every `SharedMemory` registers, and a tracker unlinks what it holds when its
    process exits, deleting the writer's ring under it. Unregistering after attaching would
    drop the writer's own registration in children sharing its tracker, so the one
    registration for this name is skipped instead; every other call passes through.
    """
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
    with _tracker_lock:
        original = resource_tracker.register

        def register(rname: str, rtype: str) -> None:
            if not (rtype == "shared_memory" and rname.lstrip("/") == name.lstrip("/")):
                original(rname, rtype)

        # typeshed has register(name: Sized, rtype: str); the tracker passes str names.
        resource_tracker.register = register  # type: ignore[assignment]
        try:
            return shared_memory.SharedMemory(name=name)
        finally:
            resource_tracker.register = original


def _create_shared(name: str, size: int) -> shared_memory.SharedMemory:
    """Create the segment, or fail with a message that says what to do about it.

    Checks the room in /dev/shm first: the pages of a shared segment are only allocated when
    touched, so a ring that does not fit would kill the process with SIGBUS during the
    start-up fill instead of raising (Docker's default /dev/shm is 64 MB).
    """
    with contextlib.suppress(OSError):
        stat = os.statvfs("/dev/shm")
        free = stat.f_bavail * stat.f_frsize
        if free < size:
            raise MemoryError(
                f"shared-memory ring {name!r} needs {size / 1e6:.0f} MB but /dev/shm has "
                f"{free / 1e6:.0f} MB free: shorten the ring (ring.seconds) or enlarge /dev/shm"
            )
    try:
        return shared_memory.SharedMemory(name=name, create=True, size=size)
    except FileExistsError:
        raise FileExistsError(
            f"shared-memory ring {name!r} already exists: another mestream uses that name, or a "
            f"crashed run left it behind (remove /dev/shm/{name.lstrip('/')})"
        ) from None
    except (OSError, ValueError) as exc:
        raise OSError(
            f"cannot create shared-memory ring {name!r}: {exc} (use a plain name such as mestream-cam0)"
        ) from None


class FrameRing:
    """A preallocated ring of frames with per-slot metadata and seqlock read validation.

    Args:
        capacity: number of slots (frames), ≥ 1.
        shape: shape of one frame, ``(H, W)`` for mono8 or ``(H, W, C)``; 1 to 4 dims.
        dtype: pixel dtype, default uint8; any plain fixed-size dtype.
        shm_name: create the ring in a new shared-memory segment of this name so other
            processes can `attach`; None or "" keeps it private to the process.

    ``capacity``, ``shape`` and ``dtype`` are plain attributes: read them, do not set them.
    Writing (one thread): `write` copies a frame in; `begin_write` / `commit` let a source
    render straight into the slot. Reading (any thread): `read`, `read_range`, `latest`, or a
    cursor from `register_reader`, which also counts the frames it lost to overruns.
    """

    def __init__(
        self,
        capacity: int,
        shape: tuple[int, ...],
        dtype: npt.DTypeLike = np.uint8,
        *,
        shm_name: str | None = None,
    ) -> None:
        capacity, shape, dtype = int(capacity), tuple(int(s) for s in shape), np.dtype(dtype)
        if capacity < 1:
            raise ValueError(f"capacity must be ≥ 1, got {capacity}")
        if not 1 <= len(shape) <= _MAX_NDIM or min(shape) < 1:
            raise ValueError(f"frame shape must have 1 to {_MAX_NDIM} positive dims, got {shape}")
        if dtype.hasobject or np.dtype(dtype.str) != dtype or len(dtype.str) > _DTYPE_LEN:
            raise ValueError(f"pixel dtype must be a plain fixed-size dtype, got {dtype}")
        meta_off = _PAGE
        pix_off = -(-(meta_off + capacity * META_DTYPE.itemsize) // _PAGE) * _PAGE
        total = pix_off + capacity * int(np.prod(shape)) * dtype.itemsize
        shm = _create_shared(shm_name, total) if shm_name else None
        buf: np.ndarray | None  # both dropped on failure, so the segment can close
        hdr: np.ndarray | None
        buf = np.empty(total, np.uint8) if shm is None else np.ndarray((total,), np.uint8, buffer=shm.buf)
        try:
            buf.fill(0)  # touch every page now, not on the camera thread (see the module doc)
            hdr = buf[:_PAGE].view(np.int64)
            hdr[_H_VERSION], hdr[_H_CAPACITY], hdr[_H_NDIM] = _LAYOUT_VERSION, capacity, len(shape)
            hdr[_H_SHAPE : _H_SHAPE + len(shape)] = shape
            hdr[_H_META_OFF], hdr[_H_PIX_OFF], hdr[_H_TOTAL], hdr[_H_HEAD] = meta_off, pix_off, total, -1
            code = dtype.str.encode("ascii")
            buf[_DTYPE_AT : _DTYPE_AT + len(code)] = np.frombuffer(code, np.uint8)
            buf[meta_off:pix_off].view(np.int64)[:] = _WRITING  # no slot holds a frame yet: all -1
            hdr[_H_MAGIC] = _MAGIC  # last: an attacher never sees a half-written header
            self._map(buf, shm, owner=True)
        except BaseException:
            if shm is not None:
                buf = hdr = None
                with contextlib.suppress(BufferError):  # views already handed to self
                    shm.close()
                shm.unlink()
            raise

    @classmethod
    def attach(cls, name: str) -> FrameRing:
        """Map the shared ring ``name`` that a `FrameRing` in another process created.

        Capacity, shape and dtype come from the segment's header. The attached ring is
        read-only (`write` raises); its `close` unmaps and never unlinks.
        """
        try:
            shm = _open_untracked(name)
        except FileNotFoundError:
            raise FileNotFoundError(f"no frame ring named {name!r} (is its writer running?)") from None
        buf = np.ndarray((shm.size,), np.uint8, buffer=shm.buf)
        buf.flags.writeable = False
        hdr = buf[:_PAGE].view(np.int64) if shm.size >= _PAGE else None
        if (
            hdr is None
            or hdr[_H_MAGIC] != _MAGIC
            or hdr[_H_VERSION] != _LAYOUT_VERSION
            or hdr[_H_TOTAL] > shm.size
        ):
            del buf, hdr
            shm.close()
            raise ValueError(
                f"shared memory {name!r} is not a mestream frame ring of layout v{_LAYOUT_VERSION} "
                "(or its writer is still initialising it)"
            )
        ring = cls.__new__(cls)
        ring._map(buf, shm, owner=False)
        return ring

    def _map(self, buf: np.ndarray, shm: shared_memory.SharedMemory | None, owner: bool) -> None:
        """Build every view from the header, the same way for creator and attacher."""
        hdr = buf[:_PAGE].view(np.int64)
        capacity, ndim = int(hdr[_H_CAPACITY]), int(hdr[_H_NDIM])
        self.capacity = capacity
        self.shape = tuple(int(s) for s in hdr[_H_SHAPE : _H_SHAPE + ndim])
        self.dtype = np.dtype(bytes(buf[_DTYPE_AT : _DTYPE_AT + _DTYPE_LEN]).rstrip(b"\0").decode("ascii"))
        meta_off, pix_off, total = int(hdr[_H_META_OFF]), int(hdr[_H_PIX_OFF]), int(hdr[_H_TOTAL])
        meta = buf[meta_off : meta_off + capacity * META_DTYPE.itemsize].view(META_DTYPE)
        pix = buf[pix_off:total].view(self.dtype).reshape((capacity, *self.shape))
        rpix = pix.view()
        rpix.flags.writeable = False  # readers in the writer's process cannot scribble either
        self._shm, self._owner, self._closed, self._hdr = shm, owner, False, hdr
        # Everything a read touches, in one tuple that close() swaps in a single store.
        self._rv: tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray, np.ndarray | None] = (
            meta["seq"],
            meta.view(np.int64).reshape(capacity, 5),
            list(rpix),
            meta,
            rpix,
        )
        self._seq_col, self._wslots = meta["seq"], list(pix) if owner else []
        self._fid_col, self._dev_col = meta["frame_id"], meta["device_ns"]
        self._host_col, self._wall_col = meta["host_ns"], meta["wall_ns"]
        # Writer-local state, mirrored into the header where readers need it.
        self._writable = owner and not hdr[_H_FINISHED]
        self._last_fid: int | None = None
        self._next = int(hdr[_H_HEAD]) + 1
        self._drops, self._resets = int(hdr[_H_DROPS]), int(hdr[_H_RESETS])
        self._pending: int | None = None
        self._readers: dict[str, ReaderCursor] = {}
        # Wake-ups are threading primitives, so they reach this process's threads only: a
        # ring attached from another process has none, and its cursors poll (module docstring).
        self._waker = Waker() if owner else None
        self._wakers: tuple[Waker, ...] = (self._waker,) if self._waker is not None else ()
        self._room = Waker()  # readers moving on: the writer in `wait_for_room` sleeps on it

    @property
    def head(self) -> int:
        """Last committed seq; -1 while empty."""
        return int(self._hdr[_H_HEAD])

    @property
    def oldest(self) -> int:
        """Oldest seq still readable; a snapshot: the writer may be replacing it right now."""
        return max(0, int(self._hdr[_H_HEAD]) - self.capacity + 1)

    @property
    def frames_written(self) -> int:
        return int(self._hdr[_H_HEAD]) + 1

    @property
    def count(self) -> int:
        """Frames currently held (≤ capacity)."""
        return min(int(self._hdr[_H_HEAD]) + 1, self.capacity)

    @property
    def camera_drops(self) -> int:
        """Frames the camera lost: the sum of the frame_id gaps the writer saw."""
        return int(self._hdr[_H_DROPS])

    @property
    def frame_id_resets(self) -> int:
        """Times frame_id went backwards or repeated (a camera restart); not counted as drops."""
        return int(self._hdr[_H_RESETS])

    @property
    def finished(self) -> bool:
        """True once the writer called `finish` or `close`: no more frames will come."""
        return bool(self._hdr[_H_FINISHED])

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def shm_name(self) -> str | None:
        return None if self._shm is None else self._shm.name

    @property
    def updates(self) -> int:
        """Commits so far, plus one once finished and one once closed here: it only grows, and
        the writer notifies every `Waker` of the ring after each change, so a thread that saw
        one value may sleep until it differs (`Waker.wait`)."""
        hdr = self._hdr
        return int(hdr[_H_HEAD]) + 1 + int(hdr[_H_FINISHED]) + self._closed

    @property
    def waker(self) -> Waker | None:
        """Notified after every commit, `finish` and `close`; what `ReaderCursor.next` sleeps on.
        None on an attached ring: its writer's notifications cannot cross the process boundary."""
        return self._waker

    def add_waker(self, waker: Waker) -> None:
        """Notify ``waker`` too on every commit, `finish` and `close`: a stage reading several
        rings shares one waker between them and sleeps until any of them has news."""
        if self._waker is None:
            raise RuntimeError(
                "an attached ring's writer is in another process and cannot notify a waker "
                "here: poll the ring instead"
            )
        if waker not in self._wakers:
            self._wakers = (*self._wakers, waker)  # one store: a write in flight notifies the old tuple

    def remove_waker(self, waker: Waker) -> None:
        """Stop notifying a waker `add_waker` added (the ring's own stays)."""
        if waker is not self._waker:
            self._wakers = tuple(w for w in self._wakers if w is not waker)

    def _notify(self) -> None:
        for waker in self._wakers:
            waker.notify()

    def __repr__(self) -> str:
        where = "" if self._shm is None else f", shm_name={self.shm_name!r}"
        state = ", closed" if self._closed else ""
        return (
            f"FrameRing(capacity={self.capacity}, shape={self.shape}, dtype={self.dtype}{where}, "
            f"head={self.head}{state})"
        )

    def write(
        self,
        pixels: np.ndarray,
        frame_id: int,
        device_ns: int,
        host_ns: int | None = None,
        wall_ns: int | None = None,
    ) -> int:
        """Copy one frame into the next slot and return its seq.

        ``host_ns`` / ``wall_ns`` default to the host monotonic / wall clocks at the call.
        One `np.copyto` into preallocated memory: nothing is allocated.
        """
        host_ns = time.monotonic_ns() if host_ns is None else host_ns
        wall_ns = time.time_ns() if wall_ns is None else wall_ns
        try:
            ok = pixels.shape == self.shape and pixels.dtype == self.dtype
        except AttributeError:
            ok = False
        if not ok:
            raise self._mismatch(pixels)
        if self._pending is not None or not self._writable:
            raise self._write_state_error()
        seq = self._next
        slot = seq % self.capacity
        self._seq_col[slot] = _WRITING
        np.copyto(self._wslots[slot], pixels)
        self._publish(slot, seq, frame_id, device_ns, host_ns, wall_ns)
        return seq

    def begin_write(self) -> np.ndarray:
        """Claim the next slot and return a writable view of it, for sources that render in place.

        The frame the slot held is invalidated at once. Fill the view, then `commit` (or
        `abort_write`); `write` is refused until then.
        """
        if self._pending is not None or not self._writable:
            raise self._write_state_error()
        slot = self._next % self.capacity
        self._seq_col[slot] = _WRITING
        self._pending = slot
        return self._wslots[slot]

    def commit(
        self, frame_id: int, device_ns: int, host_ns: int | None = None, wall_ns: int | None = None
    ) -> int:
        """Publish the slot claimed by `begin_write` and return its seq; clocks default to now."""
        host_ns = time.monotonic_ns() if host_ns is None else host_ns
        wall_ns = time.time_ns() if wall_ns is None else wall_ns
        slot = self._pending
        if slot is None:
            raise RuntimeError("commit() without a matching begin_write()")
        self._pending = None
        seq = self._next
        self._publish(slot, seq, frame_id, device_ns, host_ns, wall_ns)
        return seq

    def abort_write(self) -> None:
        """Give up the slot claimed by `begin_write`; the frame it used to hold stays lost."""
        self._pending = None

    def _publish(
        self, slot: int, seq: int, frame_id: int, device_ns: int, host_ns: int, wall_ns: int
    ) -> None:
        self._fid_col[slot] = frame_id
        self._dev_col[slot] = device_ns
        self._host_col[slot] = host_ns
        self._wall_col[slot] = wall_ns
        last = self._last_fid
        if last is not None and frame_id != last + 1:
            if frame_id > last:
                self._drops += frame_id - last - 1
                self._hdr[_H_DROPS] = self._drops
            else:
                self._resets += 1
                self._hdr[_H_RESETS] = self._resets
        self._last_fid = frame_id
        self._seq_col[slot] = seq  # publish the slot, then the head, then wake the readers
        self._hdr[_H_HEAD] = seq
        self._next = seq + 1
        for waker in self._wakers:
            waker.notify()

    def _mismatch(self, pixels: object) -> ValueError:
        if isinstance(pixels, np.ndarray):
            got = f"shape {pixels.shape} dtype {pixels.dtype}"
        else:
            got = f"a {type(pixels).__name__}"
        return ValueError(
            f"frame does not fit the ring: expected shape {self.shape} dtype {self.dtype}, got {got}"
        )

    def _write_state_error(self) -> RuntimeError:
        if not self._owner:
            return RuntimeError("an attached ring is read-only: only the process that created it writes")
        if self._closed or self.finished:
            return RuntimeError("the ring is finished or closed; no more frames can be written")
        return RuntimeError("a begin_write() is pending: commit() or abort_write() it first")

    def read(self, seq: int, copy: bool = True, out: np.ndarray | None = None) -> RingFrame:
        """Frame ``seq``; raises `NotWritten` if it is past `head`, `Overwritten` if it is gone.

        ``copy=True`` returns a private copy verified untorn; ``out`` copies into a caller
        buffer instead (no allocation); ``copy=False`` returns a read-only view of the slot,
        intact when returned: check `is_valid(seq)` after using it.
        """
        seqs, m64, slots, _, _ = self._rv
        slot = seq % self.capacity
        if seq < 0 or seqs[slot] != seq:
            raise self._missing(seq)
        _, fid, dev, host, wall = m64[slot].tolist()
        src = slots[slot]
        if out is not None:
            if out.shape != self.shape or out.dtype != self.dtype:
                raise ValueError(
                    f"out must have shape {self.shape} dtype {self.dtype}, got {out.shape} {out.dtype}"
                )
            np.copyto(out, src)
            pixels = out
        else:
            pixels = src.copy() if copy else src
        if seqs[slot] != seq:
            raise self._missing(seq)
        return RingFrame(seq, fid, dev, host, wall, pixels)

    def read_range(self, start: int, stop: int, out: np.ndarray | None = None) -> RingBatch:
        """Copy frames ``start .. stop-1`` into one ``[n, *shape]`` array (or into ``out``).

        Raises `Overwritten` / `NotWritten` naming the first bad seq if any frame of the range
        is gone, is replaced during the copy, or is not written yet.
        """
        n = stop - start
        if start < 0 or not 0 <= n <= self.capacity:
            raise ValueError(
                f"range [{start}, {stop}) must be non-negative and span 0..{self.capacity} frames"
            )
        full = (n, *self.shape)
        if out is None:
            out = np.empty(full, self.dtype)
        elif out.shape != full or out.dtype != self.dtype:
            raise ValueError(f"out must have shape {full} dtype {self.dtype}, got {out.shape} {out.dtype}")
        seqs, _, _, src_meta, src_pix = self._rv
        first = start % self.capacity
        k = min(n, self.capacity - first)
        parts = ((first, first + k, 0), (0, n - k, k)) if k < n else ((first, first + k, 0),)
        want = np.arange(start, stop, dtype=np.int64)
        meta = np.empty(n, META_DTYPE)
        for a, b, o in parts:
            meta[o : o + b - a] = src_meta[a:b]
        self._check_range(meta["seq"], want)
        assert src_pix is not None  # only close() swaps in None, and its meta fails the check above
        for a, b, o in parts:
            np.copyto(out[o : o + b - a], src_pix[a:b])
        for a, b, o in parts:
            self._check_range(seqs[a:b], want[o : o + b - a])
        return RingBatch(out, meta)

    def _check_range(self, got: np.ndarray, want: np.ndarray) -> None:
        bad = np.flatnonzero(got != want)
        if bad.size:
            raise self._missing(int(want[bad[0]]))

    def latest(self, copy: bool = True) -> RingFrame | None:
        """The newest frame, or None while the ring is empty."""
        head = self.head
        return None if head < 0 else self.read(head, copy=copy)

    def is_valid(self, seq: int) -> bool:
        """True if the slot still holds ``seq`` untouched: check ``copy=False`` views after use."""
        return seq >= 0 and bool(self._rv[0][seq % self.capacity] == seq)

    def validate(self, seq: int) -> None:
        """Raise `Overwritten` (or `NotWritten`) unless `is_valid(seq)`."""
        if not self.is_valid(seq):
            raise self._missing(seq)

    def _missing(self, seq: int) -> RingError:
        if self._closed:
            return RingClosed(f"frame seq {seq}: the ring is closed in this process")
        if seq < 0:
            return RingError(f"sequence numbers start at 0, got {seq}")
        head = self.head
        if seq > head:
            return NotWritten(seq, head)
        return Overwritten(seq, max(0, head - self.capacity + 1), head)

    def register_reader(self, name: str, start: Literal["next", "oldest"] = "next") -> ReaderCursor:
        """A cursor for stage ``name``, starting at the next frame written (or the oldest held)."""
        if name in self._readers:
            raise ValueError(f"a reader named {name!r} is already registered")
        if start not in ("next", "oldest"):
            raise ValueError(f"start must be 'next' or 'oldest', got {start!r}")
        cursor = ReaderCursor(self, name, self.head + 1 if start == "next" else self.oldest)
        self._readers[name] = cursor
        return cursor

    def wait_for_room(self, stop: threading.Event, stop_check: float = 0.05) -> float:
        """Block until the next write overruns no registered reader (or ``stop`` is set) and
        return the seconds waited. For replays (``ring.when_full = "wait"``), where the writer
        may wait and losing frames would change the results; a live camera never calls this.

        Sleeps until a reader moves on (they notify), looking at ``stop`` at least every
        ``stop_check`` seconds: nothing notifies when it is set."""
        started = time.monotonic()
        while not stop.is_set() and not self._room.wait(self._has_room, stop_check):
            pass
        return time.monotonic() - started

    def _has_room(self) -> bool:
        """The next write overruns no registered reader."""
        readers = list(self._readers.values())
        return not readers or min(c.position for c in readers) > self.head + 1 - self.capacity

    def unregister_reader(self, name: str) -> None:
        if self._readers.pop(name, None) is not None:
            self._room.notify()

    def stats(self) -> dict:
        """Counters for logs and health checks, with the readers registered in this process.

        ``fill`` is the worst reader's backlog over capacity: near 1.0, it is about to lose frames.
        """
        head = self.head
        readers = {name: cursor.stats() for name, cursor in list(self._readers.items())}
        fill = max((r["lag"] for r in readers.values()), default=0) / self.capacity
        return {
            "capacity": self.capacity,
            "frames_written": head + 1,
            "head": head,
            "oldest": max(0, head - self.capacity + 1),
            "camera_drops": self.camera_drops,
            "frame_id_resets": self.frame_id_resets,
            "readers": readers,
            "fill": fill,
        }

    def finish(self) -> None:
        """Tell readers no more frames will come: `ReaderCursor.next` drains, then returns None."""
        if self._owner and not self._closed:
            self._writable = False
            self._hdr[_H_FINISHED] = 1
            self._notify()

    def close(self, unlink: bool | None = None) -> None:
        """Release the memory; the creator of a shared ring also unlinks its name. Idempotent.

        Attached processes keep their mapping, and can drain the last frames, after the creator
        unlinks. ``copy=False`` views keep the mapping alive until they are dropped. Reads in
        this process that race with close raise `RingClosed`: stop reader threads first.
        """
        if self._closed:
            return
        self.finish()
        self._closed, self._writable, self._pending = True, False, None
        # Private placeholders: a racing read fails cleanly and stats() keeps working.
        self._hdr = self._hdr.copy()
        meta = np.zeros(self.capacity, META_DTYPE)
        meta["seq"] = _CLOSED_SLOT
        self._rv = (meta["seq"], meta.view(np.int64).reshape(self.capacity, 5), [], meta, None)
        self._seq_col = self._fid_col = self._dev_col = self._host_col = self._wall_col = meta["seq"]
        self._wslots = []
        self._notify()  # sleeping readers wake into the placeholders and see RingClosed
        self._room.notify()
        shm = self._shm  # stays referenced: if views outlive close, it unmaps when they go
        if shm is None:
            return
        try:
            shm.close()
        except BufferError:
            log.debug("ring %r: views still alive; the mapping goes when they do", shm.name)
        if self._owner if unlink is None else unlink:
            with contextlib.suppress(FileNotFoundError):  # e.g. removed by hand
                shm.unlink()

    def __enter__(self) -> FrameRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReaderCursor:
    """One stage's position in the ring; use each cursor from one thread.

    Overruns are counted lazily from sequence arithmetic, so the writer never loops over
    readers: when the writer has lapped the cursor, the next `poll` jumps to the oldest frame
    still held and adds what it skipped to `overruns`. Nothing is lost silently.
    """

    def __init__(self, ring: FrameRing, name: str, position: int) -> None:
        self.name = name
        self.consumed = 0
        self.skipped = 0  # passed over on purpose by `seek_latest`
        self._ring = ring
        self._pos = position
        self._overruns = 0

    @property
    def position(self) -> int:
        """The seq the next `poll` will try to return."""
        return self._pos

    @property
    def lag(self) -> int:
        """Frames written and still held that this cursor has not consumed yet."""
        head = self._ring.head
        return max(0, head + 1 - max(self._pos, head - self._ring.capacity + 1))

    @property
    def overruns(self) -> int:
        """Frames lost because the writer lapped this cursor, including ones not polled yet."""
        return self._overruns + max(0, self._ring.head - self._ring.capacity + 1 - self._pos)

    def _next_position(self) -> tuple[int, int] | None:
        """The seq to read next and the head it was checked against, after counting the frames
        the writer lapped; None when caught up."""
        ring = self._ring
        head, pos = ring.head, self._pos
        if pos > head:
            return None
        oldest = head - ring.capacity + 1
        if pos < oldest:  # lapped: both fields move together, so `overruns` never counts twice
            self._overruns, self._pos = self._overruns + oldest - pos, oldest
            pos = oldest
        return pos, head

    def poll(self, copy: bool = True, out: np.ndarray | None = None) -> RingFrame | None:
        """The next unread frame, or None if the cursor is caught up; never blocks."""
        ring = self._ring
        while True:
            found = self._next_position()
            if found is None:
                return None
            pos = found[0]
            try:
                frame = ring.read(pos, copy=copy, out=out)
            except Overwritten:
                self._overruns += 1  # replaced while we read it: gone for good
                self._pos = pos + 1
                continue
            self._pos = pos + 1
            self.consumed += 1
            ring._room.notify()  # a writer waiting for room may go on
            return frame

    def next(
        self,
        timeout: float | None = None,
        copy: bool = True,
        out: np.ndarray | None = None,
        poll_interval: float = 1e-4,
    ) -> RingFrame | None:
        """Wait for the next frame: None on timeout, or once the writer finished and all is read.

        A caught-up cursor sleeps until the writer commits (or finishes, or closes the ring):
        no polling, and no wake-up until there is something to read. On a ring attached from
        another process the writer cannot wake it, so it polls every ``poll_interval`` seconds
        instead (that is all ``poll_interval`` is for)."""
        ring = self._ring
        waker = ring.waker
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = ring.updates  # before polling: a commit after the poll ends the wait at once
            finished = ring.finished  # before polling, so the last frame is not missed
            try:
                frame = self.poll(copy=copy, out=out)
            except RingClosed:
                return None
            if frame is not None:
                return frame
            if finished:
                return None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if waker is None:
                time.sleep(poll_interval if left is None else min(poll_interval, left))
            else:

                def moved(seen: int = seen) -> bool:
                    return ring.updates != seen

                waker.wait(moved, left)

    def __iter__(self) -> Iterator[RingFrame]:
        """Frames (copies) until the writer finishes."""
        while (frame := self.next()) is not None:
            yield frame

    def poll_batch(self, max_frames: int, out: np.ndarray | None = None) -> RingBatch | None:
        """Up to ``max_frames`` consecutive unread frames in one copy (into ``out[:n]`` when
        given), or None if the cursor is caught up; never blocks. Lapped frames are counted as
        `poll` counts them. Stages that work on blocks of frames read this way, one numpy copy
        instead of a Python call per frame."""
        ring = self._ring
        while True:
            found = self._next_position()
            if found is None:
                return None
            pos, head = found
            n = min(max_frames, head + 1 - pos)  # the head checked against: never more than the ring holds
            try:
                batch = ring.read_range(pos, pos + n, out=None if out is None else out[:n])
            except Overwritten as exc:  # lapped during the copy: skip what is gone, count it, retry
                lost = max(exc.oldest - pos, 1)
                self._overruns += lost
                self._pos = pos + lost
                continue
            self._pos = pos + n
            self.consumed += n
            ring._room.notify()  # a writer waiting for room may go on
            return batch

    def hold(self, seq: int) -> None:
        """Move the cursor forward to ``seq`` without reading (never back). A writer that waits
        for its readers (`FrameRing.wait_for_room`) keeps every frame from ``seq`` on: a
        stage holds frames it may still need without copying them out."""
        seq = int(seq)
        if seq > self._pos:
            self._pos = seq
            self._ring._room.notify()

    def seek_latest(self) -> int:
        """Skip to the newest frame so the next poll returns it; returns (and counts) the skip."""
        head = self._ring.head
        oldest = head - self._ring.capacity + 1
        if self._pos < oldest:
            self._overruns += oldest - self._pos
            self._pos = oldest
        skip = max(0, head - self._pos)
        self.skipped += skip
        self._pos += skip
        self._ring._room.notify()
        return skip

    def stats(self) -> dict:
        """position, consumed, overruns, skipped (by `seek_latest`) and lag."""
        return {
            "position": self._pos,
            "consumed": self.consumed,
            "overruns": self.overruns,
            "skipped": self.skipped,
            "lag": self.lag,
        }

    def close(self) -> None:
        self._ring.unregister_reader(self.name)
