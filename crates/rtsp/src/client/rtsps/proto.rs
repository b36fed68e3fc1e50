//! The RTSPS client's protocol, sans-IO: OPTIONS, DESCRIBE, a SETUP per usable
//! track (RTP/AVP/TCP interleaved on the one connection), PLAY, then
//! keep-alives; fed the camera's bytes, it yields requests to send and the
//! same [`SessionEvent`]s the retina path does.
//!
//! Auth: a 401 is answered once per request with the camera's strongest
//! challenge (Digest over Basic, by `http-auth`, which retina uses too); later
//! requests carry credentials from the start (Digest counts its nonce uses).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_auth::{PasswordClient, PasswordParams};
use retina::client::Credentials;
use rtsp_types::{headers, Method, Request, Response, StatusCode, Url, Version};
use streamgate_rtp::packet::RtpPacket;
use streamgate_rtp::rtcp::{self, RtcpPacket};
use streamgate_rtp::sdp::{self, SdpTrack};
use streamgate_rtp::{TrackId, TrackInfo};

#[cfg(test)]
use super::reader::MAX_RESPONSE_LEN;
use super::reader::{ReadError, Received, ResponseReader};
use crate::client::session::{SessionEvent, USER_AGENT};
use crate::client::SourceError;

/// The session timeout when the camera names none (RFC 2326 §12.37).
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Options,
    Describe,
    /// SETUP of this track (index into `tracks`).
    Setup(usize),
    Play,
    Playing,
}

/// The request whose response is awaited.
#[derive(Debug)]
struct Pending {
    cseq: u32,
    method: Method,
    uri: Url,
    transport: Option<String>,
    /// Already sent with credentials after a 401: a second 401 is final.
    authorized: bool,
}

/// What an interleaved channel carries.
#[derive(Debug, Clone, Copy)]
enum Channel {
    Rtp(TrackId),
    Rtcp(TrackId),
}

pub struct Client {
    url: Url,
    credentials: Option<Credentials>,
    auth: Option<PasswordClient>,
    reader: ResponseReader,
    step: Step,
    cseq: u32,
    pending: Option<Pending>,
    outgoing: VecDeque<Vec<u8>>,
    events: VecDeque<SessionEvent>,
    /// Content-Base (with a trailing `/`) that control URLs are relative to.
    base: Option<Url>,
    tracks: Vec<SdpTrack>,
    channels: Vec<Option<Channel>>,
    session: Option<String>,
    session_timeout: Duration,
    /// GET_PARAMETER if the camera lists it in `Public`, else OPTIONS.
    keepalive: Method,
    next_keepalive: Option<Instant>,
}

impl Client {
    /// A client for `url` (no user info in it); the first request (OPTIONS) is queued.
    pub fn new(url: Url, credentials: Option<Credentials>) -> Client {
        let mut client = Client {
            url: url.clone(),
            credentials,
            auth: None,
            reader: ResponseReader::default(),
            step: Step::Options,
            cseq: 0,
            pending: None,
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            base: None,
            tracks: Vec::new(),
            channels: vec![None; 256],
            session: None,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            keepalive: Method::Options,
            next_keepalive: None,
        };
        client.send(Method::Options, url, None);
        client
    }

