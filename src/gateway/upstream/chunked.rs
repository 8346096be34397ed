//! The chunked transfer coding of an upstream's answer (RFC 9112 §7.1), decoded as its bytes
//! arrive. Strict, because a misread boundary on a kept connection would hand the rest of one
//! answer to the next request: anything malformed is an error and the connection is dropped.

use bytes::{Buf, Bytes};

/// A chunk-size line, extensions included, longer than this is refused.
const MAX_SIZE_LINE: usize = 4096;
/// The trailer section after the last chunk (read and dropped) is bounded too, in bytes and in
/// lines (fewer than hyper's 100: an answer the gateway takes, a client library takes too).
const MAX_TRAILERS: usize = 16 * 1024;
const MAX_TRAILER_LINES: usize = 64;
/// 15 hex digits: a size up to 2^60, far beyond any body, and no overflow.
const MAX_SIZE_DIGITS: u8 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the size line: its value so far and how many digits it had.
    Size {
        value: u64,
        digits: u8,
    },
    /// After the size: whitespace (BWS), up to a `;` or the CR.
    SizeBws {
        value: u64,
    },
    /// In a chunk extension, up to the CR.
    Extension {
        value: u64,
    },
    SizeLf {
        value: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// In the trailer section: whether the current line is still empty.
    Trailer {
        line_empty: bool,
    },
    TrailerLf {
        line_empty: bool,
    },
    Done,
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current size line, or of the whole trailer section.
    counted: usize,
    trailer_lines: usize,
}

/// What one step of decoding found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The input ran out inside the body: more must be read.
    NeedMore,
    /// The last chunk and the trailers are through; what is left of the input is not body.
    Done,
}

