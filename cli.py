"""Command line (`flask --app app <command>`) and the start-up preparation of the database."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import Flask, current_app

import services

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would read "%" in a password as a placeholder.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(database_url: str) -> None:
    """Apply every pending migration (safe to run from several processes at once)."""
    command.upgrade(alembic_config(database_url), "head")


def prepare_database(app: Flask) -> None:
    """Migrate, then create the admin on an empty database. Running it twice changes nothing."""
    upgrade_database(app.config["DATABASE_URL"])
    with app.app_context():
        session = current_app.extensions["db.sessionmaker"]()
        with session:
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            generated = services.bootstrap_admin(
                session, app.config["ADMIN_USERNAME"], app.config["ADMIN_PASS"], app.config["ADMIN_EMAIL"]
            )
    if generated:
        # Printed once, on the start that created the admin; it is stored only as a hash.
        log.warning(
            "created admin user %r with generated password: %s (set ADMIN_PASS to choose one)",
            app.config["ADMIN_USERNAME"],
            generated,
        )


def register(app: Flask) -> None:
    @app.cli.command("upgrade-db")
    def upgrade_db() -> None:
        """Apply database migrations and create the admin user if there is none."""
        prepare_database(current_app._get_current_object())  # type: ignore[attr-defined]
        click.echo("database is at the latest revision")

    @app.cli.command("check-db")
    def check_db() -> None:
        """Fail when the models and the migrations disagree."""
        command.check(alembic_config(current_app.config["DATABASE_URL"]))
        click.echo("models and migrations agree")

