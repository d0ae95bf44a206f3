"""Counters and latency histograms of one stream, and their Prometheus text exposition."""

import bisect

# seconds; Prometheus convention: base units, cumulative buckets, +Inf last
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Fixed buckets: observe() is a bisect and two additions, whatever the run's length."""

    def __init__(self, bounds=LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def copy(self) -> "Histogram":
        twin = Histogram(self.bounds)
        twin.counts, twin.total = list(self.counts), self.total
        return twin

    def lines(self, name: str, labels: str) -> list[str]:
        out, cumulative = [], 0
        for bound, count in zip(self.bounds + (float("inf"),), self.counts):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
        out.append(f"{name}_sum{{{labels}}} {self.total:.6f}")
        out.append(f"{name}_count{{{labels}}} {cumulative}")
        return out


class Exposition:
    """Collects samples family by family, each with its HELP and TYPE once, in Prometheus text format."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, samples: list[str]) -> None:
        family = self._families.setdefault(name, (kind, help_text, []))
        family[2].extend(samples)

    def sample(self, name: str, kind: str, help_text: str, labels: str, value) -> None:
        self.add(name, kind, help_text, [f"{name}{{{labels}}} {value}" if labels else f"{name} {value}"])

    def text(self) -> str:
        lines = []
        for name, (kind, help_text, samples) in self._families.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
        return "\n".join(lines) + "\n"
