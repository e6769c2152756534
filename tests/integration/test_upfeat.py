"""Issue 11, items 6 and 8: the upstream's request id and rate-limit headers
reach the client, llmroute answers every response with an x-request-id of
its own when the upstream gave none, and the mock's embeddings answer one
vector per input, as base64 float32 when asked (the SDKs' default)."""
import base64
import struct

from harness import Daemon, Mock, deployment, request

GROUP = "emb"


def embed(port, **body):
    r = request(port, "POST", "/v1/embeddings", dict(body, model=GROUP))
    assert r.status == 200, r
    return r.json()["data"]


def test_embeddings_one_per_input_and_base64():
    m = Mock("emb")
    d = Daemon([deployment(GROUP, m)], workers=2)
    floats = [0.1, 0.2, 0.3]
    cases = (("hello", 1), (["a", "b", "c"], 3), ([1, 2, 3, 4], 1),
             ([[1, 2], [3], [4, 5, 6]], 3))
    for inp, n in cases:
        data = embed(d.port, input=inp)
        assert [e["index"] for e in data] == list(range(n)), (inp, data)
        for e in data:
            assert e["embedding"] == floats, e
        data = embed(d.port, input=inp, encoding_format="base64")
        assert len(data) == n, (inp, data)
        for e in data:
            raw = base64.b64decode(e["embedding"], validate=True)
            got = struct.unpack("<%df" % (len(raw) // 4), raw)
            assert len(got) == 3 and all(abs(a - b) < 1e-6 for a, b in zip(got, floats)), got
    # an odd byte count exercises the padding; many dimensions several blocks
    for dims in (1, 2, 1000):
        r = request(d.port, "POST", "/v1/embeddings",
                    {"model": GROUP, "input": ["x", "y"], "encoding_format": "base64",
                     "x_mock": {"embedding_dims": dims}})
        assert r.status == 200, r
        for e in r.json()["data"]:
            raw = base64.b64decode(e["embedding"], validate=True)
            assert len(raw) == 4 * dims, (dims, len(raw))
            got = struct.unpack("<%df" % dims, raw)
            if dims == 1000:
                assert abs(got[1] - (-7919 / 1e10)) < 1e-12, got[:3]
    # the embeddings knob still wins when given
    r = request(d.port, "POST", "/v1/embeddings",
                {"model": GROUP, "input": "x", "x_mock": {"embeddings": 4}})
    assert len(r.json()["data"]) == 4, r
