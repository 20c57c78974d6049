"""A small Prometheus text-format registry (no client library dependency).

Counters, gauges and histograms with labels, plus callbacks that produce samples at scrape
time (pool stats). Each Sanic worker process has its own registry: scrape every worker, or
sum in Prometheus; samples carry no worker label.

Hooks for other parts of the API (e.g. the WS hub)::

    clients = request.app.ctx.metrics.gauge("mb_ws_clients", "Connected WS clients")
    clients.set(len(hub.clients))
    request.app.ctx.metrics.add_callback(lambda: [("mb_ws_queue_depth", {}, depth())])
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

LabelValues = tuple[str, ...]
Sample = tuple[str, dict[str, str], float]  # name, labels, value

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


@dataclass
class _Metric:
    name: str
    help: str
    labelnames: tuple[str, ...]
    kind: str = field(init=False, default="untyped")
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {list(self.labelnames)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:
        raise NotImplementedError


@dataclass
class Counter(_Metric):
    kind: str = field(init=False, default="counter")
    _values: dict[LabelValues, float] = field(init=False, default_factory=dict, repr=False)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_format_value(v)}" for k, v in items]


@dataclass
class Gauge(_Metric):
    kind: str = field(init=False, default="gauge")
    _values: dict[LabelValues, float] = field(init=False, default_factory=dict, repr=False)

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[self._key(labels)] = value

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_format_value(v)}" for k, v in items]


@dataclass
class Histogram(_Metric):
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    kind: str = field(init=False, default="histogram")
    # per label set: per-bucket counts (non-cumulative; +Inf last), sum
    _counts: dict[LabelValues, list[int]] = field(init=False, default_factory=dict, repr=False)
    _sums: dict[LabelValues, float] = field(init=False, default_factory=dict, repr=False)

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        index = bisect_left(self.buckets, value)  # first bucket with le >= value
        with self._lock:
            counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
            counts[index] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        return sum(self._counts.get(self._key(labels), []))

    def lines(self) -> list[str]:
        out: list[str] = []
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        for key, counts, total in items:
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = f'le="{"+Inf" if math.isinf(bound) else repr(float(bound))}"'
                out.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {running}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_format_value(total)}")
            out.append(f"{self.name}_count{_labels(self.labelnames, key)} {running}")
        return out


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._callbacks: list[Callable[[], Iterable[Sample]]] = []
        self._lock = threading.Lock()

    def _get_or_add(self, metric: _Metric) -> _Metric:
        with self._lock:
            existing = self._metrics.get(metric.name)
            if existing is None:
                self._metrics[metric.name] = metric
                return metric
        if type(existing) is not type(metric) or existing.labelnames != metric.labelnames:
            raise ValueError(f"metric {metric.name} already registered with another shape")
        return existing

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = self._get_or_add(Counter(name, help, tuple(labelnames)))
        assert isinstance(metric, Counter)
        return metric

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = self._get_or_add(Gauge(name, help, tuple(labelnames)))
        assert isinstance(metric, Gauge)
        return metric

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = self._get_or_add(Histogram(name, help, tuple(labelnames), tuple(sorted(buckets))))
        assert isinstance(metric, Histogram)
        return metric

    def add_callback(self, callback: Callable[[], Iterable[Sample]]) -> None:
        """``callback()`` is called at every scrape; its samples are rendered untyped."""
        self._callbacks.append(callback)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            metrics = list(self._metrics.values())
        for metric in metrics:
            lines.extend(metric.header())
            lines.extend(metric.lines())
        for callback in self._callbacks:
            for name, labels, value in callback():
                names = tuple(sorted(labels))
                values = tuple(labels[n] for n in names)
                lines.append(f"{name}{_labels(names, values)} {_format_value(value)}")
        return "\n".join(lines) + "\n"
