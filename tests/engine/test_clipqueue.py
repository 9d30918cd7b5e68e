"""The clip queue between spotting and recognition: drops counted, crops held until a clip is done."""

from __future__ import annotations

import threading
import time

import pytest

from mestream.engine.clipqueue import ClipJob, ClipQueue


def job(first_seq: int, camera: str = "cam0", event_id: int = 0) -> ClipJob:
    onset, apex, offset = first_seq, first_seq + 5, first_seq + 10  # crop seq == frame id
    return ClipJob(camera, event_id, onset, apex, offset, first_seq, offset, 1, 2)


def test_a_live_queue_drops_and_counts_what_it_has_no_room_for() -> None:
    clips = ClipQueue(["cam0"], 2, wait_when_full=False)
    assert clips.put(job(10)) and clips.put(job(20))
    t0 = time.monotonic()
    assert not clips.put(job(30))
    assert time.monotonic() - t0 < 0.05
    assert clips.drops() == {"recog_backlog": 1, "recog_lost": 0, "recog_abandoned": 0}
    assert clips.oldest("cam0") == 10  # the dropped clip holds nothing


def test_crops_are_held_until_the_taker_is_done_not_merely_until_it_took_them() -> None:
    clips = ClipQueue(["cam0", "cam1"], 4, wait_when_full=True)
    clips.put(job(30))
    clips.put(job(12, camera="cam1"))
    clips.put(job(50))
    assert (clips.oldest("cam0"), clips.oldest("cam1"), clips.oldest("cam2")) == (30, 12, None)
    taken = clips.take(2, timeout=0.1)
    assert [item.job.first_seq for item in taken] == [30, 12] and taken[0].queued_ns > 0
    assert clips.oldest("cam0") == 30  # taken, still being classified
    clips.done(taken)
    assert (clips.oldest("cam0"), clips.oldest("cam1")) == (50, None)


def test_a_replay_waits_for_room_and_gives_up_on_stop() -> None:
    stop = threading.Event()
    clips = ClipQueue(["cam0"], 1, wait_when_full=True, stop=stop)
    assert clips.put(job(1))
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(clips.put(job(2))))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # full, and nobody takes
    clips.done(clips.take(1, timeout=0.1))
    waiter.join(5)
    assert result == [True]
    threading.Timer(0.1, stop.set).start()
    assert not clips.put(job(3))
    assert clips.drops()["recog_abandoned"] == 1 and clips.oldest("cam0") == 2


def test_close_abandons_what_is_queued_and_refuses_later_clips() -> None:
    clips = ClipQueue(["cam0"], 1, wait_when_full=True)
    clips.put(job(1))
    clips.close()
    assert clips.qsize() == 0 and clips.oldest("cam0") is None
    t0 = time.monotonic()
    assert not clips.put(job(2))
    assert time.monotonic() - t0 < 0.5
    assert clips.drops() == {"recog_backlog": 0, "recog_lost": 0, "recog_abandoned": 2}


def test_a_put_waiting_for_room_when_the_taker_closes_is_abandoned_not_stranded() -> None:
    """`close` empties the queue, which gives a waiting put its room: that clip must not be left
    queued with nobody to take it (and uncounted, and holding crops)."""
    for _ in range(20):  # the put may land before or after the emptying: both must count
        clips = ClipQueue(["cam0"], 1, wait_when_full=True)
        assert clips.put(job(1))
        result: list[bool] = []
        waiter = threading.Thread(target=lambda clips=clips, result=result: result.append(clips.put(job(2))))
        waiter.start()
        waiter.join(0.06)
        clips.close()
        waiter.join(5)
        assert result == [False] and clips.qsize() == 0 and clips.oldest("cam0") is None
        assert clips.drops()["recog_abandoned"] == 2


def test_a_live_put_after_close_is_abandoned() -> None:
    clips = ClipQueue(["cam0"], 4, wait_when_full=False)
    clips.close()
    assert not clips.put(job(1))
    assert clips.qsize() == 0 and clips.drops()["recog_abandoned"] == 1


def test_finish_drains_lost_is_counted_and_an_unknown_camera_is_refused() -> None:
    clips = ClipQueue(["cam0"], 2, wait_when_full=False)
    clips.put(job(1))
    clips.finish()
    assert not clips.drained  # still one to classify
    clips.done(clips.take(4, timeout=0.1))
    assert clips.drained and clips.take(1, timeout=0.01) == []
    clips.note_lost()
    assert clips.drops()["recog_lost"] == 1
    with pytest.raises(KeyError, match="cam9"):
        clips.put(job(1, camera="cam9"))
    with pytest.raises(ValueError, match="recognise.queue"):
        ClipQueue(["cam0"], 0, wait_when_full=False)
