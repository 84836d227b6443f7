"""Virtual patients: named white-cell differentials with their source and the flags they must raise.

The cases live in ``diagnosis/data/cases.yaml`` (data, not code); :func:`load_cases` validates them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hemotwin.diagnosis.differential import LEUKOCYTE_CODES
from hemotwin.errors import InputError
from hemotwin.taxonomy import BLAST_CODES, CLASS_CODES

__all__ = ["Case", "get_case", "list_cases", "load_cases"]

Expect = Literal["positive", "negative", "any"]


class Case(BaseModel):
    """One virtual patient.

    Attributes
    ----------
    name
        Key in cases.yaml (``"aml"``).
    title
        One line for people.
    differential
        Fraction of white-cell objects per class code (sums to 1; EBO and KSC included).
    source
        Where the picture comes from, and why these numbers.
    expected_flags
        Flag id -> ``positive`` | ``negative`` | ``any``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    title: str
    differential: dict[str, float]
    source: str
    expected_flags: dict[str, Expect] = Field(default_factory=dict)

    @field_validator("differential")
    @classmethod
    def _diff(cls, v: dict[str, float]) -> dict[str, float]:
        for code, f in v.items():
            if code not in CLASS_CODES:
                raise InputError("differential", code, f"class codes among {', '.join(CLASS_CODES)}")
            if not 0 <= f <= 1:
                raise InputError(f"differential.{code}", f, "a fraction in [0, 1]")
        if abs(sum(v.values()) - 1) > 1e-6:
            raise InputError("differential", sum(v.values()), "fractions summing to 1")
        return v

    def true_percent(self, codes: tuple[str, ...] | list[str], *, denominator=LEUKOCYTE_CODES) -> float:
        """Population percentage of ``codes`` among ``denominator`` (per 100 when outside it)."""
        num = sum(self.differential.get(c, 0.0) for c in codes)
        den = sum(self.differential.get(c, 0.0) for c in denominator)
        return 100.0 * num / den if den else float("nan")

    @property
    def true_blast_percent(self) -> float:
        """MYO + MOB as a percentage of leukocytes (the population value a count estimates)."""
        return self.true_percent(BLAST_CODES)


@lru_cache(maxsize=1)
def load_cases() -> dict[str, Case]:
    """All virtual patients of the package's cases.yaml, by name."""
    from importlib import resources

    raw = yaml.safe_load((resources.files("hemotwin.diagnosis") / "data" / "cases.yaml").read_text())
    return {name: Case(name=name, **spec) for name, spec in raw.items()}


def list_cases() -> list[str]:
    """Names of the virtual patients."""
    return list(load_cases())


def get_case(name: str) -> Case:
    """A virtual patient by name (errors list the valid names)."""
    cases = load_cases()
    if name not in cases:
        raise InputError("case", name, f"one of {', '.join(cases)}")
    return cases[name]
