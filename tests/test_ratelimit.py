"""The limiter's parts that need no server: rates, waits, the sentences, leases that lapse,
and the counting every backend does alike (memory, and Redis when REDIS_URL is set)."""

import asyncio
import time
from collections.abc import Callable

import pytest
from django.core.exceptions import ImproperlyConfigured
from limits import RateLimitItem, parse

from chat.ratelimit.backends import Backend, Checks, Counters, MemoryBackend
from chat.ratelimit.limiter import in_words, sliding_wait
from chat.ratelimit.rules import ADDRESS_SHARE, describe, parse_count, parse_rate, rules


@pytest.mark.parametrize("value", ["0", "", None, "off", "0/minute"])
def test_zero_or_empty_turns_a_limit_off(value):
    assert parse_rate("CHAT_LIMIT_MESSAGES", value) is None


def test_rates_as_the_contract_writes_them():
    assert describe(parse_rate("X", "30/minute")) == "30 per minute"
    assert describe(parse_rate("X", "200000/day")) == "200,000 per day"
    assert parse_count("X", "3") == 3 and parse_count("X", 0) == 0


@pytest.mark.parametrize("value", ["thirty", "30/fortnight", "-1"])
def test_a_bad_value_names_its_variable(value):
    with pytest.raises(ImproperlyConfigured, match="CHAT_LIMIT_REPLIES" if value == "-1" else "CHAT_X"):
        if value == "-1":
            parse_count("CHAT_LIMIT_REPLIES", value)
        else:
            parse_rate("CHAT_X", value)


def test_sliding_wait_is_when_the_weighted_count_falls_under_the_limit():
    item = parse("30/minute")
    # The current window holds all 30, 50 s of it left: at its end the 30 weigh a little less
    # than 30 at once, so one more is allowed then.
    assert sliding_wait(item, 0, 0.0, 30, 110.0) == pytest.approx(50.0)
    # 60 in the previous window weighing 20 s more, 10 in this one: under 30 when
    # 60 * (20 - t) / 60 + 10 < 30, t > 0, so at once.
    assert sliding_wait(item, 60, 20.0, 10, 100.0) == pytest.approx(0.0)
    # 60 previous weighing 40 s more, 10 now: 60 * (40 - t) / 60 < 20 -> t > 20.
    assert sliding_wait(item, 60, 40.0, 10, 100.0) == pytest.approx(20.0)
    # 45 in the current window (past the limit by other processes' races): after the window,
    # 45 * (60 - s) / 60 < 30 -> s > 20.
    assert sliding_wait(item, 0, 0.0, 45, 70.0) == pytest.approx(10.0 + 20.0)


def test_waits_in_words():
    assert [in_words(s) for s in (0.2, 1, 59, 90, 3600, 7200, 86400 * 3)] == [
        "1 second",
        "1 second",
        "59 seconds",
        "2 minutes",
        "60 minutes",
        "2 hours",
        "3 days",
    ]


def test_memory_leases_lapse_unless_refreshed():
    async def scenario() -> list:
        backend = MemoryBackend()
        results = [await backend.acquire("k", "a", 2, 0.05), await backend.acquire("k", "b", 2, 0.05)]
        results.append(await backend.acquire("k", "c", 2, 0.05))  # full
        await backend.refresh([("k", "a")], 0.5)
        await asyncio.sleep(0.08)  # "b" lapsed, "a" was refreshed
        results.append(await backend.held("k"))
        results.append(await backend.acquire("k", "c", 2, 0.05))
        await backend.release([("k", "a")])
        results.append(await backend.held("k"))
        return results

    assert asyncio.run(scenario()) == [True, True, False, 1, True, 1]


