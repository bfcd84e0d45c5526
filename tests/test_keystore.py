"""The encrypted keystore (muxernode.keystore), on real files in tmp_path.

scrypt runs with a small n (2**10) so the tests stay fast; the file records n, so unlock
uses whatever the file says, exactly as it does for production keys.
"""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from pathlib import Path

import pytest

from consensus.crypto import PrivateKey
from muxernode.keystore import (
    BadName,
    BadSeed,
    CorruptKeyFile,
    KeyExists,
    Keystore,
    KeystoreError,
    UnknownKey,
    WrongPassphrase,
)

N = 2**10
SEED = bytes(range(32))
SEED_ADDRESS = PrivateKey(SEED).address_text


@pytest.fixture
def ks(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "home" / ".muxer" / "keys", scrypt_n=N)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_private_file_and_unlocks(ks: Keystore) -> None:
    info = ks.create("alice", "correct horse")
    path = ks.path / "alice.json"
    assert info.path == path
    assert _mode(path) == 0o600
    assert _mode(ks.path) == 0o700
    assert _mode(ks.path.parent) == 0o700  # ~/.muxer, made by us, is private too
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    assert doc["name"] == "alice"
    assert doc["address"] == info.address and doc["address"].startswith("mx")
    assert doc["public_key"] == info.public_key
    assert doc["kdf"] == "scrypt"
    assert doc["kdf_params"]["n"] == N
    assert doc["kdf_params"]["r"] == 8 and doc["kdf_params"]["p"] == 1
    assert len(bytes.fromhex(doc["kdf_params"]["salt"])) == 16
    assert doc["cipher"] == "chacha20poly1305"
    assert len(bytes.fromhex(doc["nonce"])) == 12
    assert len(bytes.fromhex(doc["ciphertext"])) == 32 + 16  # seed + Poly1305 tag

    key = ks.unlock("alice", "correct horse")
    assert key.address_text == info.address
    assert key.public_key.hex() == info.public_key
    assert key.seed.hex() not in path.read_text()  # sealed, never in clear
    assert key.seed.hex() not in repr(key)


def test_default_n_is_production_strength(tmp_path: Path) -> None:
    assert Keystore(tmp_path).scrypt_n == 2**15


@pytest.mark.parametrize("n", [0, 1, 3, 1000, 2**21])
def test_scrypt_n_must_be_sane(tmp_path: Path, n: int) -> None:
    with pytest.raises(ValueError, match="power of 2"):
        Keystore(tmp_path, scrypt_n=n)


def test_file_mode_ignores_a_permissive_umask(ks: Keystore) -> None:
    old = os.umask(0)
    try:
        info = ks.create("alice", "pw")
    finally:
        os.umask(old)
    assert _mode(info.path) == 0o600
    assert _mode(ks.path) == 0o700


def test_existing_directory_is_used(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    d.mkdir(mode=0o700)
    ks = Keystore(d, scrypt_n=N)
    ks.create("alice", "pw")
    assert [i.name for i in ks.list_keys()] == ["alice"]


def test_keystore_path_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("not a directory")
    with pytest.raises(KeystoreError, match="not a directory"):
        Keystore(f, scrypt_n=N).create("alice", "pw")


def test_wrong_passphrase(ks: Keystore) -> None:
    ks.create("alice", "right")
    with pytest.raises(WrongPassphrase, match="wrong passphrase for key 'alice'"):
        ks.unlock("alice", "wrong")
    with pytest.raises(WrongPassphrase):
        ks.unlock("alice", "")


def test_passphrase_unicode_normalized(ks: Keystore) -> None:
    composed = "caf\u00e9"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    ks.create("alice", composed)
    assert ks.unlock("alice", decomposed).address_text == ks.show("alice").address


def test_empty_passphrase_refused(ks: Keystore) -> None:
    with pytest.raises(KeystoreError, match="must not be empty"):
        ks.create("alice", "")
    assert not (ks.path / "alice.json").exists()


def _edit(path: Path, **changes: object) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def _flip_hex(text: str, index: int) -> str:
    c = text[index]
    return text[:index] + ("0" if c != "0" else "1") + text[index + 1:]


@pytest.mark.parametrize("index", [0, 40, 95])
def test_tampered_ciphertext_fails(ks: Keystore, index: int) -> None:
    info = ks.create("alice", "pw")
    doc = json.loads(info.path.read_text())
    _edit(info.path, ciphertext=_flip_hex(doc["ciphertext"], index))
    with pytest.raises(WrongPassphrase, match="modified"):
        ks.unlock("alice", "pw")


def test_tampered_nonce_or_salt_fails(ks: Keystore) -> None:
    info = ks.create("alice", "pw")
    doc = json.loads(info.path.read_text())
    _edit(info.path, nonce=_flip_hex(doc["nonce"], 3))
    with pytest.raises(WrongPassphrase):
        ks.unlock("alice", "pw")
    _edit(info.path, nonce=doc["nonce"],
          kdf_params={**doc["kdf_params"], "salt": _flip_hex(doc["kdf_params"]["salt"], 0)})
    with pytest.raises(WrongPassphrase):
        ks.unlock("alice", "pw")


def test_swapped_address_fails(ks: Keystore) -> None:
    # Someone edits the clear-text address (to show theirs): the associated data no
    # longer matches, so the key does not unlock under a false address.
    info = ks.create("alice", "pw")
    other = PrivateKey.generate()
    _edit(info.path, address=other.address_text)
    with pytest.raises(WrongPassphrase):
        ks.unlock("alice", "pw")
    _edit(info.path, address=info.address, public_key=other.public_key.hex())
    with pytest.raises(CorruptKeyFile, match="public key does not match"):
        ks.unlock("alice", "pw")


def test_renamed_file_fails(ks: Keystore) -> None:
    info = ks.create("alice", "pw")
    info.path.rename(ks.path / "mallory.json")
    with pytest.raises(CorruptKeyFile, match="holds the key named 'alice'"):
        ks.unlock("mallory", "pw")
    with pytest.raises(CorruptKeyFile):
        ks.show("mallory")


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 2},
        {"kdf": "pbkdf2"},
        {"cipher": "aes-gcm"},
        {"kdf_params": {"salt": "00" * 16, "n": 2**30, "r": 8, "p": 1}},  # DoS-sized n
        {"kdf_params": {"salt": "00" * 16, "n": 1000, "r": 8, "p": 1}},
        {"kdf_params": {"salt": "zz", "n": N, "r": 8, "p": 1}},
        {"kdf_params": "scrypt"},
        {"nonce": "00"},
        {"ciphertext": None},
        {"address": "mxnothex"},
        {"public_key": "abcd"},
    ],
)
def test_corrupt_files_refused(ks: Keystore, changes: dict[str, object]) -> None:
    info = ks.create("alice", "pw")
    _edit(info.path, **changes)
    with pytest.raises(CorruptKeyFile):
        ks.unlock("alice", "pw")


