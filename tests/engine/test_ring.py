"""Tests for the frame ring: seqlock read validation, accounting, and shared memory.

Frame k carries pixels that all equal k % 251, frame_id k + ID0 and device_ns k * 1000, so a
torn or mismatched read is visible from the frame alone.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from multiprocessing import resource_tracker, shared_memory

import numpy as np
import pytest

from mestream.engine.ring import (
    META_DTYPE,
    FrameRing,
    NotWritten,
    Overwritten,
    RingClosed,
    RingError,
    Waker,
)

ID0 = 1000
SHAPE = (24, 32)


def frame(k: int, shape: tuple[int, ...] = SHAPE, dtype: type = np.uint8) -> np.ndarray:
    return np.full(shape, k % 251, dtype)


def fill(ring: FrameRing, n: int, first: int = 0) -> None:
    for k in range(first, first + n):
        assert ring.write(frame(k, ring.shape, ring.dtype), k + ID0, k * 1000) == k


def intact(f) -> bool:
    """The frame's pixels and metadata all belong to the same write."""
    v = f.seq % 251
    px = f.pixels
    return f.frame_id == f.seq + ID0 and f.device_ns == f.seq * 1000 and px.min() == v == px.max()


def shm_name() -> str:
    return f"mes_t{os.getpid()}_{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- basics


def test_empty_ring_and_storage_is_touched():
    ring = FrameRing(5, SHAPE)
    assert (ring.capacity, ring.shape, ring.dtype) == (5, SHAPE, np.uint8)
    assert (ring.head, ring.oldest, ring.count) == (-1, 0, 0)
    assert ring.latest() is None
    with pytest.raises(NotWritten, match="seq 0 is not written yet"):
        ring.read(0)
    with pytest.raises(RingError, match="start at 0"):
        ring.read(-1)
    assert not ring.is_valid(0)


def test_metadata_and_clocks():
    ring = FrameRing(8, SHAPE)
    before_mono, before_wall = time.monotonic_ns(), time.time_ns()
    seq = ring.write(frame(0), 77, 123_456)
    after_mono, after_wall = time.monotonic_ns(), time.time_ns()
    ring.write(frame(1), 78, 223_456, host_ns=5, wall_ns=6)
    f0, f1 = ring.read(seq), ring.read(1)
    assert (f0.seq, f0.frame_id, f0.device_ns) == (0, 77, 123_456)
    assert before_mono <= f0.host_ns <= after_mono
    assert before_wall <= f0.wall_ns <= after_wall
    assert (f1.seq, f1.frame_id, f1.device_ns, f1.host_ns, f1.wall_ns) == (1, 78, 223_456, 5, 6)
    assert (ring.head, ring.oldest, ring.count, ring.frames_written) == (1, 0, 2, 2)
    assert ring.latest().seq == 1


def test_wraparound_keeps_the_last_capacity_frames():
    ring = FrameRing(4, SHAPE)
    fill(ring, 10)
    assert (ring.head, ring.oldest, ring.count) == (9, 6, 4)
    assert all(intact(ring.read(s)) and ring.read(s).seq == s for s in range(6, 10))
    with pytest.raises(Overwritten) as err:
        ring.read(5)
    assert (err.value.seq, err.value.oldest) == (5, 6)
    assert "seq 5" in str(err.value) and "oldest readable seq is now 6" in str(err.value)
    assert isinstance(err.value, LookupError)
    with pytest.raises(NotWritten):
        ring.read(10)


def test_copy_is_private_view_is_not_and_validates():
    ring = FrameRing(3, SHAPE)
    fill(ring, 1)
    copy, view = ring.read(0), ring.read(0, copy=False)
    out = np.empty(SHAPE, np.uint8)
    into = ring.read(0, out=out)
    assert into.pixels is out and not view.pixels.flags.writeable
    assert np.shares_memory(view.pixels, ring.read(0, copy=False).pixels)
    assert not np.shares_memory(copy.pixels, view.pixels)
    ring.validate(0)
    fill(ring, 3, first=1)  # laps slot 0
    assert view.pixels[0, 0] == 3 % 251  # the view now shows the newer frame...
    assert not ring.is_valid(0)  # ...which validation reports
    with pytest.raises(Overwritten):
        ring.validate(0)
    assert copy.pixels[0, 0] == 0 and out[0, 0] == 0
    with pytest.raises(ValueError, match="out must have shape"):
        ring.read(3, out=np.empty((2, *SHAPE), np.uint8))


