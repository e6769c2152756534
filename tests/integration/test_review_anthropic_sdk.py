"""Review of /v1/messages with the official Anthropic Node SDK (pinned in
tests/clients): its retry on 529 and its stream helper on an error event."""
from harness import Daemon, Mock, deployment
from test_anthropic import claude
from test_clients import MASTER, node, result


def setup():
    from test_clients import install
    install()
    o, c = Mock("oai"), Mock("ant")
    d = Daemon([deployment("gpt", o), claude("claude", c)], workers=2,
               server='master_key = "%s";' % MASTER, router="num_retries = 0;")
    return o, c, d


def test_review_anthropic_sdk_retries_529_and_reads_stream_errors():
    o, c, d = setup()
    try:
        for mock, model in ((c, "claude"), (o, "gpt")):
            mock.config(status=529, retry_after=0)
            n = mock.stats()["requests"]
            r = result(node("anthropic_review", "retry_529", d, model=model, root=True))
            assert r["error"]["status"] == 529, r
            assert r["error"]["type"] == "overloaded_error", r
            assert mock.stats()["requests"] - n == 3, mock.stats()     # 1 + maxRetries 2
            mock.config(status=200, malformed=2, chunks=3)
            r = result(node("anthropic_review", "stream_error", d, model=model, root=True))
            assert r["text"] == "tok0 ", r
            assert r["types"][0] == "message_start", r
            assert r["error"] is not None and r["error"]["type"] in (
                "overloaded_error", "api_error"), r
            mock.config(malformed=0)
        assert d.p.poll() is None
    finally:
        d.stop()
        o.stop()
        c.stop()
