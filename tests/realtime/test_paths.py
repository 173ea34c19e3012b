"""Channel grammar and wildcard matching (realtime/core/paths.py, PROTOCOL §4)."""

from __future__ import annotations

import pytest

from realtime.core.paths import ChannelPath, is_valid_namespace_name, parse_channel
from realtime.exceptions import InvalidChannel

SEG_50 = "a" * 50
SEG_51 = "a" * 51


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("default", ChannelPath(("default",))),
        ("/default", ChannelPath(("default",))),
        ("default/", ChannelPath(("default",))),
        ("/default/", ChannelPath(("default",))),
        ("/a/b", ChannelPath(("a", "b"))),
        ("/a/b/c", ChannelPath(("a", "b", "c"))),
        ("/a/b/c/d", ChannelPath(("a", "b", "c", "d"))),
        ("/a/b/c/d/e", ChannelPath(("a", "b", "c", "d", "e"))),
        ("/a/b/c/d/e/", ChannelPath(("a", "b", "c", "d", "e"))),
        ("a/b/c/d/e", ChannelPath(("a", "b", "c", "d", "e"))),
        (f"/{SEG_50}", ChannelPath((SEG_50,))),
        (f"/ns/{SEG_50}", ChannelPath(("ns", SEG_50))),
        ("/a", ChannelPath(("a",))),
        ("/0", ChannelPath(("0",))),
        ("/ab", ChannelPath(("ab",))),
        ("/a-b", ChannelPath(("a-b",))),
        ("/a--b", ChannelPath(("a--b",))),
        ("/Default/User-1/JOHN", ChannelPath(("Default", "User-1", "JOHN"))),
        ("/123/456", ChannelPath(("123", "456"))),
    ],
)
def test_a_concrete_channel_parses_for_publish_and_subscribe(raw, expected):
    assert parse_channel(raw, allow_wildcard=False) == expected
    assert parse_channel(raw, allow_wildcard=True) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/default/*", ChannelPath(("default",), wildcard=True)),
        ("default/*", ChannelPath(("default",), wildcard=True)),
        ("/default/foo/*", ChannelPath(("default", "foo"), wildcard=True)),
        ("/a/b/c/d/*", ChannelPath(("a", "b", "c", "d"), wildcard=True)),
    ],
)
def test_a_wildcard_channel_parses_for_subscribe(raw, expected):
    assert parse_channel(raw, allow_wildcard=True) == expected


@pytest.mark.parametrize(
    "raw",
    ["/default/*", "default/*", "/default/foo/*", "/a/b/c/d/*"],
)
def test_a_wildcard_channel_is_refused_for_publish(raw):
    with pytest.raises(InvalidChannel, match="^Invalid Channel Format$"):
        parse_channel(raw, allow_wildcard=False)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("/", id="slash-only"),
        pytest.param("//", id="two-slashes"),
        pytest.param("//a", id="double-leading-slash"),
        pytest.param("a//", id="double-trailing-slash"),
        pytest.param("/a//b", id="empty-middle-segment"),
        pytest.param("/a/b/c/d/e/f", id="six-segments"),
        pytest.param("/a/b/c/d/e/f/", id="six-segments-trailing-slash"),
        pytest.param(f"/{SEG_51}", id="51-char-namespace"),
        pytest.param(f"/ns/{SEG_51}", id="51-char-segment"),
        pytest.param("/-a", id="hyphen-at-start"),
        pytest.param("/a-", id="hyphen-at-end"),
        pytest.param("/ns/-a", id="hyphen-at-start-of-segment"),
        pytest.param("/ns/a-", id="hyphen-at-end-of-segment"),
        pytest.param("/-", id="hyphen-alone"),
        pytest.param("/ns/caf\u00e9", id="unicode-letter"),
        pytest.param("/ns/\u0661\u0662", id="unicode-digits"),
        pytest.param("/ns/\uff41", id="fullwidth-letter"),
        pytest.param("/ns/..", id="dot-dot"),
        pytest.param("/ns/../x", id="dot-dot-traversal"),
        pytest.param("/ns/a.b", id="dot"),
        pytest.param("/ns/a_b", id="underscore"),
        pytest.param("/ns/a b", id="space-inside"),
        pytest.param(" /ns", id="leading-space"),
        pytest.param("/ns ", id="trailing-space"),
        pytest.param("/ns\n", id="trailing-newline"),
        pytest.param("/ns/a\n", id="trailing-newline-on-segment"),
        pytest.param("/ns\n/a", id="newline-inside"),
        pytest.param("/ns\t", id="trailing-tab"),
        pytest.param("/ns\x00", id="nul"),
        pytest.param("\\ns\\a", id="backslashes"),
        pytest.param("/ns/a?b=1", id="query-string"),
        pytest.param("/ns/*/a", id="wildcard-not-last"),
        pytest.param("/*/a", id="wildcard-as-namespace"),
        pytest.param("/ns/**", id="double-star"),
        pytest.param("/ns/a*", id="star-inside-segment"),
        pytest.param("/ns/*/*", id="two-wildcards"),
        pytest.param("/*", id="wildcard-alone"),
        pytest.param("*", id="bare-star"),
        pytest.param("/a/b/c/d/e/*", id="wildcard-as-sixth-segment"),
    ],
)
def test_a_channel_outside_the_grammar_is_refused(raw):
    for allow_wildcard in (True, False):
        with pytest.raises(InvalidChannel, match="^Invalid Channel Format$"):
            parse_channel(raw, allow_wildcard=allow_wildcard)


