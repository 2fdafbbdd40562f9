//! A tiny raw MQTT 3.1.1 client over a blocking `std::net::TcpStream`.
//!
//! Tests need to put exact bytes on the wire — invalid UTF-8 payloads, odd topics — which
//! `mosquitto_pub` cannot do reliably, and they need to see exactly what the broker delivers. So
//! this speaks just enough of the protocol itself: CONNECT, PUBLISH at QoS 0/1/2 (waiting for the
//! broker's acknowledgement), SUBSCRIBE, PINGREQ and DISCONNECT. It is a test tool, not a general
//! client: no reconnects, no keep-alive traffic (keep-alive is disabled in CONNECT instead).
//!
//! Packets are read into a buffer and parsed only when complete, so a read timeout in the middle
//! of a packet never loses track of the stream.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a publish or subscribe waits for the broker's answer before failing.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

// Control packet types (high nibble of the first byte), MQTT 3.1.1 section 2.2.1.
const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

/// A client id no other connection from this process (or a concurrent test process) uses:
/// the broker drops the older connection when two share an id.
fn unique_client_id(role: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("test-support-{role}-{}-{n}", std::process::id())
}

/// One received control packet: the first header byte and the variable header + payload.
struct Packet {
    header: u8,
    body: Vec<u8>,
}

impl Packet {
    fn kind(&self) -> u8 {
        self.header >> 4
    }
}

/// An MQTT connection with a receive buffer.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    next_packet_id: u16,
}

impl Connection {
    /// Connects with a clean session and keep-alive disabled, and waits for a successful CONNACK.
    fn open(port: u16, client_id: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        let mut conn = Connection {
            stream,
            buf: Vec::new(),
            next_packet_id: 1,
        };
        let mut body = Vec::new();
        put_bytes(&mut body, b"MQTT");
        body.push(4); // protocol level 4 = MQTT 3.1.1
        body.push(0x02); // connect flags: clean session, no will, no credentials
        body.extend_from_slice(&0u16.to_be_bytes()); // keep-alive 0 = never time us out
        put_bytes(&mut body, client_id.as_bytes());
        conn.send(CONNECT << 4, &body)?;
        let ack = conn.expect(CONNACK, "CONNACK")?;
        match ack.body.get(1) {
            Some(0) => Ok(conn),
            code => Err(other(format!(
                "broker refused CONNECT: return code {code:?}"
            ))),
        }
    }

    fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        // Packet id 0 is not allowed.
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        id
    }

    fn send(&mut self, header: u8, body: &[u8]) -> io::Result<()> {
        let mut packet = Vec::with_capacity(body.len() + 5);
        packet.push(header);
        put_remaining_length(&mut packet, body.len())?;
        packet.extend_from_slice(body);
        self.stream.write_all(&packet)
    }

    /// The next complete packet, or `None` if `deadline` passes first.
    fn read_packet(&mut self, deadline: Instant) -> io::Result<Option<Packet>> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(packet) = take_packet(&mut self.buf)? {
                return Ok(Some(packet));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // A zero read timeout means "block forever", hence the 1 ms floor.
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(wait))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "broker closed the connection",
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for a packet of type `kind`; anything else first is a protocol error here, because
    /// this connection has nothing else in flight.
    fn expect(&mut self, kind: u8, what: &str) -> io::Result<Packet> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        match self.read_packet(deadline)? {
            Some(p) if p.kind() == kind => Ok(p),
            Some(p) => Err(other(format!(
                "expected {what} from the broker, got packet type {}",
                p.kind()
            ))),
            None => Err(other(format!(
                "no {what} from the broker within {ANSWER_TIMEOUT:?}"
            ))),
        }
    }

    /// Waits for an acknowledgement of type `kind` that carries `packet_id`.
    fn expect_ack(&mut self, kind: u8, what: &str, packet_id: u16) -> io::Result<()> {
        let ack = self.expect(kind, what)?;
        if ack.body.get(..2) == Some(&packet_id.to_be_bytes()[..]) {
            Ok(())
        } else {
            Err(other(format!("{what} for the wrong packet id")))
        }
    }

    /// A PINGREQ/PINGRESP round trip: the broker handles a connection's packets in order, so once
    /// it answers, everything sent before has been processed (routed to subscribers, stored).
    fn ping(&mut self) -> io::Result<()> {
        self.send(PINGREQ << 4, &[])?;
        self.expect(PINGRESP, "PINGRESP").map(drop)
    }

    fn disconnect(&mut self) {
        // Best effort: the test is over with this connection either way.
        let _ = self.send(DISCONNECT << 4, &[]);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Publishes `payload` to `topic` on the broker at `127.0.0.1:port` and returns once the broker
/// has it: after PUBACK (QoS 1), PUBCOMP (QoS 2), or a ping round trip (QoS 0).
///
/// `topic` and `payload` are sent byte for byte, so `topic` may be any bytes — including ones the
/// broker will reject (it then closes the connection and this returns an error).
pub fn publish(port: u16, topic: &[u8], payload: &[u8], qos: u8, retain: bool) -> io::Result<()> {
    if qos > 2 {
        return Err(other(format!("QoS must be 0, 1 or 2, not {qos}")));
    }
    let mut conn = Connection::open(port, &unique_client_id("pub"))?;
    let packet_id = conn.packet_id();
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    put_bytes(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    conn.send((PUBLISH << 4) | (qos << 1) | u8::from(retain), &body)?;
    match qos {
        0 => conn.ping()?,
        1 => conn.expect_ack(PUBACK, "PUBACK", packet_id)?,
        _ => {
            conn.expect_ack(PUBREC, "PUBREC", packet_id)?;
            conn.send((PUBREL << 4) | 0x02, &packet_id.to_be_bytes())?;
            conn.expect_ack(PUBCOMP, "PUBCOMP", packet_id)?;
        }
    }
    conn.disconnect();
    Ok(())
}

/// Most QoS 1 publishes a [`Publisher`] has on the wire without their PUBACK.
const PUBLISHER_WINDOW: usize = 500;

/// One long-lived connection that publishes many QoS 1 messages quickly, for floods: publishes
/// are pipelined (up to [`PUBLISHER_WINDOW`] awaiting their PUBACK) instead of one connection and
/// one round trip per message as in [`publish`]. The broker forwards one connection's messages in
/// the order they were sent.
pub struct Publisher {
    conn: Connection,
    /// Packet ids sent and not yet acknowledged.
    unacked: std::collections::HashSet<u16>,
    sent: u64,
}

impl Publisher {
    /// Connects to `127.0.0.1:port` with a fresh clean session.
    pub fn connect(port: u16) -> io::Result<Self> {
        Ok(Publisher {
            conn: Connection::open(port, &unique_client_id("flood"))?,
            unacked: std::collections::HashSet::new(),
            sent: 0,
        })
    }

    /// Sends one QoS 1 PUBLISH (not retained). Returns at once unless the window is full, in
    /// which case it first waits for acknowledgements. Call [`Publisher::flush`] to know that the
    /// broker has accepted everything.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) -> io::Result<()> {
        while self.unacked.len() >= PUBLISHER_WINDOW {
            self.read_ack()?;
        }
        let mut packet_id = self.conn.packet_id();
        while self.unacked.contains(&packet_id) {
            packet_id = self.conn.packet_id();
        }
        let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
        put_bytes(&mut body, topic.as_bytes());
        body.extend_from_slice(&packet_id.to_be_bytes());
        body.extend_from_slice(payload);
        self.conn.send((PUBLISH << 4) | (1 << 1), &body)?;
        self.unacked.insert(packet_id);
        self.sent += 1;
        Ok(())
    }

    /// Waits until the broker has acknowledged every message published so far.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.unacked.is_empty() {
            self.read_ack()?;
        }
        Ok(())
    }

    /// How many messages were handed to [`Publisher::publish`] so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    fn read_ack(&mut self) -> io::Result<()> {
        let ack = self.conn.expect(PUBACK, "PUBACK")?;
        let id = ack
            .body
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| other("PUBACK without a packet id".to_string()))?;
        if !self.unacked.remove(&id) {
            return Err(other(format!("PUBACK for unknown packet id {id}")));
        }
        Ok(())
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Unacknowledged messages may be lost by disconnecting: callers flush first.
        self.conn.disconnect();
    }
}

/// Publishes every `(topic, payload)` at QoS 1 over one connection (see [`Publisher`]) and
/// returns once the broker has acknowledged them all.
pub fn publish_many<'a>(
    port: u16,
    messages: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> io::Result<()> {
    let mut publisher = Publisher::connect(port)?;
    for (topic, payload) in messages {
        publisher.publish(topic, payload)?;
    }
    publisher.flush()
}

/// A subscription that is already active (the broker has answered SUBACK), so messages published
/// after [`Subscriber::new`] returns are sure to be delivered to it.
///
/// Subscribes at QoS 1 and acknowledges each message as it is collected.
pub struct Subscriber {
    conn: Connection,
}

impl Subscriber {
    /// Connects to `127.0.0.1:port` with a fresh clean session and subscribes to `topic_filter`.
    pub fn new(port: u16, topic_filter: &str) -> io::Result<Self> {
        let mut conn = Connection::open(port, &unique_client_id("sub"))?;
        let packet_id = conn.packet_id();
        let mut body = Vec::new();
        body.extend_from_slice(&packet_id.to_be_bytes());
        put_bytes(&mut body, topic_filter.as_bytes());
        body.push(1); // requested QoS
        conn.send((SUBSCRIBE << 4) | 0x02, &body)?;
        let ack = conn.expect(SUBACK, "SUBACK")?;
        match ack.body.get(2) {
            Some(0..=2) => Ok(Subscriber { conn }),
            code => Err(other(format!(
                "broker refused subscription to {topic_filter:?}: return code {code:?}"
            ))),
        }
    }

