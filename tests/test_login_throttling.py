"""Login throttling (docs/security.md, "Login throttling"): failed logins per client address and per account,
counted in the database so every gunicorn worker shares them.

Figures with the defaults (LOGIN_MAX_FAILURES=10, LOGIN_ACCOUNT_MAX_FAILURES=100,
LOGIN_FAILURE_WINDOW_SECONDS=300): from one address, failures 1–10 answer 401 and the 11th attempt
(even with the right password) answers 429 with `Retry-After: 300`, which counts down with the
clock; other addresses are not stopped by it. An account is stopped for every address only after
100 failures in the window, i.e. from at least 10 addresses. When the window has passed, logins
are checked again.
"""

from __future__ import annotations

import sqlalchemy as sa
from conftest import ADMIN_PASSWORD

import account_service

LOGIN = "/api/v1/login"
UNAUTHORIZED = {"success": False, "error": "Unauthorized", "status": "error", "message": "Unauthorized"}


def too_many(seconds: int) -> dict[str, object]:
    return {
        "success": False,
        "error": "Error, too many requests. Please slow down. "
        f"You must wait {seconds} seconds before trying this endpoint again. [error-too-many-requests]",
    }




def attempt(client, user: str, password: str = "wrong-password", address: str = "127.0.0.1", **headers: str):
    return client.post(
        LOGIN, json={"user": user, "password": password}, environ_base={"REMOTE_ADDR": address}, headers=headers
    )


def test_the_eleventh_attempt_is_429_with_retry_after_until_the_window_ends(make_app, clock):
    client = make_app().test_client()
    statuses = [attempt(client, "admin").status_code for _ in range(10)]
    assert statuses == [401] * 10

    blocked = attempt(client, "admin", ADMIN_PASSWORD)  # the right password no longer helps
    assert blocked.status_code == 429
    assert blocked.json == too_many(300)
    assert blocked.headers["Retry-After"] == "300"
    assert blocked.headers["Content-Type"] == "application/json"

    clock.advance(seconds=120.5)
    later = attempt(client, "admin")
    assert later.status_code == 429 and later.headers["Retry-After"] == "180"  # rounded up
    assert later.json == too_many(180)

    clock.advance(seconds=179)
    assert attempt(client, "admin").headers["Retry-After"] == "1"
    clock.advance(seconds=1)  # the window (300 s from the first failure) is over
    assert attempt(client, "admin", ADMIN_PASSWORD).status_code == 200


