"""releasebot: a Slack release bot for continuous deployment.

`__version__` is the one place the version is written; the distribution's metadata and
`releasebot --version` read it from here.
"""

from __future__ import annotations

__version__ = "0.1.0"
