"""Effects by name, each declaring its parameters with units, defaults and valid ranges.

The datagen CLI validates ``--effect-arg NAME=VALUE`` here, and manifests record the parameters
that :meth:`Effect.resolve` returns, so a dataset states exactly what was applied. A new effect is
one module with its signal function and one :func:`register` call in ``effects/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ._validation import check_number

Array = np.ndarray
#: ``render(x, **params) -> (y, extras)``: extras are values the effect measured or derived while
#: rendering (for clip-sdr, the equivalent gain), recorded next to the parameters.
Renderer = Callable[..., tuple[Array, dict[str, float]]]
#: ``make_stream(channels, **params) -> process(block) -> block`` for effects that can run block by block.
StreamFactory = Callable[..., Callable[[Array], Array]]
#: ``torch_render(x, values, **fixed) -> y``: the effect on a torch batch x (B, C, T) with the primary
#: parameter per example, ``values`` (B,), and the other parameters fixed; y (B, C, T) on x's device.
#: Effects that have one can be rendered at training time (``datagen build --online``).
TorchRenderer = Callable[..., object]


@dataclass(frozen=True)
class Parameter:
    """One numeric parameter of an effect.

    ``minimum``/``maximum`` bound the valid range (``minimum_inclusive=False`` opens the lower end);
    ``default=None`` makes the parameter required.
    """

    name: str
    unit: str
    description: str
    minimum: float
    maximum: float
    default: float | None = None
    minimum_inclusive: bool = True

    def validate(self, value: float | str) -> float:
        """Parse (CLI strings included) and range-check ``value``; raise ValueError naming the parameter."""
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{self.name} must be a number in {self.range_text()}, got {value!r}") from None
        try:
            return check_number(value, self.name, self.minimum, self.maximum, self.minimum_inclusive)
        except TypeError as error:
            raise ValueError(str(error)) from None

    def range_text(self) -> str:
        opening = "[" if self.minimum_inclusive else "("
        return f"{opening}{self.minimum:g}, {self.maximum:g}] {self.unit}".rstrip()


@dataclass(frozen=True)
class Effect:
    """A named effect: its parameters, the one a sweep varies (``primary``), and how to render it."""

    name: str
    summary: str
    parameters: tuple[Parameter, ...]
    primary: str
    render: Renderer
    make_stream: StreamFactory | None = None
    torch_render: TorchRenderer | None = None
    _by_name: dict[str, Parameter] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {p.name: p for p in self.parameters}
        if len(by_name) != len(self.parameters):
            raise ValueError(f"effect {self.name!r} declares a parameter twice")
        if self.primary not in by_name:
            raise ValueError(f"effect {self.name!r}: primary parameter {self.primary!r} is not declared")
        object.__setattr__(self, "_by_name", by_name)

    def parameter(self, name: str) -> Parameter:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self._by_name)
            raise ValueError(f"effect {self.name!r} has no parameter {name!r}; it has: {known}") from None

    def resolve(self, values: Mapping[str, float | str]) -> dict[str, float]:
        """Complete ``values`` with defaults and validate every one; the result is what gets recorded."""
        for name in values:
            self.parameter(name)
        resolved = {}
        for p in self.parameters:
            if p.name in values:
                resolved[p.name] = p.validate(values[p.name])
            elif p.default is not None:
                resolved[p.name] = p.default
            else:
                raise ValueError(f"effect {self.name!r} needs {p.name} ({p.description}, {p.range_text()})")
        return resolved

    def resolve_fixed(self, values: Mapping[str, float | str]) -> dict[str, float]:
        """Like :meth:`resolve` for every parameter but the primary one (which online rendering draws)."""
        if self.primary in values:
            raise ValueError(f"effect {self.name!r}: {self.primary} is drawn per example, not fixed")
        for name in values:
            self.parameter(name)
        return {p.name: p.validate(values[p.name]) if p.name in values else p.default
                for p in self.parameters if p.name != self.primary}

    @property
    def online(self) -> bool:
        """Whether the training loader can render this effect itself (it has a torch implementation)."""
        return self.torch_render is not None

    def apply(self, x: Array, values: Mapping[str, float | str]) -> tuple[Array, dict[str, float]]:
        """Validate ``values`` and render ``x``; returns the output and the effect's extras."""
        return self.render(x, **self.resolve(values))

    @property
    def streamable(self) -> bool:
        return self.make_stream is not None

    def stream(self, channels: int, values: Mapping[str, float | str]) -> Callable[[Array], Array]:
        """A block processor for ``(channels, samples)`` blocks of one signal, in order."""
        if self.make_stream is None:
            raise ValueError(f"effect {self.name!r} needs the whole signal at once and cannot stream")
        return self.make_stream(channels, **self.resolve(values))


_REGISTRY: dict[str, Effect] = {}


def register(effect: Effect) -> Effect:
    """Add ``effect`` to the registry; names are unique."""
    if effect.name in _REGISTRY:
        raise ValueError(f"an effect named {effect.name!r} is already registered")
    _REGISTRY[effect.name] = effect
    return effect


def get_effect(name: str) -> Effect:
    """Look an effect up by name; the error lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown effect {name!r}; known effects: {', '.join(sorted(_REGISTRY))}") from None


def effect_names() -> list[str]:
    return sorted(_REGISTRY)


def online_effect_names() -> list[str]:
    """The effects the training loader can render (those with a torch implementation)."""
    return sorted(name for name, effect in _REGISTRY.items() if effect.online)
