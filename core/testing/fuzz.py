"""Deliveries that are not valid: random and mutated bodies and headers, from a fixed seed, for
the adapter contract's "never a 5xx" check."""
from __future__ import annotations

def garble(value: str) -> str:
    """The same length and alphabet, every letter and digit changed (``""`` becomes ``"x"``)."""
    out = []
    for ch in value:
        if ch.isascii() and ch.isdigit():
            out.append(str((int(ch) + 3) % 10))
        elif ch.isascii() and ch.islower():
            out.append(chr((ord(ch) - 97 + 7) % 26 + 97))
        elif ch.isascii() and ch.isupper():
            out.append(chr((ord(ch) - 65 + 7) % 26 + 65))
        else:
            out.append(ch)
    garbled = "".join(out)
    return garbled if garbled != value else value + "x"


def garbage_bodies(body: bytes, seed: int, rounds: int) -> list[bytes]:
    """Bodies that are not a valid delivery: random bytes, other JSON, mutations of ``body``."""
    import json
    import random
    rng = random.Random(seed)
    cases = [b"", b"{", b"}", b"null", b"[]", b"{}", b"0", b'"x"', b"true", b"\xff\xfe\x00",
             b"NaN", b'{"a": NaN}', b"[" * 64 + b"]" * 64, b"[" * 50_000 + b"]" * 50_000,
             "{\"\u00e9\": \"\u2603\"}".encode(), b"\x00" * 64, b" " * 1000,
             body[: len(body) // 2], body + b"\x00", body.replace(b"{", b"[", 1)]
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    odd_values = [None, True, False, 0, -1, 2**63, 10**30, 1.5e308, -1e308, "", "x" * 300,
                  "\u0000", "\ud83d\ude00", [], {}, [None], {"": None}, [[[]]]]

    def mutate(node, depth=0):
        """The same JSON with one value, somewhere, replaced by an odd one (or dropped)."""
        if isinstance(node, dict) and node and depth < 6:
            key = rng.choice(sorted(node))
            copy_ = dict(node)
            if rng.random() < 0.25:
                copy_.pop(key)
            elif rng.random() < 0.5 and isinstance(node[key], (dict, list)):
                copy_[key] = mutate(node[key], depth + 1)
            else:
                copy_[key] = rng.choice(odd_values)
            return copy_
        if isinstance(node, list) and node and depth < 6:
            copy_ = list(node)
            index = rng.randrange(len(node))
            copy_[index] = (mutate(node[index], depth + 1) if rng.random() < 0.5
                            else rng.choice(odd_values))
            return copy_
        return rng.choice(odd_values)

    for _ in range(rounds):
        kind = rng.random()
        if parsed is not None and kind < 0.6:
            cases.append(json.dumps(mutate(parsed)).encode())
        elif kind < 0.8:
            cases.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        else:
            mutated = bytearray(body)
            for _ in range(rng.randrange(1, 5)):
                if mutated:
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            cases.append(bytes(mutated))
    return cases


def garbage_headers(headers: dict, seed: int, rounds: int) -> list[dict]:
    import random
    import string
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \t" + "éß"
    cases = [{}, {"Content-Type": "application/json"},
             {k: "" for k in headers}, {k: garble(v) for k, v in headers.items()},
             {k: v * 50 for k, v in headers.items()}]
    for _ in range(rounds):
        case = dict(headers)
        for key in list(case):
            roll = rng.random()
            if roll < 0.3:
                case[key] = "".join(rng.choice(alphabet)
                                    for _ in range(rng.randrange(0, 120))).strip()
            elif roll < 0.4:
                case.pop(key)
        case[f"X-Junk-{rng.randrange(1000)}"] = "".join(rng.choice(alphabet) for _ in range(20))
        cases.append(case)
    return cases
