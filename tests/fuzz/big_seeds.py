#!/usr/bin/env python3
"""Writes 1 MiB request bodies shaped against a JSON parser into DIR: the
slow-input class (quadratic bracket matching, deep nests, many keys).
Generated rather than kept in git; the fuzzer starts from them and from
tests/fuzz/seeds-json, so a parser that is not linear times out at once."""
import os
import sys

MIB = 1 << 20


def fill(prefix, unit, suffix):
    n = (MIB - len(prefix) - len(suffix)) // (len(unit) + 1)
    return prefix + ",".join([unit] * n) + suffix


def main(d):
    os.makedirs(d, exist_ok=True)
    head = '{"model":"x","messages":[],'
    bodies = {
        "big-wide-arrays.json": fill(head + '"a":[', "[]", "]}"),
        "big-wide-objects.json": fill('{"model":"x","messages":[', "{}", "]}"),
        "big-many-keys.json": fill(head, '"k":0', "}"),
        "big-deep-nests.json": fill(head + '"a":[', "[" * 400 + "]" * 400, "]}"),
        "big-too-deep.json": head + '"a":' + "[" * (MIB - len(head) - 4),
    }
    for name, body in bodies.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(body)


if __name__ == "__main__":
    main(sys.argv[1])
