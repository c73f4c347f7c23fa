"""Table tests for the distribution reference grammar (distribution/reference, go-digest)."""

import time

import pytest

from services.core.reference import (
    NAME_TOTAL_LENGTH_MAX,
    is_valid_digest,
    is_valid_repository,
    is_valid_tag,
    namespace_of,
)

SHA256 = "sha256:" + "0123456789abcdef" * 4
SHA384 = "sha384:" + "0123456789abcdef" * 6
SHA512 = "sha512:" + "0123456789abcdef" * 8


@pytest.mark.parametrize(
    "name",
    [
        "nginx",
        "library/nginx",
        "team/sub/app",
        "a",
        "0",
        "a/b/c/d/e/f/g",
        "foo.bar",
        "my_app",
        "my__app",
        "my-app",
        "my---app",
        "a.b_c__d-e--f",
        "registry.example.com/app",  # dots make a path component, not a domain
        "team/web2/v1.0",
        "x" * NAME_TOTAL_LENGTH_MAX,
        "/".join(["abc"] * 64),  # 64 * 3 + 63 = 255 characters
    ],
)
def test_valid_repository(name):
    assert is_valid_repository(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Nginx",
        "Bad/Name",
        "team/App",
        "/nginx",
        "nginx/",
        "team//app",
        "..",
        "a..b",
        "team/../app",
        "a._b",
        "a___b",
        "a-_b",
        "-app",
        "app-",
        ".app",
        "app.",
        "_app",
        "app_",
        "localhost:5000/app",  # host[:port]/ prefixes are not part of a repository path
        "nginx:latest",
        "nginx@" + SHA256,
        "my app",
        "app\n",
        "café",
        "x" * (NAME_TOTAL_LENGTH_MAX + 1),
        "/".join(["abc"] * 64) + "/a",  # 257 characters
    ],
)
def test_invalid_repository(name):
    assert not is_valid_repository(name)


def test_adversarial_names_are_rejected_quickly():
    # regexp.go's separator `[-]*` backtracks exponentially in Python's engine; this would hang.
    names = ["a" * 254 + "!", "a-" * 127 + "!", "a_" * 127 + "A", "a" + "-" * 253 + "!"]
    started = time.perf_counter()
    assert not any(is_valid_repository(name) for name in names)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("tag", "valid"),
    [
        ("latest", True),
        ("1.25.3-alpine", True),
        ("v2_rc1", True),
        ("_", True),
        ("A", True),
        ("Release-2024.05", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        (".hidden", False),
        ("-rc", False),
        ("a/b", False),
        ("a:b", False),
        ("a@b", False),
        ("a b", False),
        ("latest\n", False),
        ("é", False),  # \w is ASCII-only in Go's RE2
        ("v1é", False),
    ],
)
def test_tag(tag, valid):
    assert is_valid_tag(tag) is valid


@pytest.mark.parametrize(
    ("digest", "valid"),
    [
        (SHA256, True),
        (SHA384, True),
        (SHA512, True),
        (SHA256.upper(), False),
        ("sha256:" + "0123456789ABCDEF" * 4, False),  # go-digest: A-F disallowed
        (SHA256[:-1], False),
        (SHA256 + "0", False),
        (SHA512[:-2], False),
        ("sha256:" + "g" * 64, False),
        ("sha256:", False),
        ("sha256", False),
        (":" + "0" * 64, False),
        ("md5:" + "0" * 32, False),  # algorithms the registry cannot compute are unsupported
        ("sha256+b64u:" + "0" * 64, False),
        (SHA256 + "\n", False),
        (" " + SHA256, False),
        ("", False),
    ],
)
def test_digest(digest, valid):
    assert is_valid_digest(digest) is valid


@pytest.mark.parametrize(
    ("repository", "namespace"),
    [
        ("nginx", ""),
        ("library/nginx", "library"),
        ("team/web", "team"),
        ("team/sub/app", "team"),
        ("a.b/c", "a.b"),
    ],
)
def test_namespace_of(repository, namespace):
    assert namespace_of(repository) == namespace