    /// Collects messages as `(topic, payload)` until `count` have arrived or `timeout` passes,
    /// whichever is first; returns what arrived (fewer than `count` on timeout — the caller
    /// asserts). Topics are decoded lossily; payloads are exactly the bytes delivered.
    pub fn collect(
        &mut self,
        count: usize,
        timeout: Duration,
    ) -> io::Result<Vec<(String, Vec<u8>)>> {
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::new();
        while messages.len() < count {
            let Some(packet) = self.conn.read_packet(deadline)? else {
                break;
            };
            // Nothing but PUBLISH is expected; ignore anything else rather than fail a test.
            if packet.kind() != PUBLISH {
                continue;
            }
            let (topic, packet_id, payload) = parse_publish(&packet)?;
            if let Some(id) = packet_id {
                // We subscribed at QoS 1, so the broker never sends QoS 2 here.
                self.conn.send(PUBACK << 4, &id.to_be_bytes())?;
            }
            messages.push((String::from_utf8_lossy(&topic).into_owned(), payload));
        }
        Ok(messages)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.conn.disconnect();
    }
}

/// Splits a PUBLISH packet into topic, packet id (QoS > 0) and payload.
fn parse_publish(packet: &Packet) -> io::Result<(Vec<u8>, Option<u16>, Vec<u8>)> {
    let body = &packet.body;
    let qos = (packet.header >> 1) & 0x03;
    let malformed = || other("malformed PUBLISH from the broker".to_string());
    let topic_len = usize::from(u16::from_be_bytes(
        body.get(..2).ok_or_else(malformed)?.try_into().unwrap(),
    ));
    let topic = body.get(2..2 + topic_len).ok_or_else(malformed)?.to_vec();
    let mut rest = 2 + topic_len;
    let packet_id = if qos > 0 {
        let id = body.get(rest..rest + 2).ok_or_else(malformed)?;
        rest += 2;
        Some(u16::from_be_bytes(id.try_into().unwrap()))
    } else {
        None
    };
    Ok((topic, packet_id, body[rest..].to_vec()))
}

/// Removes the first complete packet from `buf`, if there is one.
fn take_packet(buf: &mut Vec<u8>) -> io::Result<Option<Packet>> {
    // Remaining length: 1 to 4 bytes, 7 bits each, high bit = "more follows".
    let mut length = 0usize;
    let mut index = 1;
    loop {
        let Some(&byte) = buf.get(index) else {
            return Ok(None);
        };
        length |= usize::from(byte & 0x7f) << (7 * (index - 1));
        index += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if index > 4 {
            return Err(other(
                "malformed remaining length from the broker".to_string(),
            ));
        }
    }
    if buf.len() < index + length {
        return Ok(None);
    }
    let header = buf[0];
    let body = buf[index..index + length].to_vec();
    buf.drain(..index + length);
    Ok(Some(Packet { header, body }))
}

/// Appends an MQTT "remaining length" (variable-length integer, at most 268 435 455).
fn put_remaining_length(out: &mut Vec<u8>, mut length: usize) -> io::Result<()> {
    if length > 268_435_455 {
        return Err(other(format!("MQTT packet too large: {length} bytes")));
    }
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if length == 0 {
            return Ok(());
        }
    }
}

/// Appends a length-prefixed byte string (used for the protocol name, client id and topics).
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("MQTT strings are at most 65535 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn other(message: String) -> io::Error {
    io::Error::other(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_round_trips_at_the_size_boundaries() {
        for length in [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
            let mut buf = vec![PUBLISH << 4];
            put_remaining_length(&mut buf, length).unwrap();
            let header_len = buf.len();
            buf.resize(header_len + length, 0xAB);
            let packet = take_packet(&mut buf).unwrap().expect("complete packet");
            assert_eq!(packet.body.len(), length);
            assert!(buf.is_empty());
        }
        let mut max = Vec::new();
        put_remaining_length(&mut max, 268_435_455).unwrap();
        assert_eq!(max, [0xff, 0xff, 0xff, 0x7f]);
        assert!(put_remaining_length(&mut Vec::new(), 268_435_456).is_err());
    }

    #[test]
    fn incomplete_packets_stay_in_the_buffer() {
        let mut buf = vec![PUBLISH << 4, 0x80]; // length continues in a byte not yet received
        assert!(take_packet(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[0x01]); // remaining length 128, body not yet received
        assert!(take_packet(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn parses_a_qos1_publish_with_binary_payload() {
        let mut body = Vec::new();
        put_bytes(&mut body, b"a/b");
        body.extend_from_slice(&7u16.to_be_bytes());
        body.extend_from_slice(&[0xff, 0x00, 0xfe]);
        let packet = Packet {
            header: (PUBLISH << 4) | 0x02,
            body,
        };
        let (topic, id, payload) = parse_publish(&packet).unwrap();
        assert_eq!(topic, b"a/b");
        assert_eq!(id, Some(7));
        assert_eq!(payload, [0xff, 0x00, 0xfe]);
    }
}
