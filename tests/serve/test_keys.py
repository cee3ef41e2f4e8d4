"""API keys: printed once, stored hashed, looked up by hash; bad files and names are one-line user errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from videopoet.errors import UserError
from videopoet.serve.keys import KeyStore, add_key, hash_key


def test_add_and_look_up(tmp_path: Path) -> None:
    path = tmp_path / "k" / "keys.json"
    alice, bob = add_key(path, "alice"), add_key(path, "bob")
    assert alice.startswith("vp_") and alice != bob and len(alice) > 40
    text = path.read_text()
    assert alice not in text and hash_key(alice) in text  # only the hash is stored
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = KeyStore(path)
    assert len(store) == 2 and store.name_of(alice) == "alice" and store.name_of(bob) == "bob"
    assert store.name_of("vp_wrong") is None and store.name_of(None) is None and store.name_of("") is None


def test_user_errors(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with pytest.raises(UserError, match="not found"):
        KeyStore(path)
    add_key(path, "alice")
    with pytest.raises(UserError, match="already has a key named 'alice'"):
        add_key(path, "alice")
    with pytest.raises(UserError, match="must be 1-64"):
        add_key(path, "two words")
    path.write_text("{nope")
    with pytest.raises(UserError, match="not valid JSON"):
        KeyStore(path)
    path.write_text(json.dumps({"keys": []}))
    with pytest.raises(UserError, match="holds no keys"):
        KeyStore(path)
    path.write_text(json.dumps({"keys": [{"name": "x", "sha256": "plain"}]}))
    with pytest.raises(UserError, match="sha256"):
        KeyStore(path)
