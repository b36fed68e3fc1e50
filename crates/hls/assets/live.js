// streamgate's hls.js set-up, shared by the player page and the dashboard.
//
// hls.js in low-latency mode aims at PART-HOLD-BACK behind live, but only
// speeds up to get there with more than a second buffered ahead, which a
// stream played well under a second behind live never has: it stays as far
// behind as its start-up left it. keepNearLive plays up to 1.25x while the
// player is behind its target and still has some media buffered ahead, so
// start-up and stalls are caught up without a seek.
"use strict";
window.STREAMGATE_HLS_CONFIG = { lowLatencyMode: true, backBufferLength: 30, maxLiveSyncPlaybackRate: 1 };
window.keepNearLive = function (hls, video) {
  const rate = 1.25;
  video.addEventListener("timeupdate", () => {
    const target = hls.targetLatency;
    if (!target || video.paused) return;
    const ranges = video.buffered;
    const ahead = ranges.length ? ranges.end(ranges.length - 1) - video.currentTime : 0;
    const behind = hls.latency - target;
    const catchingUp = video.playbackRate > 1;
    const wanted = ahead > 0.3 && (behind > 0.1 || (catchingUp && behind > 0.02)) ? rate : 1;
    if (video.playbackRate !== wanted) video.playbackRate = wanted;
  });
};
