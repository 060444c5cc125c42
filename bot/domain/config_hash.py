"""The fingerprint of a configuration: which rules were in force when a gate opened.

    config_sha256(config)  # "9f2c...", recorded in the `gate.opened` audit record

It is the sha256 (hex) of the canonical JSON (sorted keys, no spaces, UTF-8) of the parsed
configuration, so two files that parse to the same rules share it, and any change to a gate
rule, an approver group or an identity changes it.
"""

from __future__ import annotations

import hashlib

from bot.config import Config
from bot.domain.audit import canonical_json


def config_sha256(config: Config) -> str:
    """The sha256 of the configuration as parsed (see the module docstring)."""
    body = canonical_json(config.model_dump(mode="json"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()
