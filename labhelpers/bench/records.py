"""The benchmark's records: the settings of one timing, and what it measured, serialised as bench.json's entries."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BenchSettings:
    """How to time one layer size: the layers' shape, the adapter, the rounds, the threads, the clock.

    Attributes:
        in_features, out_features: the base layer, weight (out_features, in_features); x is (tokens, in_features).
        tokens: rows of x (batch x sequence length).
        lora_dropout, r, lora_alpha: the adapter settings of every layer `compare` builds.
        repeats: timed rounds; warmup: untimed rounds before them.
        threads: torch.set_num_threads during the measurement (restored afterwards); CPU work only.
        input_requires_grad: x needs a gradient, as for any layer above the first one in a network.
        seed: seeds the base layer's weights, x and the output gradient.
        device: where the layers live and the steps run (None: get_config().device).
        clock: "wall" or "cpu", see timing.CLOCKS; "cpu" only on the CPU.
    """

    in_features: int
    out_features: int
    tokens: int
    lora_dropout: float = 0.0
    r: int = 8
    lora_alpha: float = 16.0
    repeats: int = 30
    warmup: int = 5
    threads: int = 2
    input_requires_grad: bool = True
    seed: int = 0
    device: str | torch.device | None = None
    clock: str = "wall"


@dataclass(frozen=True)
class LayerTiming:
    """One layer's measurements.

    Attributes:
        times_s: seconds of each timed round's training step, in round order.
        median_s: their median.
        ratio: median_s / the baseline's median_s, None without a baseline.
        peak_bytes: the peak memory one training step allocates (timing.peak_step_bytes).
    """

    times_s: list[float]
    median_s: float
    ratio: float | None
    peak_bytes: int

    def to_json(self) -> dict:
        """Return the layer's entry of bench.json."""
        return {"times_s": self.times_s, "median_s": self.median_s, "ratio": self.ratio, "peak_bytes": self.peak_bytes}


@dataclass(frozen=True)
class BenchResult:
    """What one timing measured, with the settings it ran under.

    Attributes:
        settings: the settings, with `device` the one the steps ran on ("cpu", "cuda:0", ...).
        baseline: the layer every ratio is taken against ("lora"), None when it was not timed.
        load_average: the machine's 1-minute load average before and after timing.
        schedule: layer names in the order the timed steps ran.
        layers: name -> its measurements, in the order the layers were given.
        built_from_settings: the layers were built from settings.r, lora_alpha and lora_dropout (`compare`);
            False for factories given to `time_layers`, whose adapter settings the result cannot know.
    """

    settings: BenchSettings
    baseline: str | None
    load_average: tuple[float, float]
    schedule: list[str]
    layers: dict[str, LayerTiming]
    built_from_settings: bool = False

    @property
    def lora_dropout(self) -> float | None:
        """The layers' lora_dropout, None when the result does not know it (see built_from_settings)."""
        return self.settings.lora_dropout if self.built_from_settings else None

    def to_json(self) -> dict:
        """Return the result's entry of bench.json's "results" (the adapter settings only when they are known)."""
        s = self.settings
        entry = {
            "in_features": s.in_features,
            "out_features": s.out_features,
            "tokens": s.tokens,
            "repeats": s.repeats,
            "warmup": s.warmup,
            "threads": s.threads,
            "input_requires_grad": s.input_requires_grad,
            "device": str(s.device),
            "clock": s.clock,
            "baseline": self.baseline,
            # Other processes slow parallel (threads > 1) steps unevenly: above `threads`, ratios are not trustworthy.
            "load_average": list(self.load_average),
            "schedule": self.schedule,
            "layers": {name: timing.to_json() for name, timing in self.layers.items()},
        }
        if self.built_from_settings:
            entry |= {"r": s.r, "lora_alpha": s.lora_alpha, "lora_dropout": s.lora_dropout}
        return entry
