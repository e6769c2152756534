"""Regression tests of the worker's HTTP surface review (responses.c,
guard.c, http_api.c): each fails on the code before its fix."""
from harness import Daemon, Mock, deployment, request, status_rows, wait_for

WORKERS = 2


def test_responses_stream_ttft_counts_an_escaped_first_delta():
    """The first (and only) output delta holds JSON escapes (\\n, \\", \\u00e9)
    and comes 400 ms after response.created: it is still output, so the
    deployment's time to first token is the 400 ms.  The delta reader once
    refused any string with a backslash (right for ids, wrong for text), so
    such a delta never counted and TTFT fell back to the stream's start."""
    m = Mock("slow", ["--chunk-delay", "400", "--chunks", "1"])
    d = Daemon([deployment("g", m, dep_id="slow")], workers=WORKERS)
    r = request(d.port, "POST", "/v1/responses",
                {"model": "g", "input": "hello", "stream": True,
                 "x_mock": {"escaped_deltas": 1}})
    assert r.status == 200 and b"response.completed" in r.body, r
    assert rb'"delta":"tok0\n\"\u00e9 "' in r.body, r.body
    wait_for(lambda: status_rows(d)["slow"]["INFLIGHT"] == "0", 5, "the stream to end")
    ttft = float(status_rows(d)["slow"]["TTFT_MS"])
    assert ttft >= 380, "an escaped first delta was not counted as output: ttft %s" % ttft


def test_unknown_model_id_is_clipped_in_the_message():
    """GET /v1/models/{id} of an unknown id quotes it cut to 128 bytes and
    "...", like every other client value in an error message; this route
    once quoted the whole id."""
    m = Mock("a")
    d = Daemon([deployment("g", m)], workers=WORKERS)
    for path in ("/v1/models/", "/models/"):
        r = request(d.port, "GET", path + "a" * 150)
        assert r.status == 404, r
        err = r.json()["error"]
        assert err["code"] == "model_not_found", err
        assert err["message"] == "The model `%s...` does not exist" % ("a" * 128), err
