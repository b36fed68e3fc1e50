//! RTSP for streamgate: [`server`] restreams every stream's Hub to NVRs and
//! players (`rtsp://HOST:8554/NAME`, and `rtsps://` with `tls`; TCP interleaved
//! or UDP, Basic/Digest auth) and takes publishers (ANNOUNCE/RECORD);
//! [`client`] reads RTSP cameras into a stream's ingest (on top of `retina`;
//! `rtsps://` cameras through a minimal client of our own over rustls).

pub mod client;
pub mod server;
