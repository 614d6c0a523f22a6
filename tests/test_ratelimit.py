"""The limiter's parts that need no server: rates, waits, the sentences, leases that lapse."""

import asyncio

import pytest
from django.core.exceptions import ImproperlyConfigured
from limits import parse

from chat.ratelimit.backends import MemoryBackend
from chat.ratelimit.limiter import in_words, sliding_wait
from chat.ratelimit.rules import describe, parse_count, parse_rate


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
        await backend.release("k", "a")
        results.append(await backend.held("k"))
        return results

    assert asyncio.run(scenario()) == [True, True, False, 1, True, 1]


def test_a_limit_written_wrong_fails_the_system_check(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.CHAT_LIMIT_MESSAGES = "thirty a minute"
    with pytest.raises(SystemCheckError, match="CHAT_LIMIT_MESSAGES: 'thirty a minute'"):
        call_command("check")