    /// The step being waited for, for timeout errors.
    pub fn step_name(&self) -> &'static str {
        match self.step {
            Step::Options => "OPTIONS",
            Step::Describe => "DESCRIBE",
            Step::Setup(_) => "SETUP",
            Step::Play => "PLAY",
            Step::Playing => "a keep-alive",
        }
    }

    pub fn is_playing(&self) -> bool {
        self.step == Step::Playing
    }

    /// The tracks set up (ids 0..), known once DESCRIBE is answered.
    pub fn tracks(&self) -> Vec<TrackInfo> {
        self.tracks.iter().map(|t| t.info.clone()).collect()
    }

    /// Bytes to write to the connection, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outgoing.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When to call [`Client::handle_timeout`] (the next keep-alive).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_keepalive
    }

    /// Sends a keep-alive when one is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_keepalive.is_some_and(|at| now >= at) {
            // A keep-alive still unanswered after half the timeout: the next one
            // goes anyway (the camera's own timeout decides).
            let uri = self.base.clone().unwrap_or_else(|| self.url.clone());
            self.send(self.keepalive.clone(), uri, None);
            self.next_keepalive = Some(now + self.session_timeout / 2);
        }
    }

    /// TEARDOWN of the session, for a clean goodbye.
    pub fn teardown(&mut self) -> Option<Vec<u8>> {
        self.session.as_ref()?;
        let uri = self.base.clone().unwrap_or_else(|| self.url.clone());
        self.send(Method::Teardown, uri, None);
        self.outgoing.pop_back()
    }

    /// Takes bytes read from the connection at `now`.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), SourceError> {
        let read_err = |e: ReadError| SourceError::protocol(e.to_string());
        self.reader.push(data).map_err(read_err)?;
        while let Some(message) = self.reader.next_message().map_err(read_err)? {
            match message {
                Received::Interleaved { channel, data } => self.interleaved(channel, data),
                Received::Response(response) => self.response(*response, now)?,
            }
        }
        Ok(())
    }

    fn interleaved(&mut self, channel: u8, data: Bytes) {
        let event = match self.channels[usize::from(channel)] {
            // Not set up (or not by us): nothing to carry it to.
            None => return,
            Some(Channel::Rtp(track)) => match RtpPacket::parse(data) {
                Ok(packet) => SessionEvent::Rtp(track, packet),
                Err(e) => SessionEvent::BadPacket(track, e.to_string()),
            },
            Some(Channel::Rtcp(track)) => match rtcp::parse_compound(&data) {
                Ok(packets) => {
                    let Some(report) = packets.into_iter().find_map(|p| match p {
                        RtcpPacket::SenderReport(report) => Some(report),
                        _ => None,
                    }) else {
                        return;
                    };
                    SessionEvent::SenderReport(track, report)
                }
                Err(e) => SessionEvent::BadPacket(track, e.to_string()),
            },
        };
        self.events.push_back(event);
    }

    fn response(&mut self, response: Response<Vec<u8>>, now: Instant) -> Result<(), SourceError> {
        let cseq = header(&response, &headers::CSEQ).and_then(|v| v.trim().parse::<u32>().ok());
        let Some(pending) = self.pending.take_if(|p| Some(p.cseq) == cseq) else {
            // An answer to an earlier keep-alive (the newest one replaced it), or noise.
            return Ok(());
        };
        let status = u16::from(response.status());
        let method = method_name(&pending.method);
        if response.status() == StatusCode::Unauthorized && !pending.authorized {
            return self.authorize(&response, pending);
        }
        if !(200..300).contains(&status) {
            return Err(SourceError::answered(
                status,
                response.reason_phrase(),
                method,
            ));
        }
        match self.step {
            Step::Options => {
                let public = header(&response, &headers::PUBLIC).unwrap_or_default();
                if public
                    .split(',')
                    .any(|m| m.trim().eq_ignore_ascii_case("GET_PARAMETER"))
                {
                    self.keepalive = Method::GetParameter;
                }
                self.step = Step::Describe;
                let uri = self.url.clone();
                self.send(Method::Describe, uri, None);
            }
            Step::Describe => {
                self.described(&response, &pending.uri)?;
                self.setup_next(0);
            }
            Step::Setup(index) => {
                self.set_up(&response, index)?;
                self.setup_next(index + 1);
            }
            Step::Play => {
                self.step = Step::Playing;
                self.next_keepalive = Some(now + self.session_timeout / 2);
            }
            Step::Playing => {}
        }
        Ok(())
    }

    /// Sends `pending` again with an answer to the camera's challenge.
    fn authorize(
        &mut self,
        response: &Response<Vec<u8>>,
        pending: Pending,
    ) -> Result<(), SourceError> {
        let method = method_name(&pending.method);
        if self.credentials.is_none() {
            return Err(SourceError::answered(401, response.reason_phrase(), method));
        }
        let challenge = header(response, &headers::WWW_AUTHENTICATE).unwrap_or_default();
        let client = PasswordClient::builder()
            .challenges(challenge)
            .build()
            .map_err(|e| {
                SourceError::protocol(format!("camera's auth challenge to {method}: {e}"))
            })?;
        self.auth = Some(client);
        self.send_request(pending.method, pending.uri, pending.transport, true);
        Ok(())
    }

    /// Reads the DESCRIBE answer: the base URL and the usable tracks.
    fn described(
        &mut self,
        response: &Response<Vec<u8>>,
        request_uri: &Url,
    ) -> Result<(), SourceError> {
        let base = header(response, &headers::CONTENT_BASE)
            .or_else(|| header(response, &headers::CONTENT_LOCATION))
            .and_then(|b| Url::parse(b.trim()).ok())
            .unwrap_or_else(|| request_uri.clone());
        self.base = Some(with_trailing_slash(base));
        let body = response.body();
        let tracks = sdp::parse_tracks(body).map_err(|e| SourceError::Sdp(e.to_string()))?;
        let offered = offered_media(body);
        let srtp: Vec<&Offered> = offered.iter().filter(|m| m.secure).collect();
        let usable: Vec<SdpTrack> = tracks
            .into_iter()
            .filter(|t| !srtp.iter().any(|m| m.control == t.control))
            .enumerate()
            .map(|(i, mut t)| {
                t.info.id = TrackId::new(i);
                t
            })
            .collect();
        if usable.is_empty() {
            let list = offered
                .iter()
                .map(|m| m.summary.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(if !srtp.is_empty() && srtp.len() == offered.len() {
                SourceError::SrtpOnly { offered: list }
            } else {
                SourceError::NoUsableTracks { offered: list }
            });
        }
        self.tracks = usable;
        Ok(())
    }

    /// Reads a SETUP answer: the session and the channels the camera chose.
    fn set_up(&mut self, response: &Response<Vec<u8>>, index: usize) -> Result<(), SourceError> {
        let session = header(response, &headers::SESSION)
            .ok_or_else(|| SourceError::protocol("camera's SETUP answer has no Session"))?;
        let mut parts = session.split(';');
        let id = parts.next().unwrap_or_default().trim().to_owned();
        for part in parts {
            if let Some(secs) = part.trim().strip_prefix("timeout=") {
                if let Ok(secs) = secs.trim().parse::<u64>() {
                    self.session_timeout = Duration::from_secs(secs.max(2));
                }
            }
        }
        self.session = Some(id);
        let (rtp, rtcp) = header(response, &headers::TRANSPORT)
            .and_then(interleaved_channels)
            .unwrap_or_else(|| requested_channels(index));
        let track = self.tracks[index].info.id;
        self.channels[usize::from(rtp)] = Some(Channel::Rtp(track));
        self.channels[usize::from(rtcp)] = Some(Channel::Rtcp(track));
        Ok(())
    }

    /// SETUP of track `index`, or PLAY once every track is set up.
    fn setup_next(&mut self, index: usize) {
        let base = self.base.clone().unwrap_or_else(|| self.url.clone());
        match self.tracks.get(index) {
            Some(track) => {
                self.step = Step::Setup(index);
                let uri = control_url(&base, track.control.as_deref());
                let (rtp, rtcp) = requested_channels(index);
                let transport = format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp}");
                self.send(Method::Setup, uri, Some(transport));
            }
            None => {
                self.step = Step::Play;
                self.send(Method::Play, base, None);
            }
        }
    }

    fn send(&mut self, method: Method, uri: Url, transport: Option<String>) {
        let authorized = self.auth.is_some();
        self.send_request(method, uri, transport, authorized);
    }

    fn send_request(
        &mut self,
        method: Method,
        uri: Url,
        transport: Option<String>,
        authorized: bool,
    ) {
        self.cseq += 1;
        let mut request = Request::builder(method.clone(), Version::V1_0)
            .request_uri(uri.clone())
            .header(headers::CSEQ, self.cseq.to_string())
            .header(headers::USER_AGENT, USER_AGENT);
        if method == Method::Describe {
            request = request.header(headers::ACCEPT, "application/sdp");
        }
        if let Some(transport) = &transport {
            request = request.header(headers::TRANSPORT, transport.as_str());
        }
        if let Some(session) = &self.session {
            request = request.header(headers::SESSION, session.as_str());
        }
        if let (Some(auth), Some(credentials)) = (self.auth.as_mut(), &self.credentials) {
            let params = PasswordParams {
                username: &credentials.username,
                password: &credentials.password,
                uri: uri.as_str(),
                method: method_name(&method),
                body: None,
            };
            // Only Digest can fail here (an unknown algorithm): then the camera's
            // 401 to the request without credentials is what the user sees.
            if let Ok(value) = auth.respond(&params) {
                request = request.header(headers::AUTHORIZATION, value);
            }
        }
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = request.empty().write(&mut bytes);
        self.outgoing.push_back(bytes);
        self.pending = Some(Pending {
            cseq: self.cseq,
            method,
            uri,
            transport,
            authorized,
        });
    }
}

