"""General ability of a model state (paper §5.5): a two-choice probe and drift on ordinary text.

The probe (physical commonsense and NLI, 12 languages, ``assets/ability/``) is scored by the
mean log-probability per answer token of each choice; drift is the mean KL divergence between
the unedited and the current model's next-token distributions over ordinary sentences.
"""

from .drift import DriftReference, build_reference, coarse_kl, drift_per_position
from .items import (
    NLI_LABELS,
    TASKS,
    ProbeItem,
    ProbeSet,
    Templates,
    load_bundled_probe,
    load_probe_file,
    load_sentences,
    load_templates,
)
from .measure import (
    QUICK_ITEMS,
    QUICK_SENTENCES,
    AbilityConfig,
    AbilityReport,
    DriftScore,
    ability_summary,
    measure_ability,
    measure_unedited,
)
from .probe import ItemResult, mean_token_logprob, pick, score_items

__all__ = [
    "AbilityConfig",
    "AbilityReport",
    "DriftReference",
    "DriftScore",
    "ItemResult",
    "NLI_LABELS",
    "QUICK_ITEMS",
    "QUICK_SENTENCES",
    "ProbeItem",
    "ProbeSet",
    "TASKS",
    "Templates",
    "ability_summary",
    "build_reference",
    "coarse_kl",
    "drift_per_position",
    "load_bundled_probe",
    "load_probe_file",
    "load_sentences",
    "load_templates",
    "mean_token_logprob",
    "measure_ability",
    "measure_unedited",
    "pick",
    "score_items",
]
