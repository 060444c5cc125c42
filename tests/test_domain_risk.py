"""The risk score: hand-checked scenarios, the glob semantics, and properties that hold for
any input (bounded, monotone where it should be, deterministic, storable)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import BusinessHours, RiskConfig, RiskLevels, load_config
from bot.domain.risk import (
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
    RiskAssessment,
    RiskFactor,
    RiskInputs,
    assess,
    path_matches,
    sensitive_paths,
    unknown_weights,
)
from bot.ports import Commit, Comparison, FileChange
from tests.helpers import EXAMPLE_CONFIG

BERLIN = ZoneInfo("Europe/Berlin")
SENSITIVE = [
    "migrations/**",
    "**/*.tf",
    "Dockerfile",
    "**/requirements*.txt",
    "**/package-lock.json",
]
CONFIG = RiskConfig(
    sensitive_paths=SENSITIVE,
    business_hours=BusinessHours(timezone="Europe/Berlin"),
)
TUESDAY_11_BERLIN = datetime(2026, 3, 10, 11, 0, tzinfo=BERLIN)
FRIDAY_17_BERLIN = datetime(2026, 3, 13, 17, 0, tzinfo=BERLIN)


def inputs(**changes: Any) -> RiskInputs:
    """A quiet baseline (one small commit, Tuesday morning, nothing else) with changes."""
    values: dict[str, Any] = {
        "additions": 0,
        "deletions": 0,
        "files_changed": 0,
        "paths": (),
        "commit_count": 1,
        "truncated": False,
        "days_since_last_production_deploy": 0.0,
        "deploy_at": TUESDAY_11_BERLIN,
        "environment": "production",
        "is_production": True,
    }
    values.update(changes)
    return RiskInputs(**values)


def points(assessment: RiskAssessment, name: str) -> int:
    return next((f.points for f in assessment.factors if f.name == name), 0)


def reason(assessment: RiskAssessment, name: str) -> str:
    return next(f.reason for f in assessment.factors if f.name == name)


def with_weights(**weights: float) -> RiskConfig:
    return CONFIG.model_copy(update={"weights": weights})


# ---- scenarios ------------------------------------------------------------------------------


def test_a_tiny_daytime_tuesday_change_is_low() -> None:
    result = assess(
        inputs(
            additions=10,
            deletions=2,
            files_changed=1,
            paths=("app/views.py",),
            days_since_last_production_deploy=0.5,
        ),
        config=CONFIG,
    )
    # size: 2.8 * (log10(13) + 0.5 * log10(2)) ** 1.5 = 3.98 -> 4; batch: 4 * log10(1.5) -> 1
    assert result.score == 5
    assert result.level == "low"
    assert result.factors == (
        RiskFactor(SIZE, 4, "Small change: 12 lines in 1 file"),
        RiskFactor(BATCH, 1, "1 commit and 12 hours since the last production deploy"),
    )


def test_a_big_friday_evening_migration_in_a_freeze_is_high_with_those_reasons_on_top() -> None:
    result = assess(
        inputs(
            additions=2_400,
            deletions=600,
            files_changed=40,
            paths=("migrations/0042_add_index.py", "app/models.py"),
            commit_count=12,
            days_since_last_production_deploy=4,
            deploy_at=FRIDAY_17_BERLIN,
            freeze_active=True,
        ),
        config=CONFIG,
    )
    assert result.level in ("high", "critical")
    # size 25 (capped), freeze 15, sensitive 15, timing 5 + 7 = 12 -> 10, batch 5.4 + 2.8 -> 8
    assert [(f.name, f.points) for f in result.factors] == [
        (SIZE, 25),
        (FREEZE, 15),
        (SENSITIVE_PATHS, 15),
        (TIMING, 10),
        (BATCH, 8),
    ]
    assert result.score == 73
    assert result.level == "high"
    top = [f.reason for f in result.top(3)]
    assert top == [
        "Very large change: 3,000 lines across 40 files",
        "A change freeze is active for production",
        "Touches a sensitive path: migrations/0042_add_index.py",
    ]
    assert reason(result, TIMING) == (
        "Deployed on Friday afternoon, outside business hours (17:00 Europe/Berlin)"
    )


def test_everything_at_once_is_capped_at_100_with_every_reason() -> None:
    result = assess(
        inputs(
            additions=30_000,
            deletions=5_000,
            files_changed=300,
            paths=(
                "migrations/0042_add_index.py",
                "Dockerfile",
                "svc/Dockerfile",
                "infra/main.tf",
                "web/package-lock.json",
            ),
            commit_count=250,
            truncated=True,
            days_since_last_production_deploy=12,
            ci_failed_jobs=2,
            ci_retried_jobs=1,
            deploy_at=datetime(2026, 3, 14, 22, 10, tzinfo=BERLIN),  # a Saturday
            freeze_active=True,
            recent_deploys=10,
            recent_failures=3,
            last_deploy_failed=True,
            unknown="GitHub did not list the pull requests of the commits (GET pulls: 403)",
        ),
        config=CONFIG,
    )
    assert result.score == 100
    assert result.level == "critical"
    assert {f.name for f in result.factors} == set(FACTOR_NAMES)
    assert reason(result, SENSITIVE_PATHS) == (
        "Touches sensitive paths: migrations/0042_add_index.py, Dockerfile, svc/Dockerfile"
        " (+2 more)"
    )
    assert reason(result, SIZE) == (
        "Very large change: at least 35,000 lines across at least 300 files"
    )
    assert reason(result, BATCH) == (
        "At least 250 commits and 12 days since the last production deploy"
    )
    assert reason(result, CI) == "2 CI jobs failed and 1 was retried before this run succeeded"
    assert reason(result, TIMING) == "Outside business hours (Saturday 22:10 Europe/Berlin)"
    assert reason(result, FAILURE_RATE) == "3 of the last 10 deploys of this service failed (30%)"
    assert reason(result, LAST_DEPLOY) == "The previous deploy failed or was rolled back"
    assert points(result, TRUNCATED) == 2
    assert points(result, FAILURE_RATE) == 9  # 30 * 0.3
    assert points(result, CI) == 10  # 2 * 4 + 1 * 2
    assert points(result, SENSITIVE_PATHS) == 25  # 15 + 4 * 5 = 35, capped


def test_size_points_grow_with_the_log_of_the_change() -> None:
    def size(lines: int, files: int) -> int:
        return points(assess(inputs(additions=lines, files_changed=files), config=CONFIG), SIZE)

    assert [size(10, 1), size(100, 3), size(1_000, 15), size(10_000, 50)] == [4, 10, 19, 25]
    assert size(0, 0) == 0


def test_the_batch_grows_with_commits_and_age_and_is_empty_without_commits() -> None:
    def batch(commits: int, days: float | None) -> RiskAssessment:
        return assess(
            inputs(commit_count=commits, days_since_last_production_deploy=days), config=CONFIG
        )

    assert points(batch(1, 0), BATCH) == 0
    assert points(batch(0, 300), BATCH) == 0
    assert points(batch(14, 12), BATCH) == 10  # 5 * log10(14) + 4 * log10(13) = 10.2
    assert reason(batch(14, 12), BATCH) == "14 commits and 12 days since the last production deploy"
    assert points(batch(1_000, 365), BATCH) == 15  # capped
    first = batch(30, None)
    assert points(first, BATCH) == 7  # 5 * log10(30): no age for a first deploy
    assert reason(first, BATCH) == "30 commits, and nothing has been deployed to production yet"


def test_ci_signals() -> None:
    def ci(failed: int, retried: int) -> RiskAssessment:
        return assess(inputs(ci_failed_jobs=failed, ci_retried_jobs=retried), config=CONFIG)

    assert points(ci(0, 0), CI) == 0
    assert (points(ci(1, 0), CI), reason(ci(1, 0), CI)) == (
        4,
        "1 CI job failed before this run succeeded",
    )
    assert (points(ci(0, 3), CI), reason(ci(0, 3), CI)) == (6, "3 CI jobs were retried")
    assert points(ci(5, 5), CI) == 10


def test_the_failure_rate_needs_three_recent_deploys() -> None:
    def rate(deploys: int, failures: int) -> int:
        return points(
            assess(inputs(recent_deploys=deploys, recent_failures=failures), config=CONFIG),
            FAILURE_RATE,
        )

    assert rate(2, 2) == 0
    assert rate(3, 0) == 0
    assert rate(3, 1) == 10  # 30 / 3
    assert rate(10, 3) == 9
    assert rate(4, 4) == 15  # capped


def test_non_production_environments_score_the_same() -> None:
    production = inputs(additions=500, files_changed=9, freeze_active=True)
    staging = dataclasses.replace(production, environment="staging", is_production=False)
    ours, theirs = assess(production, config=CONFIG), assess(staging, config=CONFIG)
    assert ours.score == theirs.score
    assert reason(theirs, FREEZE) == "A change freeze is active for staging"


def test_the_default_config_scores_without_sensitive_paths() -> None:
    result = assess(inputs(paths=("migrations/0001.py",), additions=5), config=RiskConfig())
    assert points(result, SENSITIVE_PATHS) == 0


# ---- sensitive path globs (.gitignore semantics) ---------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("migrations/**", "migrations/0001.py", True),
        ("migrations/**", "migrations/a/b.sql", True),
        ("migrations/**", "app/migrations.py", False),
        ("migrations/**", "app/migrations/0001.py", False),  # a slash anchors at the root
        ("migrations/**", "migrations", False),  # the directory itself is no changed file
        ("**/*.tf", "main.tf", True),
        ("**/*.tf", "infra/x/main.tf", True),
        ("**/*.tf", "main.tfvars", False),
        ("Dockerfile", "Dockerfile", True),
        ("Dockerfile", "svc/Dockerfile", True),  # no slash: any directory
        ("Dockerfile", "Dockerfile.dev", False),
        ("/Dockerfile", "Dockerfile", True),
        ("/Dockerfile", "svc/Dockerfile", False),  # a leading slash: the root only
        ("**/requirements*.txt", "requirements-dev.txt", True),
        ("**/requirements*.txt", "a/requirements.txt", True),
        ("**/requirements*.txt", "a/requirements/base.txt", False),  # * stays in one segment
        ("**/package-lock.json", "web/app/package-lock.json", True),
        ("*.sql", "db/schema.sql", True),
        ("db/*.sql", "db/schema.sql", True),
        ("db/*.sql", "db/old/schema.sql", False),
        ("db/**/*.sql", "db/schema.sql", True),  # **/ may be zero directories
        ("db/**/*.sql", "db/old/2020/schema.sql", True),
        ("migrations", "migrations/0001.py", True),  # a matching directory covers its files
        ("migrations/", "app/migrations/0001.py", True),  # trailing slash: directories only
        ("migrations/", "migrations", False),
        ("config/?.yaml", "config/a.yaml", True),
        ("config/?.yaml", "config/ab.yaml", False),
        ("a?b", "a/b", False),  # ? never matches a slash
        ("deploy/[a-c]*.yml", "deploy/b-prod.yml", True),
        ("deploy/[!a-c]*.yml", "deploy/b-prod.yml", False),
        ("deploy/[!a-c]*.yml", "deploy/d-prod.yml", True),
        ("a[/]b", "a/b", False),
        ("weird[name", "weird[name", True),  # an unclosed bracket is literal
        (r"\*.md", "*.md", True),
        (r"\*.md", "README.md", False),
        ("app.py", "app_py", False),  # a dot is a dot
        ("Dockerfile", "dockerfile", False),  # case-sensitive, like git
        ("", "anything", False),
    ],
)
def test_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    assert path_matches(pattern, path) is expected


def test_a_negated_pattern_unmarks_what_an_earlier_one_marked() -> None:
    patterns = ["migrations/**", "!migrations/README.md"]
    paths = ("migrations/README.md", "migrations/0002.py", "app.py", "migrations/0002.py")
    assert sensitive_paths(paths, patterns) == ("migrations/0002.py",)


def test_sensitive_paths_are_counted_once_and_listed_in_order() -> None:
    result = assess(
        inputs(paths=("Dockerfile", "infra/main.tf", "Dockerfile", "README.md")), config=CONFIG
    )
    assert points(result, SENSITIVE_PATHS) == 20  # 15 + 5
    assert reason(result, SENSITIVE_PATHS) == "Touches sensitive paths: Dockerfile, infra/main.tf"


# ---- business hours and time zones -------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "timing"),
    [
        # Berlin moves to summer time on Sunday 2026-03-29: 07:30 UTC is 08:30 before, 09:30 after.
        (datetime(2026, 3, 23, 7, 30, tzinfo=UTC), 5),
        (datetime(2026, 3, 30, 7, 30, tzinfo=UTC), 0),
        # 15:30 UTC: 16:30 in winter (inside), 17:30 in summer (outside).
        (datetime(2026, 3, 26, 15, 30, tzinfo=UTC), 0),
        (datetime(2026, 4, 2, 15, 30, tzinfo=UTC), 5),
        # Back to winter time on Sunday 2026-10-25: 07:30 UTC is 09:30 before, 08:30 after.
        (datetime(2026, 10, 19, 7, 30, tzinfo=UTC), 0),
        (datetime(2026, 10, 26, 7, 30, tzinfo=UTC), 5),
        # Friday 12:30 UTC: 13:30 in winter (not yet the afternoon), 14:30 in summer.
        (datetime(2026, 3, 27, 12, 30, tzinfo=UTC), 0),
        (datetime(2026, 4, 3, 12, 30, tzinfo=UTC), 7),
        # 17:00 at UTC+3 is 16:00 in Berlin (summer time): Friday afternoon, inside hours.
        (datetime(2026, 10, 23, 17, 0, tzinfo=timezone(timedelta(hours=3))), 7),
        # Sunday noon during the switch back.
        (datetime(2026, 10, 25, 11, 0, tzinfo=UTC), 5),
    ],
)
def test_business_hours_follow_the_berlin_clock_across_dst(moment: datetime, timing: int) -> None:
    assert points(assess(inputs(deploy_at=moment), config=CONFIG), TIMING) == timing


def test_timing_reasons_show_the_local_time() -> None:
    summer_evening = assess(
        inputs(deploy_at=datetime(2026, 10, 23, 20, 10, tzinfo=UTC)), config=CONFIG
    )
    assert reason(summer_evening, TIMING) == (
        "Deployed on Friday evening, outside business hours (22:10 Europe/Berlin)"
    )
    friday = assess(inputs(deploy_at=datetime(2026, 10, 30, 15, 30, tzinfo=UTC)), config=CONFIG)
    assert reason(friday, TIMING) == "Deployed on Friday afternoon (16:30 Europe/Berlin)"
    night = assess(inputs(deploy_at=datetime(2026, 3, 10, 21, 10, tzinfo=UTC)), config=CONFIG)
    assert reason(night, TIMING) == "Outside business hours (22:10 Europe/Berlin)"


# ---- weights and levels ---------------------------------------------------------------------


def test_weight_zero_removes_a_factor() -> None:
    frozen = inputs(freeze_active=True, additions=200, files_changed=4)
    assert points(assess(frozen, config=CONFIG), FREEZE) == 15
    without = assess(frozen, config=with_weights(freeze=0))
    assert FREEZE not in {f.name for f in without.factors}
    assert without.score == assess(frozen, config=CONFIG).score - 15


def test_weight_two_doubles_points_up_to_the_cap() -> None:
    change = inputs(
        additions=100,
        files_changed=3,
        freeze_active=True,
        commit_count=14,
        days_since_last_production_deploy=12,
    )
    plain, doubled = (
        assess(change, config=CONFIG),
        assess(change, config=with_weights(size=2, freeze=2, batch=2)),
    )
    assert points(plain, SIZE) == 10 and points(doubled, SIZE) == 20
    assert points(plain, FREEZE) == 15 and points(doubled, FREEZE) == 30
    assert points(plain, BATCH) == 10 and points(doubled, BATCH) == CAPS[BATCH]  # 20 -> 15
    assert reason(doubled, SIZE) == reason(plain, SIZE)


def test_weights_scale_before_the_cap() -> None:
    huge = inputs(additions=1_000_000, files_changed=2_000)  # size 2.8 * 7.65 ** 1.5 = 59
    assert points(assess(huge, config=CONFIG), SIZE) == 25
    assert points(assess(huge, config=with_weights(size=0.5)), SIZE) == 25
    assert points(assess(huge, config=with_weights(size=0.25)), SIZE) == 15  # 14.75


def test_unknown_weight_names_are_ignored_and_listed() -> None:
    config = with_weights(szie=3)
    change = inputs(additions=100, files_changed=3)
    assert assess(change, config=config) == assess(change, config=CONFIG)
    assert unknown_weights(config) == ["szie"]
    assert unknown_weights(CONFIG) == []


def test_levels_follow_the_thresholds_of_the_example_config() -> None:
    config = load_config(EXAMPLE_CONFIG).risk
    assert (config.levels.medium, config.levels.high, config.levels.critical) == (30, 60, 85)

    def expected(score: int) -> str:
        for level, threshold in (("critical", 85), ("high", 60), ("medium", 30)):
            if score >= threshold:
                return level
        return "low"

    scenarios = [
        inputs(additions=12, files_changed=1),
        inputs(  # size 10 + freeze 15 + batch 10 = 35
            additions=100,
            files_changed=3,
            freeze_active=True,
            commit_count=14,
            days_since_last_production_deploy=12,
        ),
        inputs(  # size 23 + freeze 15 + sensitive 15 + batch 10 = 63
            additions=2_000,
            files_changed=30,
            freeze_active=True,
            paths=("Dockerfile",),
            commit_count=14,
            days_since_last_production_deploy=12,
        ),
        inputs(  # sensitive 25 + size 25 + freeze 15 + last deploy 10 + timing 10 = 85, exactly
            additions=9_000,
            files_changed=90,
            freeze_active=True,
            paths=("Dockerfile", "migrations/1.py", "infra/main.tf"),
            deploy_at=FRIDAY_17_BERLIN,
            last_deploy_failed=True,
        ),
    ]
    results = [assess(s, config=config) for s in scenarios]
    assert [r.score for r in results] == [4, 35, 63, 85]
    assert [r.level for r in results] == ["low", "medium", "high", "critical"]
    assert all(r.level == expected(r.score) for r in results)


def test_custom_thresholds_change_the_level_not_the_score() -> None:
    change = inputs(additions=12, files_changed=1)
    strict = CONFIG.model_copy(update={"levels": RiskLevels(medium=3, high=4, critical=5)})
    assert assess(change, config=CONFIG).score == assess(change, config=strict).score == 4
    assert assess(change, config=CONFIG).level == "low"
    assert assess(change, config=strict).level == "high"


# ---- values -----------------------------------------------------------------------------------


def test_inputs_from_a_comparison() -> None:
    comparison = Comparison(
        commits=(Commit(sha="a" * 40, message="Add index", author="Ada"),),
        files=(
            FileChange(path="migrations/0042_add_index.py", additions=30, deletions=0),
            FileChange(
                path="db/legacy/0001.py",
                additions=0,
                deletions=0,
                status="renamed",
                previous_path="migrations/0001.py",
            ),
            FileChange(path="app/models.py", additions=10, deletions=5),
        ),
        total_commits=312,
        truncated=True,
    )
    built = RiskInputs.from_comparison(
        comparison,
        days_since_last_production_deploy=2.0,
        deploy_at=TUESDAY_11_BERLIN,
        environment="production",
        is_production=True,
        freeze_active=True,
    )
    assert (built.additions, built.deletions, built.files_changed) == (40, 5, 3)
    assert built.paths == (
        "migrations/0042_add_index.py",
        "db/legacy/0001.py",
        "migrations/0001.py",
        "app/models.py",
    )
    assert built.commit_count == 312
    assert built.truncated is True
    assert built.freeze_active is True
    result = assess(built, config=CONFIG)
    assert points(result, SENSITIVE_PATHS) == 20


@pytest.mark.parametrize(
    "changes",
    [
        {"additions": -1},
        {"commit_count": -1},
        {"recent_deploys": 2, "recent_failures": 3},
        {"deploy_at": datetime(2026, 3, 10, 11, 0)},  # naive
        {"days_since_last_production_deploy": float("nan")},
    ],
)
def test_inputs_refuse_impossible_values(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        inputs(**changes)


def test_top_and_the_stored_form() -> None:
    result = assess(
        inputs(additions=500, files_changed=5, freeze_active=True, last_deploy_failed=True),
        config=CONFIG,
    )
    assert [f.name for f in result.top(2)] == [FREEZE, SIZE]
    assert result.top(0) == ()
    stored = result.to_dict()
    assert stored == {
        "score": result.score,
        "level": result.level,
        "factors": [
            {"name": f.name, "points": f.points, "reason": f.reason} for f in result.factors
        ],
    }
    assert RiskAssessment.from_dict(json.loads(json.dumps(stored))) == result


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"score": 101, "level": "low", "factors": []},
        {"score": True, "level": "low", "factors": []},
        {"score": 10, "level": "severe", "factors": []},
        {"score": 10, "level": "low", "factors": None},
        {"score": 10, "level": "low", "factors": [{"name": "size", "points": -1, "reason": "x"}]},
        {"score": 10, "level": "low", "factors": [{"name": "size", "points": 3}]},
        {"score": 10, "level": "low", "factors": ["size"]},
    ],
)
def test_from_dict_refuses_what_to_dict_never_writes(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RiskAssessment.from_dict(data)


# ---- properties -------------------------------------------------------------------------------

PATH_POOL = [
    "app/main.py",
    "app/migrations.py",
    "migrations/0001_init.py",
    "migrations/a/b.sql",
    "Dockerfile",
    "svc/Dockerfile",
    "infra/x/main.tf",
    "requirements.txt",
    "a/requirements-dev.txt",
    "web/package-lock.json",
    "README.md",
]
ZONES = [UTC, BERLIN, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")]

paths_strategy = st.lists(
    st.sampled_from(PATH_POOL)
    | st.builds(
        "{}/{}.{}".format,
        st.lists(st.sampled_from(["src", "db", "infra", "migrations", "a"]), max_size=3).map(
            "/".join
        ),
        st.sampled_from(["main", "requirements", "Dockerfile", "x"]),
        st.sampled_from(["py", "tf", "txt", "sql"]),
    ).map(lambda path: path.lstrip("/")),
    max_size=12,
).map(tuple)

configs = st.builds(
    lambda weights, sensitive: CONFIG.model_copy(
        update={"weights": weights, "sensitive_paths": sensitive}
    ),
    st.dictionaries(
        st.sampled_from([*FACTOR_NAMES, "unknown"]),
        st.floats(min_value=0, max_value=4, allow_nan=False),
        max_size=4,
    ),
    st.sampled_from([SENSITIVE, [], ["**"], ["migrations/", "!migrations/a/**"]]),
)


@st.composite
def risk_inputs(draw: st.DrawFn) -> RiskInputs:
    recent = draw(st.integers(0, 40))
    return RiskInputs(
        additions=draw(st.integers(0, 2_000_000)),
        deletions=draw(st.integers(0, 2_000_000)),
        files_changed=draw(st.integers(0, 10_000)),
        paths=draw(paths_strategy),
        commit_count=draw(st.integers(0, 5_000)),
        truncated=draw(st.booleans()),
        days_since_last_production_deploy=draw(
            st.none() | st.floats(min_value=-1, max_value=3_000, allow_nan=False)
        ),
        ci_failed_jobs=draw(st.integers(0, 20)),
        ci_retried_jobs=draw(st.integers(0, 20)),
        deploy_at=draw(
            st.datetimes(
                min_value=datetime(2020, 1, 1),
                max_value=datetime(2035, 12, 31),
                timezones=st.sampled_from(ZONES),
            )
        ),
        environment=draw(st.sampled_from(["production", "staging", ""])),
        is_production=draw(st.booleans()),
        freeze_active=draw(st.booleans()),
        recent_deploys=recent,
        recent_failures=draw(st.integers(0, recent)),
        last_deploy_failed=draw(st.booleans()),
        unknown=draw(st.none() | st.just("its commits could not be listed (GET compare: 502)")),
    )


PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(risk_inputs(), configs)
def test_the_score_is_the_capped_sum_of_sorted_capped_factors(
    risk: RiskInputs, config: RiskConfig
) -> None:
    result = assess(risk, config=config)
    assert 0 <= result.score <= 100
    assert result.score == min(100, sum(f.points for f in result.factors))
    assert result.level == config.levels.level_for(result.score)
    assert all(0 < f.points <= CAPS[f.name] and f.reason for f in result.factors)
    assert len({f.name for f in result.factors}) == len(result.factors)
    assert list(result.factors) == sorted(result.factors, key=lambda f: (-f.points, f.name))


@PROPERTY
@given(risk_inputs(), configs, st.integers(0, 1_000_000))
def test_more_changed_lines_never_lower_the_size_points(
    risk: RiskInputs, config: RiskConfig, more: int
) -> None:
    bigger = dataclasses.replace(risk, additions=risk.additions + more)
    assert points(assess(bigger, config=config), SIZE) >= points(assess(risk, config=config), SIZE)


@PROPERTY
@given(risk_inputs(), configs, st.data())
def test_removing_a_path_never_raises_the_score(
    risk: RiskInputs, config: RiskConfig, data: st.DataObject
) -> None:
    if not risk.paths:
        return
    index = data.draw(st.integers(0, len(risk.paths) - 1))
    fewer = dataclasses.replace(risk, paths=risk.paths[:index] + risk.paths[index + 1 :])
    assert assess(fewer, config=config).score <= assess(risk, config=config).score
    assert points(assess(fewer, config=config), SENSITIVE_PATHS) <= points(
        assess(risk, config=config), SENSITIVE_PATHS
    )


@PROPERTY
@given(risk_inputs(), configs)
def test_adding_a_commit_never_lowers_the_batch_points(
    risk: RiskInputs, config: RiskConfig
) -> None:
    more = dataclasses.replace(risk, commit_count=risk.commit_count + 1)
    assert points(assess(more, config=config), BATCH) >= points(assess(risk, config=config), BATCH)


@PROPERTY
@given(risk_inputs(), configs)
def test_the_same_inputs_give_the_same_assessment(risk: RiskInputs, config: RiskConfig) -> None:
    copy = dataclasses.replace(risk)
    assert assess(risk, config=config) == assess(copy, config=config)
    assert assess(risk, config=config).to_dict() == assess(risk, config=config).to_dict()


@PROPERTY
@given(risk_inputs(), configs)
def test_to_dict_and_from_dict_round_trip(risk: RiskInputs, config: RiskConfig) -> None:
    result = assess(risk, config=config)
    assert RiskAssessment.from_dict(json.loads(json.dumps(result.to_dict()))) == result


# --- a release that could not be read in full ---------------------------------------------------


def test_a_release_that_could_not_be_read_is_not_low_risk_and_says_why() -> None:
    why = "its commits could not be listed (GET /repos/acme/checkout/compare/a...b: 503)"
    result = assess(inputs(commit_count=0, unknown=why), config=CONFIG)

    assert result.level == "medium"
    assert points(result, UNKNOWN_CHANGES) == 30
    assert reason(result, UNKNOWN_CHANGES) == (
        f"The changes could not be read in full ({why}): the score counts only what is known"
    )
    assert result.unknown == why
    stored = result.to_dict()
    assert stored["unknown"] == why
    assert RiskAssessment.from_dict(stored) == result


def test_the_unknown_stays_known_whatever_the_weights_make_of_its_points() -> None:
    quiet = CONFIG.model_copy(update={"weights": {UNKNOWN_CHANGES: 0}})
    result = assess(inputs(commit_count=0, unknown="its commits could not be listed"), config=quiet)

    assert result.level == "low" and points(result, UNKNOWN_CHANGES) == 0
    assert result.unknown == "its commits could not be listed"  # gates still see it


def test_a_release_read_in_full_stores_no_unknown() -> None:
    result = assess(inputs(), config=CONFIG)

    assert result.unknown is None and "unknown" not in result.to_dict()
    with pytest.raises(ValueError, match="unknown"):
        RiskAssessment.from_dict({**result.to_dict(), "unknown": 3})