def test_shape_and_dtype_mismatch_is_a_clear_error():
    ring = FrameRing(4, (480, 640))
    with pytest.raises(
        ValueError, match=r"expected shape \(480, 640\) dtype uint8, got shape \(479, 640\) dtype uint8"
    ):
        ring.write(np.zeros((479, 640), np.uint8), 0, 0)
    with pytest.raises(ValueError, match="got shape .* dtype uint16"):
        ring.write(np.zeros((480, 640), np.uint16), 0, 0)
    with pytest.raises(ValueError, match="got a list"):
        ring.write([[0]], 0, 0)
    assert ring.head == -1
    with pytest.raises(ValueError, match="dtype"):
        FrameRing(2, (2, 2), dtype=object)


def test_zero_copy_begin_write_commit():
    ring = FrameRing(2, SHAPE)
    fill(ring, 2)
    slot = ring.begin_write()  # takes seq 0's slot: seq 0 is invalid from now on
    with pytest.raises(Overwritten):
        ring.read(0)
    with pytest.raises(NotWritten):
        ring.read(2)
    with pytest.raises(RuntimeError, match="pending"):
        ring.write(frame(2), 2 + ID0, 2000)
    slot[...] = 2
    assert ring.commit(2 + ID0, 2000) == 2
    assert intact(ring.read(2)) and ring.head == 2
    with pytest.raises(RuntimeError, match="without a matching"):
        ring.commit(0, 0)
    ring.begin_write()
    ring.abort_write()
    with pytest.raises(Overwritten):  # the frame that slot held is gone, even after abort
        ring.read(1)
    fill(ring, 1, first=3)


# ----------------------------------------------------------------------------- range reads


@pytest.mark.parametrize("start,stop", [(4, 7), (5, 9), (8, 9), (6, 6)])
def test_range_read_contiguous_and_wrapping(start, stop):
    ring = FrameRing(4, SHAPE)
    fill(ring, 9)  # holds 5..8 in slots 1,2,3,0
    batch = ring.read_range(start, stop) if start >= 5 else None
    if batch is None:
        with pytest.raises(Overwritten, match=f"seq {start}"):
            ring.read_range(start, stop)
        return
    n = stop - start
    assert batch.pixels.shape == (n, *SHAPE) and len(batch) == n
    assert batch.meta.dtype == META_DTYPE
    assert list(batch.meta["seq"]) == list(range(start, stop))
    assert list(batch.meta["frame_id"]) == [s + ID0 for s in range(start, stop)]
    assert [int(p[0, 0]) for p in batch.pixels] == [s % 251 for s in range(start, stop)]
    assert (batch.pixels == (np.arange(start, stop) % 251)[:, None, None]).all()


def test_range_read_errors_and_out():
    ring = FrameRing(4, SHAPE)
    fill(ring, 6)
    with pytest.raises(NotWritten, match="seq 6"):
        ring.read_range(4, 7)
    with pytest.raises(ValueError, match="span"):
        ring.read_range(0, 5)
    out = np.empty((3, *SHAPE), np.uint8)
    batch = ring.read_range(3, 6, out=out)
    assert batch.pixels is out and list(batch.meta["seq"]) == [3, 4, 5]


@pytest.mark.parametrize("how", ["single", "range"])
def test_overwrite_during_the_copy_is_detected(monkeypatch, how):
    """Deterministic seqlock check: the writer laps the slot while the reader is copying it."""
    ring = FrameRing(2, SHAPE)
    fill(ring, 2)
    real = np.copyto

    def copy_then_writer_laps(dst, src, *args, **kwargs):
        monkeypatch.setattr(np, "copyto", real)
        real(dst, src, *args, **kwargs)
        fill(ring, 2, first=2)  # replaces seq 0 and seq 1 after our copy, before the check

    monkeypatch.setattr(np, "copyto", copy_then_writer_laps)
    with pytest.raises(Overwritten, match="seq 0"):
        if how == "single":
            ring.read(0, out=np.empty(SHAPE, np.uint8))
        else:
            ring.read_range(0, 2)


# ----------------------------------------------------------------------------- accounting


def test_camera_frame_id_gaps_and_resets():
    ring = FrameRing(8, SHAPE)
    for fid in [0, 1, 2, 5, 6, 10, 11]:
        ring.write(frame(0), fid, 0)
    assert ring.camera_drops == 2 + 3
    ring.write(frame(0), 0, 0)  # camera restarted: a reset, not a drop
    ring.write(frame(0), 1, 0)
    assert ring.camera_drops == 5 and ring.frame_id_resets == 1
    assert ring.stats()["camera_drops"] == 5


