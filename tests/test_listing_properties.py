"""Properties of `GET livechat/department` (docs/compatibility.md §2.1, §3.8), with hypothesis.

For random sets of departments (names in mixed case, Unicode, duplicates, empty; some disabled,
some archived) and random `text`/`enabled`/`showArchived`/`sort`/`offset`/`count`:
- the whole list (`count=0`, any `excludeDepartmentId`) is exactly the matching departments, in
  the requested order with `_id` breaking ties, and `total` is its size;
- the pages, one after the other, concatenate to that whole, and any page is its slice.
The model follows Rocket.Chat: `text` is a case-insensitive (casefold) literal substring,
names compare by code point (byte-wise), and a missing value sorts before any other, as in MongoDB.
Everything goes through the API (the test client), on both databases.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any

from conftest import API, department_fields
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

settings.register_profile(
    "ci",
    deadline=None,  # shared 2-core machines: timing is noise (docs/architecture.md)
    max_examples=30,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no "explain": slow tracing on 3.11
)
CI = settings.get_profile("ci")

NAMES = [
    "alpha", "Alpha", "ALPHA", "alpha ", " alpha", "École", "école", "ÉCOLE", "ecole", "straße", "STRASSE",
    "Zebra", "zebra", "日本語", "İstanbul", "istanbul", "a_b", "a%b", "a.b", "[x]", "Ω", "ω", "", "😀 emoji",
]
TEXTS = ["a", "A", "é", "É", "ss", "ß", "%", "_", ".", "[", "i", "İ", "日本", "😀", "zz", " "]
# Keys every department has. Keys a department may lack have their own test below.
SORT_KEYS = ["name", "email", "enabled", "showOnRegistration", "_id"]

name = st.one_of(st.sampled_from(NAMES), st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=6))
department = st.fixed_dictionaries(
    {
        "name": name,
        "email": st.sampled_from(["a@x", "B@x", "b@x", "é@x"]),
        "enabled": st.booleans(),
        "showOnRegistration": st.booleans(),
    },
    optional={"description": st.sampled_from(["", "d", "D", "é"]), "showOnOfflineForm": st.booleans()},
)


@dataclass
class Query:
    text: str | None
    enabled: str | None
    show_archived: str | None
    sort: list[tuple[str, int]] | None
    exclude_id: str | None = None

    def params(self) -> dict[str, str]:
        params = {
            "text": self.text,
            "enabled": self.enabled,
            "showArchived": self.show_archived,
            "excludeDepartmentId": self.exclude_id,
        }
        if self.sort is not None:
            params["sort"] = json.dumps(dict(self.sort))
        return {key: value for key, value in params.items() if value is not None}


queries = st.builds(
    Query,
    text=st.none() | st.sampled_from(TEXTS) | st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=3),
    enabled=st.sampled_from([None, "true", "false"]),
    show_archived=st.sampled_from([None, "true", "false"]),
    sort=st.none() | st.lists(st.tuples(st.sampled_from(SORT_KEYS), st.sampled_from([1, -1])), min_size=1, max_size=2, unique_by=lambda item: item[0]),
)


def _compare(a: Any, b: Any) -> int:
    """MongoDB's order for the values involved: missing first, then booleans/strings by value."""
    if a is None or b is None:
        return (a is not None) - (b is not None)
    return (a > b) - (a < b)


def expected(departments: list[dict[str, Any]], query: Query) -> list[str]:
    """The ids the list should return, in order: the model."""
    rows = [d for d in departments if query.show_archived == "true" or not d.get("archived")]
    rows = [d for d in rows if d["_id"] != query.exclude_id]
    if query.text:
        rows = [d for d in rows if query.text.casefold() in d["name"].casefold()]
    if query.enabled == "true":
        rows = [d for d in rows if d["enabled"]]
    order = query.sort if query.sort is not None else [("name", 1)]

    def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
        for key, direction in [*order, ("_id", 1)]:
            result = _compare(a.get(key), b.get(key))
            if result:
                return result * direction
        return 0

    return [d["_id"] for d in sorted(rows, key=functools.cmp_to_key(compare))]


def listing(client: Any, headers: dict[str, str], query: Query, **window: int) -> dict[str, Any]:
    response = client.get(f"{API}/livechat/department", query_string={**query.params(), **window}, headers=headers)
    assert response.status_code == 200, (query, window, response.json)
    return response.json


def replace_departments(client: Any, headers: dict[str, str], wanted: list[tuple[dict[str, Any], bool]]) -> list[dict[str, Any]]:
    """Delete every department, create `wanted` (archiving those marked), return them as the API shows them."""
    existing = listing(client, headers, Query(None, None, "true", None), count=0)["departments"]
    for old in existing:
        assert client.delete(f"{API}/livechat/department/{old['_id']}", headers=headers).status_code == 200
    created = []
    for fields, archived in wanted:
        response = client.post(f"{API}/livechat/department", json={"department": fields}, headers=headers)
        assert response.status_code == 200, (fields, response.json)
        department_id = response.json["department"]["_id"]
        if archived:
            assert client.post(f"{API}/livechat/department/{department_id}/archive", headers=headers).status_code == 200
        created.append(client.get(f"{API}/livechat/department/{department_id}", headers=headers).json["department"])
    return created


@CI
@given(
    wanted=st.lists(st.tuples(department, st.sampled_from([False, False, True])), max_size=10),  # (fields, archived)
    query=queries,
    count=st.integers(min_value=1, max_value=6),
    offset=st.integers(min_value=0, max_value=12),
    exclude=st.none() | st.just("unknown") | st.integers(min_value=0, max_value=9),  # a department's index
)
def test_pages_concatenate_to_the_filtered_sorted_whole(client, auth, wanted, query, count, offset, exclude):
    departments = replace_departments(client, auth.admin, wanted)
    if isinstance(exclude, int):
        exclude = departments[exclude % len(departments)]["_id"] if departments else None
    query = dataclasses.replace(query, exclude_id=exclude)

    whole = listing(client, auth.admin, query, count=0)
    ids = [d["_id"] for d in whole["departments"]]
    assert ids == expected(departments, query), (query, [(d["name"], d.get("archived")) for d in departments])
    assert whole["total"] == len(ids) and whole["count"] == len(ids) and whole["offset"] == 0

    pages: list[str] = []
    for start in range(0, len(ids) + count, count):
        page = listing(client, auth.admin, query, offset=start, count=count)
        assert page["total"] == len(ids) and page["offset"] == start and page["count"] == len(page["departments"])
        pages += [d["_id"] for d in page["departments"]]
    assert pages == ids

    page = listing(client, auth.admin, query, offset=offset, count=count)
    assert [d["_id"] for d in page["departments"]] == ids[offset : offset + count]
    assert page["total"] == len(ids)


def test_a_missing_value_sorts_first_ascending_and_last_descending(client, auth):
    """MongoDB's (and so Rocket.Chat's) order for a key a department lacks; SQLite's NULL order too."""
    with_description = department_fields(name="b", description="text")
    departments = replace_departments(
        client, auth.admin, [(with_description, False), (department_fields(name="a"), False), (with_description, False)]
    )
    for direction in (1, -1):
        query = Query(None, None, None, [("description", direction)])
        ids = [d["_id"] for d in listing(client, auth.admin, query, count=0)["departments"]]
        assert ids == expected(departments, query), direction
