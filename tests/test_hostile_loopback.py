"""Class 9 of issue #29: the vLLM dev-mode server listens on loopback whenever vllm.server.host names this
machine's loopback, however it is spelled; only another address opens it to every interface."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envkit.launch.layout import loopback_address
from envkit.recipe.load import parse_recipe
from tests.test_launch import resolved_layout

GOLDEN = Path(__file__).parent / "fixtures" / "launch"
TRL = "1.16.0"


def server_bind(host: str) -> str:
    server = f"  mode: server\n  server: {{host: '{host}'}}\n"
    text = (GOLDEN / "server-1+1.yaml").read_text().replace("  mode: server\n", server)
    server = resolved_layout(parse_recipe(text, str(GOLDEN / "x.yaml")), "x.yaml", 2, TRL).processes[0]
    return server.argv[server.argv.index("--host") + 1]


@pytest.mark.parametrize("host, bind", [
    ("127.0.0.2", "127.0.0.2"), ("127.1", "127.0.0.1"), ("LOCALHOST", "localhost"), ("localhost.", "localhost"),
    ("::ffff:127.0.0.1", "127.0.0.1"), ("0:0:0:0:0:0:0:1", "::1"), ("127.0.0.1", "127.0.0.1"), ("::1", "::1"),
])
def test_every_spelling_of_loopback_listens_on_loopback(host, bind):
    assert server_bind(host) == bind


@pytest.mark.parametrize("host", ["10.0.0.1", "node-1.cluster", "::ffff:10.0.0.1", "0.0.0.0", "localhost.evil.com"])
def test_another_address_listens_on_every_interface(host):
    assert server_bind(host) == "0.0.0.0"


@given(st.one_of(st.ip_addresses(), st.ip_addresses(v=4).map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}"))))
def test_loopback_is_decided_by_the_address(address):
    mapped = getattr(address, "ipv4_mapped", None) or address
    for spelling in (str(address), address.exploded, address.exploded.upper()):
        assert (loopback_address(spelling) is not None) is mapped.is_loopback
