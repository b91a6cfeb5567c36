"""The keyed micro-batcher: same-key items share a run, other keys wait their turn, bounds and cancellation hold."""

import threading
import time

import pytest

from hifilight.batcher import KeyedBatcher, QueueFull


def submit_all(batcher, items, cancelled=lambda: False):
    """Submit (key, payload) pairs from one thread each; return the results in submission order."""
    results = [None] * len(items)

    def call(k):
        results[k] = batcher.submit(*items[k], cancelled)

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(items))]
    for t in threads:
        t.start()
        time.sleep(0.01)  # keep the submission order
    for t in threads:
        t.join(10)
    return results


def test_same_key_items_run_together_and_get_their_own_results():
    calls = []
    batcher = KeyedBatcher(lambda key, xs: calls.append((key, xs)) or [x * 10 for x in xs], 4, 0.5, 16)
    assert submit_all(batcher, [("a", 1), ("a", 2), ("a", 3), ("a", 4)]) == [10, 20, 30, 40]
    assert calls == [("a", [1, 2, 3, 4])] and batcher.batches == [4]  # full batch: no waiting for the deadline


def test_other_keys_are_not_mixed_and_the_oldest_goes_first():
    calls = []
    batcher = KeyedBatcher(lambda key, xs: calls.append((key, xs)) or xs, 8, 0.2, 16)
    assert submit_all(batcher, [("a", 1), ("b", 2), ("a", 3)]) == [1, 2, 3]
    assert calls == [("a", [1, 3]), ("b", [2])]


def test_a_full_queue_refuses_at_once_and_errors_reach_every_caller():
    release = threading.Event()

    def run(key, xs):
        release.wait(5)
        raise ValueError("boom")

    batcher = KeyedBatcher(run, 1, 0.0, 2)
    errors = []
    threads = [threading.Thread(target=lambda: errors.append(pytest.raises(ValueError, batcher.submit, "a", 0)))]
    threads += [threading.Thread(target=lambda: errors.append(pytest.raises(ValueError, batcher.submit, "a", 1)))
                for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
        time.sleep(0.05)  # the first is running; two wait
    with pytest.raises(QueueFull, match="2 requests are waiting"):
        batcher.submit("a", 9)
    release.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 3 and all("boom" in str(e.value) for e in errors)


def test_an_item_cancelled_before_its_batch_is_dropped():
    seen = []
    batcher = KeyedBatcher(lambda key, xs: seen.extend(xs) or xs, 4, 0.0, 4)
    assert batcher.submit("a", 1, cancelled=lambda: True) is None
    assert batcher.submit("a", 2) == 2 and seen == [2]


def test_bounds_are_checked():
    with pytest.raises(ValueError, match="max_batch 0"):
        KeyedBatcher(lambda k, xs: xs, 0, 0.0, 1)
