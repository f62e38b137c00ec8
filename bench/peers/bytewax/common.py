"""Shared pieces of the bytewax peer workloads: a source handing over ready-made batches and a
sink that counts and sums each batch it is given."""
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition


class _BatchPart(StatelessSourcePartition):
    def __init__(self, data, batch):
        self._data, self._batch, self._i = data, batch, 0

    def next_batch(self):
        if self._i >= len(self._data):
            raise StopIteration()
        b = self._data[self._i:self._i + self._batch]
        self._i += self._batch
        return b


class BatchSource(DynamicSource):
    """Hands over `data` in list slices of `batch` elements (worker 0 only)."""

    def __init__(self, data, batch):
        self._data, self._batch = data, batch

    def build(self, step_id, worker_index, worker_count):
        return _BatchPart(self._data if worker_index == 0 else [], self._batch)


class _CountPart(StatelessSinkPartition):
    def __init__(self, acc):
        self._acc = acc

    def write_batch(self, items):
        self._acc[0] += len(items)
        self._acc[1] += sum(items)


class CountSink(DynamicSink):
    """Adds len(batch) to acc[0] and sum(batch) to acc[1]."""

    def __init__(self, acc):
        self._acc = acc

    def build(self, step_id, worker_index, worker_count):
        return _CountPart(self._acc)
