"""Settings of the monitoring assessment (stored in every output's provenance)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from pydantic import BaseModel, ConfigDict, Field

from hemotwin.errors import InputError


class MonitorConfig(BaseModel):
    """Settings of the assessment (stored in every output's provenance)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intensive_courses_for_refractory: int = Field(2, ge=1, description="§5 Refractory: courses of intensive induction")
    intensive_eval_days: int = Field(
        21, ge=0, description="days after the start of that course before its response marrow counts (project "
                              "convention: response marrows are taken at count recovery; 0 = literal reading)")
    less_intensive_landmark_days: int = Field(180, ge=1, description="§5 Refractory landmark, less-intensive (confirm)")
    blood_blast_confirm_days: int = Field(7, ge=1, description="§5 Hematologic relapse: samples >= 1 week apart")
    projection_horizon_days: int = Field(90, ge=1, description="alert when a crossing is projected within N days")
    projection_threshold_pct: dict[str, Decimal] = Field(
        default_factory=lambda: {"qpcr": Decimal(2), "flow": Decimal(5), "ngs": Decimal(5)},
        description="per method, the MRD level whose crossing is projected: qPCR 2 % (§5 low-level band); flow "
                    "and NGS 5 % as a proxy of the 5 % marrow-blast relapse level (project convention)")
    ci_level: float = Field(0.95, gt=0, lt=1)

    @classmethod
    def from_options(cls, *, horizon_days: int = 90, thresholds: Iterable[str] = ()) -> MonitorConfig:
        """The configuration of a run from its projection horizon and ``METHOD=PERCENT`` threshold texts.

        Parameters
        ----------
        horizon_days
            Alert when rising MRD is projected to cross its threshold within this many days.
        thresholds
            Texts ``METHOD=PERCENT`` (several may be joined by commas, e.g. ``"qpcr=2,flow=1"``) that replace
            the default projection threshold of a method (``flow``, ``qpcr`` or ``ngs``); later ones win.

        Returns
        -------
        MonitorConfig
            The defaults with the given horizon and thresholds.

        Raises
        ------
        InputError
            ``threshold``: a text that is not ``METHOD=PERCENT`` with a known method and 0 < PERCENT <= 100.
        """
        thr = dict(cls().projection_threshold_pct)
        for item in thresholds:
            for part in item.split(","):
                key, _, val = part.partition("=")
                key = key.strip().lower()
                try:
                    value = Decimal(val.strip())
                except InvalidOperation:
                    raise InputError("threshold", part, "METHOD=PERCENT, e.g. qpcr=2 or flow=1") from None
                if key not in thr or not Decimal(0) < value <= Decimal(100):
                    raise InputError("threshold", part,
                                     "METHOD=PERCENT with METHOD flow, qpcr or ngs and 0 < PERCENT <= 100")
                thr[key] = value
        return cls(projection_horizon_days=horizon_days, projection_threshold_pct=thr)
