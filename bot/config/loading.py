"""Reading `releasebot.yaml`: YAML in, a validated `Config` out, or every problem by YAML path.

    config = load_config("releasebot.yaml")      # or parse_config(already_parsed_data)

Validation never stops at the first problem when it can go on: `ConfigError.problems` lists
them all, each as `"<yaml path>: <message>"`, for example
`services.checkout.environments[1].gate.approvals: must be >= 1`. A key given twice in one
mapping is refused rather than silently overwritten.
"""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import CoreModeRef, CoreRef, DefsRef, GenerateJsonSchema

from bot.config.base import render_path
from bot.config.document import Config
from bot.config.gates import GatePolicy, ScheduledFreeze
from bot.config.messages import located
from bot.config.types import format_duration
from bot.domain.errors import ConfigError


def parse_config(data: object) -> Config:
    """Validate already-parsed YAML; raise ConfigError listing every problem with its path."""
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_problems(error)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError on any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise ConfigError([f"{path}: cannot read the file ({reason})"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.MarkedYAMLError as error:
        raise ConfigError([f"{path}: {_describe_yaml_error(error)}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: invalid YAML: {error}"]) from None
    if data is None:
        raise ConfigError([f"{path}: the file is empty"])
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{path}: the top level must be a mapping (slack:, services:, ...), "
                f"not {_yaml_kind(data)}"
            ]
        )
    return parse_config(data)


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of `releasebot.yaml`, for editors and `releasebot config schema`."""
    schema = Config.model_json_schema(schema_generator=_SchemaGenerator)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# The `$defs` names the published schema has always given these models.
_SCHEMA_NAMES: dict[type[BaseModel], str] = {GatePolicy: "Gate", ScheduledFreeze: "Freeze"}


class _SchemaGenerator(GenerateJsonSchema):
    """Writes defaults the way a user would write them in the YAML ("4h", "09:00")."""

    def get_defs_ref(self, core_mode_ref: CoreModeRef) -> DefsRef:
        core_ref, mode = core_mode_ref
        for model, name in _SCHEMA_NAMES.items():
            qualified = f"{model.__module__}.{model.__qualname__}:"
            if core_ref.startswith(qualified):
                core_ref = CoreRef(f"{model.__module__}.{name}:{core_ref[len(qualified) :]}")
        return super().get_defs_ref((core_ref, mode))

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        if isinstance(dft, time):
            return f"{dft:%H:%M}"
        return super().encode_default(dft)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key '{key}' twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"invalid YAML{where}: {error.problem or error.context or 'cannot parse it'}"


def _yaml_kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _problems(error: ValidationError) -> list[str]:
    rendered = [f"{render_path(loc)}: {message}" for loc, message in located(error, Config)]
    return list(dict.fromkeys(rendered))
