"""Which packages the wheel carries: bot, handlers, integrations, and the migrations.

The Alembic migrations live at the top of the repository (`migrations/`) and install as
`bot.migrations`, where `bot.migrate` finds them outside a checkout. Everything else about
the distribution is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(
            include=["bot*", "handlers*", "integrations*"], exclude=["*.__pycache__"]
        ),
        "bot.migrations",
        "bot.migrations.versions",
    ],
    package_dir={"bot.migrations": "migrations"},
)