def test_not_json_file(ks: Keystore) -> None:
    info = ks.create("alice", "pw")
    info.path.write_text("{broken")
    with pytest.raises(CorruptKeyFile, match="not JSON"):
        ks.show("alice")
    info.path.write_text("[1, 2]")
    with pytest.raises(CorruptKeyFile, match="not a JSON object"):
        ks.show("alice")


def test_import_seed(ks: Keystore) -> None:
    info = ks.import_seed("bob", SEED.hex().upper() + "\n", "pw")
    assert info.address == SEED_ADDRESS
    assert ks.unlock("bob", "pw").seed == SEED


@pytest.mark.parametrize(
    ("seed_hex", "words"),
    [
        ("00" * 31, "64 hex digits"),
        ("00" * 33, "64 hex digits"),
        ("0x" + "00" * 32, "without a 0x"),
        ("zz" * 32, "hex digits only"),
        ("", "64 hex digits"),
    ],
)
def test_bad_seed_hex(ks: Keystore, seed_hex: str, words: str) -> None:
    with pytest.raises(BadSeed, match=words):
        ks.import_seed("bob", seed_hex, "pw")
    assert not ks.exists("bob")


def test_name_exists(ks: Keystore) -> None:
    first = ks.create("alice", "pw")
    before = first.path.read_bytes()
    with pytest.raises(KeyExists, match="already exists"):
        ks.create("alice", "pw2")
    with pytest.raises(KeyExists):
        ks.import_seed("alice", SEED.hex(), "pw2")
    assert first.path.read_bytes() == before  # never overwritten


def test_exclusive_create_wins_a_race(ks: Keystore, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another process creates the file between our exists() check and our open: O_EXCL
    # still refuses, and the other file is left alone.
    ks.create("seed", "pw")
    target = ks.path / "alice.json"
    real_exists = Path.exists

    def racing_exists(self: Path) -> bool:
        if self == target:
            target.write_text("theirs")
            return False
        return real_exists(self)

    monkeypatch.setattr(Path, "exists", racing_exists)
    with pytest.raises(KeyExists):
        ks.create("alice", "pw")
    monkeypatch.undo()
    assert target.read_text() == "theirs"


@pytest.mark.parametrize(
    "name",
    ["", ".hidden", "-dash", "a/b", "../evil", "a b", "x" * 33, "名前", "a\x00b", "a.json/"],
)
def test_bad_names(ks: Keystore, name: str) -> None:
    with pytest.raises(BadName, match="bad key name"):
        ks.create(name, "pw")
    with pytest.raises(BadName):
        ks.show(name)
    assert not ks.exists(name)


@pytest.mark.parametrize("name", ["a", "alice", "Bob_2", "w1.backup", "x" * 32, "0-key"])
def test_good_names(ks: Keystore, name: str) -> None:
    assert ks.create(name, "pw").name == name


def test_unknown_key(ks: Keystore) -> None:
    with pytest.raises(UnknownKey, match="no key named 'ghost'"):
        ks.unlock("ghost", "pw")
    with pytest.raises(UnknownKey):
        ks.show("ghost")
    assert not ks.exists("ghost")


def test_list_and_show(ks: Keystore) -> None:
    assert ks.list_keys() == []  # no directory yet: an empty keystore, not an error
    ks.create("carol", "pw")
    ks.import_seed("bob", SEED.hex(), "pw")
    (ks.path / "notes.txt").write_text("not a key")
    (ks.path / ".alice.json.tmp").write_text("{}")
    infos = ks.list_keys()
    assert [i.name for i in infos] == ["bob", "carol"]
    bob = ks.show("bob")
    assert bob == infos[0]
    assert bob.address == SEED_ADDRESS
    assert set(bob.as_json()) == {"name", "address", "public_key", "path"}
    assert SEED.hex() not in json.dumps(bob.as_json())
