//! Many readers: 50 ffmpeg processes read the demo stream over TCP at once while
//! another reader is frozen with SIGSTOP (it reads nothing). Every one of the 50
//! still gets and decodes the stream, and the gateway keeps running. (That the
//! server then cuts a frozen reader off is shown by
//! `crates/rtsp/tests/slow_readers.rs`.) To keep 50 decoders within two cores,
//! each decodes only keyframes (`-skip_frame nokey`): every IDR that reaches it
//! must decode.

use crate::support;

use std::time::Duration;

use support::*;

const READERS: usize = 50;

#[test]
fn fifty_tcp_readers_decode_while_another_reader_is_stopped() {
    let mut gateway = Gateway::demo("", "");
    let url = gateway.rtsp_url("demo");

    // The frozen reader: plays, then stops reading for the rest of the test.
    let mut frozen = spawn_quiet(
        "ffmpeg",
        &[
            "-v",
            "quiet",
            "-rtsp_transport",
            "tcp",
            "-i",
            &url,
            "-c",
            "copy",
            "-f",
            "null",
            "-",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    signal(frozen.id(), "-STOP");

    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let output =
                    ffmpeg_decode(&url, "tcp", 8, &["-skip_frame", "nokey"], &["-map", "0:v"]);
                (i, output)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for reader in readers {
        let (i, output) = reader.join().expect("reader thread");
        let stderr = text(&output.stderr);
        let frames: u64 = decoded_frames(&text(&output.stdout));
        // 8 s of a 2 s GOP: the cached keyframe and at least two more.
        if !output.status.success() || !error_lines(&stderr).is_empty() || frames < 3 {
            failures.push(format!(
                "reader {i}: status {}, {frames} keyframes decoded, stderr: {stderr}",
                output.status
            ));
        }
    }
    signal(frozen.id(), "-CONT");
    let _ = frozen.kill();
    let _ = frozen.wait();
    assert!(
        failures.is_empty(),
        "{} of {READERS} readers failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        gateway.is_running(),
        "the gateway exited:\n{}",
        gateway.log()
    );
}