impl Default for ChunkedDecoder {
    fn default() -> ChunkedDecoder {
        ChunkedDecoder { state: State::Size { value: 0, digits: 0 }, counted: 0, trailer_lines: 0 }
    }
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from the front of `input`, taking what it uses: one piece of data, or the news
    /// that more input is needed or that the body is complete.
    pub fn decode(&mut self, input: &mut Bytes) -> Result<Decoded, &'static str> {
        loop {
            if let State::Data { left } = self.state {
                if input.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                let data = input.split_to(take);
                let left = left - take as u64;
                self.state = if left == 0 { State::DataCr } else { State::Data { left } };
                return Ok(Decoded::Data(data));
            }
            if self.state == State::Done {
                return Ok(Decoded::Done);
            }
            if input.is_empty() {
                return Ok(Decoded::NeedMore);
            }
            let byte = input[0];
            input.advance(1);
            self.state = self.step(byte)?;
        }
    }

    fn step(&mut self, byte: u8) -> Result<State, &'static str> {
        if matches!(
            self.state,
            State::Size { .. } | State::SizeBws { .. } | State::Extension { .. } | State::SizeLf { .. }
        ) {
            self.counted += 1;
            if self.counted > MAX_SIZE_LINE {
                return Err("a chunk-size line is too long");
            }
        }
        if matches!(self.state, State::Trailer { .. } | State::TrailerLf { .. }) {
            self.counted += 1;
            if self.counted > MAX_TRAILERS {
                return Err("the chunked trailers are too long");
            }
        }
        Ok(match (self.state, byte) {
            (State::Size { value, digits }, _) if byte.is_ascii_hexdigit() => {
                if digits == MAX_SIZE_DIGITS {
                    return Err("a chunk size is too large");
                }
                let digit = (byte as char).to_digit(16).unwrap_or_default();
                State::Size { value: value * 16 + u64::from(digit), digits: digits + 1 }
            }
            (State::Size { digits: 0, .. }, _) => return Err("a chunk size is not hexadecimal"),
            (State::Size { value, .. } | State::SizeBws { value } | State::Extension { value }, b'\r') => {
                State::SizeLf { value }
            }
            // Whitespace before an extension (BWS), and the extension itself, are skipped; after
            // whitespace only `;` may follow (RFC 9112 §7.1.1), so `5 x` is refused.
            (State::Size { value, .. } | State::SizeBws { value }, b' ' | b'\t') => State::SizeBws { value },
            (State::Size { value, .. } | State::SizeBws { value }, b';') => State::Extension { value },
            (State::Extension { value }, _) if byte == b'\t' || (b' '..0x7f).contains(&byte) || byte >= 0x80 => {
                State::Extension { value }
            }
            (State::Size { .. } | State::SizeBws { .. } | State::Extension { .. }, _) => {
                return Err("a chunk-size line has a stray byte");
            }
            (State::SizeLf { value }, b'\n') => {
                self.counted = 0;
                match value {
                    0 => State::Trailer { line_empty: true },
                    left => State::Data { left },
                }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { value: 0, digits: 0 },
            (State::Trailer { line_empty }, b'\r') => State::TrailerLf { line_empty },
            (State::Trailer { .. }, b'\n') => return Err("a trailer line ends without CR"),
            (State::Trailer { .. }, _) => State::Trailer { line_empty: false },
            (State::TrailerLf { line_empty: true }, b'\n') => State::Done,
            (State::TrailerLf { line_empty: false }, b'\n') => {
                self.trailer_lines += 1;
                if self.trailer_lines > MAX_TRAILER_LINES {
                    return Err("the chunked trailers have too many lines");
                }
                State::Trailer { line_empty: true }
            }
            (State::SizeLf { .. } | State::DataCr | State::DataLf | State::TrailerLf { .. }, _) => {
                return Err("a chunk is not ended by CRLF");
            }
            (State::Data { .. } | State::Done, _) => return Err("the chunked decoder was misused"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `wire` fed in pieces of `piece` bytes: the body, and what was left after the end.
    fn decode_in_pieces(wire: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
        let mut decoder = ChunkedDecoder::default();
        let mut body = Vec::new();
        let mut pending = Bytes::new();
        let mut rest = wire.chunks(piece);
        loop {
            match decoder.decode(&mut pending)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::Done => return Ok((body, pending.to_vec())),
                Decoded::NeedMore => match rest.next() {
                    Some(next) => pending = Bytes::copy_from_slice(next),
                    None => return Err("the input ended inside the body"),
                },
            }
        }
    }

    #[test]
    fn a_body_decodes_the_same_however_its_bytes_are_split() {
        let wire = b"5\r\nhello\r\n7;name=\"v a\"\r\n, world\r\nA \r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        for piece in 1..=wire.len() {
            let (body, _) = decode_in_pieces(wire, piece).expect("valid chunked body");
            assert_eq!(body, b"hello, world0123456789", "pieces of {piece}");
        }
        // Whatever follows the body is left alone: the caller sees the connection is not clean.
        let (_, rest) = decode_in_pieces(wire, wire.len()).expect("valid");
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn malformed_framing_is_refused() {
        let cases: [(&[u8], &str); 9] = [
            (b"x\r\n", "a chunk size is not hexadecimal"),
            (b"\r\n", "a chunk size is not hexadecimal"),
            (b"5\nhello\r\n0\r\n\r\n", "a chunk-size line has a stray byte"),
            (b"5\r\nhelloXX0\r\n\r\n", "a chunk is not ended by CRLF"),
            (b"1000000000000000\r\n", "a chunk size is too large"),
            (b"-5\r\n", "a chunk size is not hexadecimal"),
            (b"5 x\0\r\n", "a chunk-size line has a stray byte"),
            (b"0 OK\r\n\r\n", "a chunk-size line has a stray byte"),
            (b"0\r\nX: 1\n\r\n", "a trailer line ends without CR"),
        ];
        for (wire, error) in cases {
            assert_eq!(decode_in_pieces(wire, wire.len()), Err(error), "{}", wire.escape_ascii());
        }
    }

    #[test]
    fn size_lines_and_trailers_are_bounded() {
        let mut long_line = b"5;".to_vec();
        long_line.resize(MAX_SIZE_LINE + 10, b'a');
        assert_eq!(decode_in_pieces(&long_line, 100), Err("a chunk-size line is too long"));
        let mut trailers = b"0\r\nX-Pad: ".to_vec();
        trailers.resize(MAX_TRAILERS + 100, b'a');
        assert_eq!(decode_in_pieces(&trailers, 1000), Err("the chunked trailers are too long"));
        // Many short lines within the byte bound (a fuzz finding: hyper refuses past 100).
        let mut lines = b"0\r\n".to_vec();
        for _ in 0..=MAX_TRAILER_LINES {
            lines.extend_from_slice(b"X: 1\r\n");
        }
        lines.extend_from_slice(b"\r\n");
        assert_eq!(decode_in_pieces(&lines, 7), Err("the chunked trailers have too many lines"));
        let mut allowed = b"0\r\n".to_vec();
        for _ in 0..MAX_TRAILER_LINES {
            allowed.extend_from_slice(b"X: 1\r\n");
        }
        allowed.extend_from_slice(b"\r\n");
        assert!(decode_in_pieces(&allowed, 7).is_ok());
    }

    #[test]
    fn an_empty_body_is_just_the_last_chunk() {
        assert_eq!(decode_in_pieces(b"0\r\n\r\n", 1), Ok((Vec::new(), Vec::new())));
        assert_eq!(decode_in_pieces(b"000;x\r\n\r\n", 3), Ok((Vec::new(), Vec::new())));
    }
}
