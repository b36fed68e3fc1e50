#!/usr/bin/env python3
"""The soak run behind scripts/soak (not in CI): the gateway under everything at
once for --minutes, its RSS and open fds sampled, and what must hold checked.

Load, all at once:
- an RTSP camera (tests/peers/gst_camera.py) killed (SIGKILL) and restarted
  every 10 s, read as stream `cam` (always on);
- a Ring device through streamgate-ringsim with 20 s WHEP session caps
  (`ring-front-door`, rotated make-before-break by the gateway);
- the bundled demo capture (`demo`);
- 50 checking RTSP readers (streamgate-load read) over the three streams,
  joining and leaving: 10 reader processes of 5 readers, each living 20-60 s;
- one more reader SIGSTOPped for a minute (from minute 1), then resumed;
- the config reloaded (SIGHUP) every minute, a `spare` stream added or removed.

What must hold (the exit status is non-zero otherwise):
- no reader of a healthy stream (`demo`, `ring-front-door`) sees its RTP
  timestamps (the restream's DTS) step back;
- after each camera restart, `cam` plays again within the backoff the gateway
  announced (`retrying in …` in the API) plus SLACK, or the camera was killed
  again before that backoff ran out;
- the Ring stream never stays out of `playing`/`rotating` longer than SLACK.
RSS and fds are reported (series in --out, summary on stdout), not judged here:
docs/SOAK.md reads them.
"""
import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "debug")
CAMERA_MEDIA = os.path.join(ROOT, "fixtures", "media", "ffmpeg_h264_aac.mkv")
# Connect, DESCRIBE/SETUP/PLAY and the first frame, on a busy 2-core machine.
SLACK = 15.0
SAMPLE_EVERY = 5.0
CAMERA_CYCLE = 10.0
RELOAD_EVERY = 60.0
READER_PROCESSES = 10
READERS_PER_PROCESS = 5
HEALTHY = ("demo", "ring-front-door")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.status, answer.read()


