"""The client address behind trusted reverse proxies (services/core/http.py)."""

from __future__ import annotations

import ipaddress

import pytest

from services.core.http import client_address

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(("peer", "forwarded_for", "trusted", "expected"), [
    # no trusted proxies: the headers are not believed at all
    ("10.0.0.5", ["203.0.113.7"], (), "10.0.0.5"),
    # an untrusted peer's header is a client's claim
    ("198.51.100.1", ["203.0.113.7"], PROXIES, "198.51.100.1"),
    ("10.0.0.5", ["203.0.113.7"], PROXIES, "203.0.113.7"),
    ("::1", ["2001:db8::7"], PROXIES, "2001:db8::7"),
    # the client forged hops to the left: only the one the trusted proxy appended counts
    ("10.0.0.5", ["1.2.3.4, 203.0.113.7"], PROXIES, "203.0.113.7"),
    # proxies in a chain, and the same list split over several header lines
    ("10.0.0.5", ["203.0.113.7, 10.1.1.1"], PROXIES, "203.0.113.7"),
    ("10.0.0.5", ["1.2.3.4", "203.0.113.7", "10.1.1.1"], PROXIES, "203.0.113.7"),
    # a trusted proxy without the header, or with a hop that is no address
    ("10.0.0.5", [], PROXIES, "10.0.0.5"),
    ("10.0.0.5", ["unknown"], PROXIES, "10.0.0.5"),
    ("10.0.0.5", ["203.0.113.7, unknown, 10.1.1.1"], PROXIES, "10.1.1.1"),
    # every hop trusted: the leftmost is the best there is
    ("10.0.0.5", ["10.9.9.9"], PROXIES, "10.9.9.9"),
])
def test_the_client_is_the_last_hop_no_trusted_proxy_added(peer, forwarded_for, trusted,
                                                           expected):
    assert client_address(peer, forwarded_for, trusted) == expected
