// Plays an HLS player page in headless Chromium (Debian's, driven by playwright-core)
// and prints one JSON line: playback progress, picture size, hls.js fatal errors,
// latency samples (wall clock minus the playhead's program-date-time) and the highest
// discontinuity number (`cc`) of a fragment that played, and the video frames the
// element got (`framesPlayed`, decoded or dropped) over `mediaSecondsPlayed` of media
// time since playback started.
// Usage: node tests/js/hls_play.mjs URL [seconds-to-play] [timeout-seconds] [position|played]
// It stops once the playhead reaches seconds-to-play (`position`, the default) or once
// that much media played since playback started (`played`: where hls.js starts a live
// stream depends on how long the stream has run).
import { launchChromium } from "./browser.mjs";

const [url, playSeconds = "10", timeoutSeconds = "60", until = "position"] = process.argv.slice(2);
if (!url) {
  console.error("usage: hls_play.mjs URL [seconds] [timeout]");
  process.exit(2);
}

const browser = await launchChromium();
const result = { url, currentTime: 0, videoWidth: 0, videoHeight: 0, fatalErrors: [], latencies: [], console: [], playedCc: 0 };
try {
  const page = await browser.newPage();
  page.on("console", (msg) => { if (msg.type() === "error") result.console.push(msg.text()); });
  page.on("pageerror", (err) => result.console.push(String(err)));
  await page.goto(url);
  const deadline = Date.now() + Number(timeoutSeconds) * 1000;
  let startedAt = null;
  while (Date.now() < deadline) {
    const state = await page.evaluate(() => {
      if (window.hls && window.playedCc === undefined) {
        window.playedCc = 0;
        window.hls.on("hlsFragChanged", (_, data) => {
          window.playedCc = Math.max(window.playedCc, data.frag.cc);
        });
      }
      const video = document.querySelector("video");
      const date = window.hls && window.hls.playingDate;
      return {
        currentTime: video.currentTime,
        videoWidth: video.videoWidth,
        videoHeight: video.videoHeight,
        fatalErrors: window.hlsFatalErrors || [],
        latency: date ? (Date.now() - date.getTime()) / 1000 : null,
        hlsLatency: window.hls ? window.hls.latency : null,
        targetLatency: window.hls ? window.hls.targetLatency : null,
        playedCc: window.playedCc || 0,
        frames: video.getVideoPlaybackQuality().totalVideoFrames,
      };
    });
    Object.assign(result, { currentTime: state.currentTime, videoWidth: state.videoWidth, videoHeight: state.videoHeight, fatalErrors: state.fatalErrors, playedCc: state.playedCc });
    if (state.currentTime > 0 && startedAt === null) {
      startedAt = Date.now();
      result.firstPlayed = { time: state.currentTime, frames: state.frames };
    }
    if (result.firstPlayed) {
      result.framesPlayed = state.frames - result.firstPlayed.frames;
      result.mediaSecondsPlayed = state.currentTime - result.firstPlayed.time;
    }
    if (state.latency !== null && state.currentTime > 1) result.latencies.push(state.latency);
    result.hlsLatency = state.hlsLatency;
    result.targetLatency = state.targetLatency;
    const reached = until === "played" ? result.mediaSecondsPlayed || 0 : state.currentTime;
    if (state.fatalErrors.length > 0 || reached >= Number(playSeconds)) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  result.playedWallSeconds = startedAt === null ? 0 : (Date.now() - startedAt) / 1000;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
