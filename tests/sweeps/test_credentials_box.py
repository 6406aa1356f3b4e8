"""Sealing credentials: nothing readable at rest, and keys that rotate."""

from __future__ import annotations

from cryptography.fernet import Fernet

from promptlooper.sweeps.credentials.box import SecretBox


def test_sealed_secrets_open_with_the_key_and_not_without():
    key, other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    box = SecretBox(lambda: [key])

    sealed = box.seal("sk-plain")

    assert "sk-plain" not in sealed
    assert box.seal("sk-plain") != sealed  # a fresh IV each time
    assert box.open(sealed) == "sk-plain"
    assert SecretBox(lambda: [other]).open(sealed) is None
    assert box.open("not a token") is None


def test_a_new_key_first_still_opens_what_the_old_one_sealed():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_before = SecretBox(lambda: [old]).seal("sk-old")
    rotated = SecretBox(lambda: [new, old])

    sealed_after = rotated.seal("sk-new")

    assert rotated.open(sealed_before) == "sk-old"
    assert SecretBox(lambda: [new]).open(sealed_after) == "sk-new"


def test_keys_are_read_only_when_a_secret_is_sealed_or_opened():
    reads: list[int] = []
    key = Fernet.generate_key().decode()

    def keys() -> list[str]:
        reads.append(1)
        return [key]

    box = SecretBox(keys)
    assert reads == []
    box.open(box.seal("x"))
    assert reads == [1]
