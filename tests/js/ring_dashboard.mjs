// The dashboard's Ring section in the user's browser: links the simulator's
// account as ring_link.mjs does (signing in with TOKEN, which sets the sign-in
// cookie), downloads a clip through the API with that cookie, then opens the
// dashboard and reports what its Ring section shows: the accounts, whether each
// device's snapshot image loaded, the clips and whether the first one's player
// read its metadata, and the events that arrive live over SSE after it asks the
// simulator to send a motion webhook for DEVICE. Prints one JSON line.
// Usage: node tests/js/ring_dashboard.mjs START_URL TOKEN SIM_URL DEVICE CLIP_START_MS [timeout-seconds]
import { launchChromium } from "./browser.mjs";

const [start, token, sim, device, clipStart, timeoutSeconds = "60"] = process.argv.slice(2);
if (!start || !token || !sim || !device || !clipStart) {
  console.error("usage: ring_dashboard.mjs START_URL TOKEN SIM_URL DEVICE CLIP_START_MS [timeout]");
  process.exit(2);
}

const browser = await launchChromium();
const result = { pageErrors: [] };
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(Number(timeoutSeconds) * 1000);
  page.on("pageerror", (err) => result.pageErrors.push(String(err)));
  await page.goto(start);
  if (new URL(page.url()).pathname === "/ring/sign-in") {
    await page.fill("input[name=token]", token);
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  }
  result.linkTitle = await page.title();
  const origin = new URL(page.url()).origin;

  // The API takes the sign-in cookie as it takes the token.
  const clip = await page.request.post(origin + "/api/ring/devices/" + encodeURIComponent(device) + "/clips", {
    data: { start: Number(clipStart), duration: 4000 },
  });
  result.clipStatus = clip.status();

  await page.goto(origin + "/");
  result.ringSection = (await page.$(".ring")) !== null;
  result.signedIn = await page.$eval(".ring", (ring) => ring.dataset.signedIn);
  result.accounts = await page.$$eval(".ring-account", (items) => items.map((item) => ({ id: item.dataset.id, state: item.dataset.state })));
  result.devices = await page.$$eval(".ring-device", (items) => items.map((item) => item.dataset.stream));
  await page.waitForFunction(() => {
    const images = [...document.querySelectorAll("img.ring-snapshot")];
    return images.length > 0 && images.every((image) => image.complete);
  });
  result.snapshots = await page.$$eval("img.ring-snapshot", (images) => images.map((image) => ({ src: image.getAttribute("src"), naturalWidth: image.naturalWidth })));

  await page.waitForSelector("#ring-clips video");
  await page.waitForFunction(() => document.querySelector("#ring-clips video").readyState >= 1);
  result.clips = await page.$$eval("#ring-clips video", (videos) => videos.map((video) => ({ src: video.getAttribute("src"), duration: video.duration })));

  await page.waitForFunction(() => window.ringEventsOpen === true);
  const sent = await fetch(new URL("/sim/webhooks", sim).href, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ type: "motion_detected", device }),
  });
  result.webhookStatus = sent.status;
  await page.waitForFunction((id) => window.ringEvents.some((e) => e.type === "motion_detected" && e.device === id), device);
  result.liveEvents = await page.$$eval("#ring-events .ring-event", (items) => items.map((item) => item.dataset.type));
} catch (error) {
  result.error = String(error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