def test_settings_change_the_figures(make_app, clock):
    client = make_app(LOGIN_MAX_FAILURES=3, LOGIN_FAILURE_WINDOW_SECONDS=60).test_client()
    statuses = [attempt(client, "admin").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    assert attempt(client, "admin").headers["Retry-After"] == "60"
    clock.advance(seconds=60)
    # a new window: three more failures before the next 429
    assert [attempt(client, "admin").status_code for _ in range(4)] == [401, 401, 401, 429]


def test_zero_max_failures_turns_throttling_off(make_app, clock):
    client = make_app(LOGIN_MAX_FAILURES=0).test_client()
    assert {attempt(client, "admin").status_code for _ in range(15)} == {401}
    assert attempt(client, "admin", ADMIN_PASSWORD).status_code == 200


def test_unknown_users_and_wrong_passwords_look_the_same(make_app, clock, monkeypatch):
    client = make_app(LOGIN_MAX_FAILURES=3).test_client()
    checks = []
    original = account_service._verify_password
    monkeypatch.setattr(account_service, "_verify_password", lambda *a, **k: checks.append(a[0] is None) or original(*a, **k))

    for user, address in (("admin", "10.0.0.1"), ("ghost", "10.0.0.2")):
        answers = [attempt(client, user, address=address) for _ in range(4)]
        assert [a.status_code for a in answers] == [401, 401, 401, 429]
        assert all(a.json == UNAUTHORIZED for a in answers[:3])
        assert answers[3].json == too_many(300) and answers[3].headers["Retry-After"] == "300"
    # every 401 spent one password check (a dummy hash for the unknown user), every 429 none
    assert checks == [False] * 3 + [True] * 3


def test_the_client_address_is_throttled_across_usernames(make_app, clock):
    client = make_app(LOGIN_MAX_FAILURES=3).test_client()
    assert [attempt(client, f"user{i}", address="10.0.0.7").status_code for i in range(4)] == [401, 401, 401, 429]
    # the address is blocked, whichever name it tries next; other addresses are not
    assert attempt(client, "admin", ADMIN_PASSWORD, address="10.0.0.7").status_code == 429
    assert attempt(client, "admin", ADMIN_PASSWORD, address="10.0.0.8").status_code == 200


def test_an_untrusted_x_forwarded_for_does_not_change_the_counted_address(make_app, clock):
    client = make_app(LOGIN_MAX_FAILURES=3).test_client()
    answers = [attempt(client, f"user{i}", **{"X-Forwarded-For": f"203.0.113.{i}"}) for i in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]  # all counted against 127.0.0.1


def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(make_app, clock):
    client = make_app(LOGIN_MAX_FAILURES=3, TRUSTED_PROXY_HOPS=1).test_client()
    answers = [attempt(client, f"user{i}", **{"X-Forwarded-For": f"203.0.113.{i}"}) for i in range(6)]
    assert {a.status_code for a in answers} == {401}  # six clients behind one proxy, one failure each
    same = [attempt(client, f"other{i}", **{"X-Forwarded-For": "203.0.113.99"}).status_code for i in range(4)]
    assert same == [401, 401, 401, 429]
    # a spoofed extra hop in front of the real one is ignored: the proxy's hop is what counts
    spoofed = attempt(client, "other9", **{"X-Forwarded-For": "198.51.100.1, 203.0.113.99"})
    assert spoofed.status_code == 429


def test_a_successful_login_resets_the_users_counter(make_app, clock):
    client = make_app(LOGIN_MAX_FAILURES=3, LOGIN_ACCOUNT_MAX_FAILURES=3).test_client()
    # distinct addresses, so only the username's counter moves
    assert [attempt(client, "admin", address=f"10.1.0.{i}").status_code for i in range(2)] == [401, 401]
    assert attempt(client, "admin", ADMIN_PASSWORD, address="10.1.0.9").status_code == 200
    after = [attempt(client, "admin", address=f"10.1.1.{i}").status_code for i in range(4)]
    assert after == [401, 401, 401, 429]  # three fresh failures allowed again


def test_usernames_and_emails_are_one_identity_whatever_their_case(make_app, clock):
    client = make_app(LOGIN_MAX_FAILURES=3, LOGIN_ACCOUNT_MAX_FAILURES=4).test_client()
    for i, name in enumerate(("admin", "ADMIN", "admin@example.com", "Admin@Example.COM")):
        assert attempt(client, name, address=f"10.2.0.{i}").status_code == 401
    # four failures of one account, under four spellings: its cap is reached, from anywhere
    assert attempt(client, "admin@example.com", ADMIN_PASSWORD, address="10.2.0.9").status_code == 429
    assert attempt(client, "aDmIn", ADMIN_PASSWORD, address="10.2.0.10").status_code == 429


def test_the_right_password_from_a_clean_address_logs_in_while_others_hammer_the_account(make_app, clock):
    """Issue 14 item 4: an attacker's failures stop the attacker's addresses, not the account."""
    client = make_app().test_client()  # the default figures
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        statuses = [attempt(client, "admin", address=address).status_code for _ in range(12)]
        assert statuses == [401] * 10 + [429] * 2  # each address is stopped after 10 failures
        assert attempt(client, "admin", ADMIN_PASSWORD, address=address).status_code == 429
    assert attempt(client, "admin", ADMIN_PASSWORD, address="198.51.100.7").status_code == 200
    # the attack goes on: the account's counter was cleared by the login, the addresses' were not
    assert attempt(client, "admin", address="203.0.113.1").status_code == 429
    assert attempt(client, "admin", ADMIN_PASSWORD, address="198.51.100.7").status_code == 200


def test_a_distributed_attack_is_capped_per_account(make_app, clock):
    client = make_app().test_client()
    for i in range(10):  # 10 addresses x 10 failures: the default per-account cap of 100
        assert {attempt(client, "admin", address=f"203.0.113.{i}").status_code for _ in range(10)} == {401}
    blocked = attempt(client, "admin", ADMIN_PASSWORD, address="198.51.100.7")
    assert blocked.status_code == 429 and blocked.headers["Retry-After"] == "300"
    assert attempt(client, "ghost", address="198.51.100.7").status_code == 401  # other accounts are not stopped
    clock.advance(seconds=300)
    assert attempt(client, "admin", ADMIN_PASSWORD, address="198.51.100.7").status_code == 200


def test_an_ipv6_client_is_counted_by_its_64_network(make_app, clock):
    client = make_app(LOGIN_MAX_FAILURES=3).test_client()
    answers = [attempt(client, f"user{i}", address=f"2001:db8:1:2::{i + 1:x}").status_code for i in range(4)]
    assert answers == [401, 401, 401, 429]  # four hosts of one /64: one client
    assert attempt(client, "admin", ADMIN_PASSWORD, address="2001:db8:1:3::1").status_code == 200


def test_counters_are_shared_by_every_worker_and_survive_a_restart(make_app, clock):
    worker_a, worker_b = make_app(LOGIN_MAX_FAILURES=4).test_client(), make_app(LOGIN_MAX_FAILURES=4).test_client()
    assert [attempt(client, "admin").status_code for client in (worker_a, worker_b, worker_a, worker_b)] == [401] * 4
    assert attempt(worker_a, "admin").status_code == 429
    assert attempt(worker_b, "admin").status_code == 429
    restarted = make_app(LOGIN_MAX_FAILURES=4).test_client()
    assert attempt(restarted, "admin", ADMIN_PASSWORD).status_code == 429


def test_failures_are_stored_without_touching_the_data_version(make_app, clock):
    app = make_app(LOGIN_MAX_FAILURES=5)
    client = app.test_client()
    engine = app.extensions["db.engine"]

    def version():  # every version counter (db.py), none of which a failed login may move
        with engine.connect() as conn:
            return {row.id: row.version for row in conn.execute(sa.text("SELECT id, version FROM data_version"))}

    before = version()
    for _ in range(3):
        attempt(client, "ghost", address="10.3.0.1")
    # failed logins do not empty every worker's read caches
    assert version() == before
    with engine.connect() as conn:
        rows = {key: failures for key, failures in conn.execute(sa.text("SELECT key, failures FROM login_failures"))}
    assert rows == {"name:ghost": 3, "ip:10.3.0.1": 3}


def test_stale_counters_are_dropped(make_app, clock):
    app = make_app(LOGIN_MAX_FAILURES=5, LOGIN_FAILURE_WINDOW_SECONDS=60)
    client = app.test_client()
    for i in range(3):
        attempt(client, f"spray{i}", address="10.4.0.1")
    clock.advance(seconds=61)
    attempt(client, "late", address="10.4.0.2")
    with app.extensions["db.engine"].connect() as conn:
        keys = set(conn.execute(sa.text("SELECT key FROM login_failures")).scalars())
    assert keys == {"name:late", "ip:10.4.0.2"}


def test_resume_logins_and_bad_bodies_are_not_counted(make_app, clock):
    client = make_app(LOGIN_MAX_FAILURES=2).test_client()
    for _ in range(5):
        assert client.post(LOGIN, json={"resume": "not-a-token"}).status_code == 401
        assert client.post(LOGIN, json={"password": "x"}).status_code == 401  # no user named
    assert attempt(client, "admin", ADMIN_PASSWORD).status_code == 200


def test_a_login_body_with_unstorable_characters_is_400_and_counted(make_app, clock, caplog):
    client = make_app(LOGIN_MAX_FAILURES=3).test_client()
    body = '{"user": "\\ud800", "password": "x"}'
    answers = [
        client.post(LOGIN, data=body, content_type="application/json", environ_base={"REMOTE_ADDR": "10.5.0.1"})
        for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [400, 400, 400, 429]
    assert answers[0].json == {
        "success": False, "error": "Invalid input: unpaired UTF-16 surrogates (\\ud800-\\udfff) are not allowed"
    }
    # the address is stopped for real logins too, and nothing was logged as an error
    assert attempt(client, "admin", ADMIN_PASSWORD, address="10.5.0.1").status_code == 429
    assert [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
    nul = '{"user": "admin", "password": "a\\u0000"}'
    response = client.post(LOGIN, data=nul, content_type="application/json", environ_base={"REMOTE_ADDR": "10.5.0.2"})
    assert response.status_code == 400
