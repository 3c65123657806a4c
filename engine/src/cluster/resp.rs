//! The subscriber's side of RESP2, as pure functions: encoding commands, and parsing what a
//! subscribed connection receives (messages, subscribe/unsubscribe confirmations, pongs,
//! errors) in place, without allocating: at hundreds of thousands of messages a second the
//! generic client's per-message value tree cost more than routing the message did.

/// Most elements of an array this parser accepts; pub/sub replies have 2 or 3.
const MAX_ELEMENTS: usize = 4;
/// Longest bulk string accepted (Redis's own `proto-max-bulk-len` default).
const MAX_BULK: usize = 512 << 20;

/// One thing a subscribed connection received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push<'a> {
    /// A published message.
    Message { channel: &'a [u8], payload: &'a [u8] },
    /// A SUBSCRIBE (`subscribed`) or UNSUBSCRIBE confirmation of one channel, with the
    /// connection's subscription count after it.
    Subscriptions { channel: &'a [u8], subscribed: bool, count: i64 },
    /// The answer to PING.
    Pong,
    /// `+OK` and the like (AUTH's answer).
    Ok,
    /// An error reply.
    Error(&'a [u8]),
}

/// The stream is not RESP, or not what a subscribed connection receives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected data from Redis: {0}")]
pub(crate) struct RespError(&'static str);

#[derive(Clone, Copy)]
enum Element<'a> {
    Bulk(&'a [u8]),
    Integer(i64),
}

/// Appends a command (an array of bulk strings) to `out`.
pub(crate) fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Parses the first complete reply in `buf`: `Ok(None)` when more bytes are needed, else the
/// reply and how many bytes it took.
///
/// # Errors
///
/// [`RespError`] when the bytes cannot be a reply a subscribed connection gets; the
/// connection is then unusable.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Push<'_>, usize)>, RespError> {
    let Some((line, mut pos)) = line(buf, 0) else { return Ok(None) };
    match line.first() {
        None => Err(RespError("an empty line")),
        Some(b'+') => Ok(Some((Push::Ok, pos))),
        Some(b'-') => Ok(Some((Push::Error(&line[1..]), pos))),
        Some(b'*') => {
            let count = integer(&line[1..]).ok_or(RespError("a bad array length"))?;
            if !(1..=MAX_ELEMENTS as i64).contains(&count) {
                return Err(RespError("an array of unexpected length"));
            }
            let mut elements = [Element::Integer(0); MAX_ELEMENTS];
            for element in elements.iter_mut().take(count as usize) {
                let Some((parsed, next)) = parse_element(buf, pos)? else { return Ok(None) };
                *element = parsed;
                pos = next;
            }
            Ok(Some((interpret(&elements[..count as usize])?, pos)))
        }
        Some(_) => Err(RespError("a reply of an unexpected type")),
    }
}

fn interpret<'a>(elements: &[Element<'a>]) -> Result<Push<'a>, RespError> {
    let Element::Bulk(kind) = elements[0] else { return Err(RespError("an array not led by a name")) };
    match (kind, &elements[1..]) {
        // `s...`: the same from a Redis Cluster's sharded pub/sub (SSUBSCRIBE), where an
        // `sunsubscribe` may also come unasked, when the channel's slot moved to another node.
        (b"message" | b"smessage", [Element::Bulk(channel), Element::Bulk(payload)]) => {
            Ok(Push::Message { channel, payload })
        }
        (
            b"subscribe" | b"unsubscribe" | b"ssubscribe" | b"sunsubscribe",
            [Element::Bulk(channel), Element::Integer(count)],
        ) => Ok(Push::Subscriptions {
            channel,
            subscribed: kind == b"subscribe" || kind == b"ssubscribe",
            count: *count,
        }),
        (b"pong", _) => Ok(Push::Pong),
        _ => Err(RespError("an unknown push")),
    }
}

