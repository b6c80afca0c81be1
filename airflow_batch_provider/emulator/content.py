"""Deterministic content: token counts, replies, embeddings and moderation results.

The same input always gives the same output, derived from hashes; no model is involved.

- token counts: about one token per four characters, plus the live per-message overhead.
- replies: an assistant text echoing the last user text ("Emulated reply to: ..."), which
  :func:`cut_to_tokens` shortens to a token limit; structured answers and tool calls are made
  by :mod:`~airflow_batch_provider.emulator.structured`.
- embeddings: unit vectors; texts that share words get closer vectors; ``base64`` packs
  little-endian float32 as the live API does.
- moderations: low scores everywhere, except that a text containing a category's name
  (``"violence"``, ``"self-harm"``, ...) is flagged in that category.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import sys
from array import array
from typing import Any

from airflow_batch_provider.emulator.checks import Messages

_CHARS_PER_TOKEN = 4
_SNIPPET_CHARS = 160
_WORD = re.compile(r"\w+")
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_FLAGGED_SCORE = 0.93


def count_tokens(text: str) -> int:
    """A cheap, deterministic stand-in for a tokenizer: about one token per four characters."""
    return -(-len(text) // _CHARS_PER_TOKEN)


def estimate_tokens(size: int) -> int:
    """The tokens of an input file of ``size`` bytes, as the enqueued-token limit counts them."""
    return -(-size // _CHARS_PER_TOKEN)


def prompt_tokens(messages: Messages) -> int:
    """Tokens of a conversation as a prompt."""
    # The live chat format costs 3 tokens per message and 3 to prime the reply.
    return sum(count_tokens(text) + 3 for _, text in messages) + 3


def request_digest(url: str, body: dict[str, Any]) -> str:
    """A hex digest of the request, the stable part of an answer's ``id``."""
    canonical = json.dumps([url, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def prompt_snippet(messages: Messages) -> str:
    """What an answer replies to: the last user text (or else the last text), on one line, shortened."""
    prompt = next((text for role, text in reversed(messages) if role == "user" and text), "")
    if not prompt:
        prompt = next((text for _, text in reversed(messages) if text), "")
    snippet = " ".join(prompt.split())
    if len(snippet) > _SNIPPET_CHARS:
        snippet = snippet[: _SNIPPET_CHARS - 3].rstrip() + "..."
    return snippet


def reply_text(messages: Messages) -> str:
    """The assistant's reply: :func:`prompt_snippet` echoed."""
    snippet = prompt_snippet(messages)
    return f"Emulated reply to: {snippet}" if snippet else "Emulated reply."


def cut_to_tokens(text: str, max_tokens: int | None) -> tuple[str, int, bool]:
    """``text`` cut to ``max_tokens`` (None: no limit): ``(text, tokens, was_cut)``."""
    tokens = count_tokens(text)
    if max_tokens is None or tokens <= max_tokens:
        return text, tokens, False
    return text[: max_tokens * _CHARS_PER_TOKEN], max_tokens, True


def embedding(model: str, text: str, dimensions: int) -> list[float]:
    """A unit vector for ``text``: hashed word features over a noise floor from model and text.

    Each word adds +-1 at four hashed positions, so texts sharing words have a higher cosine
    similarity; pseudo-random noise from the model and the whole text keeps every vector dense
    and distinct.
    """
    words = _WORD.findall(text.lower())
    noise = array("h", hashlib.shake_256(f"{model}\n{text}".encode()).digest(2 * dimensions))
    if sys.byteorder == "big":
        noise.byteswap()
    # Uniform int16 noise has a norm of about 18918 * sqrt(dimensions); scale it to half the
    # norm of the word features (which is about 2 * sqrt(len(words))).
    scale = max(math.sqrt(len(words)), 1.0) / (18918.0 * math.sqrt(dimensions))
    values = [sample * scale for sample in noise]
    for word in words:
        digest = hashlib.blake2b(word.encode(), digest_size=16).digest()
        for offset in range(0, 16, 4):
            position = int.from_bytes(digest[offset : offset + 4], "little")
            values[(position >> 1) % dimensions] += 1.0 if position & 1 else -1.0
    inverse_norm = 1.0 / (math.hypot(*values) or 1.0)
    return [value * inverse_norm for value in values]


def encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    """``vector`` as the live API sends it: a list for ``"float"``, else base64 float32 (LE)."""
    if encoding_format == "float":
        return vector
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def moderation(text: str) -> dict[str, Any]:
    """One moderation result: flagged in each category whose name ``text`` contains."""
    lowered = text.lower()
    digest = hashlib.blake2b(text.encode(), digest_size=len(MODERATION_CATEGORIES)).digest()
    categories = {}
    scores = {}
    for category, byte in zip(MODERATION_CATEGORIES, digest, strict=True):
        flagged = category in lowered
        categories[category] = flagged
        scores[category] = _FLAGGED_SCORE if flagged else round(byte / 255 * 1e-3, 8)
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": {category: ["text"] for category in MODERATION_CATEGORIES},
    }
