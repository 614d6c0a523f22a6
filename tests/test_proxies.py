"""Who the client is behind proxies (chat/proxies.py), and what Django believes of the scheme."""

import pytest
from django.test import RequestFactory

from chat.proxies import ForwardedHeadersMiddleware, client_ip

factory = RequestFactory()


def request(peer: str, forwarded: str | None = None, proto: str | None = None):
    meta = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    if proto is not None:
        meta["HTTP_X_FORWARDED_PROTO"] = proto
    return factory.get("/", **meta)


@pytest.mark.parametrize(
    "trusted, peer, forwarded, client",
    [
        ([], "198.51.100.4", "203.0.113.1", "198.51.100.4"),  # nobody trusted: the peer
        (["10.0.0.0/8"], "198.51.100.4", "203.0.113.1", "198.51.100.4"),  # an untrusted peer
        (["10.0.0.0/8"], "10.1.2.3", "203.0.113.1", "203.0.113.1"),
        (["10.0.0.0/8"], "10.1.2.3", "6.6.6.6, 203.0.113.1", "203.0.113.1"),  # spoofed left part
        (["10.0.0.0/8"], "10.1.2.3", "203.0.113.1, 10.9.9.9", "203.0.113.1"),  # two proxies
        (["10.0.0.0/8"], "10.1.2.3", "", "10.1.2.3"),  # a proxy that forwarded nothing
        (["10.0.0.0/8"], "10.1.2.3", "not-an-address", "10.1.2.3"),
        (["10.0.0.0/8"], "10.1.2.3", "203.0.113.1:5050", "203.0.113.1"),
        (["::1", "127.0.0.1"], "::1", "[2001:db8::7]:443", "2001:db8::7"),
        (["127.0.0.1"], "::ffff:127.0.0.1", "203.0.113.1", "203.0.113.1"),  # IPv4 mapped
        (["10.0.0.0/8"], "10.1.2.3", "10.4.4.4, 10.5.5.5", "10.4.4.4"),  # all trusted: the first
    ],
)
def test_client_ip(settings, trusted, peer, forwarded, client):
    settings.CHAT_TRUSTED_PROXIES = trusted
    assert client_ip(request(peer, forwarded)) == client


def seen_by_django(settings, peer: str) -> tuple[bool, str | None]:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    seen = {}

    def view(req):
        seen["secure"], seen["forwarded"] = req.is_secure(), req.META.get("HTTP_X_FORWARDED_FOR")

    ForwardedHeadersMiddleware(view)(request(peer, "203.0.113.1", "https"))
    return seen["secure"], seen["forwarded"]


def test_forwarded_headers_from_an_untrusted_peer_are_dropped(settings):
    settings.CHAT_TRUSTED_PROXIES = ["10.0.0.1"]
    assert seen_by_django(settings, "198.51.100.4") == (False, None)


def test_forwarded_headers_from_a_trusted_proxy_are_believed(settings):
    settings.CHAT_TRUSTED_PROXIES = ["10.0.0.1"]
    assert seen_by_django(settings, "10.0.0.1") == (True, "203.0.113.1")


def test_the_middleware_comes_first(settings):
    assert settings.MIDDLEWARE[0] == "chat.proxies.ForwardedHeadersMiddleware"


def test_a_bad_proxy_setting_names_itself(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.CHAT_TRUSTED_PROXIES = ["10.0.0.0/8", "nginx"]
    with pytest.raises(ImproperlyConfigured, match="CHAT_TRUSTED_PROXIES: 'nginx'"):
        client_ip(request("10.0.0.1"))