def test_reader_overruns_are_counted_not_lost():
    ring = FrameRing(4, SHAPE)
    face = ring.register_reader("face")
    flow = ring.register_reader("flow", start="oldest")
    with pytest.raises(ValueError, match="already registered"):
        ring.register_reader("face")
    assert face.poll() is None and face.lag == 0
    fill(ring, 3)
    assert intact(face.poll()) and face.lag == 2 and face.overruns == 0
    fill(ring, 7, first=3)  # head 9, oldest 6: face (at 1) lost 1..5
    assert face.lag == 4 and face.overruns == 5  # pending overruns show before the next poll
    f = face.poll()
    assert f.seq == 6 and intact(f) and face.overruns == 5 and face.consumed == 2
    got = [f.seq for f in iter(face.poll, None)]
    assert got == [7, 8, 9] and face.lag == 0
    assert face.consumed + face.overruns == ring.head + 1

    stats = ring.stats()
    assert stats["frames_written"] == 10 and stats["oldest"] == 6
    assert stats["readers"]["face"] == {"position": 10, "consumed": 5, "overruns": 5, "skipped": 0, "lag": 0}
    assert stats["readers"]["flow"]["overruns"] == 6 and stats["readers"]["flow"]["lag"] == 4
    assert stats["fill"] == 1.0

    assert flow.seek_latest() == 3 and flow.skipped == 3 and flow.overruns == 6
    assert flow.poll().seq == 9 and flow.poll() is None
    flow.close()
    assert "flow" not in ring.stats()["readers"]


def test_cursor_next_waits_times_out_and_drains_after_finish():
    ring = FrameRing(4, SHAPE)
    cursor = ring.register_reader("spot")
    t0 = time.monotonic()
    assert cursor.next(timeout=0.02) is None and time.monotonic() - t0 >= 0.02
    fill(ring, 2)
    ring.finish()
    with pytest.raises(RuntimeError, match="finished"):
        fill(ring, 1, first=2)
    assert [f.seq for f in cursor] == [0, 1]  # iteration ends once finished and drained
    assert cursor.next() is None


