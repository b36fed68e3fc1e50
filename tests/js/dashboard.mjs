// Opens the gateway's dashboard in headless Chromium (Debian's, driven by
// playwright-core), waits until every stream's player shows moving video, takes a
// screenshot of each player and measures its pixel variance (a blank or single-colour
// picture has ~0), tries the RTSP URL's copy button, then deletes the last stream through the API and
// waits for its card to show it. Prints one JSON line.
// With "webrtc" after the timeout, Chromium may use WebRTC on loopback (as a
// browser on the LAN would); without it loopback candidates are ignored and the
// players fall back to LL-HLS.
// Usage: node tests/js/dashboard.mjs URL SCREENSHOT_DIR [timeout-seconds] [webrtc]
import { launchChromium } from "./browser.mjs";

const [url, screenshotDir, timeoutSeconds = "60", mode] = process.argv.slice(2);
if (!url || !screenshotDir) {
  console.error("usage: dashboard.mjs URL SCREENSHOT_DIR [timeout]");
  process.exit(2);
}

const browser = await launchChromium(mode === "webrtc"
  ? ["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"]
  : []);
const result = { url, streams: [], players: {}, screenshots: [], copied: null, console: [], pageErrors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(url).origin });
  const page = await context.newPage();
  page.on("console", (msg) => { if (msg.type() === "error") result.console.push(msg.text()); });
  page.on("pageerror", (err) => result.pageErrors.push(String(err)));
  await page.goto(url);
  result.streams = await page.$$eval(".stream", (cards) => cards.map((card) => ({
    name: card.dataset.name,
    state: card.dataset.state,
    rtsp: card.querySelector(".url-rtsp code").textContent,
    hls: card.querySelector(".url-hls code").textContent,
  })));

  // Every running stream's player: wait until it has played 3 s, then note the time
  // again a second later (moving video advances).
  const deadline = Date.now() + Number(timeoutSeconds) * 1000;
  const running = result.streams.filter((s) => s.state === "running").map((s) => s.name);
  const state = () => page.evaluate((names) => Object.fromEntries(names.map((name) => {
    const video = document.querySelector(`.stream[data-name="${name}"] video`);
    const player = window.players[name] || { fatalErrors: ["no player"] };
    return [name, { currentTime: video.currentTime, videoWidth: video.videoWidth, videoHeight: video.videoHeight, fatalErrors: player.fatalErrors, mode: player.mode, latency: player.latency || "", webrtcError: player.webrtcError }];
  })), running);
  let players = await state();
  while (Date.now() < deadline) {
    players = await state();
    const all = Object.values(players);
    if (all.some((p) => p.fatalErrors.length > 0) || all.every((p) => p.currentTime >= 3)) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const later = await state();
  for (const name of running) {
    result.players[name] = { ...players[name], currentTimeLater: later[name].currentTime };
  }

  // Screenshots of each player, decoded back in the page to measure pixel variance.
  for (const name of running) {
    const path = `${screenshotDir}/dashboard-${name}.png`;
    const png = await page.locator(`.stream[data-name="${name}"] video`).screenshot({ path });
    const stats = await page.evaluate(async (base64) => {
      const blob = await (await fetch("data:image/png;base64," + base64)).blob();
      const bitmap = await createImageBitmap(blob);
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const context = canvas.getContext("2d");
      context.drawImage(bitmap, 0, 0);
      const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
      let sum = 0, sumSquares = 0, n = 0;
      for (let i = 0; i < data.length; i += 4) {
        const luma = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
        sum += luma; sumSquares += luma * luma; n += 1;
      }
      const mean = sum / n;
      return { width: bitmap.width, height: bitmap.height, mean, variance: sumSquares / n - mean * mean };
    }, png.toString("base64"));
    result.screenshots.push({ name, path, ...stats });
  }

  await page.screenshot({ path: `${screenshotDir}/dashboard.png`, fullPage: true });

  // The copy button puts the RTSP URL on the clipboard.
  if (result.streams.length > 0) {
    const first = result.streams[0].name;
    const button = page.locator(`.stream[data-name="${first}"] .url-rtsp button`);
    await button.click();
    await page.waitForFunction((name) => document.querySelector(`.stream[data-name="${name}"] .url-rtsp button`).textContent === "copied", first, { timeout: 5000 }).catch(() => {});
    result.copied = await page.evaluate(() => navigator.clipboard.readText()).catch((e) => "clipboard: " + e);
  }

  // A stream deleted through the API shows as removed within the page's refresh.
  const last = result.streams[result.streams.length - 1];
  if (last) {
    result.deleteStatus = await page.evaluate((name) => fetch("/api/streams/" + name, { method: "DELETE" }).then((r) => r.status), last.name);
    result.stateAfterDelete = await page.waitForFunction(
      (name) => { const s = document.querySelector(`.stream[data-name="${name}"] h2 span`); return s && s.textContent === "removed" && s.textContent; },
      last.name, { timeout: 15000 },
    ).then((handle) => handle.jsonValue()).catch((e) => "not updated: " + e.message);
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
