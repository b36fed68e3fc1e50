//! `rtsps://` camera sources: gst-rtsp-server with a TLS certificate (signed by a
//! test CA that openssl makes) is pulled by the binary with verification against
//! `tls_ca`, without verification (`tls_verify = false`), and with a pinned
//! fingerprint (with Digest auth); ffmpeg decodes each restream. A wrong pin,
//! and verification without the test CA, are refused with clear errors in the
//! stream's API view and the log.

use crate::support;

use std::process::Command;

use support::camera::Camera;
use support::{decoded_frames, error_lines, ffmpeg_decode, peer, run, text, Gateway};
use support::{TempDir, PEER_DEADLINE};

/// Paths of the test PKI: a CA, and a P-256 server certificate for 127.0.0.1 it signed.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn openssl(args: &[&str]) -> String {
    let output = run(Command::new(peer("openssl")).args(args), PEER_DEADLINE);
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn pki(dir: &TempDir) -> Pki {
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (ca, ca_key, csr, ext) = (path("ca.pem"), path("ca.key"), path("cam.csr"), path("ext"));
    let (cert, key) = (path("cam.pem"), path("cam.key"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=streamgate test CA"],
            &["-keyout", &ca_key, "-out", &ca],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &csr],
        ]
        .concat(),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    Pki { ca, cert, key }
}

/// The certificate's SHA-256 as openssl prints it (`AB:CD:…`), lower-case hex without colons.
fn fingerprint(cert: &str) -> String {
    let out = openssl(&["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"]);
    let (_, hex) = out
        .trim()
        .split_once('=')
        .expect("openssl fingerprint line");
    hex.replace(':', "").to_ascii_lowercase()
}

fn decodes(gateway: &Gateway, name: &str) {
    let output = ffmpeg_decode(&gateway.rtsp_url(name), "tcp", 4, &[], &[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "ffmpeg failed on {name}: {stderr}\n{}",
        gateway.log()
    );
    assert!(
        error_lines(&stderr).is_empty(),
        "ffmpeg errors on {name}:\n{stderr}"
    );
    let frames = decoded_frames(&stdout);
    assert!(
        frames >= 50,
        "ffmpeg decoded {frames} frames of 4 s of {name}\n{}",
        gateway.log()
    );
}

#[test]
fn rtsps_cameras_are_pulled_verified_unverified_and_pinned() {
    let dir = TempDir::new("rtsps-source");
    let pki = pki(&dir);
    let tls = [
        "--tls-cert",
        pki.cert.as_str(),
        "--tls-key",
        pki.key.as_str(),
    ];
    let camera = Camera::start(&tls);
    let password = "Dg7-rtsps-pw";
    let digest_camera = Camera::start(
        &[
            &tls[..],
            &["--user", "viewer", "--password", password, "--digest"],
        ]
        .concat(),
    );
    let url = format!("rtsps://127.0.0.1:{}/cam", camera.port);
    let digest_url = format!(
        "rtsps://viewer:{password}@127.0.0.1:{}/cam",
        digest_camera.port
    );
    let pin = fingerprint(&pki.cert);
    let wrong_pin = "ab".repeat(32);
    let streams = format!(
        "[streams.verified]\nsource = \"{url}\"\ntls_ca = \"{ca}\"\n\n\
         [streams.unverified]\nsource = \"{url}\"\ntls_verify = false\n\n\
         [streams.pinned]\nsource = \"{digest_url}\"\ntls_fingerprint = \"sha256:{pin}\"\n\n\
         [streams.wrongpin]\nsource = \"{url}\"\ntls_fingerprint = \"sha256:{wrong_pin}\"\nalways_on = true\n\n\
         [streams.untrusted]\nsource = \"{url}\"\nalways_on = true\n",
        ca = pki.ca,
    );
    let gateway = Gateway::start(&streams);

    for name in ["verified", "unverified", "pinned"] {
        decodes(&gateway, name);
    }

    // A wrong pin names both fingerprints; a certificate from an unknown CA is refused.
    let expected = format!("expected sha256:{wrong_pin}");
    let view = gateway.wait_api("wrongpin", |view| view.contains(&expected));
    assert!(view.contains(&format!("is sha256:{pin}")), "{view}");
    let view = gateway.wait_api("untrusted", |view| view.contains("UnknownIssuer"));
    assert!(!view.contains("\"source_state\":\"playing\""), "{view}");
    let log = gateway.log();
    assert!(
        log.contains(&expected),
        "the pin error is not in the log:\n{log}"
    );
    assert!(
        !log.contains(password),
        "the camera password is in the log:\n{log}"
    );
}
