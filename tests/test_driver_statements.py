"""db.DriverStatement: the small statements every request runs, sent to the driver without
SQLAlchemy's execution path, must answer and fail exactly as that path would (docs/performance.md,
"Small statements on the driver")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, exc, insert, select

import db
from models import LoginToken, Setting, WriteContext


def _both(connection, statement, parameters):
    through_sqlalchemy = [tuple(row) for row in connection.execute(statement, parameters).all()]
    return db.DriverStatement(statement).execute(connection, parameters), through_sqlalchemy


def test_rows_and_parameters_are_converted_by_the_statements_own_types(app, auth):
    assert auth.admin  # logged in: a login token exists
    since = datetime(1970, 1, 1, tzinfo=UTC)
    created = select(LoginToken.user_id, LoginToken.created_at).where(
        LoginToken.created_at > bindparam("since", type_=LoginToken.__table__.c.created_at.type)
    )
    with app.extensions["db.engine"].connect() as connection:
        driver, through_sqlalchemy = _both(connection, created, {"since": since})
        assert driver == through_sqlalchemy and driver  # the admin's login token at least
        assert all(row[1].tzinfo is not None for row in driver)  # aware UTC dates, as models.UTCDateTime gives
        assert _both(connection, created, {"since": datetime.now(UTC) + timedelta(days=1)}) == ([], [])

        driver, through_sqlalchemy = _both(connection, select(Setting.id, Setting.value), {})
        assert driver == through_sqlalchemy  # JSON values decoded
        assert any(isinstance(value, (int, bool, list, dict)) for _id, value in driver)


def test_driver_errors_are_raised_as_sqlalchemys_exceptions(app):
    statement = db.DriverStatement(insert(WriteContext).values(id=bindparam("id"), actor=None, tx="t"))
    with app.extensions["db.engine"].connect() as connection:
        transaction = connection.begin()
        statement.execute(connection, {"id": 7})
        with pytest.raises(exc.IntegrityError) as raised:
            statement.execute(connection, {"id": 7})  # the same primary key again
        assert "write_context" in str(raised.value)  # the statement is named, as SQLAlchemy names it
        transaction.rollback()


def test_a_statement_whose_sql_changes_per_execution_is_refused_before_anything_is_sent(app):
    # An IN list is rendered by SQLAlchemy at each execution; a compiled plan would send its placeholder.
    expanding = select(LoginToken.user_id).where(LoginToken.user_id.in_(bindparam("ids", expanding=True)))
    literal_list = select(LoginToken.user_id).where(LoginToken.user_id.in_(["a", "b"]))
    with app.extensions["db.engine"].connect() as connection:
        with pytest.raises(ValueError, match="IN list"):
            db.DriverStatement(expanding).execute(connection, {"ids": ["a"]})
        with pytest.raises(ValueError, match="IN list"):
            db.DriverStatement(literal_list).execute(connection, {})
