#!/usr/bin/env python3
"""Writes 1 MiB request bodies shaped against a JSON parser into DIR: the
slow-input class (quadratic bracket matching, deep nests, many keys).
Generated rather than kept in git; the fuzzer starts from them and from
tests/fuzz/seeds-json, so a parser that is not linear times out at once.
tests/integration/test_hostile_json.py sends the same bodies (bodies())
to a running daemon."""
import os
import sys

MIB = 1 << 20


def fill(prefix, unit, suffix, size=MIB):
    """prefix + unit repeated (comma-separated) + suffix, about `size` bytes."""
    n = max(1, (size - len(prefix) - len(suffix)) // (len(unit) + 1))
    return prefix + ",".join([unit] * n) + suffix


def nest(depth):
    return "[" * depth + "]" * depth


def bodies(model="x"):
    """(name, body, parses) for 1 MiB bodies shaped against a parser;
    parses: False for those past any sane nesting bound."""
    head = '{"model":"%s","messages":[],' % model
    return [
        ("wide empty arrays", fill(head + '"a":[', "[]", "]}"), True),
        ("wide empty objects in messages",
         fill('{"model":"%s","messages":[' % model, "{}", "]}"), True),
        ("wide nested objects", fill(head + '"a":[', '{"b":{"c":[{}]}}', "]}"), True),
        ("many keys", fill(head, '"k":0', "}"), True),
        ("many near-miss escaped keys", fill(head, '"mod\\u0065m":[]', "}"), True),
        ("deep nests side by side", fill(head + '"a":[', nest(500), "]}"), True),
        ("too deep", "[" * MIB, False),
        ("too deep inside the object", head + '"a":' + "[" * (MIB - 40), False),
        ("escapes in content", '{"model":"%s","messages":[{"role":"user","content":"' % model
         + "\\u00e9\\n" * ((MIB - 60) // 8) + '"}]}', True),
    ]


def main(d):
    os.makedirs(d, exist_ok=True)
    for name, body, _ in bodies():
        with open(os.path.join(d, "big-%s.json" % name.replace(" ", "-")), "w") as f:
            f.write(body)


if __name__ == "__main__":
    main(sys.argv[1])
