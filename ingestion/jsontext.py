"""JSON from senders: parsed with the limits the inbox needs, and inspected for what of it
cannot be stored as sent.

Python's parser would turn 1e400 into infinity (which no JSON column takes) and refuses
integers of more than 4,300 digits, failing the whole body; it also gives up on nesting a
few hundred levels deep. Here such a number becomes an `OutOfRange` marker that keeps its
text, a value nested past what the parser takes becomes `TOO_DEEP`, and the event holding
either is rejected on its own while its neighbours are accepted.
"""
import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

MAX_DEPTH = 64
FLOAT_MAX = sys.float_info.max  # about 1.8e308

# Characters PostgreSQL cannot store in text or jsonb: NUL, and surrogates a JSON \u escape
# left unpaired (a paired escape decodes to one character outside this range).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class OutOfRange:
    """A JSON number whose magnitude a binary float cannot hold, as the sender wrote it."""

    text: str


class _TooDeep:
    """A value nested past what the parser takes: never parsed, never stored."""

    def __repr__(self):
        return "TOO_DEEP"


TOO_DEEP = _TooDeep()


def _reject_constant(name: str) -> NoReturn:
    """NaN and Infinity are not JSON (RFC 8259), though Python's parser takes them."""
    raise ValueError(f"{name} is not a JSON value")


def _number_float(text: str) -> float | OutOfRange:
    value = float(text)
    return OutOfRange(text) if math.isinf(value) else value


def _number_int(text: str) -> int | OutOfRange:
    # More than 309 digits is past a float's range; checked first because int() refuses
    # more than 4,300 digits.
    if len(text.lstrip("-")) > 309:
        return OutOfRange(text)
    value = int(text)
    return OutOfRange(text) if abs(value) > FLOAT_MAX else value


def parse(text: str | bytes) -> Any:
    """The JSON value of `text`, numbers past a float's range as OutOfRange. Raises
    ValueError for text that is not JSON and RecursionError for nesting the parser refuses."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_number_float,
                      parse_int=_number_int)


# A JSON string (escapes included) or one structural character.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')
_CLOSING = {"[": "]", "{": "}"}


def split_array(text: str) -> list:
    """The elements of a JSON array too deeply nested for the parser: each element parsed
    on its own, or TOO_DEEP when it nests past MAX_DEPTH (then it is not parsed). The scan
    reads brackets outside strings; ValueError if they do not balance or the text is not
    one array."""
    stripped = text.strip()
    if not stripped.startswith("["):
        raise ValueError("expected an array")
    elements, open_brackets, start, deepest, end = [], [], None, 0, None
    for match in _TOKEN.finditer(stripped):
        token = match.group()
        if token[0] == '"':
            continue
        if token in _CLOSING:
            open_brackets.append(_CLOSING[token])
            if len(open_brackets) == 1:
                start = match.end()
            deepest = max(deepest, len(open_brackets) - 1)
        elif token in "]}":
            if not open_brackets or open_brackets.pop() != token:
                raise ValueError("brackets do not balance")
            if not open_brackets:
                end = match.start()
                break
        elif len(open_brackets) == 1:  # a comma between two elements
            elements.append((stripped[start:match.start()], deepest))
            start, deepest = match.end(), 0
    if end is None or stripped[end + 1:].strip():
        raise ValueError("brackets do not balance")
    if stripped[start:end].strip() or elements:
        elements.append((stripped[start:end], deepest))
    return [TOO_DEEP if depth > MAX_DEPTH else parse(element) for element, depth in elements]


@dataclass
class Findings:
    depth: int = 0
    unstorable: bool = False  # a key or string holds NUL or an unpaired surrogate
    out_of_range: bool = False  # a number a float cannot hold


def inspect(value: Any) -> "Findings":
    """What of `value` cannot be stored as sent, without recursion."""
    found, stack = Findings(), [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            found.depth = max(found.depth, depth)
            found.unstorable |= any(UNSTORABLE.search(key) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            found.depth = max(found.depth, depth)
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            found.unstorable |= bool(UNSTORABLE.search(item))
        elif isinstance(item, OutOfRange):
            found.out_of_range = True
        elif item is TOO_DEEP:
            found.depth = max(found.depth, MAX_DEPTH + 1)
    return found


def out_of_range_paths(value: Any, path: str = "") -> list[str]:
    """Where the OutOfRange numbers are, as paths like `data.rates[1]` (value nests at most
    MAX_DEPTH levels)."""
    if isinstance(value, OutOfRange):
        return [path or "(root)"]
    if isinstance(value, dict):
        children = ((f"{path}.{key}" if path else key, child) for key, child in value.items())
    elif isinstance(value, list):
        children = ((f"{path}[{index}]", child) for index, child in enumerate(value))
    else:
        return []
    return [found for child_path, child in children for found in out_of_range_paths(child,
                                                                                   child_path)]


def storable(value: Any) -> Any:
    """A copy that every JSON column takes, to keep as a dead letter: unstorable characters
    replaced by U+FFFD, OutOfRange numbers kept as their text (a string). `value` nests at
    most MAX_DEPTH levels."""
    if isinstance(value, dict):
        return {UNSTORABLE.sub("\ufffd", k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, str):
        return UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, OutOfRange):
        return value.text
    return value