@pytest.mark.parametrize(
    "raw",
    [None, 1, 1.5, True, b"/default", ["default"], {"channel": "/default"}, ("default",)],
    ids=type,
)
def test_a_channel_that_is_not_a_string_is_refused(raw):
    with pytest.raises(InvalidChannel):
        parse_channel(raw, allow_wildcard=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/$presence/default", ChannelPath(("default",), presence=True)),
        ("/$presence/default/a/*", ChannelPath(("default", "a"), wildcard=True, presence=True)),
    ],
)
def test_a_presence_channel_parses_for_subscribe_and_names_the_channel_it_watches(raw, expected):
    channel = parse_channel(raw, allow_wildcard=True)

    assert channel == expected
    assert channel.watched == ChannelPath(expected.segments, expected.wildcard)


@pytest.mark.parametrize(
    ("raw", "allow_wildcard"),
    [
        ("/$presence/default", False),  # nobody publishes presence
        ("/$presence", True),
        ("/$presence/", True),
        ("/$presence/*", True),
        ("/$presence/$presence/default", True),
        ("/default/$presence", True),
        ("/$presence/a/b/c/d/e/f", True),
        ("/$Presence/default", True),
    ],
)
def test_a_malformed_or_published_presence_channel_is_refused(raw, allow_wildcard):
    with pytest.raises(InvalidChannel):
        parse_channel(raw, allow_wildcard=allow_wildcard)


@pytest.mark.parametrize(
    ("raw", "path", "key", "all_segments", "namespace"),
    [
        ("default", "/default", "default", ("default",), "default"),
        ("/default/", "/default", "default", ("default",), "default"),
        ("/ns/a/b", "/ns/a/b", "ns/a/b", ("ns", "a", "b"), "ns"),
        ("ns/a/b/", "/ns/a/b", "ns/a/b", ("ns", "a", "b"), "ns"),
        ("/ns/*", "/ns/*", "ns/*", ("ns", "*"), "ns"),
        ("ns/a/*", "/ns/a/*", "ns/a/*", ("ns", "a", "*"), "ns"),
        ("/a/b/c/d/*", "/a/b/c/d/*", "a/b/c/d/*", ("a", "b", "c", "d", "*"), "a"),
        ("/$presence/ns/a", "/$presence/ns/a", "ns/a/$presence", ("ns", "a"), "ns"),
        ("$presence/ns/a/*/", "/$presence/ns/a/*", "ns/a/*/$presence", ("ns", "a", "*"), "ns"),
        (
            "/$presence/a/b/c/d/e",
            "/$presence/a/b/c/d/e",
            "a/b/c/d/e/$presence",
            ("a", "b", "c", "d", "e"),
            "a",
        ),
    ],
)
def test_a_channel_exposes_its_canonical_path_key_segments_and_namespace(
    raw, path, key, all_segments, namespace
):
    channel = parse_channel(raw, allow_wildcard=True)
    assert (channel.path, channel.key, channel.all_segments, channel.namespace) == (
        path,
        key,
        all_segments,
        namespace,
    )


@pytest.mark.parametrize(
    ("raw", "keys"),
    [
        ("/ns", ["ns"]),
        ("/ns/a", ["ns/a", "ns/*"]),
        ("/ns/a/b", ["ns/a/b", "ns/*", "ns/a/*"]),
        ("/ns/a/b/c", ["ns/a/b/c", "ns/*", "ns/a/*", "ns/a/b/*"]),
        ("/ns/a/b/c/d", ["ns/a/b/c/d", "ns/*", "ns/a/*", "ns/a/b/*", "ns/a/b/c/*"]),
    ],
)
def test_a_published_channel_is_matched_by_itself_and_every_wildcard_above_it(raw, keys):
    assert parse_channel(raw, allow_wildcard=False).matching_keys() == keys


@pytest.mark.parametrize(
    ("subscription", "published", "matches"),
    [
        ("/ns/*", "/ns", False),
        ("/ns/*", "/ns/a", True),
        ("/ns/*", "/ns/a/b", True),
        ("/ns/*", "/ns/a/b/c/d", True),
        ("/ns/a/*", "/ns/a", False),
        ("/ns/a/*", "/ns/a/b", True),
        ("/ns/a/*", "/ns/b/a", False),
        ("/ns/a/b/c/*", "/ns/a/b/c/d", True),
        ("/ns/*", "/other/a", False),
        ("/ns/a", "/ns/a", True),
        ("/ns/a", "/ns/a/b", False),
        ("/ns/a", "/ns", False),
        ("/ns/*", "/NS/a", False),
        ("/NS/a", "/ns/a", False),
        ("/ns/A", "/ns/a", False),
        ("/ns/A", "/ns/A", True),
    ],
)
def test_a_subscription_receives_a_publish_only_when_its_key_matches(subscription, published, matches):
    key = parse_channel(subscription, allow_wildcard=True).key
    assert (key in parse_channel(published, allow_wildcard=False).matching_keys()) is matches


def test_channels_differing_only_in_case_are_different_channels():
    lower = parse_channel("/ns/room", allow_wildcard=False)
    upper = parse_channel("/ns/Room", allow_wildcard=False)
    assert lower != upper
    assert lower.key != upper.key


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("default", True),
        ("a", True),
        ("A-1", True),
        (SEG_50, True),
        (SEG_51, False),
        ("", False),
        ("-a", False),
        ("a-", False),
        ("a/b", False),
        ("*", False),
        ("a\n", False),
        ("caf\u00e9", False),
    ],
)
def test_namespace_names_follow_the_segment_grammar(name, valid):
    assert is_valid_namespace_name(name) is valid
