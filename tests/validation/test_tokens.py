"""Offline tiktoken: known ids and counts, the model map, chat overhead, pluggable tokenizers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunebridge.tokens import (
    ENCODING_SHA256,
    ChatOverhead,
    context_for_model,
    counter_for_model,
    encoding_counter,
    encoding_name_for_model,
    local_counter,
    prepare_tiktoken_cache,
    tokenizer_json_counter,
)

# The OpenAI cookbook's "How to count tokens" example: 129 tokens for gpt-3.5-turbo and gpt-4,
# 124 for gpt-4o and gpt-4o-mini, as the API itself reported as prompt_tokens.
COOKBOOK = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that "
     "translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user",
     "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant",
     "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more "
     "bandwidth to touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant",
     "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean "
     "for the client deliverable."},
]


@pytest.mark.parametrize(("model", "expected"), [
    ("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4o", 124),
    ("gpt-4o-mini-2024-07-18", 124), ("ft:gpt-4o-mini-2024-07-18:acme::abc123", 124)])
def test_chat_counts_match_the_cookbook(model: str, expected: int) -> None:
    assert counter_for_model(model).messages(COOKBOOK) == expected


def test_known_token_counts_per_encoding() -> None:
    cl100k, o200k = encoding_counter("cl100k_base"), encoding_counter("o200k_base")
    assert cl100k("hello world") == 2 and o200k("hello world") == 2
    assert cl100k("tiktoken is great!") == 6
    # Special-token text in user data is ordinary text, never an exception.
    assert o200k("<|endoftext|>") > 1


@pytest.mark.parametrize(("model", "encoding", "context"), [
    ("gpt-4o-mini-2024-07-18", "o200k_base", 65_536), ("gpt-4o-2024-08-06", "o200k_base", 65_536),
    ("gpt-4.1-nano-2025-04-14", "o200k_base", 65_536), ("o4-mini", "o200k_base", 65_536),
    ("gpt-3.5-turbo-0125", "cl100k_base", 16_385), ("gpt-3.5-turbo-0613", "cl100k_base", 4_096),
    ("gpt-4-0613", "cl100k_base", 8_192), ("unknown-model", "o200k_base", None)])
def test_model_map(model: str, encoding: str, context: int | None) -> None:
    assert encoding_name_for_model(model) == encoding
    assert context_for_model(model) == context


def test_cache_files_have_tiktoken_names_and_checksums(tmp_path: Path) -> None:
    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    try:
        target = prepare_tiktoken_cache(tmp_path / "cache")
        assert os.environ["TIKTOKEN_CACHE_DIR"] == str(target)
    finally:
        if saved is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved
    for name, sha256 in ENCODING_SHA256.items():
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        data = (target / hashlib.sha1(url.encode()).hexdigest()).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha256


def test_fresh_process_with_an_empty_cache_encodes_without_network(tmp_path: Path) -> None:
    """tiktoken would download into an empty cache; after preparing it, it reads files only."""
    script = ("import tiktoken.load as l\n"
              "def refuse(url): raise SystemExit('tried to download ' + url)\n"
              "l.read_file = refuse\n"
              "from tunebridge.tokens import prepare_tiktoken_cache\n"
              "prepare_tiktoken_cache()\n"
              "import tiktoken\n"
              "print(tiktoken.get_encoding('o200k_base').encode('hello world'),"
              " tiktoken.get_encoding('cl100k_base').encode('hello world'))\n")
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    assert out.stdout.strip() == "[24912, 2375] [15339, 1917]"


def test_local_tokenizer_is_any_callable_with_its_own_overhead() -> None:
    calls: list[str] = []

    def count(text: str) -> int:
        calls.append(text)
        return len(text)

    counter = local_counter(count, ChatOverhead(per_message=5, per_name=0, per_reply=2))
    messages = [{"role": "user", "content": "abc"}, {"role": "assistant", "content": "de"}]
    assert counter.messages(messages) == (5 + 4 + 3) + (5 + 9 + 2) + 2
    counter.messages(messages)
    assert calls.count("abc") == 1  # short strings are memoised
    parts = [{"type": "text", "text": "xy"}, {"type": "image_url", "image_url": {"url": "u"}}]
    assert counter.content(parts) == 2


def test_tokenizer_json_counts_like_the_tokenizer_itself(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(
        {"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    count = tokenizer_json_counter(tmp_path / "tokenizer.json")
    assert count("hello world hello") == 3 and count("hello, world!") == 4
    assert count("") == 0


def test_fast_counter_counts_like_tiktoken_on_arbitrary_text() -> None:
    """The counter we use (bpe-openai) must give tiktoken's counts, tricky text included."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tunebridge.tokens import bpe_counter, tiktoken_counter

    pairs = [(bpe_counter(name), tiktoken_counter(name)) for name in ("cl100k_base",
                                                                       "o200k_base")]
    if pairs[0][0] is None:
        pytest.skip("bpe-openai is not installed; tiktoken counts directly")
    tricky = st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "'s", "'ll", "’", "...", "1234",
                              "<|endoftext|>", "東京", "😀", "\u00a0", "é", "HTTP", "don't"])

    @given(st.lists(st.text(max_size=12) | tricky, max_size=12).map("".join))
    @settings(max_examples=500, deadline=None)
    def same(text: str) -> None:
        for fast, reference in pairs:
            assert fast is not None and fast(text) == reference(text)

    same()
