"""Which URL hosts may be fetched, how a checked hop is pinned, and the trusted-network setting."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from talkingface.config import ApiSettings, load_settings
from talkingface.errors import ConfigError, PermissionDeniedError
from talkingface.url_guard import Resolver, check_url, refusal_reason


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),  # unique-local
        ("fec0::1", "site-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved 240/4 (Python files it under private)
        ("255.255.255.255", "private"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:5", "NAT64/6to4 form of the private address 10.0.0.5"),
        ("64:ff9b::7f00:1", "NAT64/6to4 form of the loopback address 127.0.0.1"),
        ("2002:a9fe:a9fe::1", "NAT64/6to4 form of the link-local"),
        ("::a00:5", "reserved (IPv4-compatible"),
        ("64:ff9b:1::a00:5", "reserved"),
        ("2001:db8::1", "private"),  # documentation
    ],
)
def test_non_public_addresses_are_refused_with_a_reason(address: str, reason: str) -> None:
    found = refusal_reason(ipaddress.ip_address(address))
    assert found is not None and found.startswith(reason), found


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "2606:4700::6810:84e5",
        "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34: how IPv6-only hosts reach IPv4
        "2002:5db8:d822::1",  # 6to4 of a public address
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def _resolver(*answers: str) -> Resolver:
    def resolve(host: str, port: int) -> Sequence[str]:
        return answers

    return resolve


def test_a_trusted_network_allows_its_addresses_and_no_others() -> None:
    api = ApiSettings(url_allowed_networks=["10.20.0.0/16"])
    target = check_url("video", "http://media.corp/a.mp4", api, _resolver("10.20.3.4"))
    assert target.address == ipaddress.ip_address("10.20.3.4")
    with pytest.raises(PermissionDeniedError, match=r"10\.21\.0\.1"):
        check_url("video", "http://media.corp/a.mp4", api, _resolver("10.21.0.1"))


def test_every_address_of_a_host_must_pass_and_the_first_is_pinned() -> None:
    api = ApiSettings(url_allowed_networks=["10.20.0.0/16"])
    both = _resolver("10.20.3.4", "93.184.216.34")
    assert str(check_url("video", "http://m.corp/", api, both).address) == "10.20.3.4"
    with pytest.raises(PermissionDeniedError, match=r"192\.168\.0\.9"):
        check_url("video", "http://m.corp/", api, _resolver("93.184.216.34", "192.168.0.9"))


def test_allow_private_url_hosts_still_trusts_every_address() -> None:
    api = ApiSettings(allow_private_url_hosts=True)
    target = check_url("audio", "http://intranet/a.wav", api, _resolver("10.0.0.5"))
    assert str(target.address) == "10.0.0.5"


@pytest.mark.parametrize(
    ("url", "pinned", "host_header", "sni"),
    [
        (
            "http://media.test:8080/a%20b.wav?x=1#part",
            "http://10.1.2.3:8080/a%20b.wav?x=1",
            "media.test:8080",
            None,
        ),
        ("https://media.test/a.wav", "https://10.1.2.3/a.wav", "media.test", "media.test"),
        (
            "https://bücher.test/a.wav",
            "https://10.1.2.3/a.wav",
            "xn--bcher-kva.test",
            "xn--bcher-kva.test",
        ),
    ],
)
def test_a_checked_hop_goes_to_its_address_with_the_name_in_host_and_sni(
    url: str, pinned: str, host_header: str, sni: str | None
) -> None:
    api = ApiSettings(url_allowed_networks=["10.0.0.0/8"])
    target = check_url("audio", url, api, _resolver("10.1.2.3"))
    assert str(target.pinned_url) == pinned
    assert target.headers()["Host"] == host_header
    assert target.extensions().get("sni_hostname") == sni


def test_an_ipv6_address_is_pinned_in_brackets() -> None:
    api = ApiSettings(url_allowed_networks=["fd00::/8"])
    target = check_url("audio", "http://v6.corp:81/a.wav", api, _resolver("fd00::7"))
    assert str(target.pinned_url) == "http://[fd00::7]:81/a.wav"
    assert target.headers()["Host"] == "v6.corp:81"


def test_trusted_networks_are_normalised_at_load() -> None:
    settings = load_settings(
        api={"url_allowed_networks": ["192.168.1.7", " 10.0.0.0/8", "fd00::/8"]}
    )
    assert settings.api.url_allowed_networks == ["192.168.1.7/32", "10.0.0.0/8", "fd00::/8"]


@pytest.mark.parametrize("entry", ["10.0.0.5/8", "intranet", "10.0.0.0/33", ""])
def test_a_bad_trusted_network_is_a_config_error_naming_the_setting(entry: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(api={"url_allowed_networks": [entry]})
    assert "api.url_allowed_networks" in caught.value.message
    assert "write a CIDR such as 10.20.0.0/16" in caught.value.message
