// Plays a stream's WHEP player page (GET /whep/NAME) in headless Chromium and
// reports getStats() of the inbound video and audio over `seconds`, plus the
// time from the POST to the first decoded frame.
// With "restart", half way it restarts ICE the WHEP way (PATCH If-Match: * with the
// new offer's credentials, the server's new ones put in the answer) and reports
// framesDecoded at that point as `framesAtRestart`.
// Usage: node whep_play.mjs URL SECONDS [restart]
import { launchChromium } from "./browser.mjs";

const [url, seconds, mode] = [process.argv[2], Number(process.argv[3] || 8), process.argv[4]];
// Host candidates must be 127.0.0.1 (not .local names) for the loopback server.
const browser = await launchChromium([
  "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
]);
const report = { history: [], errors: [] };
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => report.errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => (window.whep && window.whep.location) || document.getElementById("status").textContent.startsWith("failed"), null, { timeout: 30000 });
  const status = await page.evaluate(() => document.getElementById("status").textContent);
  if (status.startsWith("failed")) throw new Error(`player page: ${status}`);
  report.location = await page.evaluate(() => window.whep.location);
  const stats = () => page.evaluate(async () => {
    const out = { now: performance.now(), posted: window.whep.posted, state: window.whep.pc.connectionState };
    (await window.whep.pc.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") {
        Object.assign(out, { framesDecoded: s.framesDecoded || 0, keyFramesDecoded: s.keyFramesDecoded || 0,
          frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0, packetsLost: s.packetsLost,
          jitterBufferDelay: s.jitterBufferDelay, jitterBufferEmittedCount: s.jitterBufferEmittedCount });
      } else if (s.kind === "audio") {
        out.totalSamplesReceived = s.totalSamplesReceived || 0;
        out.audioPacketsReceived = s.packetsReceived || 0;
      }
    });
    return out;
  });
  const end = Date.now() + seconds * 1000;
  let restartAt = mode === "restart" ? Date.now() + (seconds * 1000) / 2 : Infinity;
  let last = {};
  while (Date.now() < end) {
    if (Date.now() >= restartAt) {
      restartAt = Infinity;
      report.framesAtRestart = (await stats()).framesDecoded;
      report.restart = await page.evaluate(async () => {
        const { pc, location } = window.whep;
        pc.restartIce();
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        const line = (sdp, key) => sdp.split("\r\n").find((l) => l.startsWith(key));
        const frag = `${line(offer.sdp, "a=ice-ufrag:")}\r\n${line(offer.sdp, "a=ice-pwd:")}\r\n`;
        const response = await fetch(location, { method: "PATCH", body: frag,
          headers: { "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*" } });
        const theirs = await response.text();
        if (response.status !== 200) return `PATCH ${response.status}: ${theirs}`;
        const answer = pc.currentRemoteDescription.sdp
          .replace(/a=ice-ufrag:.*/g, line(theirs, "a=ice-ufrag:"))
          .replace(/a=ice-pwd:.*/g, line(theirs, "a=ice-pwd:"));
        await pc.setRemoteDescription({ type: "answer", sdp: answer });
        return `ok ${response.headers.get("ETag")}`;
      });
    }
    last = await stats();
    if (report.firstFrameMs === undefined && last.framesDecoded > 0) {
      report.firstFrameMs = Math.round(last.now - last.posted);
    }
    report.history.push(last.framesDecoded || 0);
    await new Promise((r) => setTimeout(r, 250));
  }
  Object.assign(report, last);
} catch (e) {
  report.errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
