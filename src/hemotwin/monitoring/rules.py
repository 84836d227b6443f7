"""The ELN 2022 response rules as numbers and citations (docs/clinical_rules.md §5), in one place.

Every threshold is an exact :class:`~decimal.Decimal`: ANC 1.0 x10^9/L is CR-eligible, 5.0 % marrow blasts
is not < 5 %. The citations (``R_*``) are what each criterion and event names as its rule.
"""

from __future__ import annotations

from decimal import Decimal

# --- §5 thresholds (ELN 2022 Table 8), exact -------------------------------------------------------------
BM_BLASTS_LT = Decimal(5)  # CR/CRh/CRi/MLFS: BM blasts < 5 %; hematologic relapse: >= 5 %
ANC_CR = Decimal("1.0")  # CR: ANC >= 1.0 x10^9/L; CRi: residual neutropenia < 1.0
PLT_CR = Decimal(100)  # CR: platelets >= 100 x10^9/L; CRi: thrombocytopenia < 100
ANC_CRH = Decimal("0.5")  # CRh: ANC >= 0.5
PLT_CRH = Decimal(50)  # CRh: platelets >= 50
MLFS_CELLS = 200  # MLFS: >= 200 cells counted ...
MLFS_CELLULARITY = Decimal(10)  # ... or cellularity >= 10 %
PR_BLASTS = (Decimal(5), Decimal(25))  # PR: BM blasts 5-25 % ...
PR_FALL = Decimal("0.5")  # ... and a fall of >= 50 % from pretreatment
# --- progressive disease: ELN 2017 (Döhner et al., Blood 2017;129:424) Table 9 note, kept by ELN 2022;
# NOT a row of docs/clinical_rules.md §5 yet (confirm). >50 % rise of BM blasts (>= 15 points when baseline < 30 %),
# or >50 % rise of peripheral blasts to > 25 x10^9/L, or new extramedullary disease.
PD_RISE = Decimal("1.5")
PD_MIN_POINTS, PD_LOW_BASELINE = Decimal(15), Decimal(30)
PD_PB_ABS = Decimal(25)

RULE = "ELN 2022 Table 8 (docs/clinical_rules.md §5)"
R_CR, R_CRH, R_CRI, R_MLFS, R_PR = "§5 CR", "§5 CRh", "§5 CRi", "§5 MLFS", "§5 PR"
R_NR, R_REF, R_HREL, R_MREL = "§5 No response", "§5 Refractory", "§5 Hematologic relapse", "§5 MRD relapse"
R_MRD = "§5 MRD thresholds (ELN MRD 2021)"
R_PD = "ELN 2017 Table 9 progressive disease (not in docs/clinical_rules.md §5: confirm)"
R_UNIT = "data check: MRD units of consecutive results (project convention, docs/monitoring.md)"

REMISSION = ("CR", "CRh", "CRi")
#: Rank of the remission categories (a higher rank is a better response; a fall is a loss of response).
REMISSION_RANK = {"CR": 3, "CRh": 2, "CRi": 1}
#: Rank of the responses short of remission, within one treatment line.
PRE_REMISSION_RANK = {"PR": 1, "MLFS": 2}
