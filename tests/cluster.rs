//! Scale-out on etcd (feature `cluster`): a real etcd (Debian's `etcd-server`,
//! on free loopback ports with a temp data dir) and three gateway processes
//! with the same streams. Shows that every stream is owned by exactly one node
//! and the streams are spread, that every node gives the same listing, that
//! ffprobe and ffmpeg read through a node that does not own the stream (RTSP
//! 302, HLS 307; WHEP offers get a 307 too), and that a killed owner's streams are claimed by a survivor
//! once its lease expires, and that while etcd is stopped (SIGSTOP) the
//! owners stop their sources, since they cannot renew their leases; and
//! that SIGTERM hands a node's streams over by revoking its lease.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    decoded_frames, ffmpeg_decode, ffprobe_streams, fixture, free_port, get, peer, repo_path,
    request, run_peer, signal, text, Gateway, TempDir, DEADLINE,
};

/// Short, so the crash test's failover takes seconds.
const LEASE_TTL: &str = "3s";
const STREAMS: [&str; 6] = ["cam-a", "cam-b", "cam-c", "cam-d", "cam-e", "cam-f"];

/// A one-member etcd; killed on drop.
struct Etcd {
    child: Child,
    url: String,
    dir: TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = TempDir::new("etcd");
        let (client, peer_port) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("create etcd log");
        let child = Command::new(peer("etcd"))
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let etcd = Etcd { child, url, dir };
        let deadline = Instant::now() + DEADLINE;
        while !(TcpStream::connect(("127.0.0.1", client)).is_ok()
            && get(client, "/health").text().contains("true"))
        {
            assert!(
                Instant::now() < deadline,
                "etcd did not start; log:\n{}",
                etcd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Etcd {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three gateways `gw-1`..`gw-3` in the cluster of `etcd`, each with [`STREAMS`].
fn start_cluster(etcd: &Etcd) -> Vec<Gateway> {
    let streams: String = STREAMS
        .iter()
        .map(|name| {
            format!(
                "[streams.{name}]\nsource = \"pcap:{}\"\n\n",
                fixture("ffmpeg_h264_aac.pcap")
            )
        })
        .collect();
    (1..=3)
        .map(|i| {
            let (rtsp, http) = (free_port(), free_port());
            let cluster = format!(
                "[cluster]\netcd = [\"{}\"]\nnode = \"gw-{i}\"\nadvertise_rtsp = \"rtsp://127.0.0.1:{rtsp}\"\nadvertise_http = \"http://127.0.0.1:{http}\"\nlease_ttl = \"{LEASE_TTL}\"\n",
                etcd.url
            );
            Gateway::start_on(rtsp, http, &format!("{streams}{cluster}"))
        })
        .collect()
}

fn json(gateway: &Gateway, path: &str) -> serde_json::Value {
    let response = get(gateway.http_port, path);
    assert_eq!(response.status, 200, "GET {path}: {}", response.text());
    serde_json::from_str(&response.text()).expect("JSON")
}

/// Stream → owner as `/api/cluster` lists it; `None` when a stream is
/// listed under two members.
fn owners(gateway: &Gateway) -> Option<BTreeMap<String, String>> {
    let cluster = json(gateway, "/api/cluster");
    let mut owners = BTreeMap::new();
    for member in cluster["members"].as_array()? {
        for stream in member["streams"].as_array()? {
            let node = member["node"].as_str()?.to_owned();
            if owners.insert(stream.as_str()?.to_owned(), node).is_some() {
                return None;
            }
        }
    }
    Some(owners)
}

/// Stream → owner as `/api/streams` shows it: its own streams (the ones it
/// runs) and those it says run elsewhere.
fn streams_listing(gateway: &Gateway) -> BTreeMap<String, String> {
    let list = json(gateway, "/api/streams");
    let mut owners = BTreeMap::new();
    for stream in list["streams"].as_array().into_iter().flatten() {
        owners.insert(stream["name"].to_string(), stream["owner"].to_string());
    }
    for stream in list["elsewhere"].as_array().into_iter().flatten() {
        owners.insert(stream["name"].to_string(), stream["owner"].to_string());
    }
    owners
        .into_iter()
        .map(|(k, v)| {
            (
                k.trim_matches('"').to_owned(),
                v.trim_matches('"').to_owned(),
            )
        })
        .collect()
}

/// Waits until every live node lists every stream with one owner among
/// `alive` nodes, all nodes the same; that listing.
fn settled(gateways: &[&Gateway], alive: &[&str]) -> BTreeMap<String, String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let listings: Vec<_> = gateways.iter().map(|g| owners(g)).collect();
        let first = listings[0].clone();
        let complete = first.as_ref().is_some_and(|owners| {
            owners.len() == STREAMS.len() && owners.values().all(|n| alive.contains(&n.as_str()))
        });
        if complete && listings.iter().all(|l| *l == first) {
            let owners = first.expect("complete");
            // The registry agrees: each node runs exactly the streams it owns.
            if gateways.iter().all(|g| streams_listing(g) == owners) {
                return owners;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the cluster never settled: {listings:?}\n{}",
            gateways[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn node_index(node: &str) -> usize {
    node.trim_start_matches("gw-")
        .parse::<usize>()
        .expect("gw-N")
        - 1
}

#[test]
fn streams_are_spread_and_every_node_lists_the_same_owners() {
    let etcd = Etcd::start();
    let gateways = start_cluster(&etcd);
    let all: Vec<&Gateway> = gateways.iter().collect();
    let owners = settled(&all, &["gw-1", "gw-2", "gw-3"]);
    let mut per_node = BTreeMap::new();
    for node in owners.values() {
        *per_node.entry(node.as_str()).or_insert(0) += 1;
    }
    eprintln!("spread of {} streams: {per_node:?}", STREAMS.len());
    // Rendezvous hashing of these names gives every node a share (whatever
    // order the nodes joined in: the first claims all, then hands over).
    assert_eq!(per_node.len(), 3, "a node owns nothing: {owners:?}");
    // Only the owner runs the source: its registry has the stream, and it plays.
    for (stream, node) in &owners {
        let owner = &gateways[node_index(node)];
        owner.wait_api(stream, |body| body.contains("\"state\":\"running\""));
    }
}

#[test]
fn readers_of_a_non_owner_are_redirected_to_the_owner() {
    let etcd = Etcd::start();
    let gateways = start_cluster(&etcd);
    let all: Vec<&Gateway> = gateways.iter().collect();
    let owners = settled(&all, &["gw-1", "gw-2", "gw-3"]);
    let (stream, node) = owners.iter().next().expect("a stream");
    let owner = &gateways[node_index(node)];
    let other = gateways
        .iter()
        .find(|g| g.http_port != owner.http_port)
        .expect("a non-owner");

    let probe = ffprobe_streams(&other.rtsp_url(stream), &[]);
    let out = text(&probe.stdout);
    assert!(
        probe.status.success() && out.contains("codec_name=h264"),
        "ffprobe through the non-owner: {out}\n{}\n{}",
        text(&probe.stderr),
        other.log()
    );

    let playlist = format!("/hls/{stream}/index.m3u8");
    let redirect = get(other.http_port, &playlist);
    assert_eq!(redirect.status, 307, "{}", redirect.text());
    assert_eq!(
        redirect.header("location"),
        Some(owner.http_url(&playlist).as_str())
    );
    owner.wait_ok(&playlist);
    let url = other.http_url(&playlist);
    let (ok, stdout, stderr) = run_peer(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &url,
        ],
    );
    assert!(
        ok && stdout.contains("h264"),
        "ffprobe through the non-owner's HLS: {stdout}\n{stderr}"
    );

    // A WHEP offer: 307 keeps the method and body, so the client posts the
    // same offer to the owner (done here by hand: the WHEP peers of the
    // tests do not follow redirects), which answers it.
    let offer = std::fs::read_to_string(repo_path("tests/peers/whep_offer_h264.sdp")).unwrap();
    let sdp = "Content-Type: application/sdp\r\n";
    let whep = format!("/whep/{stream}");
    let post = |port| request(port, "POST", &whep, Some(&offer), sdp, DEADLINE).expect("an answer");
    let redirect = post(other.http_port);
    assert_eq!(redirect.status, 307, "{}", redirect.text());
    assert_eq!(
        redirect.header("location"),
        Some(owner.http_url(&whep).as_str())
    );
    let answer = post(owner.http_port);
    assert_eq!(answer.status, 201, "{}\n{}", answer.text(), owner.log());
    assert!(answer.text().contains("m=video"), "{}", answer.text());
}

#[test]
fn a_killed_owners_streams_are_claimed_by_a_survivor() {
    let etcd = Etcd::start();
    let gateways = start_cluster(&etcd);
    let all: Vec<&Gateway> = gateways.iter().collect();
    let owners = settled(&all, &["gw-1", "gw-2", "gw-3"]);
    let (stream, node) = owners.iter().next().expect("a stream");
    let (stream, dead) = (stream.clone(), node_index(node));
    let killed = Instant::now();
    signal(gateways[dead].pid(), "-KILL");
    let survivors: Vec<&Gateway> = gateways
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != dead)
        .map(|(_, g)| g)
        .collect();
    let alive: Vec<String> = (1..=3)
        .filter(|i| i - 1 != dead)
        .map(|i| format!("gw-{i}"))
        .collect();
    let alive: Vec<&str> = alive.iter().map(String::as_str).collect();
    let after = settled(&survivors, &alive);
    let claimed = killed.elapsed();
    let reader = survivors[0];
    let frames = loop {
        let decoded = ffmpeg_decode(&reader.rtsp_url(&stream), "tcp", 1, &[], &[]);
        let frames = decoded_frames(&text(&decoded.stdout));
        if frames > 0 {
            break frames;
        }
        assert!(
            killed.elapsed() < DEADLINE,
            "no frames of {stream} after the kill"
        );
    };
    eprintln!(
        "failover of {stream} ({} to {}, lease_ttl {LEASE_TTL}): claimed after {claimed:?}, ffmpeg read {frames} frames {:?} after kill -9",
        owners[&stream],
        after[&stream],
        killed.elapsed()
    );
    assert_ne!(after[&stream], owners[&stream]);
}

#[test]
fn owners_stop_their_sources_while_etcd_is_unreachable() {
    let etcd = Etcd::start();
    let gateways = start_cluster(&etcd);
    let all: Vec<&Gateway> = gateways.iter().collect();
    settled(&all, &["gw-1", "gw-2", "gw-3"]);
    let stopped = Instant::now();
    signal(etcd.pid(), "-STOP");
    // No node can renew its lease: each stops its sources (its registry
    // empties) before etcd could expire the lease and let another claim.
    for gateway in &gateways {
        gateway.wait_for(
            || {
                json(gateway, "/api/streams")["streams"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
            },
            "the sources stopping while etcd is stopped",
        );
    }
    eprintln!(
        "etcd stopped: every source down after {:?}",
        stopped.elapsed()
    );
    signal(etcd.pid(), "-CONT");
    let owners = settled(&all, &["gw-1", "gw-2", "gw-3"]);
    let (stream, node) = owners.iter().next().expect("a stream");
    let reader = gateways
        .iter()
        .find(|g| g.http_port != gateways[node_index(node)].http_port)
        .expect("a non-owner");
    let decoded = ffmpeg_decode(&reader.rtsp_url(stream), "tcp", 1, &[], &[]);
    assert!(
        decoded_frames(&text(&decoded.stdout)) > 0,
        "no frames of {stream} once etcd is back: {}",
        text(&decoded.stderr)
    );
}

#[test]
fn sigterm_hands_the_streams_over_by_revoking_the_lease() {
    let etcd = Etcd::start();
    let mut gateways = start_cluster(&etcd);
    let all: Vec<&Gateway> = gateways.iter().collect();
    let owners = settled(&all, &["gw-1", "gw-2", "gw-3"]);
    let (stream, node) = owners.iter().next().expect("a stream");
    let (stream, leaving) = (stream.clone(), node_index(node));
    let terminated = Instant::now();
    signal(gateways[leaving].pid(), "-TERM");
    let deadline = Instant::now() + DEADLINE;
    while gateways[leaving].is_running() {
        assert!(
            Instant::now() < deadline,
            "the gateway did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = gateways[leaving].log();
    assert!(
        log.contains("left the cluster") && log.contains("revoked=true"),
        "the leaving node did not revoke its lease:\n{log}"
    );
    let survivors: Vec<&Gateway> = gateways
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leaving)
        .map(|(_, g)| g)
        .collect();
    let alive: Vec<String> = (1..=3)
        .filter(|i| i - 1 != leaving)
        .map(|i| format!("gw-{i}"))
        .collect();
    let alive: Vec<&str> = alive.iter().map(String::as_str).collect();
    let after = settled(&survivors, &alive);
    let claimed = terminated.elapsed();
    let decoded = ffmpeg_decode(&survivors[0].rtsp_url(&stream), "tcp", 1, &[], &[]);
    let frames = decoded_frames(&text(&decoded.stdout));
    assert!(
        frames > 0,
        "no frames of {stream} after the hand-over: {}",
        text(&decoded.stderr)
    );
    eprintln!(
        "hand-over of {stream} ({} to {}, lease_ttl {LEASE_TTL}): claimed after {claimed:?}, ffmpeg read {frames} frames {:?} after SIGTERM",
        owners[&stream],
        after[&stream],
        terminated.elapsed()
    );
}
