"""Who the client is: the peer address, or what a trusted proxy says it forwarded.

`X-Forwarded-For` and `X-Forwarded-Proto` are believed only from a peer listed in
CHAT_TRUSTED_PROXIES (addresses or networks, comma separated). From anyone else they are
removed before any view or Django itself reads them (SECURE_PROXY_SSL_HEADER relies on it).
"""

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

from chat import conf

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO")


@lru_cache(maxsize=8)
def _networks(setting: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for item in setting:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"CHAT_TRUSTED_PROXIES: {item!r} is not an IP address or network (such as 10.0.0.0/8)."
            ) from None
    return tuple(networks)


def trusted_networks() -> tuple[Network, ...]:
    value = conf.get("CHAT_TRUSTED_PROXIES") or ()
    if isinstance(value, str):
        value = value.split(",")
    return _networks(tuple(item.strip() for item in value if item.strip()))


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [::1]:8080
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # 1.2.3.4:8080
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return address.ipv4_mapped or address if address.version == 6 else address


def is_trusted(address: str, networks: Iterable[Network] | None = None) -> bool:
    parsed = _address(address)
    if parsed is None:
        return False
    return any(parsed in network for network in (trusted_networks() if networks is None else networks))


def client_ip(request: HttpRequest) -> str:
    """The peer, or from a trusted peer the first hop of X-Forwarded-For that is not a trusted proxy,
    read from the right (the left part of the header is whatever the client wrote)."""
    peer = request.META.get("REMOTE_ADDR") or ""
    networks = trusted_networks()
    if not networks or not is_trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        parsed = _address(hop)
        if parsed is None:  # garbage in the header: the last proxy is the best we know
            return peer
        if not any(parsed in network for network in networks):
            return str(parsed)
    return str(_address(hops[0])) if hops else peer


class ForwardedHeadersMiddleware:
    """First in MIDDLEWARE: forwarded headers from a peer that is not a trusted proxy are dropped."""

    sync_capable = async_capable = True  # never a thread hop for an async chain

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _clean(self, request: HttpRequest) -> None:
        meta = request.META
        if any(name in meta for name in FORWARDED_HEADERS) and not is_trusted(meta.get("REMOTE_ADDR") or ""):
            for name in FORWARDED_HEADERS:
                meta.pop(name, None)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self._clean(request)
        if self.is_async:
            return self.__acall__(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        return await self.get_response(request)
