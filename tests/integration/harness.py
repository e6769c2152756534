"""Integration test harness: real llmroute and mock processes on 127.0.0.1.

Every wait polls a condition with a deadline; nothing sleeps to synchronise.
Every process's stderr goes to a log file that is scanned for sanitizer
reports and crashes when the test ends.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("LLMR_BUILD", os.path.join(ROOT, "build"))
BAD_LOG = re.compile(r"(AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                     r"runtime error:|Segmentation fault|exited on signal|"
                     r"core dumped|double free|heap-use-after-free)")

_procs = []          # every process started by the current test
_counter = [0]


def _sanitized(binary):
    """Whether binary was built with ASan or UBSan (their runtime's entry
    points are in its symbol table)."""
    try:
        with open(binary, "rb") as f:
            data = f.read()
    except OSError:
        return "san" in os.path.basename(BUILD)
    return b"__asan_init" in data or b"__ubsan_handle_" in data


SANITIZED = _sanitized(os.path.join(BUILD, "llmroute"))
# How much longer anything takes in this build: a bound on time that is
# overhead (not the delay under test) is multiplied by it.  ASan+UBSan run
# the daemon 2-3 times slower; LLMR_SLOW overrides (e.g. under valgrind).
SLOW = float(os.environ.get("LLMR_SLOW") or (3.0 if SANITIZED else 1.0))
# Each test's deadline, in seconds of a plain build (run.py multiplies it by
# SLOW); @timeout(s) gives a long test its own.
DEFAULT_TIMEOUT = 120.0


def slack(seconds, cap=None):
    """A margin for overhead, scaled to the build: `took < 1.0 + slack(0.5)`
    keeps the 1 s under test and lets only the overhead grow.  cap: the most
    it may grow to, so that the bound stays below the wrong behaviour the
    test tells apart (the next back-off, the upstream's latency)."""
    m = seconds * SLOW
    return m if cap is None else min(m, max(cap, seconds))


def timeout(seconds):
    """Decorator: this test's deadline (plain build seconds) instead of
    DEFAULT_TIMEOUT."""
    def mark(fn):
        fn.timeout = seconds
        return fn
    return mark


class TestFailure(AssertionError):
    pass


class TestTimeout(BaseException):
    """Raised in a test that ran past its deadline.  Not an Exception, so
    that no `except Exception` in a test or a wait_for condition swallows
    it; run.py raises it again every few seconds until the test gives up."""


def wait_for(cond, timeout=10.0, what="condition", interval=0.01):
    """Polls cond() until it returns a true value; fails after timeout
    seconds times SLOW (a deadline to give up at, never a bound under test:
    assert on the time taken for that)."""
    timeout *= SLOW
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except TestFailure:
            raise       # the harness's own verdict: fail now, not at the deadline
        except Exception as e:  # the condition may race a starting server
            last_exc = e
        time.sleep(interval)
    raise TestFailure("timed out after %.1fs waiting for %s%s" %
                      (timeout, what, " (last error: %r)" % last_exc if last_exc else ""))


def minute_room(need=10.0):
    """Failures and rpm/tpm are counted per calendar minute (fixed windows,
    like LiteLLM), so a test whose counts must add up may not straddle a
    minute boundary: makes sure at least `need` seconds are left in the
    current minute, waiting for the next one to start if not.  Returns the
    wall time it starts at."""
    if 60 - time.time() % 60 < need:
        wait_for(lambda: time.time() % 60 < 1.0, need + 1, "the next minute to start",
                 interval=0.005)
    return time.time()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tmpdir():
    d = tempfile.mkdtemp(prefix="llmr-test-")
    return d


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


def request(port, method, path, body=None, headers=None, timeout=30.0, conn=None):
    """One HTTP request on a fresh connection (or `conn`); returns Response."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        if own:
            conn.close()


def chat(port, model="gpt-3.5-turbo", content="hello", extra=None, headers=None,
         path="/v1/chat/completions", timeout=30.0, conn=None):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    body.update(extra or {})
    return request(port, "POST", path, body, headers, timeout=timeout, conn=conn)


class Proc:
    """A started process whose stderr is kept in a log file."""

    def __init__(self, argv, name, env=None):
        self.name = name
        self.dir = tmpdir()
        self.log_path = os.path.join(self.dir, name + ".log")
        self.log = open(self.log_path, "wb")
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        e.update(env or {})
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, env=e,
                                  cwd=ROOT)
        self.allowed = []          # log patterns this test expects
        _procs.append(self)

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                raise TestFailure("%s did not stop within %.0fs" % (self.name, timeout))
        if self.p.stdout:
            self.p.stdout.close()
        self.log.close()
        return self.p.returncode

    def check_log(self):
        text = self.log_text()
        for line in text.splitlines():
            if BAD_LOG.search(line) and not any(re.search(a, line) for a in self.allowed):
                raise TestFailure("%s log has: %s\n--- log tail ---\n%s" %
                                  (self.name, line, text[-3000:]))


class Mock(Proc):
    def __init__(self, name="mock", args=()):
        super().__init__([os.path.join(BUILD, "llmroute-mock"), "-p", "0", "--name", name]
                         + list(args), name)
        line = self.p.stdout.readline().decode()
        if not line.startswith("port="):
            raise TestFailure("mock %s did not start: %r %s" % (name, line, self.log_text()))
        self.port = int(line.strip().split("=")[1])
        self.base = "http://127.0.0.1:%d" % self.port

    def stats(self):
        return request(self.port, "GET", "/__mock/stats").json()

    def config(self, **knobs):
        r = request(self.port, "POST", "/__mock/config", knobs)
        assert r.status == 200, r

    def reset(self):
        assert request(self.port, "POST", "/__mock/reset", {}).status == 200


def deployment(group, mock, model=None, dep_id=None, azure=False, key=None, params="",
               info=""):
    """A model_list entry in libconfig syntax."""
    if azure:
        lp = 'model = "azure/%s"; api_base = "%s"; api_version = "2024-02-01";' % (
            model or dep_id or "dep", mock.base)
    else:
        lp = 'model = "openai/%s"; api_base = "%s/v1";' % (model or "gpt-3.5-turbo",
                                                           mock.base)
    if key:
        lp += ' api_key = "%s";' % key
    mi = ('id = "%s"; ' % dep_id if dep_id else "") + info
    return '{ model_name = "%s"; litellm_params = { %s %s }; %s }' % (
        group, lp, params, ("model_info = { %s };" % mi) if mi else "")


class Daemon(Proc):
    """The llmroute master with its workers, on a free port."""

    def __init__(self, deployments, workers=2, server="", router="", env=None, port=None,
                 args=(), drain_timeout=10.0):
        _counter[0] += 1
        self.drain_timeout = drain_timeout
        self.port = port or free_port()
        d = tmpdir()
        self.conf_path = os.path.join(d, "llmroute.conf")
        self.pid_file = os.path.join(d, "llmroute.pid")
        self.shm_name = "/llmr-test-%d-%d" % (os.getpid(), _counter[0])
        self.write_conf(deployments, workers, server, router)
        self.env = env or {}
        super().__init__([os.path.join(BUILD, "llmroute"), "-c", self.conf_path] + list(args),
                         "llmroute", env=env)
        self.wait_ready()

    def write_conf(self, deployments, workers=2, server="", router=""):
        text = """server: {
  listen = "127.0.0.1:%d";
  workers = %d;
  pid_file = "%s";
  shm_name = "%s";
  drain_timeout = %s;
  %s
};
router_settings: { %s };
model_list = ( %s );
""" % (self.port, workers, self.pid_file, self.shm_name, self.drain_timeout, server, router,
           ",\n".join(deployments))
        with open(self.conf_path, "w") as f:
            f.write(text)

    def wait_ready(self, timeout=20.0):
        exited = []

        def ready():
            if self.p.poll() is not None:
                exited.append(self.p.returncode)
                return True
            return request(self.port, "GET", "/health/readiness", timeout=2).status == 200
        wait_for(ready, timeout, "llmroute readiness")
        if exited:
            raise TestFailure("llmroute exited with %s:\n%s" %
                              (exited[0], self.log_text()[-3000:]))

    def workers(self):
        """Pids of the master's children."""
        out = subprocess.run(["pgrep", "-P", str(self.p.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    def status(self):
        env = dict(os.environ)
        env.update(self.env)
        return cli(self.conf_path, "status", "-w", env=env)

    def stop(self, sig=signal.SIGQUIT, timeout=30.0):
        return super().stop(sig, timeout)


def _sock_inodes(pid):
    out = set()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(int(t[8:-1]))
    return out


def connection_owners(d, conns, pids=None):
    """For each open http.client.HTTPConnection to d, the pid of the worker
    that accepted it, or None while unknown; one pass over /proc."""
    server = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if int(p[1].split(":")[1], 16) == d.port:
                server[int(p[2].split(":")[1], 16)] = int(p[9])
    socks = {p: _sock_inodes(p) for p in (pids or d.workers())}
    out = []
    for c in conns:
        ino = server.get(c.sock.getsockname()[1])
        owners = [p for p, inos in socks.items() if ino is not None and ino in inos]
        out.append(owners[0] if len(owners) == 1 else None)
    return out


def connection_owner(d, conn, pids=None):
    return connection_owners(d, [conn], pids)[0]


def cli(conf, *args, env=None, timeout=60, cwd=ROOT):
    """`llmroute -c conf args...`, its output captured as text (env: the
    whole environment, None for the test's own)."""
    return subprocess.run([os.path.join(BUILD, "llmroute"), "-c", conf] + list(args),
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def parse_status(text):
    """`llmroute status` stdout as {deployment id: {COLUMN: value}}, by
    header name."""
    rows, cols = {}, None
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == "DEPLOYMENT":
            cols = f
        elif cols and len(f) == len(cols):
            rows[f[0]] = dict(zip(cols, f))
    assert cols, "no header in status output:\n" + text
    return rows


def status_rows(d):
    """`llmroute status` of Daemon d, parsed by parse_status()."""
    out = d.status()
    assert out.returncode == 0, "status failed: %s %s" % (out.stdout, out.stderr)
    return parse_status(out.stdout)


def status_row(d, dep):
    """The status row of deployment id dep: {COLUMN: value}."""
    rows = status_rows(d)
    if dep not in rows:
        raise TestFailure("no status row for %s: %r" % (dep, rows))
    return rows[dep]


def alive(pid):
    """Whether pid runs; a zombie (killed, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def attempts(r):
    """A routed Response's x-llmroute-attempts, as an int."""
    v = r.headers.get("x-llmroute-attempts")
    assert v is not None and v.isdigit(), "no x-llmroute-attempts on %r: %s" % (r, r.headers)
    return int(v)


def proc_cpu_s(pid):
    """CPU seconds (user + system) pid has used."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def strace(pid, calls, out, count=False):
    """Starts strace on pid for the system calls named in calls (e.g.
    "readv,writev,write"), its output in out (a count per call with
    count=True), and returns the Popen once strace has attached, so that
    nothing the test does next is missed."""
    st = subprocess.Popen(["strace"] + (["-c"] if count else []) +
                          ["-f", "-e", "trace=" + calls, "-o", out, "-p", str(pid)],
                          stderr=subprocess.DEVNULL)

    def attached():
        with open("/proc/%d/status" % pid) as f:
            return any(ln.startswith("TracerPid:") and ln.split()[1] != "0" for ln in f)
    try:
        wait_for(attached, slack(10), "strace attached to %d" % pid)
    except BaseException:
        st.kill()
        raise
    return st


def proc_hwm_kb(pid):
    """pid's peak resident set (VmHWM), in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise TestFailure("no VmHWM for pid %d" % pid)


def raw_exchange(port, data, until="close", timeout=10.0):
    """Sends data on a raw socket (a server that answers and closes before
    all of it is sent is fine), then reads: until="head", up to the end of
    the first response's head; "response", up to the end of its
    Content-Length body; "close", until the server closes.  Gives up
    quietly after timeout seconds.  Returns (bytes, closed by the server)."""
    assert until in ("head", "response", "close"), until
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out, closed = b"", False
    deadline = time.monotonic() + timeout
    try:
        try:
            for i in range(0, len(data), 65536):
                s.sendall(data[i:i + 65536])
        except OSError:
            pass
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            out += chunk
            end = out.find(b"\r\n\r\n")
            if until == "head" and end >= 0:
                break
            if until == "response" and end >= 0:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", out[:end])
                if m and len(out) >= end + 4 + int(m.group(1)):
                    break
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    finally:
        s.close()
    return out, closed


def cleanup_all():
    """Stops what a test left running and checks every log; returns errors."""
    errors = []
    while _procs:
        p = _procs.pop()
        try:
            p.stop()
        except Exception as e:
            errors.append(str(e))
        try:
            p.check_log()
        except Exception as e:
            errors.append(str(e))
    return errors


def conns_per_worker(d, per, timeout=10.0, workers=None):
    """{pid: [per keep-alive connections that worker accepted]}, for every
    worker of d (or the first `workers` of them to get `per`): connections
    are opened in batches, and the spares closed, until enough are held."""
    pids = d.workers()
    assert len(pids) >= 2, "expected 2 or more workers, got %s" % pids
    want = len(pids) if workers is None else workers
    got = {}
    deadline = time.monotonic() + timeout * SLOW

    def full():
        return [p for p in pids if len(got.get(p, [])) >= per]
    while len(full()) < want:
        if time.monotonic() > deadline:
            raise TestFailure("could not get %d connections on %d workers: %s" % (
                per, want, {p: len(v) for p, v in got.items()}))
        missing = sum(max(0, per - len(got.get(p, []))) for p in pids)
        batch = []
        for _ in range(max(16, 2 * missing)):
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
            c.connect()
            batch.append(c)
        owner = {}

        def owned():
            for i, who in enumerate(connection_owners(d, batch, pids)):
                if who is not None:
                    owner[i] = who
            return len(owner) == len(batch)
        wait_for(owned, 5, "every connection accepted by a worker")
        for i, c in enumerate(batch):
            mine = got.setdefault(owner[i], [])
            if len(mine) < per:
                mine.append(c)
            else:
                c.close()
    keep = full()[:want]
    for p in list(got):
        if p not in keep:
            for c in got.pop(p):
                c.close()
    return got


def worker_conns(d, timeout=5.0):
    """One keep-alive connection held by each worker of d: {pid: HTTPConnection}."""
    return {p: cs[0] for p, cs in conns_per_worker(d, 1, timeout).items()}


class Load:
    """Clients sending requests in a loop until stopped; records failures."""

    def __init__(self, port, threads=4, model="g"):
        self.port, self.model = port, model
        self.stop_flag = threading.Event()
        self.ok = 0
        self.errors = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                r = chat(self.port, model=self.model, timeout=20)
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.errors.append(repr(r))
            except Exception as e:
                with self.lock:
                    self.errors.append(repr(e))

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)


# ---------------------------------------------------------------- streaming

CHAT = "/v1/chat/completions"


def stream_body(model="g", content="hello", chunks=3, path=CHAT, extra=None, **knobs):
    knobs["chunks"] = chunks
    if path == CHAT:
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
    else:
        body = {"model": model, "prompt": content}
    body["stream"] = True
    body["x_mock"] = knobs
    body.update(extra or {})
    return body


class Stream:
    """One HTTP/1.1 request on a raw socket; the reply's head is read at
    once, its chunked body incrementally (events() / next_event())."""

    def __init__(self, port, body, path=CHAT, timeout=15.0, rcvbuf=None):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        self.sock = s
        self.buf = bytearray()
        self.pos = 0
        self.sse = bytearray()
        self.ended = False          # the terminating zero-size chunk was read
        self.t0 = time.monotonic()
        s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(data))
                  + data)

    # -- raw reading
    def _more(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise TestFailure("connection closed early (%d bytes unparsed: %r)" %
                              (len(self.buf) - self.pos, bytes(self.buf[self.pos:self.pos + 200])))
        if self.pos > 1 << 16:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            self._more()

    def _exact(self, n):
        while len(self.buf) - self.pos < n:
            self._more()
        d = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return d

    def head(self):
        """Reads the status line and headers: (status, {lower name: value})."""
        line = self._line().decode()
        m = re.match(r"HTTP/1\.[01] (\d{3})", line)
        if not m:
            raise TestFailure("bad status line %r" % line)
        self.status = int(m.group(1))
        self.headers = {}
        while True:
            line = self._line().decode()
            if not line:
                break
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.t_head = time.monotonic()
        return self.status, self.headers

    def chunk(self):
        """The next chunk's data, or None after the terminating chunk."""
        size_line = self._line()
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise TestFailure("bad chunk size line %r" % size_line)
        if size == 0:
            while self._line():     # trailers up to the empty line
                pass
            self.ended = True
            return None
        data = self._exact(size)
        if self._exact(2) != b"\r\n":
            raise TestFailure("chunk of %d bytes not followed by CRLF" % size)
        return data

    def plain_body(self):
        """A non-chunked body (Content-Length or up to the close)."""
        if "content-length" in self.headers:
            return self._exact(int(self.headers["content-length"]))
        if self.headers.get("transfer-encoding") == "chunked":
            out = b""
            while True:
                c = self.chunk()
                if c is None:
                    return out
                out += c
        while True:
            try:
                self._more()
            except TestFailure:
                return bytes(self.buf[self.pos:])

    # -- server-sent events
    def next_event(self):
        """(arrival time since the request, event text) or None at the end
        of the chunked body."""
        while True:
            i = self.sse.find(b"\n\n")
            if i >= 0:
                ev = bytes(self.sse[:i]).decode()
                del self.sse[:i + 2]
                return time.monotonic() - self.t0, ev
            c = self.chunk()
            if c is None:
                if self.sse.strip():
                    raise TestFailure("stream ended inside an event: %r" % bytes(self.sse))
                return None
            self.sse += c

    def events(self):
        out = []
        while True:
            e = self.next_event()
            if e is None:
                return out
            out.append(e)

    def rest_raw(self):
        """Reads to the terminating chunk in bulk; returns the body bytes
        not yet returned (for multi-MB streams)."""
        parts = [bytes(self.sse)]
        self.sse = bytearray()
        while True:
            # decode every complete chunk already buffered
            while True:
                i = self.buf.find(b"\r\n", self.pos)
                if i < 0:
                    break
                size = int(bytes(self.buf[self.pos:i]).split(b";")[0], 16)
                if size == 0:
                    self.pos = i + 2
                    while self._line():
                        pass
                    self.ended = True
                    return b"".join(parts)
                if len(self.buf) < i + 2 + size + 2:
                    break
                parts.append(bytes(self.buf[i + 2:i + 2 + size]))
                if self.buf[i + 2 + size:i + 4 + size] != b"\r\n":
                    raise TestFailure("chunk not followed by CRLF")
                self.pos = i + 4 + size
            self._more()

    def close(self):
        self.sock.close()


def data_of(ev):
    """The payload of a `data:` event."""
    assert ev.startswith("data: "), ev
    return ev[len("data: "):]