def test_a_limit_written_wrong_fails_the_system_check(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.CHAT_LIMIT_MESSAGES = "thirty a minute"
    with pytest.raises(SystemCheckError, match="CHAT_LIMIT_MESSAGES: 'thirty a minute'"):
        call_command("check")


def test_the_address_limits_are_four_visitors_unless_set(settings):
    """Unset, CHAT_LIMIT_REPLIES_IP and CHAT_QUOTA_TOKENS_IP follow the owner's limits (off with
    them); a client without a session is held to one visitor's share of its address."""
    settings.CHAT_LIMIT_REPLIES, settings.CHAT_QUOTA_TOKENS = 3, "400/hour"
    for name in ("CHAT_LIMIT_REPLIES_IP", "CHAT_QUOTA_TOKENS_IP"):
        if hasattr(settings, name):
            delattr(settings, name)
    current = rules()
    assert ADDRESS_SHARE == 4
    assert current.replies_ip == 12 and describe(current.tokens_ip) == "1,600 per hour"
    assert current.replies_ip_for(newcomer=False) == 12 and current.replies_ip_for(newcomer=True) == 3
    assert current.tokens_ip_for(newcomer=False) == 1600 and current.tokens_ip_for(newcomer=True) == 400
    settings.CHAT_LIMIT_REPLIES, settings.CHAT_QUOTA_TOKENS = 0, "0"
    current = rules()
    assert current.replies_ip == 0 and current.tokens_ip is None and not current.any


@pytest.mark.parametrize(
    "tokens, tokens_ip, newcomer",
    [
        ("400/hour", "10000/day", 400),  # a longer window: one visitor's quota in it, no more
        ("24000/day", "2000/hour", 1000),  # a shorter one: pro rata, never faster than a visitor
        ("400/hour", "100/hour", 100),  # an address allowed less than a visitor: the address's
        ("0", "100/hour", 100),  # no quota per visitor: the address's
    ],
)
def test_a_client_without_a_session_gets_one_visitors_quota_of_its_address(
    settings, tokens, tokens_ip, newcomer
):
    settings.CHAT_QUOTA_TOKENS, settings.CHAT_QUOTA_TOKENS_IP = tokens, tokens_ip
    current = rules()
    assert current.tokens_ip_for(newcomer=True) == newcomer
    assert current.tokens_ip_for(newcomer=False) == current.tokens_ip.amount


def test_an_address_limit_set_to_zero_is_off(settings):
    settings.CHAT_LIMIT_REPLIES, settings.CHAT_LIMIT_REPLIES_IP = 3, 0
    settings.CHAT_QUOTA_TOKENS, settings.CHAT_QUOTA_TOKENS_IP = "400/hour", ""
    current = rules()
    assert current.replies_ip == 0 and current.tokens_ip is None
    assert current.replies_ip_for(newcomer=True) == 0


def test_memory_counts_are_forgotten_once_lapsed():
    counters = Counters()
    counters.swept = 1000.0  # its last sweep on this test's clock, not the machine's uptime
    item = parse("2/minute")
    assert counters.hit("a", 2, 60, now=1000.0) and counters.hit("a", 2, 60, now=1001.0)
    assert not counters.hit("a", 2, 60, now=1002.0)
    counters.charge("q", 5, 3600, now=1000.0)
    counters.sweep(now=1000.0 + Counters.SWEEP_EVERY)  # within two windows: kept
    assert "a" in counters.windows and "q" in counters.fixed
    counters.sweep(now=1000.0 + 3600)
    assert counters.windows == {} and counters.fixed == {}
    assert counters.window("a", item.get_expiry(), now=5000.0).used(60) == 0


# --- every backend counts alike --------------------------------------------------------------

MINUTE = parse("10/minute")
WHO = ("messages", "visitor:x")


@pytest.fixture
def make_redis_backend(redis_prefix) -> Callable[[], Backend]:
    """Redis backends on keys of this test's own (`redis_prefix`), deleted afterwards."""
    from chat.ratelimit.redis import RedisBackend

    url, prefix = redis_prefix
    return lambda: RedisBackend(url, prefix)


@pytest.fixture(params=["memory", "redis"])
def make_backend(request) -> Callable[[], Backend]:
    """Each backend in turn, made inside the test's own event loop (a Redis client belongs to
    one loop)."""
    return MemoryBackend if request.param == "memory" else request.getfixturevalue("make_redis_backend")


def run(make_backend: Callable[[], Backend], scenario) -> object:
    async def main() -> object:
        backend = make_backend()
        try:
            return await asyncio.wait_for(scenario(backend), 10)
        finally:
            await backend.close()

    return asyncio.run(main())


async def put_window(
    backend: Backend, item: RateLimitItem, *, started_ago: float, current: int, previous: int
):
    """A message window as it would be had its current window started `started_ago` seconds
    ago with these counts (a state reached in minutes, written in a moment)."""
    key, expiry = item.key_for(*WHO), item.get_expiry()
    if isinstance(backend, MemoryBackend):
        backend.counters.windows[key] = (time.monotonic() - started_ago, current, previous, expiry)
        return
    seconds, micros = await backend.client.time()
    start = seconds * 1000 + micros // 1000 - int(started_ago * 1000)
    name = f"{backend.prefix}:sliding:{key}"
    await backend.client.hset(name, mapping={"s": start, "c": current, "p": previous})
    await backend.client.pexpire(name, 2 * expiry * 1000)


def hits(item: RateLimitItem = MINUTE) -> Checks:
    return Checks(quotas=(), leases=(), hits=((item, WHO),), ttl=5)


@pytest.mark.parametrize(
    "started_ago, current, previous, allowed, weighs",
    [
        (0, 0, 0, 10, 60),  # nothing counted yet: a first hit starts the window
        (30, 0, 9, 6, 30),  # 9 weighing half: 4 (rounded down), so 6 more
        (20, 3, 7, 3, 40),  # 7 x 40/60, 4 (rounded down), and 3 in this window
        (80, 8, 2, 5, 40),  # the window ended 20 s ago: its 8 are the previous, weighing 40/60: 5
        (130, 8, 2, 10, 60),  # two windows ago: nothing left (a new window starts at the hit)
    ],
)
def test_a_sliding_window_weighs_the_previous_window(
    make_backend, started_ago, current, previous, allowed, weighs
):
    async def scenario(backend: Backend) -> tuple:
        await put_window(backend, MINUTE, started_ago=started_ago, current=current, previous=previous)
        results = [(await backend.check(hits())).hits[0] for _ in range(allowed + 1)]
        return results, await backend.window(MINUTE, WHO)

    results, window = run(make_backend, scenario)
    assert results == [True] * allowed + [False]
    assert window.used(60) == 10
    assert window.previous_ttl == pytest.approx(weighs, abs=1)
    assert window.current_ttl == pytest.approx(60 + weighs, abs=1)


def test_a_refused_request_takes_no_slot_and_still_counts_its_message(make_backend):
    async def scenario(backend: Backend) -> tuple:
        assert await backend.acquire("replies/x", "first", 1, 5)
        checks = Checks(quotas=(), leases=(("replies/x", "second", 1),), hits=((MINUTE, WHO),), ttl=5)
        refused = await backend.check(checks)
        await backend.release([("replies/x", "first")])
        admitted = await backend.check(checks)
        return refused, admitted, await backend.held("replies/x"), await backend.window(MINUTE, WHO)

    refused, admitted, held, window = run(make_backend, scenario)
    assert (refused.leases, refused.hits, refused.admitted) == ((False,), (True,), False)
    assert (admitted.leases, admitted.hits, admitted.admitted) == ((True,), (True,), True)
    assert held == 1 and window.current == 2


def test_a_token_quota_is_a_window_from_the_first_charge_and_refuses_once_spent(make_backend):
    day, whose = parse("10/day"), ("tokens", "visitor:x")
    checks = Checks(quotas=((day, whose, day.amount),), leases=(), hits=(), ttl=5)

    async def scenario(backend: Backend) -> tuple:
        before = await backend.quota(day, whose)
        await backend.charge([(day, whose)], 7)
        first = await backend.quota(day, whose)
        open_ = await backend.check(checks)
        await backend.charge([(day, whose)], 5)  # the reply that crosses it is charged in full
        return before, first, open_, await backend.check(checks), await backend.quota(day, whose)

    before, first, open_, spent, after = run(make_backend, scenario)
    assert (before.used, before.renews_in) == (0, 0)
    assert first.used == 7 and first.renews_in == pytest.approx(86400, abs=5)
    assert open_.quotas == (True,) and open_.admitted
    assert spent.quotas == (False,) and not spent.admitted
    assert after.used == 12 and after.renews_in <= first.renews_in  # the window did not restart


def test_an_admission_after_a_script_flush_runs_once(make_redis_backend):
    """Redis forgets its scripts when it restarts or is told SCRIPT FLUSH: the call that meets
    NOSCRIPT ran nothing, and runs once when sent again."""

    async def scenario(backend: Backend) -> tuple:
        await backend.client.script_flush()
        checks = Checks(quotas=(), leases=(("replies/x", "only", 1),), hits=((MINUTE, WHO),), ttl=5)
        outcome = await backend.check(checks)
        return outcome, await backend.held("replies/x"), await backend.window(MINUTE, WHO)

    outcome, held, window = run(make_redis_backend, scenario)
    assert outcome.admitted and held == 1 and window.current == 1


def test_one_address_quota_is_tested_against_the_limit_each_request_is_held_to(make_backend):
    """An address's quota is one count: a client without a session is admitted while it is under
    one visitor's share, anyone else while it is under the address's whole quota."""
    hour, owner, address = parse("40/hour"), ("tokens", "visitor:x"), ("tokens_ip", "10.0.0.1")

    def asking(limit: int) -> Checks:
        return Checks(quotas=((hour, address, limit),), leases=(), hits=(), ttl=5)

    async def scenario(backend: Backend) -> tuple:
        await backend.charge([(parse("10/hour"), owner), (hour, address)], 12)  # one call, both charged
        return (
            await backend.check(asking(10)),
            await backend.check(asking(40)),
            await backend.quota(parse("10/hour"), owner),
            await backend.quota(hour, address),
        )

    newcomer, visitor, owners, addresses = run(make_backend, scenario)
    assert newcomer.quotas == (False,) and visitor.quotas == (True,)
    assert owners.used == addresses.used == 12


def test_a_replys_slots_are_given_back_together(make_backend):
    async def scenario(backend: Backend) -> tuple:
        checks = Checks(
            quotas=(), leases=(("replies/x", "a", 3), ("replies_ip/10.0.0.1", "a", 12)), hits=(), ttl=5
        )
        assert (await backend.check(checks)).admitted
        held = await backend.held("replies/x"), await backend.held("replies_ip/10.0.0.1")
        await backend.release([("replies/x", "a"), ("replies_ip/10.0.0.1", "a")])
        await backend.release([("replies/x", "a")])  # again (an answer lost): nothing happens
        return held, (await backend.held("replies/x"), await backend.held("replies_ip/10.0.0.1"))

    assert run(make_backend, scenario) == ((1, 1), (0, 0))
