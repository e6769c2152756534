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
