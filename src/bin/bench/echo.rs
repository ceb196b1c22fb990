//! `ws-echo` and `ws-bulk`: the project's own WebSocket client
//! (`WsClient`) against `/echo`, timed by the same drivers as the raw TCP
//! echo it is compared with.
//!
//! Each message goes out as a binary message that is moved, not copied,
//! into the client (`Message::Binary`), and the echoed one is sent next,
//! so the client does no more copying than the protocol makes it do.

use std::net::SocketAddr;
use std::time::Duration;

use realtime_by_hand::client::ws::{Received, WsClient};
use realtime_by_hand::websocket::protocol::Message;

use crate::options::PING_BYTES;
use crate::report::{Results, Spec, Target};
use crate::tcp::{self, Exchange};
use crate::Ctx;

pub struct WsEcho {
    client: WsClient,
    payload: Option<Vec<u8>>,
    size: usize,
}

impl WsEcho {
    pub fn connect(addr: SocketAddr, size: usize) -> Result<WsEcho, String> {
        let client = WsClient::connect(&format!("ws://{addr}/echo"))
            .map_err(|e| format!("WebSocket to /echo: {e}"))?;
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        Ok(WsEcho {
            client,
            payload: Some(vec![b'x'; size]),
            size,
        })
    }
}

impl Exchange for WsEcho {
    fn exchange(&mut self) -> Result<(), String> {
        let payload = self.payload.take().unwrap_or_else(|| vec![b'x'; self.size]);
        self.client
            .send(Message::Binary(payload))
            .map_err(|e| format!("send: {e}"))?;
        match self.client.receive().map_err(|e| format!("receive: {e}"))? {
            Received::Binary(back) if back.len() == self.size => {
                self.payload = Some(back);
                Ok(())
            }
            Received::Binary(back) => Err(format!(
                "echo of {} bytes came back as {}",
                self.size,
                back.len()
            )),
            other => Err(format!("expected the echo, got {other:?}")),
        }
    }
}

/// The targets of the ping-pong rates.
pub fn rate_target(name: &str, conns: usize) -> Option<Target> {
    match (name, conns) {
        ("ws-echo", 1) => Some(Target::RatioAtLeast(0.9)),
        ("ws-echo", _) => Some(Target::RatioAtLeast(0.8)),
        _ => None,
    }
}

const ECHO_GROUP: &str = "ws-echo: WebSocket /echo vs raw TCP ping-pong";
const BULK_GROUP: &str = "ws-bulk: WebSocket /echo vs raw TCP echo";

pub fn ws_echo(ctx: &Ctx, addr: SocketAddr, results: &mut Results) -> Result<(), String> {
    let sizes = &ctx.sizes;
    let connect = || WsEcho::connect(addr, PING_BYTES);
    for (conns, rounds) in [(1, sizes.rounds_one), (sizes.many_conns, sizes.rounds_many)] {
        ctx.progress
            .detail(&format!("ws-echo: {conns} conns x {rounds}"));
        let measured = tcp::round_trips(&connect, conns, rounds)?;
        tcp::add_round_trips(
            results,
            (ECHO_GROUP, "ws-echo"),
            conns,
            rounds,
            &measured,
            "msg/s",
        );
    }
    Ok(())
}

pub fn ws_bulk(ctx: &Ctx, addr: SocketAddr, results: &mut Results) -> Result<(), String> {
    for (i, (size, count)) in ctx.sizes.bulk.into_iter().enumerate() {
        let mut client = WsEcho::connect(addr, size)?;
        let mbps = tcp::bulk(&mut client, size, count)?;
        let target = (i == 1).then_some(Target::RatioAtLeast(0.75));
        let spec = Spec::new(
            BULK_GROUP,
            format!("ws-bulk/{size}/mbps"),
            format!("echo {} x {count}", tcp::size_label(size)),
            "MB/s",
        )
        .versus(format!("baseline/echo/{size}/mbps"))
        .target(target);
        results.add(spec, mbps);
    }
    Ok(())
}
