"""JSON through orjson (json_codec.py): the same JSON as before, non-ASCII text as UTF-8, and the
values orjson refuses handed to the standard library instead of failing (docs/compatibility.md,
"JSON encoding")."""

from __future__ import annotations

import json

from conftest import API, create_department, write_by_hand

import json_codec

LIVECHAT = f"{API}/livechat"
# Past 64 bits: orjson neither reads nor writes it; json does both, exactly.
HUGE = 2**70 + 1


def test_non_ascii_text_is_sent_as_utf8_and_reads_back_the_same(client, auth):
    department = create_department(client, auth.admin, name="Ärztliche Hilfe — 支援 😀")
    response = client.get(f"{LIVECHAT}/department/{department['_id']}", headers=auth.admin)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "Ärztliche Hilfe — 支援 😀".encode() in response.data  # not \\u escapes
    assert json.loads(response.data)["department"]["name"] == "Ärztliche Hilfe — 支援 😀"


def test_a_value_orjson_refuses_in_a_json_column_is_read_and_answered_exactly(client, auth, database_url):
    department = create_department(client, auth.admin, name="Big numbers")
    create_department(client, auth.admin, name="Big neighbour")
    assert client.get(f"{LIVECHAT}/department?text=Big", headers=auth.admin).json["total"] == 2  # rows kept (cache.py)
    extra = json.dumps({"ticketBase": HUGE})
    write_by_hand(database_url, "UPDATE departments SET extra = ? WHERE id = ?", (extra, department["_id"]))

    one = client.get(f"{LIVECHAT}/department/{department['_id']}", headers=auth.admin)
    listed = client.get(f"{LIVECHAT}/department?text=Big", headers=auth.admin)

    assert one.status_code == 200 and listed.status_code == 200
    assert json.loads(one.data)["department"]["ticketBase"] == HUGE
    assert json.loads(listed.data)["departments"][1]["ticketBase"] == HUGE


def test_the_codec_falls_back_to_json_for_what_orjson_refuses():
    assert json_codec.loads(json.dumps({"n": HUGE})) == {"n": HUGE}
    # Around the length under which orjson decodes: every integer stays exact.
    for number in (-(2**63) - 1, -(2**63), 2**64 - 1, 2**64, 9_999_999_999_999_999_999, -999_999_999_999_999_999):
        assert json_codec.loads(str(number)) == number and type(json_codec.loads(str(number))) is int
    assert json_codec.loads("NaN") != json_codec.loads("NaN")  # a float nan, as json reads it
    # Long texts too (a change-log row image), with the number deep inside: exact, as json reads it.
    image = {"id": "6b164c2a0e4cef4375ea42ee", "extra": {"ticketBase": HUGE, "nested": [1, [-HUGE]]}, "num_agents": 2}
    assert json_codec.loads(json.dumps(image)) == image
    assert type(json_codec.loads(json.dumps(image))["extra"]["ticketBase"]) is int
    floats = json.dumps({"ratio": 0.1, "large": 1e300, "list": [2.5, "x" * 40]})
    assert json_codec.loads(floats) == json.loads(floats)
    assert json.loads(json_codec.dumps({"n": HUGE, "text": "é"})) == {"n": HUGE, "text": "é"}
    assert json_codec.dumps({"text": "é", "n": [1, None]}) == '{"text":"é","n":[1,null]}'


def test_a_response_orjson_refuses_is_encoded_by_json(app):
    with app.app_context():
        body = app.json.response({"text": "a\ud800b", "n": HUGE}).get_data()
    assert body == b'{"text":"a\\ud800b","n":1180591620717411303425}\n'


def test_responses_keep_flasks_framing(app):
    with app.app_context():
        body = app.json.response({"a": [1, None], "b": "é"}).get_data()
    assert body == '{"a":[1,null],"b":"é"}\n'.encode()



def test_flasks_debug_mode_still_indents(app):
    app.debug = True
    with app.app_context():
        body = app.json.response({"a": 1}).get_data()
    assert body == b'{\n  "a": 1\n}\n'


def test_in_debug_mode_a_list_is_indented_whole(app, client, auth):
    # A list's rows are kept as compact JSON (cache.py); indented answers do not use them.
    create_department(client, auth.admin, name="Indented")
    assert client.get(f"{LIVECHAT}/department", headers=auth.admin).status_code == 200  # rows kept
    app.debug = True
    listed = client.get(f"{LIVECHAT}/department?count=5", headers=auth.admin)
    assert listed.status_code == 200 and b'\n      "name": "Indented",\n' in listed.data
