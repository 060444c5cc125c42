"""The risk score of a deployment: deterministic, explainable, configurable.

    inputs = RiskInputs.from_comparison(comparison, deploy_at=now, environment="production",
                                        is_production=True, days_since_last_production_deploy=3.5)
    assessment = assess(inputs, config=config.risk)
    assessment.score, assessment.level       # 42, "medium"
    [f.reason for f in assessment.top(3)]    # one plain-English sentence per factor

The model is additive. Each factor below looks at one thing a release manager worries
about and adds points with a one-sentence reason; a factor that adds nothing is left out.
Each factor has a cap, so no single worry drowns the others, and the score is the sum,
capped at 100. The level comes from `risk.levels` (`RiskLevels.level_for`).

| factor (`risk.weights` key) | points                                                   | cap |
|-----------------------------|----------------------------------------------------------|-----|
| `size`                      | 2.8 * (log10(1 + lines) + 0.5 * log10(1 + files)) ** 1.5 | 25  |
|                             | (10 lines/1 file: 4, 100/3: 10, 1,000/15: 19, 10k: cap)  |     |
| `batch`                     | 5 * log10(commits) + 4 * log10(1 + days since the last   | 15  |
|                             | production deploy); 0 when there are no commits          |     |
| `sensitive_paths`           | 15 for the first matching path, 5 for each further one   | 25  |
| `ci`                        | 4 per failed job, 2 per retried job                      | 10  |
| `timing`                    | 5 outside business hours, 7 on Friday from 14:00 local   | 10  |
| `freeze`                    | 15 while a change freeze is active                       | 30  |
| `failure_rate`              | 30 * failed / recent deploys (needs >= 3 recent deploys) | 15  |
| `last_deploy`               | 10 when the previous deploy failed or was rolled back    | 20  |
| `truncated`                 | 2 when the code host capped the lists (counts are lower  | 4   |
|                             | bounds); it is there so the reason is shown              |     |
| `unknown_changes`           | 30 when the release could not be read in full (commits   | 60  |
|                             | or who merged and approved them unknown): the score      |     |
|                             | counts only what is known                                |     |

`risk.weights` multiplies a factor's points before its cap applies: weight 0 removes the
factor, weight 2 doubles it up to the cap (the flat factors' caps leave room for that).
Weight names not in `FACTOR_NAMES` are ignored here; `unknown_weights(config)` lists them.
Points are rounded half up (never banker's rounding), so equal inputs give equal output.

Sensitive paths (`risk.sensitive_paths`) follow .gitignore semantics; `paths` spells them out.

Non-production environments get the same factors and points: the score describes the change
and the moment, not the target. Freezes are an input (whoever builds `RiskInputs` decides
whether one covers this environment), and gates decide what each level demands per
environment. `environment` only appears in the freeze reason.

A release that could not be read in full carries why in `RiskAssessment.unknown`, whatever
its weights make of the `unknown_changes` factor: gates never approve such a release
automatically.

The rules, one module each:

    inputs    RiskInputs: what the score looks at, built from the code host's comparison
    factors   factor names, points, caps and the half-up rounding
    paths     the .gitignore-style sensitive-path globs
    reasons   each factor's points and its sentence for the release manager
    scoring   assess(): weights, caps, the sum, the level; RiskAssessment and how it is stored

Pure: no I/O and no clock. The deploy time is an input.
"""

from __future__ import annotations

from bot.domain.risk.factors import (
    BATCH,
    CAPS,
    CI,
    FACTOR_NAMES,
    FAILURE_RATE,
    FREEZE,
    LAST_DEPLOY,
    SENSITIVE_PATHS,
    SIZE,
    TIMING,
    TRUNCATED,
    UNKNOWN_CHANGES,
)
from bot.domain.risk.inputs import RiskInputs
from bot.domain.risk.paths import glob_to_regex, path_matches, sensitive_paths
from bot.domain.risk.scoring import RiskAssessment, RiskFactor, assess, unknown_weights

__all__ = [
    "BATCH",
    "CAPS",
    "CI",
    "FACTOR_NAMES",
    "FAILURE_RATE",
    "FREEZE",
    "LAST_DEPLOY",
    "SENSITIVE_PATHS",
    "SIZE",
    "TIMING",
    "TRUNCATED",
    "UNKNOWN_CHANGES",
    "RiskAssessment",
    "RiskFactor",
    "RiskInputs",
    "assess",
    "glob_to_regex",
    "path_matches",
    "sensitive_paths",
    "unknown_weights",
]