fn parse_element(buf: &[u8], pos: usize) -> Result<Option<(Element<'_>, usize)>, RespError> {
    let Some((line, after)) = line(buf, pos) else { return Ok(None) };
    match line.first() {
        Some(b':') => {
            Ok(Some((Element::Integer(integer(&line[1..]).ok_or(RespError("a bad integer"))?), after)))
        }
        Some(b'$') => {
            let len = integer(&line[1..]).ok_or(RespError("a bad bulk length"))?;
            if !(0..=MAX_BULK as i64).contains(&len) {
                return Err(RespError("a bulk string of impossible length"));
            }
            let end = after + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError("a bulk string without its CRLF"));
            }
            Ok(Some((Element::Bulk(&buf[after..end]), end + 2)))
        }
        _ => Err(RespError("an array element of an unexpected type")),
    }
}

/// The line starting at `pos` (without CRLF) and where the next one starts.
fn line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], pos + end + 2))
}

fn integer(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        command(&mut out, &[b"SUBSCRIBE", b"wspush:u:456", b""]);
        assert_eq!(out, b"*3\r\n$9\r\nSUBSCRIBE\r\n$12\r\nwspush:u:456\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_what_a_subscriber_receives() {
        let message = b"*3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhe\r\nl\r\n";
        assert_eq!(
            parse(message),
            Ok(Some((Push::Message { channel: b"ch1", payload: b"he\r\nl" }, message.len())))
        );
        let confirm = b"*3\r\n$9\r\nsubscribe\r\n$3\r\nch1\r\n:7\r\n";
        let subscribed = Push::Subscriptions { channel: b"ch1", subscribed: true, count: 7 };
        assert_eq!(parse(confirm), Ok(Some((subscribed, confirm.len()))));
        let gone = b"*3\r\n$11\r\nunsubscribe\r\n$3\r\nch1\r\n:0\r\n";
        let unsubscribed = Push::Subscriptions { channel: b"ch1", subscribed: false, count: 0 };
        assert_eq!(parse(gone), Ok(Some((unsubscribed, gone.len()))));
        let smessage = b"*3\r\n$8\r\nsmessage\r\n$9\r\nw:u:{456}\r\n$2\r\nhi\r\n";
        assert_eq!(
            parse(smessage),
            Ok(Some((Push::Message { channel: b"w:u:{456}", payload: b"hi" }, smessage.len())))
        );
        let sconfirm = b"*3\r\n$10\r\nssubscribe\r\n$3\r\nch1\r\n:1\r\n";
        let ssubscribed = Push::Subscriptions { channel: b"ch1", subscribed: true, count: 1 };
        assert_eq!(parse(sconfirm), Ok(Some((ssubscribed, sconfirm.len()))));
        let moved = b"*3\r\n$12\r\nsunsubscribe\r\n$3\r\nch1\r\n:0\r\n";
        let sunsubscribed = Push::Subscriptions { channel: b"ch1", subscribed: false, count: 0 };
        assert_eq!(parse(moved), Ok(Some((sunsubscribed, moved.len()))));
        let pong = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";
        assert_eq!(parse(pong), Ok(Some((Push::Pong, pong.len()))));
        assert_eq!(parse(b"+OK\r\n"), Ok(Some((Push::Ok, 5))));
        assert_eq!(parse(b"-NOAUTH x\r\nrest"), Ok(Some((Push::Error(b"NOAUTH x"), 11))));
    }

    #[test]
    fn waits_for_every_byte_of_a_split_reply() {
        let message = b"*3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n*3\r\n";
        let whole = message.len() - 4;
        for cut in 0..whole {
            assert_eq!(parse(&message[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(message).unwrap().unwrap().1, whole, "stops at the end of the first reply");
    }

    #[test]
    fn refuses_what_cannot_be_a_subscriber_reply() {
        assert!(parse(b"*9\r\n").is_err());
        assert!(parse(b"*x\r\n").is_err());
        assert!(parse(b"$3\r\nabc\r\n").is_err());
        assert!(parse(b"*3\r\n$7\r\nmessage\r\n$3\r\nch1XY").is_err(), "bulk without CRLF");
        assert!(parse(b"*3\r\n$7\r\nmessage\r\n$-1\r\n").is_err());
        assert!(parse(b"*2\r\n$5\r\nhello\r\n$0\r\n\r\n").is_err(), "unknown push");
    }
}