fn header<'r>(response: &'r Response<Vec<u8>>, name: &headers::HeaderName) -> Option<&'r str> {
    response.header(name).map(|v| v.as_str())
}

fn method_name(method: &Method) -> &str {
    method.into()
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// A track's SETUP URL: its `a=control`, absolute or relative to the base.
fn control_url(base: &Url, control: Option<&str>) -> Url {
    match control {
        None | Some("*") => base.clone(),
        Some(control) => Url::parse(control)
            .ok()
            .filter(|u| u.has_host())
            .or_else(|| base.join(control).ok())
            .unwrap_or_else(|| base.clone()),
    }
}

/// Track `index` asks for channels `2i` and `2i+1`.
fn requested_channels(index: usize) -> (u8, u8) {
    let rtp = u8::try_from(index * 2).unwrap_or(u8::MAX - 1);
    (rtp, rtp + 1)
}

/// `interleaved=a-b` of a Transport header.
fn interleaved_channels(transport: &str) -> Option<(u8, u8)> {
    let value = transport
        .split(';')
        .find_map(|p| p.trim().strip_prefix("interleaved="))?;
    let (rtp, rtcp) = value.split_once('-').unwrap_or((value, value));
    let rtp: u8 = rtp.trim().parse().ok()?;
    let rtcp: u8 = rtcp.trim().parse().unwrap_or(rtp.saturating_add(1));
    Some((rtp, rtcp))
}

/// One `m=video`/`m=audio` section as offered, for error messages and SRTP.
struct Offered {
    summary: String,
    control: Option<String>,
    secure: bool,
}

fn offered_media(sdp: &[u8]) -> Vec<Offered> {
    let Ok(session) = sdp_types::Session::parse(sdp) else {
        return Vec::new();
    };
    session
        .medias
        .iter()
        .filter(|m| matches!(m.media.as_str(), "video" | "audio"))
        .map(|m| Offered {
            summary: format!("{} {} {}", m.media, m.proto, m.fmt),
            control: m
                .get_first_attribute_value("control")
                .flatten()
                .map(str::to_owned),
            secure: m.proto.contains("SAVP"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::Authenticator;
    use crate::server::Credentials as ServerCredentials;
    use rtsp_types::Message;

    const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:stream=0\r\n\
        m=audio 0 RTP/AVP 0\r\na=control:stream=1\r\n";

    fn url() -> Url {
        Url::parse("rtsps://127.0.0.1:7441/cam").unwrap()
    }

    fn client(credentials: Option<(&str, &str)>) -> Client {
        let credentials = credentials.map(|(username, password)| Credentials {
            username: username.into(),
            password: password.into(),
        });
        Client::new(url(), credentials)
    }

    /// The one request the client has queued, parsed.
    fn sent(client: &mut Client) -> Request<Vec<u8>> {
        let bytes = client.poll_transmit().expect("a request");
        assert!(client.poll_transmit().is_none(), "more than one request");
        match Message::<Vec<u8>>::parse(&bytes).expect("parse request") {
            (Message::Request(request), len) if len == bytes.len() => request,
            other => panic!("not one request: {other:?}"),
        }
    }

    fn value<'r>(request: &'r Request<Vec<u8>>, name: &headers::HeaderName) -> &'r str {
        request.header(name).map(|v| v.as_str()).unwrap_or_default()
    }

    fn answer(client: &mut Client, request: &Request<Vec<u8>>, head: &str, body: &str) {
        let cseq = value(request, &headers::CSEQ);
        let text = format!(
            "RTSP/1.0 {head}\r\nCSeq: {cseq}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        client.handle_input(text.as_bytes(), now()).expect("answer");
    }

    fn now() -> Instant {
        Instant::now()
    }

    /// A client that has sent DESCRIBE (after a plain OPTIONS exchange).
    fn describing() -> (Client, Request<Vec<u8>>) {
        let mut client = client(None);
        let options = sent(&mut client);
        answer(
            &mut client,
            &options,
            "200 OK\r\nPublic: OPTIONS, DESCRIBE",
            "",
        );
        let describe = sent(&mut client);
        (client, describe)
    }

    /// The whole exchange against canned answers, with the Digest challenges of
    /// our own RTSP server checking the client's response.
    #[test]
    fn digest_describe_setup_play_packets_and_keepalives() {
        let mut client = client(Some(("viewer", "s3cret")));
        let options = sent(&mut client);
        assert_eq!(options.method(), Method::Options);
        let public = "200 OK\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN";
        answer(&mut client, &options, public, "");

        let describe = sent(&mut client);
        assert_eq!(describe.method(), Method::Describe);
        assert!(describe.header(&headers::AUTHORIZATION).is_none());
        let server = Authenticator::new();
        let challenge: Vec<String> = server
            .challenges()
            .iter()
            .map(|c| format!("WWW-Authenticate: {c}"))
            .collect();
        let unauthorized = format!("401 Unauthorized\r\n{}", challenge.join("\r\n"));
        answer(&mut client, &describe, &unauthorized, "");
        let describe = sent(&mut client);
        let expected = ServerCredentials {
            username: "viewer".into(),
            password: "s3cret".into(),
        };
        let authorization = value(&describe, &headers::AUTHORIZATION);
        assert!(authorization.starts_with("Digest "), "{authorization}");
        assert!(server.verify(&expected, authorization, "DESCRIBE"));
        let described =
            "200 OK\r\nContent-Type: application/sdp\r\nContent-Base: rtsps://127.0.0.1:7441/cam/";
        answer(&mut client, &describe, described, SDP);
        assert_eq!(client.tracks().len(), 2);

        for (index, granted) in ["4-5", "6-7"].iter().enumerate() {
            let setup = sent(&mut client);
            assert_eq!(setup.method(), Method::Setup);
            let uri = setup.request_uri().map(Url::as_str);
            assert_eq!(
                uri,
                Some(format!("rtsps://127.0.0.1:7441/cam/stream={index}").as_str())
            );
            assert!(
                value(&setup, &headers::TRANSPORT).starts_with("RTP/AVP/TCP;unicast;interleaved=")
            );
            assert!(server.verify(&expected, value(&setup, &headers::AUTHORIZATION), "SETUP"));
            let head = format!(
                "200 OK\r\nSession: 12345678;timeout=30\r\nTransport: RTP/AVP/TCP;unicast;interleaved={granted}"
            );
            answer(&mut client, &setup, &head, "");
        }
        let play = sent(&mut client);
        assert_eq!(play.method(), Method::Play);
        assert_eq!(value(&play, &headers::SESSION), "12345678");
        let started = now();
        // PLAY's answer and the first packets in one read, as cameras send them.
        let mut bytes = format!(
            "RTSP/1.0 200 OK\r\nCSeq: {}\r\nSession: 12345678\r\n\r\n",
            value(&play, &headers::CSEQ)
        )
        .into_bytes();
        let rtp = [0x80, 0, 0, 7, 0, 0, 0, 160, 0, 0, 0, 1, 0xff, 0xff];
        bytes.extend_from_slice(&[b'$', 6, 0, rtp.len() as u8]);
        bytes.extend_from_slice(&rtp);
        // A frame on a channel never set up is dropped.
        bytes.extend_from_slice(&[b'$', 9, 0, 1, 0]);
        client.handle_input(&bytes, started).unwrap();
        assert!(client.is_playing());
        match client.poll_event() {
            Some(SessionEvent::Rtp(track, packet)) => {
                assert_eq!(track, TrackId::new(1));
                assert_eq!(packet.sequence_number(), streamgate_rtp::SeqNo::new(7));
            }
            other => panic!("expected audio RTP, got {other:?}"),
        }
        assert!(client.poll_event().is_none());

        // Keep-alives within the session timeout, as GET_PARAMETER (listed in Public).
        let due = client.poll_timeout().expect("a keep-alive is scheduled");
        assert!(due <= started + Duration::from_secs(30));
        client.handle_timeout(due);
        let keepalive = sent(&mut client);
        assert_eq!(keepalive.method(), Method::GetParameter);
        assert_eq!(value(&keepalive, &headers::SESSION), "12345678");
        answer(&mut client, &keepalive, "200 OK", "");
        assert!(client.poll_timeout().is_some_and(|next| next > due));
        let teardown = client.teardown().expect("a TEARDOWN");
        assert!(teardown.starts_with(b"TEARDOWN rtsps://127.0.0.1:7441/cam/ RTSP/1.0\r\n"));
    }

    #[test]
    fn refusals_name_the_status_and_the_request() {
        let (mut client, describe) = describing();
        let unauthorized = "401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"";
        let cseq = value(&describe, &headers::CSEQ);
        let text = format!("RTSP/1.0 {unauthorized}\r\nCSeq: {cseq}\r\n\r\n");
        let error = client.handle_input(text.as_bytes(), now()).unwrap_err();
        assert_eq!(error.status_code(), Some(401));
        assert!(
            error.to_string().contains("check the user and password"),
            "{error}"
        );
        assert!(error.to_string().contains("DESCRIBE"), "{error}");
    }

    #[test]
    fn srtp_only_cameras_are_refused_naming_the_offer() {
        let (mut client, describe) = describing();
        let savp = SDP.replace("RTP/AVP", "RTP/SAVP");
        let cseq = value(&describe, &headers::CSEQ);
        let text = format!(
            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: {}\r\n\r\n{savp}",
            savp.len()
        );
        let error = client.handle_input(text.as_bytes(), now()).unwrap_err();
        assert!(matches!(error, SourceError::SrtpOnly { .. }), "{error}");
        let shown = error.to_string();
        assert!(
            shown.contains("video RTP/SAVP 96, audio RTP/SAVP 0"),
            "{shown}"
        );
    }

    #[test]
    fn a_content_length_over_the_cap_fails_once_the_head_is_in() {
        let (mut client, describe) = describing();
        let cseq = value(&describe, &headers::CSEQ);
        let head =
            format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: 99999999999\r\n\r\nv=0");
        let error = client.handle_input(head.as_bytes(), now()).unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
    }

    #[test]
    fn a_content_length_shorter_than_the_body_leaves_garbage_and_fails() {
        let mut client = client(None);
        let options = sent(&mut client);
        let cseq = value(&options, &headers::CSEQ);
        // Declares no body but sends one: what follows the head is not an RTSP message.
        let text = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n{SDP}");
        let error = client.handle_input(text.as_bytes(), now()).unwrap_err();
        assert!(error.to_string().contains("not RTSP"), "{error}");
        assert!(!client.is_playing());
    }

    #[test]
    fn conflicting_content_lengths_are_refused() {
        let (mut client, describe) = describing();
        let cseq = value(&describe, &headers::CSEQ);
        let text = format!(
            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: 3\r\nContent-Length: 300\r\n\r\nv=0"
        );
        let error = client.handle_input(text.as_bytes(), now()).unwrap_err();
        assert!(error.to_string().contains("Content-Length"), "{error}");
    }

    /// A head that never ends is refused at the cap, and buffering stops there.
    #[test]
    fn an_oversized_response_fails_with_bounded_memory() {
        let (mut client, describe) = describing();
        let cseq = value(&describe, &headers::CSEQ);
        let start = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n");
        client.handle_input(start.as_bytes(), now()).unwrap();
        let line = format!("X-Padding: {}\r\n", "a".repeat(1000));
        let mut fed = start.len();
        let error = loop {
            match client.handle_input(line.as_bytes(), now()) {
                Ok(()) => fed += line.len(),
                Err(error) => break error,
            }
            assert!(
                fed <= 2 * MAX_RESPONSE_LEN,
                "still buffering after {fed} bytes"
            );
        };
        assert!(error.to_string().contains("larger than"), "{error}");
    }

    /// A declared body that does not come yet is waited for (the caller's step
    /// timeout bounds the wait), and completes the response when it does.
    #[test]
    fn a_body_is_waited_for_and_read_when_it_comes() {
        let (mut client, describe) = describing();
        let cseq = value(&describe, &headers::CSEQ);
        let head = format!(
            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Base: rtsps://127.0.0.1:7441/cam/\r\nContent-Length: {}\r\n\r\n",
            SDP.len()
        );
        client.handle_input(head.as_bytes(), now()).unwrap();
        assert!(client.poll_transmit().is_none() && client.tracks().is_empty());
        client.handle_input(SDP.as_bytes(), now()).unwrap();
        assert_eq!(sent(&mut client).method(), Method::Setup);
    }
}