class Soak:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="streamgate-soak-")
        self.rtsp, self.http, self.sim_port, self.cam_port = (free_port() for _ in range(4))
        self.children = []
        self.failures = []
        self.spare = False

    def log(self, *words):
        print(f"[{time.strftime('%H:%M:%S')}]", *words, flush=True)

    def spawn(self, argv, name, **kw):
        out = open(os.path.join(self.dir, f"{name}.log"), "ab")
        child = subprocess.Popen(argv, stdout=kw.pop("stdout", out), stderr=out, **kw)
        self.children.append(child)
        return child

    # --- peers -------------------------------------------------------------

    def start_camera(self):
        self.camera = self.spawn(
            ["/usr/bin/python3", os.path.join(ROOT, "tests/peers/gst_camera.py"),
             "--media", CAMERA_MEDIA, "--port", str(self.cam_port)],
            "camera", stdin=subprocess.DEVNULL)
        return wait_port(self.cam_port, time.monotonic() + 30)

    def kill_camera(self):
        self.camera.kill()
        self.camera.wait()
        self.children.remove(self.camera)

    def start_sim(self):
        config = os.path.join(self.dir, "sim.toml")
        with open(config, "w") as f:
            f.write('battery_session_cap = "20s"\nwired_session_cap = "20s"\n')
        self.spawn([os.path.join(BIN, "streamgate-ringsim"), "serve",
                    "--listen", f"127.0.0.1:{self.sim_port}", "--config", config], "ringsim")
        assert wait_port(self.sim_port, time.monotonic() + 30), "ringsim did not listen"

    def config_text(self):
        sim = f"http://127.0.0.1:{self.sim_port}"
        text = (
            f'[rtsp]\nlisten = "127.0.0.1:{self.rtsp}"\n\n[http]\nlisten = "127.0.0.1:{self.http}"\n\n'
            f'[webrtc]\nlisten = "127.0.0.1:0"\n\n'
            f'[ring]\nclient_id = "sim-client"\nclient_secret = "sim-secret"\nhmac_key = "sim-hmac-key"\n'
            f'api_url = "{sim}/"\ntoken_url = "{sim}/oauth/token"\nwebrtc_bind = "127.0.0.1"\n\n'
            f'[streams.demo]\nsource = "demo"\n\n'
            f'[streams.cam]\nsource = "rtsp://127.0.0.1:{self.cam_port}/cam"\nalways_on = true\n'
        )
        if self.spare:
            text += '\n[streams.spare]\nsource = "demo"\n'
        return text

    def start_gateway(self):
        self.config = os.path.join(self.dir, "gateway.toml")
        with open(self.config, "w") as f:
            f.write(self.config_text())
        self.gateway = self.spawn([os.path.join(BIN, "streamgate"), "--config", self.config],
                                  "gateway", env={**os.environ, "RUST_LOG": "info"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http_get(self.url("/healthz"))[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("the gateway did not answer /healthz")

    def link_ring(self):
        link = subprocess.run(
            [os.path.join(BIN, "streamgate-ringsim"), "link",
             "--sim", f"http://127.0.0.1:{self.sim_port}",
             "--token-exchange", self.url("/ring/token-exchange"),
             "--account-link", self.url("/ring/link")],
            capture_output=True, text=True, timeout=60, check=True)
        status, _ = http_get(link.stdout.strip(), timeout=60)
        assert status == 200, f"account link page: {status}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "ring-front-door" in self.streams():
                return
            time.sleep(0.5)
        raise SystemExit("the Ring streams did not appear")

    def reader(self, stream, readers, seconds):
        """A streamgate-load process of `readers` on `stream`; its JSON summary
        goes to a file of its own (read by `summary_of` once it has exited)."""
        self.reader_count = getattr(self, "reader_count", 0) + 1
        path = os.path.join(self.dir, f"reader-{self.reader_count}.json")
        process = self.spawn(
            [os.path.join(BIN, "streamgate-load"), "--json", "read",
             "--url", f"rtsp://127.0.0.1:{self.rtsp}/{stream}",
             "--readers", str(readers), "--duration", str(seconds), "--ramp", "2",
             "--max-loss", "1"],
            "readers", stdout=open(path, "wb"))
        process.summary_path = path
        return process

    # --- gateway views -----------------------------------------------------

    def url(self, path):
        return f"http://127.0.0.1:{self.http}{path}"

    def streams(self):
        _, body = http_get(self.url("/api/streams"))
        return {s["name"]: s for s in json.loads(body)["streams"]}

    def usage(self):
        pid = self.gateway.pid
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))

    # --- the run -----------------------------------------------------------

    def run(self):
        minutes = self.args.minutes
        self.start_sim()
        assert self.start_camera(), "the camera did not listen"
        self.start_gateway()
        self.link_ring()
        self.log(f"gateway pid {self.gateway.pid}, logs in {self.dir}")

        start = time.monotonic()
        end = start + minutes * 60
        series = open(self.args.out, "w")
        series.write("seconds,rss_kib,fds,readers,cam_state,ring_state,demo_state\n")
        stopped = self.reader("demo", 1, max(150, minutes * 60 - 20))
        stopped_at = start + 60
        stopped_state = "running"
        readers = []  # (process, stream)
        results = []  # (stream, summary)
        next_sample = start
        next_cycle = start + CAMERA_CYCLE
        next_reload = start + RELOAD_EVERY
        cycles = []  # camera restarts: {up, recovered, retry_in, next_kill}
        cam_cycle = None
        ring_out_since = None
        ring_longest_out = 0.0
        random.seed(19)
        while time.monotonic() < end:
            now = time.monotonic()
            # Readers join and leave.
            for process, stream in list(readers):
                if process.poll() is not None:
                    readers.remove((process, stream))
                    results.append((stream, self.summary_of(process)))
            while len(readers) < READER_PROCESSES:
                stream = ("demo", "ring-front-door", "cam")[len(results + readers) % 3]
                seconds = random.randint(20, 60)
                readers.append((self.reader(stream, READERS_PER_PROCESS, seconds), stream))
            # The stopped reader.
            if stopped_state == "running" and now >= stopped_at:
                stopped.send_signal(signal.SIGSTOP)
                stopped_state = "stopped"
                self.log("reader SIGSTOPped")
            elif stopped_state == "stopped" and now >= stopped_at + 60:
                stopped.send_signal(signal.SIGCONT)
                stopped_state = "resumed"
                self.log("reader SIGCONTed")
            # The camera's power cuts.
            if now >= next_cycle:
                if cam_cycle is not None:
                    cam_cycle["next_kill"] = now
                self.kill_camera()
                up = self.start_camera()
                cam_cycle = {"up": time.monotonic() - start, "recovered": None, "retry_in": 0.0,
                             "listening": up}
                cycles.append(cam_cycle)
                next_cycle = time.monotonic() + CAMERA_CYCLE
            # Reloads.
            if now >= next_reload:
                self.spare = not self.spare
                with open(self.config, "w") as f:
                    f.write(self.config_text())
                self.gateway.send_signal(signal.SIGHUP)
                next_reload += RELOAD_EVERY
            # States, each loop (twice a second).
            try:
                views = self.streams()
            except OSError as e:
                self.failures.append(f"API unanswered at {now - start:.0f}s: {e}")
                views = {}
            cam = views.get("cam", {})
            retry = re.search(r"retrying in ([0-9.]+)(ms|s)", cam.get("last_error") or "")
            if cam_cycle is not None:
                if retry:
                    value = float(retry.group(1)) / (1000 if retry.group(2) == "ms" else 1)
                    cam_cycle["retry_in"] = max(cam_cycle["retry_in"], value)
                if cam_cycle["recovered"] is None and cam.get("source_state") == "playing":
                    cam_cycle["recovered"] = now - start
            ring = views.get("ring-front-door", {}).get("source_state")
            if ring in ("playing", "rotating"):
                if ring_out_since is not None:
                    ring_longest_out = max(ring_longest_out, now - ring_out_since)
                ring_out_since = None
            elif ring_out_since is None:
                ring_out_since = now
            if now >= next_sample:
                rss, fds = self.usage()
                active = sum(READERS_PER_PROCESS for _ in readers) + 1
                series.write(f"{now - start:.0f},{rss},{fds},{active},{cam.get('source_state')},"
                             f"{ring},{views.get('demo', {}).get('source_state')}\n")
                series.flush()
                next_sample += SAMPLE_EVERY
            if self.gateway.poll() is not None:
                self.failures.append("the gateway exited")
                break
            time.sleep(0.5)
        if cam_cycle is not None:
            cam_cycle["next_kill"] = time.monotonic()

        # Wind down: the readers end on their own (at most 60 s more) and give
        # their verdicts.
        if stopped_state == "stopped":
            stopped.send_signal(signal.SIGCONT)
        for process, stream in readers:
            results.append((stream, self.summary_of(process)))
        stopped_summary = self.summary_of(stopped)
        series.close()
        return self.verdict(results, stopped_summary, cycles, ring_longest_out, start)

    def summary_of(self, process):
        try:
            process.wait(timeout=240)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        try:
            with open(process.summary_path) as f:
                return json.load(f)
        except ValueError:
            return None

    def verdict(self, results, stopped, cycles, ring_longest_out, start):
        report = {"minutes": self.args.minutes, "series": self.args.out}
        per_stream = {}
        for stream, summary in results:
            entry = per_stream.setdefault(stream, {"processes": 0, "readers": 0, "failed_readers": 0,
                                                   "backward_timestamps": 0, "unreadable": 0,
                                                   "packets": 0})
            entry["processes"] += 1
            if summary is None:
                entry["unreadable"] += 1
                continue
            entry["readers"] += summary["readers"]
            entry["failed_readers"] += summary["failed_readers"]
            entry["backward_timestamps"] += summary["backward_timestamps"]
            entry["packets"] += summary["packets"]
        report["readers"] = per_stream
        for stream in HEALTHY:
            entry = per_stream.get(stream)
            if not entry or entry["packets"] == 0:
                self.failures.append(f"{stream}: no reader received anything")
            elif entry["backward_timestamps"]:
                self.failures.append(f"{stream}: RTP timestamps stepped back "
                                     f"{entry['backward_timestamps']} times")
        report["stopped_reader"] = stopped and {
            k: stopped[k] for k in ("packets", "failed_readers", "backward_timestamps")}
        if stopped and stopped["backward_timestamps"]:
            self.failures.append("the SIGSTOPped reader saw timestamps step back")
        late = []
        for cycle in cycles:
            if not cycle["listening"]:
                continue
            allowed = cycle["retry_in"] + SLACK
            if cycle["recovered"] is not None:
                took = cycle["recovered"] - cycle["up"]
                cycle["took"] = round(took, 1)
                if took > allowed:
                    late.append(cycle)
            elif cycle["next_kill"] - start - cycle["up"] > allowed:
                late.append(cycle)
        report["camera"] = {
            "restarts": len(cycles),
            "recovered": sum(1 for c in cycles if c["recovered"] is not None),
            "recovery_seconds_max": max((c.get("took", 0) for c in cycles), default=None),
            "largest_backoff_announced": max((c["retry_in"] for c in cycles), default=None),
            "late": late,
        }
        if late:
            self.failures.append(f"cam came back later than its backoff {len(late)} times")
        report["ring_longest_out_of_playing_s"] = round(ring_longest_out, 1)
        if ring_longest_out > SLACK:
            self.failures.append(f"the Ring stream was out of playing for {ring_longest_out:.0f}s")
        report["failures"] = self.failures
        return report

    def stop(self):
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGCONT)
                child.kill()
                child.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "soak-series.csv"))
    args = parser.parse_args()
    soak = Soak(args)
    try:
        report = soak.run()
    finally:
        soak.stop()
    print(json.dumps(report, indent=2))
    sys.exit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
