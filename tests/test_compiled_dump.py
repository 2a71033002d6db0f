"""The compiled dump of flat response schemas (validation.CompiledDumpSchema) gives exactly what
marshmallow's own dump gives, for every combination of present and absent keys."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from conftest import create_department

import department_service
import models
import schemas
import validation

STAMP = datetime(2016, 12, 13, 17, 22, 19, 109000, tzinfo=UTC)

OPTIONAL_VALUES = {
    "description": ["", "desc"],
    "show_on_offline_form": [False, True],
    "request_tag_before_closing_chat": [True],
    "chat_closing_tags": [[], ["a", "b"]],
    "fallback_forward_department": ["", "x1"],
    "departments_allowed_to_forward": [["x2"]],
    "allow_receive_forward_offline": [False],
    "offline_message_channel_name": ["chan"],
    "num_agents": [0, 3],
    "archived": [False, True],
    "type": ["d"],
}


def _departments():
    keys = list(OPTIONAL_VALUES)
    for present in itertools.product([False, True], repeat=4):
        for offset in range(0, len(keys), 4):
            chosen = [k for k, on in zip(keys[offset : offset + 4], present, strict=False) if on]
            department = models.Department(
                id="d1", name="Name", email="e@x", enabled=True, show_on_registration=False,
                extra={"maxNumberSimultaneousChat": 3, "flag": False} if present[0] else {}, updated_at=STAMP,
            )
            for key in chosen:
                setattr(department, key, OPTIONAL_VALUES[key][-1])
            yield department


def _marshmallow_dump(schema, obj):
    """What marshmallow itself produces (OmitNoneSchema.dump runs Schema.dump and post_dump)."""
    return validation.OmitNoneSchema.dump(schema, obj)


@pytest.mark.parametrize("department", list(_departments()))
def test_department_dump_matches_marshmallow(department):
    schema = schemas.DepartmentSchema()
    compiled = schema.dump(department)
    assert compiled == _marshmallow_dump(schema, department)
    assert list(compiled) == list(_marshmallow_dump(schema, department))  # same key order too
    assert compiled["_updatedAt"] == "2016-12-13T17:22:19.109Z"


def test_link_and_agent_department_dumps_match_marshmallow():
    link = SimpleNamespace(
        id="l1", agent_id="u1", department_id="d1", username="john.doe", department_enabled=True,
        count=0, order=2, updated_at=STAMP, department_name="Support",
    )
    for schema in (schemas.DepartmentAgentSchema(), schemas.AgentDepartmentSchema()):
        assert schema.dump(link) == _marshmallow_dump(schema, link)
        assert schema.dump([link], many=True) == [_marshmallow_dump(schema, link)]


def test_schemas_with_fields_that_cannot_be_copied_are_refused():
    class Bad(validation.CompiledDumpSchema):
        computed = schemas.fields.Method("compute")

        def compute(self, obj):
            return 1

    with pytest.raises(TypeError, match="cannot be compiled"):
        Bad().dump(SimpleNamespace())


def test_rows_of_a_result_dump_as_marshmallow_dumps_them(app, client, auth):
    """The service dumps Core rows, read by column position indexed once per result: the same
    dicts, in the same key order, as marshmallow's dump of each row, one by one or as a list."""
    create_department(client, auth.admin, name="Plain")
    create_department(
        client, auth.admin, name="Full", description="d", chatClosingTags=["a"], departmentsAllowedToForward=[],
        showOnOfflineForm=True, customField="kept",
    )
    schema = schemas.DepartmentSchema()
    with app.extensions["db.sessionmaker"]() as session:
        rows = session.connection().execute(department_service.DEPARTMENT_ROW.order_by(models.Department.name)).all()
    expected = [_marshmallow_dump(schema, row) for row in rows]
    assert len(rows) == 2 and expected[0] != expected[1]
    for dumped in (schema.dump(rows, many=True), [schema.dump(row) for row in rows]):
        assert dumped == expected
        assert [list(item) for item in dumped] == [list(item) for item in expected]  # key order
