//! Snapshots of a non-Ring stream (feature `ffmpeg`), against the demo stream:
//! the JPEG and PNG decode in ffprobe at the stream's size or the size asked
//! for (one side keeps the aspect ratio), an H.265 capture whose parameter sets
//! are only in its SDP gives its picture too, a stream with no keyframe yet
//! gets 503 saying so, bad sizes are refused with 400, and
//! 100 requests at once for different sizes are all answered, with the image
//! or with 503 and `Retry-After` (the decode cap), none left hanging.

use crate::support;

use std::thread;

use support::{ffprobe, get, Gateway};

fn demo() -> Gateway {
    Gateway::start("[streams.demo]\nsource = \"demo\"\n")
}

/// `GET path` once the demo has a keyframe cached (503 until then).
fn picture(gateway: &Gateway, path: &str) -> support::Response {
    let mut last = None;
    gateway.wait_for(
        || {
            let response = get(gateway.http_port, path);
            let done = response.status != 503;
            last = Some(response);
            done
        },
        "a keyframe of the demo stream",
    );
    let response = last.expect("one answer");
    assert_eq!(response.status, 200, "{}", response.text());
    response
}

/// ffprobe's codec and size of `image`.
fn probe(gateway: &Gateway, image: &[u8], file: &str) -> String {
    let path = gateway.dir.path().join(file);
    std::fs::write(&path, image).unwrap();
    ffprobe(&path, "stream=codec_name,width,height")
}

#[test]
fn jpeg_and_png_decode_at_the_size_asked_for() {
    let gateway = demo();
    let full = picture(&gateway, "/api/streams/demo/snapshot.jpg");
    assert_eq!(full.header("content-type"), Some("image/jpeg"));
    assert!(full.header("x-media-timestamp").is_some());
    assert_eq!(
        probe(&gateway, &full.body, "full.jpg"),
        "codec_name=mjpeg\nwidth=1280\nheight=720\n"
    );

    let small = picture(&gateway, "/api/streams/demo/snapshot.jpg?width=320");
    assert_eq!(
        probe(&gateway, &small.body, "small.jpg"),
        "codec_name=mjpeg\nwidth=320\nheight=180\n"
    );

    let png = picture(&gateway, "/api/streams/demo/snapshot.png?height=360");
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert_eq!(
        probe(&gateway, &png.body, "half.png"),
        "codec_name=png\nwidth=640\nheight=360\n"
    );
}

#[test]
fn an_h265_stream_with_out_of_band_parameter_sets_gives_its_picture() {
    let capture = support::repo_path("fixtures/ffmpeg_h265.pcap");
    let gateway = Gateway::start(&format!(
        "[streams.hevc]\nsource = \"pcap:{}\"\n",
        capture.display()
    ));
    let jpeg = picture(&gateway, "/api/streams/hevc/snapshot.jpg?width=640");
    assert_eq!(
        probe(&gateway, &jpeg.body, "hevc.jpg"),
        "codec_name=mjpeg\nwidth=640\nheight=360\n"
    );
}

#[test]
fn bad_sizes_unknown_streams_and_streams_without_a_picture_are_refused() {
    let gateway = Gateway::start(
        "[streams.demo]\nsource = \"demo\"\n\n[streams.idle]\nsource = \"publish\"\n",
    );
    // No publisher: no keyframe, and the answer says so.
    let idle = get(gateway.http_port, "/api/streams/idle/snapshot.jpg");
    assert_eq!(idle.status, 503, "{}", idle.text());
    assert!(idle.text().contains("no keyframe"), "{}", idle.text());
    assert!(idle.header("retry-after").is_none());
    for path in [
        "/api/streams/demo/snapshot.jpg?width=0",
        "/api/streams/demo/snapshot.png?height=100000",
        "/api/streams/demo/snapshot.jpg?width=8193&height=10",
    ] {
        let response = get(gateway.http_port, path);
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        assert!(
            response.text().contains("width and height"),
            "{}",
            response.text()
        );
    }
    assert_eq!(
        get(gateway.http_port, "/api/streams/nope/snapshot.png").status,
        404
    );
}

#[test]
fn a_hundred_requests_at_once_are_all_answered() {
    let gateway = demo();
    picture(&gateway, "/api/streams/demo/snapshot.jpg?width=64");
    let port = gateway.http_port;
    // Different sizes: each one a decode of its own, so the cap is reached.
    let answers: Vec<_> = (0..100)
        .map(|i| {
            thread::spawn(move || {
                get(
                    port,
                    &format!("/api/streams/demo/snapshot.jpg?width={}", 100 + 2 * i),
                )
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|thread| thread.join().expect("a request thread"))
        .collect();
    let mut images = 0;
    for answer in &answers {
        match answer.status {
            200 => images += 1,
            503 => assert_eq!(answer.header("retry-after"), Some("1"), "{}", answer.text()),
            other => panic!("{other}: {}", answer.text()),
        }
    }
    assert!(images > 0, "no request got its image");
}
