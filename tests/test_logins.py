"""Failed sign-ins are throttled per username and per client address (django-axes, with
project/logins.py): the admin's and /accounts/login/ answer 429 with Retry-After and a sentence,
through a real server, each client from an address of its own on loopback."""

import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from axes.models import AccessAttempt
from django.db.models import F

PASSWORD = "a long test password"
ACCOUNTS, ADMIN = "/accounts/login/", "/admin/login/"
SENTENCE = "Too many failed sign-ins for this account or from your network address; try again in"


@pytest.fixture
def limit(settings, server) -> int:
    """The throttle on (tests/settings.py turns it off for the rest of the suite), with the
    project's own limit and cool-off."""
    settings.AXES_ENABLED = True
    return settings.AXES_FAILURE_LIMIT


@pytest.fixture
def users(transactional_db, django_user_model) -> None:
    for name in ("ada", "grace"):
        django_user_model.objects.create_user(name, password=PASSWORD)
    django_user_model.objects.create_superuser("root", "root@example.org", password=PASSWORD)


@pytest.fixture
def client_from(server) -> Iterator[Callable[[str], httpx.Client]]:
    """An HTTP client whose connections come from `address` (any of 127.0.0.0/8 reaches the server)."""
    clients: list[httpx.Client] = []

    def make(address: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address)
        clients.append(httpx.Client(base_url=server.url, transport=transport, timeout=10))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def sign_in(client: httpx.Client, path: str, username: str, password: str, **headers: str) -> httpx.Response:
    form = client.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    return client.post(
        path,
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{client.base_url}{path.lstrip('/')}", **headers},
    )


def assert_refused(response: httpx.Response, minutes: int = 15) -> None:
    assert response.status_code == 429, response.text
    assert 0 < int(response.headers["Retry-After"]) <= minutes * 60
    assert f"{SENTENCE} {minutes} minute" in response.text
    assert "sessionid" not in response.cookies


def first_refusal(responses: list[httpx.Response]) -> int:
    """The 1-based attempt from which every answer was a 429 (0: none was)."""
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429}, codes
    if 429 not in codes:
        return 0
    first = codes.index(429)
    assert set(codes[first:]) == {429}, codes
    return first + 1


def age_failures(by: timedelta) -> None:
    """The cool-off passing, for the failures recorded so far."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - by)


@pytest.mark.parametrize(("path", "username"), [(ACCOUNTS, "ada"), (ADMIN, "root")])
def test_sixty_wrong_passwords_lock_the_account_and_the_right_one_waits_for_the_cool_off(
    limit, users, client_from, settings, path, username
):
    attacker = client_from("127.0.0.2")
    guesses = [sign_in(attacker, path, username, f"guess {i}") for i in range(60)]
    assert first_refusal(guesses) == limit
    assert_refused(guesses[-1])
    # The right password is refused too, from this address and from any other.
    assert_refused(sign_in(attacker, path, username, PASSWORD))
    assert_refused(sign_in(client_from("127.0.0.3"), path, username, PASSWORD))
    # Refused attempts are not counted: the lockout ends when it said it would.
    assert AccessAttempt.objects.get().failures_since_start == limit
    # A minute before the cool-off ends it still holds, and says one minute.
    age_failures(settings.AXES_COOLOFF_TIME - timedelta(minutes=1))
    assert_refused(sign_in(attacker, path, username, PASSWORD), minutes=1)
    age_failures(timedelta(minutes=1))
    assert sign_in(attacker, path, username, PASSWORD).status_code == 302


def test_one_address_trying_many_usernames_is_locked_and_others_are_not(limit, users, client_from):
    sprayer = client_from("127.0.0.4")
    guesses = [sign_in(sprayer, ACCOUNTS, f"user{i}", "guess") for i in range(60)]
    assert first_refusal(guesses) == limit
    assert_refused(sign_in(sprayer, ACCOUNTS, "grace", PASSWORD))
    assert_refused(sign_in(sprayer, ADMIN, "root", PASSWORD))
    # Another address, other accounts: unaffected.
    elsewhere = client_from("127.0.0.5")
    assert sign_in(elsewhere, ACCOUNTS, "grace", PASSWORD).status_code == 302
    assert sign_in(client_from("127.0.0.6"), ADMIN, "root", PASSWORD).status_code == 302


def test_guesses_at_one_account_from_many_addresses_lock_that_account_only(limit, users, client_from):
    addresses = [f"127.0.1.{i}" for i in range(1, limit + 1)]
    answers = [sign_in(client_from(address), ACCOUNTS, "ada", "guess") for address in addresses]
    assert first_refusal(answers) == limit
    assert_refused(sign_in(client_from("127.0.0.7"), ACCOUNTS, "ada", PASSWORD))
    # Each of those addresses failed once: another account signs in from them.
    assert sign_in(client_from(addresses[0]), ACCOUNTS, "grace", PASSWORD).status_code == 302


def test_signing_in_forgives_the_accounts_failures_and_not_the_addresss(limit, users, client_from):
    client = client_from("127.0.0.8")
    for _ in range(limit - 1):
        assert sign_in(client, ACCOUNTS, "ada", "guess").status_code == 200
    assert sign_in(client, ACCOUNTS, "ada", PASSWORD).status_code == 302
    # Ada's failures are forgiven: as many again are not a lockout.
    ada = client_from("127.0.0.9")
    for _ in range(limit - 1):
        assert sign_in(ada, ACCOUNTS, "ada", "guess").status_code == 200
    # Guesses at grace, then a sign-in to an account of one's own from the same address: the
    # guesses at grace still count (axes' own reset on success would have dropped them).
    attacker = client_from("127.0.0.10")
    for _ in range(limit - 1):
        assert sign_in(attacker, ACCOUNTS, "grace", "guess").status_code == 200
    assert sign_in(client_from("127.0.0.10"), ACCOUNTS, "root", PASSWORD).status_code == 302
    assert_refused(sign_in(client_from("127.0.0.11"), ACCOUNTS, "grace", "guess"))


def test_the_address_counted_is_the_forwarded_one_only_from_a_trusted_proxy(
    limit, users, client_from, settings
):
    # A client that writes X-Forwarded-For itself is still counted as its own address.
    forger = client_from("127.0.0.12")
    forged = [
        sign_in(forger, ACCOUNTS, f"user{i}", "guess", **{"X-Forwarded-For": f"198.51.100.{i}"})
        for i in range(limit)
    ]
    assert first_refusal(forged) == limit
    # Behind a trusted proxy, each client it forwards is counted apart, and the proxy is not.
    settings.CHAT_TRUSTED_PROXIES = ["127.0.0.13"]
    proxy = client_from("127.0.0.13")
    for i in range(limit):
        forwarded = {"X-Forwarded-For": f"203.0.113.{i}"}
        assert sign_in(proxy, ACCOUNTS, f"other{i}", "guess", **forwarded).status_code == 200
    one_client = {"X-Forwarded-For": "203.0.113.200"}
    answers = [sign_in(proxy, ACCOUNTS, f"again{i}", "guess", **one_client) for i in range(limit)]
    assert first_refusal(answers) == limit
    assert sign_in(proxy, ACCOUNTS, "grace", PASSWORD, **{"X-Forwarded-For": "203.0.113.201"}).is_redirect