def test_concurrent_reader_while_writer_laps_never_returns_torn_frames():
    """Threads: the writer laps a small ring at full speed while readers race it."""
    shape = (256, 256)  # big enough that numpy releases the GIL mid-copy
    ring = FrameRing(4, shape)
    sources = [frame(v, shape) for v in range(251)]
    cursor = ring.register_reader("face")
    done = threading.Event()
    counts = {"racer_ok": 0, "racer_overwritten": 0, "range_ok": 0, "range_overwritten": 0}
    torn: list[int] = []
    cursor_seen: list[int] = []

    def writer() -> None:
        k = 0
        deadline = time.monotonic() + 5.0
        while not done.is_set() and time.monotonic() < deadline:
            ring.write(sources[k % 251], k + ID0, k * 1000)
            k += 1
        ring.finish()

    def racer() -> None:
        """Reads the oldest slot (the one being replaced) and short ranges at the tail."""
        while not ring.finished:
            head = ring.head
            if head < 4:
                continue
            for seq in (ring.oldest, head - 1):
                try:
                    f = ring.read(seq)
                except Overwritten:
                    counts["racer_overwritten"] += 1
                    continue
                counts["racer_ok"] += 1
                if not intact(f):
                    torn.append(f.seq)
            try:
                batch = ring.read_range(head - 2, head + 1)
            except Overwritten:
                counts["range_overwritten"] += 1
                continue
            counts["range_ok"] += 1
            v = batch.meta["seq"] % 251
            if not (
                (batch.pixels == v[:, None, None]).all()
                and (batch.meta["frame_id"] == batch.meta["seq"] + ID0).all()
            ):
                torn.extend(batch.meta["seq"].tolist())
            if min(counts.values()) >= 200:
                done.set()

    def consumer() -> None:
        for f in cursor:
            cursor_seen.append(f.seq)
            if not intact(f):
                torn.append(f.seq)

    threads = [threading.Thread(target=t) for t in (writer, racer, consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert not any(t.is_alive() for t in threads)
    assert torn == []
    assert counts["racer_overwritten"] >= 1, counts
    assert counts["racer_ok"] >= 1 and counts["range_ok"] >= 1, counts
    assert cursor_seen == sorted(cursor_seen) and len(cursor_seen) == cursor.consumed > 0
    assert cursor.consumed + cursor.overruns == ring.head + 1


# ----------------------------------------------------------------------------- shared memory


def _attach_child(name: str, conn) -> None:
    """Runs in a spawned process: attach, read what is there, then follow the writer."""
    with FrameRing.attach(name) as ring:
        batch = ring.read_range(ring.oldest, ring.head + 1)
        try:
            ring.write(np.zeros(ring.shape, ring.dtype), 0, 0)
            writable = True
        except RuntimeError:
            writable = False
        conn.send(
            {
                "layout": (ring.capacity, ring.shape, str(ring.dtype)),
                "writable": writable,
                "batch_seq": batch.meta["seq"].tolist(),
                "batch_ok": bool((batch.pixels == (batch.meta["seq"] % 251)[:, None, None, None]).all()),
            }
        )
        cursor = ring.register_reader("viewer", start="oldest")
        seen = [(f.seq, intact(f)) for f in cursor]  # until the writer finishes
        conn.send({"seen": seen, "stats": ring.stats()})
    conn.close()


def test_shared_memory_attach_from_a_spawned_process():
    name = shm_name()
    shape = (12, 16, 3)
    child_mod = importlib.import_module("tests.engine.test_ring")  # importable by the child
    ctx = multiprocessing.get_context("spawn")
    with FrameRing(64, shape, np.uint16, shm_name=name) as ring:
        fill(ring, 10)
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=child_mod._attach_child, args=(name, child))
        proc.start()
        try:
            assert parent.poll(20), "child did not attach"
            first = parent.recv()
            assert first["layout"] == (64, shape, "uint16")
            assert first["writable"] is False
            assert first["batch_seq"] == list(range(10)) and first["batch_ok"]
            fill(ring, 20, first=10)
            ring.finish()
            assert parent.poll(20), "child did not finish"
            second = parent.recv()
        finally:
            proc.join(timeout=20)
        assert proc.exitcode == 0
        assert second["seen"] == [(s, True) for s in range(30)]
        assert second["stats"]["readers"]["viewer"]["overruns"] == 0
        FrameRing.attach(name).close()  # the child's exit left the segment in place
    with pytest.raises(FileNotFoundError, match="no frame ring named"):
        FrameRing.attach(name)  # the creator unlinked it on close


_ATTACH_SCRIPT = """
import sys
from mestream.engine.ring import FrameRing
with FrameRing.attach(sys.argv[1]) as ring:
    f = ring.read(ring.head)
    print(f.frame_id, int(f.pixels[0, 0]))
"""

_PLAIN_ATTACH_SCRIPT = """
import sys
from multiprocessing import shared_memory
shared_memory.SharedMemory(name=sys.argv[1]).close()
"""


def test_an_unrelated_process_attaching_does_not_unlink_the_segment():
    """Its own resource tracker would unlink a plainly attached segment when it exits (3.11)."""
    name = shm_name()
    with FrameRing(4, SHAPE, shm_name=name) as ring:
        fill(ring, 3)
        run = subprocess.run(
            [sys.executable, "-c", _ATTACH_SCRIPT, name], capture_output=True, text=True, timeout=30
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == [str(2 + ID0), "2"]
        assert "leaked" not in run.stderr
        FrameRing.attach(name).close()

    # Control: the same visit with a plain SharedMemory attach does delete the segment,
    # so the check above can fail.
    control = shared_memory.SharedMemory(name=shm_name(), create=True, size=4096)
    try:
        run = subprocess.run(
            [sys.executable, "-c", _PLAIN_ATTACH_SCRIPT, control.name],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 0, run.stderr
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=control.name)
    finally:
        control.close()
        resource_tracker.unregister("/" + control.name, "shared_memory")


def test_attach_rejects_what_is_not_a_ring():
    with pytest.raises(FileNotFoundError):
        FrameRing.attach(shm_name())
    plain = shared_memory.SharedMemory(name=shm_name(), create=True, size=8192)
    try:
        with pytest.raises(ValueError, match="not a mestream frame ring"):
            FrameRing.attach(plain.name)
    finally:
        plain.close()
        plain.unlink()


def test_close_semantics():
    name = shm_name()
    ring = FrameRing(4, SHAPE, shm_name=name)
    fill(ring, 5)
    viewer = FrameRing.attach(name)
    cursor = viewer.register_reader("rec", start="oldest")
    assert cursor.poll().seq == 1
    viewer_view = viewer.read(2, copy=False)
    ring.close()  # creator: finish + unlink; the viewer's mapping stays
    ring.close()  # idempotent
    assert ring.closed and ring.stats()["frames_written"] == 5
    with pytest.raises(RingClosed):
        ring.read(4)
    with pytest.raises(RuntimeError, match="closed"):
        ring.write(frame(5), 5 + ID0, 5000)
    with pytest.raises(FileNotFoundError):
        FrameRing.attach(name)
    assert viewer.finished and [f.seq for f in cursor] == [2, 3, 4]  # drains after unlink
    assert viewer_view.pixels[0, 0] == 2 and viewer.is_valid(2)
    del viewer_view
    viewer.close()
    with pytest.raises(RingClosed):
        viewer.read(4)
    assert cursor.next() is None


def test_shared_name_errors_say_what_to_do():
    name = f"mestream-stale-{os.getpid()}"
    stale = shared_memory.SharedMemory(name=name, create=True, size=64)
    try:
        with pytest.raises(FileExistsError, match=f"'{name}' already exists.*remove /dev/shm/{name}"):
            FrameRing(4, (8, 8), shm_name=name)
    finally:
        stale.close()
        stale.unlink()
    with pytest.raises(OSError, match="cannot create shared-memory ring 'a/b'"):
        FrameRing(4, (8, 8), shm_name="a/b")
    with pytest.raises(MemoryError, match="needs .* MB but /dev/shm has"):
        FrameRing(1 << 20, (4096, 4096), shm_name=f"mestream-huge-{os.getpid()}")


# ----------------------------------------------------------------------------- batch reads, holding, waiting


def test_poll_batch_reads_consecutive_frames_in_one_copy_until_caught_up():
    """Block stages read this way: frames in order, none twice, None once caught up."""
    ring = FrameRing(8, SHAPE)
    cursor = ring.register_reader("spot")
    assert cursor.poll_batch(4) is None  # nothing written yet
    fill(ring, 6)
    batch = cursor.poll_batch(4)
    assert isinstance(batch.pixels, np.ndarray) and batch.pixels.shape == (4, *SHAPE) and len(batch) == 4
    assert list(batch.meta["seq"]) == [0, 1, 2, 3]
    assert list(batch.meta["frame_id"]) == [s + ID0 for s in range(4)]
    assert (batch.pixels == np.arange(4)[:, None, None]).all()
    assert cursor.position == 4 and cursor.consumed == 4 and cursor.lag == 2
    batch = cursor.poll_batch(4)  # only two left: a short batch, not a wait
    assert list(batch.meta["seq"]) == [4, 5] and (batch.pixels == np.array([4, 5])[:, None, None]).all()
    assert cursor.poll_batch(4) is None and cursor.consumed == 6 and cursor.overruns == 0
    fill(ring, 5, first=6)  # seqs 6..10 sit in slots 6, 7, 0, 1, 2: the batch wraps
    batch = cursor.poll_batch(8)
    assert list(batch.meta["seq"]) == [6, 7, 8, 9, 10]
    assert (batch.pixels == np.arange(6, 11)[:, None, None]).all()
    assert cursor.consumed == 11 and cursor.consumed + cursor.overruns == ring.head + 1


def test_poll_batch_counts_overruns_when_lapped_before_the_read():
    """A cursor a whole ring behind jumps to the oldest frame held and counts what it lost."""
    ring = FrameRing(4, SHAPE)
    cursor = ring.register_reader("spot")
    fill(ring, 10)  # head 9, oldest 6: seqs 0..5 are gone
    assert cursor.overruns == 6  # visible before the read
    batch = cursor.poll_batch(3)
    assert list(batch.meta["seq"]) == [6, 7, 8] and (batch.pixels == np.array([6, 7, 8])[:, None, None]).all()
    assert cursor.overruns == 6 and cursor.consumed == 3  # counted once, not again on the next read
    assert list(cursor.poll_batch(3).meta["seq"]) == [9]
    assert cursor.poll_batch(3) is None
    assert cursor.overruns == 6 and cursor.consumed + cursor.overruns == ring.head + 1


def test_poll_batch_lapped_during_the_copy_skips_the_lost_frames_and_retries(monkeypatch):
    """The writer replaces frames while the batch is being copied: no torn batch comes back,
    the lost frames are counted, and the retry returns what is still held."""
    ring = FrameRing(4, SHAPE)
    cursor = ring.register_reader("spot")
    fill(ring, 4)
    real = np.copyto

    def copy_then_writer_laps(dst, src, *args, **kwargs):
        monkeypatch.setattr(np, "copyto", real)
        real(dst, src, *args, **kwargs)
        fill(ring, 2, first=4)  # seqs 4, 5 replace 0, 1 after the copy, before the check

    monkeypatch.setattr(np, "copyto", copy_then_writer_laps)
    batch = cursor.poll_batch(4)
    assert list(batch.meta["seq"]) == [2, 3, 4, 5]
    assert all(intact(ring.read(s)) for s in (2, 3, 4, 5))
    assert (batch.pixels == np.arange(2, 6)[:, None, None]).all()
    assert (batch.meta["frame_id"] == batch.meta["seq"] + ID0).all()
    assert cursor.overruns == 2 and cursor.consumed == 4 and cursor.poll_batch(4) is None


def test_poll_batch_copies_into_the_callers_buffer():
    """Stages pass a preallocated block so that a read allocates no pixel memory."""
    ring = FrameRing(8, SHAPE)
    cursor = ring.register_reader("spot")
    out = np.zeros((4, *SHAPE), np.uint8)
    fill(ring, 6)
    batch = cursor.poll_batch(4, out=out)
    assert batch.pixels.base is out and np.shares_memory(batch.pixels, out)
    assert (out == np.arange(4)[:, None, None]).all()
    batch = cursor.poll_batch(4, out=out)  # a short batch fills the front of the buffer
    assert batch.pixels.shape == (2, *SHAPE) and batch.pixels.base is out
    assert (out[:2] == np.array([4, 5])[:, None, None]).all()
    assert (out[2:] == np.array([2, 3])[:, None, None]).all()  # the rest is left as it was


def test_hold_moves_the_cursor_forward_only_without_reading():
    """A stage holds frames it may still need; holding never re-reads or counts frames."""
    ring = FrameRing(8, SHAPE)
    keep = ring.register_reader("keep")
    fill(ring, 5)
    keep.hold(3)
    assert keep.position == 3 and keep.consumed == 0 and keep.skipped == 0 and keep.overruns == 0
    keep.hold(1)  # never back
    assert keep.position == 3
    keep.hold(np.int64(4))  # numpy positions from a stage's arithmetic are fine
    assert keep.position == 4 and type(keep.position) is int
    assert keep.poll().seq == 4 and keep.consumed == 1


def _wait_in_thread(ring: FrameRing, stop: threading.Event) -> tuple[threading.Thread, list[float]]:
    """wait_for_room in a daemon thread, so that a wait that never ends fails the test instead of
    hanging it."""
    waited: list[float] = []
    thread = threading.Thread(target=lambda: waited.append(ring.wait_for_room(stop)), daemon=True)
    thread.start()
    return thread, waited


def test_wait_for_room_returns_at_once_with_no_readers_or_with_room():
    """Only a reader a whole ring behind may make the writer wait."""
    ring = FrameRing(4, SHAPE)
    stop = threading.Event()
    fill(ring, 4)  # full, but nobody reads
    thread, waited = _wait_in_thread(ring, stop)
    thread.join(2)
    assert len(waited) == 1 and waited[0] < 0.01  # returned at once
    cursor = ring.register_reader("face", start="oldest")
    assert cursor.poll().seq == 0  # one slot free for the next write
    thread, waited = _wait_in_thread(ring, stop)
    thread.join(2)
    assert len(waited) == 1 and waited[0] < 0.01  # returned at once


def test_wait_for_room_blocks_while_a_reader_is_a_ring_behind_and_returns_once_it_reads():
    """Replays (ring.when_full = wait) must lose nothing: the writer waits for its slowest reader."""
    ring = FrameRing(4, SHAPE)
    stop = threading.Event()
    slow = ring.register_reader("slow")
    fast = ring.register_reader("fast")
    fill(ring, 4)
    while fast.poll() is not None:
        pass
    thread, waited = _wait_in_thread(ring, stop)
    thread.join(0.1)
    assert thread.is_alive() and waited == []  # the next write would overwrite slow's seq 0
    assert slow.poll().seq == 0
    thread.join(5)
    assert not thread.is_alive() and waited[0] > 0
    fill(ring, 1, first=4)
    assert slow.overruns == 0


def test_wait_for_room_returns_when_stop_is_set():
    """Ctrl-C must not hang a replay whose reader stalled."""
    ring = FrameRing(4, SHAPE)
    stop = threading.Event()
    stalled = ring.register_reader("stalled")
    fill(ring, 4)
    thread, waited = _wait_in_thread(ring, stop)
    thread.join(0.1)
    assert thread.is_alive()
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and len(waited) == 1 and stalled.position == 0


def test_a_held_cursor_makes_wait_for_room_wait():
    """The crops a stage holds (instead of copying) stay in the ring while the writer waits."""
    ring = FrameRing(4, SHAPE)
    stop = threading.Event()
    keep = ring.register_reader("keep")
    reader = ring.register_reader("spot")
    fill(ring, 4)
    while reader.poll() is not None:
        pass
    keep.hold(1)  # releases seq 0 only
    thread, waited = _wait_in_thread(ring, stop)
    thread.join(2)
    assert len(waited) == 1 and waited[0] < 0.01  # returned at once
    fill(ring, 1, first=4)  # replaces seq 0; next is seq 1, still held
    reader.poll()
    thread, waited = _wait_in_thread(ring, stop)
    thread.join(0.1)
    assert thread.is_alive() and waited == []
    keep.hold(0)  # holding back does nothing: still waiting
    thread.join(0.05)
    assert thread.is_alive()
    keep.hold(2)
    thread.join(5)
    assert not thread.is_alive() and waited[0] > 0
    assert ring.is_valid(2) and ring.is_valid(3)


def test_poll_batch_lapped_between_the_catch_up_check_and_the_read(monkeypatch):
    """A batch asked larger than the ring must still come back as at most a ring of frames, with
    the lapped ones counted: re-reading the head after the catch-up check asked read_range for
    more frames than the ring holds (ValueError)."""
    ring = FrameRing(4, SHAPE)
    cursor = ring.register_reader("spot")
    fill(ring, 4)
    real = cursor._next_position

    def writer_laps_after_the_check():
        pos = real()
        if ring.head == 3:  # once
            fill(ring, 2, first=4)
        return pos

    monkeypatch.setattr(cursor, "_next_position", writer_laps_after_the_check)
    batch = cursor.poll_batch(10)
    assert list(batch.meta["seq"]) == [2, 3, 4, 5] and cursor.overruns == 2


# ----------------------------------------------------------------------------- waiting without polling


def _next_in_thread(cursor, timeout: float) -> tuple[threading.Thread, list]:
    """cursor.next in a daemon thread; the result holds (frame, monotonic time it returned, thread CPU s)."""
    result: list = []

    def run() -> None:
        cpu = time.thread_time()
        frame = cursor.next(timeout=timeout)
        result.append((frame, time.monotonic(), time.thread_time() - cpu))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_a_caught_up_reader_wakes_on_the_write_not_on_its_timeout():
    ring = FrameRing(4, SHAPE)
    cursor = ring.register_reader("face")
    thread, result = _next_in_thread(cursor, timeout=10.0)
    time.sleep(0.1)  # asleep by now
    assert thread.is_alive()
    written = time.monotonic()
    fill(ring, 1)
    thread.join(5)
    frame, woke, _ = result[0]
    assert frame is not None and frame.seq == 0 and intact(frame)
    assert woke - written < 1.0  # bounded, not timed strictly: the timeout was 10 s


def test_a_waiting_reader_returns_on_timeout_finish_and_close():
    ring = FrameRing(4, SHAPE)
    cursor = ring.register_reader("face")
    t0 = time.monotonic()
    assert cursor.next(timeout=0.05) is None
    assert 0.05 <= time.monotonic() - t0 < 2.0
    for end in ("finish", "close"):
        ring = FrameRing(4, SHAPE)
        cursor = ring.register_reader("face")
        thread, result = _next_in_thread(cursor, timeout=10.0)
        time.sleep(0.05)
        assert thread.is_alive()
        ended = time.monotonic()
        getattr(ring, end)()
        thread.join(5)
        assert result and result[0][0] is None and result[0][1] - ended < 1.0, end


def test_a_blocked_reader_does_not_spin():
    """A caught-up reader sleeps until the writer notifies: it polls the ring once, not every 100 µs."""
    ring = FrameRing(4, SHAPE)
    cursor = ring.register_reader("face")
    polls = []
    poll = cursor.poll

    def counted(*args, **kwargs):
        polls.append(1)
        return poll(*args, **kwargs)

    cursor.poll = counted
    thread, result = _next_in_thread(cursor, timeout=0.5)
    thread.join(5)
    frame, _, cpu = result[0]
    assert frame is None
    assert len(polls) <= 3, f"{len(polls)} polls in 0.5 s: the reader spins"
    assert cpu < 0.02, f"{cpu * 1e3:.1f} ms of CPU in 0.5 s of waiting"


def test_a_writer_waiting_for_room_does_not_spin_and_wakes_when_the_reader_moves():
    ring = FrameRing(4, SHAPE)
    stop = threading.Event()
    slow = ring.register_reader("slow")
    fill(ring, 4)
    cpu: list[float] = []
    waited: list[float] = []

    def wait() -> None:
        t0 = time.thread_time()
        waited.append(ring.wait_for_room(stop))
        cpu.append(time.thread_time() - t0)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive()
    moved = time.monotonic()
    slow.poll()
    thread.join(5)
    assert not thread.is_alive() and waited[0] >= 0.5
    assert time.monotonic() - moved < 1.0
    assert cpu[0] < 0.01, f"{cpu[0] * 1e3:.1f} ms of CPU in 0.5 s of waiting for room"


def test_waking_the_writer_waiting_for_room_on_hold_seek_and_unregister():
    for move in ("hold", "seek_latest", "close"):
        ring = FrameRing(4, SHAPE)
        stop = threading.Event()
        reader = ring.register_reader("spot")
        fill(ring, 4)
        thread, waited = _wait_in_thread(ring, stop)
        time.sleep(0.05)
        assert thread.is_alive()
        moved = time.monotonic()
        reader.hold(2) if move == "hold" else getattr(reader, move)()
        thread.join(5)
        assert waited and time.monotonic() - moved < 1.0, move


def test_one_waker_sleeps_on_several_rings():
    """The spot stage waits on every camera's crop ring at once."""
    rings = [FrameRing(4, SHAPE) for _ in range(3)]
    waker = Waker()
    for ring in rings:
        ring.add_waker(waker)
        ring.add_waker(waker)  # once is enough
    assert rings[0]._wakers.count(waker) == 1

    def news(seen: int):
        return lambda: sum(r.updates for r in rings) != seen

    seen = sum(r.updates for r in rings)
    assert waker.wait(news(seen), 0.02) is False  # nothing written: times out
    fill(rings[1], 1)
    assert waker.wait(news(seen), 10.0) is True  # written before the wait: returns at once

    seen = sum(r.updates for r in rings)
    woke: list[float] = []
    thread = threading.Thread(
        target=lambda: woke.append(waker.wait(news(seen), 10.0) and time.monotonic()), daemon=True
    )
    thread.start()
    time.sleep(0.05)
    written = time.monotonic()
    fill(rings[2], 1)
    thread.join(5)
    assert woke and woke[0] - written < 1.0

    seen = sum(r.updates for r in rings)
    rings[0].finish()  # a ring's end is news too, and so is its close
    assert waker.wait(news(seen), 0) is True
    seen = sum(r.updates for r in rings)
    rings[0].close()
    assert waker.wait(news(seen), 0) is True
    rings[1].remove_waker(waker)
    rings[1].remove_waker(rings[1].waker)  # a ring's own waker stays
    assert waker not in rings[1]._wakers and rings[1].waker in rings[1]._wakers


def test_no_wake_up_is_lost_with_several_writer_threads():
    """Several face stages write crops while the spot stage sleeps on all their rings: a write
    that lands while the reader goes to sleep must still wake it (a lost one would sit out the
    10 s timeout)."""
    rings = [FrameRing(64, (2, 2)) for _ in range(4)]
    waker = Waker()
    cursors = [ring.register_reader("spot") for ring in rings]
    for ring in rings:
        ring.add_waker(waker)
    pixels = np.zeros((2, 2), np.uint8)
    n = 2000

    def write(ring: FrameRing) -> None:
        for k in range(n):
            ring.wait_for_room(threading.Event())  # the reader keeps up; now and then the writer waits
            ring.write(pixels, k, k)
            if k % 97 == 0:
                time.sleep(0)
        ring.finish()

    writers = [threading.Thread(target=write, args=(ring,), daemon=True) for ring in rings]
    for t in writers:
        t.start()
    got, timeouts = 0, 0
    t0 = time.monotonic()
    while got < n * len(rings) and time.monotonic() - t0 < 60:
        seen = sum(r.updates for r in rings)
        read = sum(c.poll_batch(64) is not None and 1 for c in cursors)
        got = sum(c.consumed for c in cursors)
        if not read and got < n * len(rings):
            timeouts += not waker.wait(lambda seen=seen: sum(r.updates for r in rings) != seen, 10.0)
    for t in writers:
        t.join(5)
    assert got == n * len(rings) and timeouts == 0


def test_an_attached_ring_is_polled_not_waited_on():
    """A writer's notification cannot reach another process: an attached ring's cursor polls."""
    name = shm_name()
    with FrameRing(4, SHAPE, shm_name=name) as ring:
        attached = FrameRing.attach(name)
        try:
            assert attached.waker is None and ring.waker is not None
            with pytest.raises(RuntimeError, match="another process"):
                attached.add_waker(Waker())
            cursor = attached.register_reader("recorder")
            t0 = time.monotonic()
            assert cursor.next(timeout=0.05, poll_interval=0.01) is None and time.monotonic() - t0 >= 0.05
            thread, result = _next_in_thread(cursor, timeout=10.0)
            time.sleep(0.05)
            fill(ring, 1)
            thread.join(5)
            assert result and result[0][0].seq == 0
            ring.finish()
            assert cursor.next(timeout=10.0) is None  # the end is seen through the header
        finally:
            attached.close()


def test_the_latency_tap_stops_promptly_on_stop_while_waiting():
    from mestream.engine.bus import EventBus
    from mestream.engine.stages import LatencyTap, RunContext

    ring = FrameRing(8, SHAPE)
    ctx = RunContext(camera="cam0", fps=500.0, ring=ring, bus=EventBus([]))
    tap = LatencyTap(ctx)
    tap.start()
    fill(ring, 2)
    deadline = time.monotonic() + 5
    while tap.cursor.consumed < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tap.cursor.consumed == 2
    time.sleep(0.3)
    stopped = time.monotonic()
    ctx.stop.set()
    tap.join(5)
    assert not tap.is_alive() and time.monotonic() - stopped < 1.0
    assert ctx.errors == []
