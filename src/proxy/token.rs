//! The mio token scheme, in one place: fixed tokens for the loop's own sources at the top
//! of the range, then client and backend slab keys interleaved (even = client, odd =
//! backend) so one `usize` says which slab and which entry.
//! Must not touch: anything else.

use mio::Token;

pub const WAKER: Token = Token(usize::MAX - 1);
pub const SIGNALS: Token = Token(usize::MAX - 2);
pub const HTTP_LISTENER: Token = Token(usize::MAX - 3);
pub const HTTPS_LISTENER: Token = Token(usize::MAX - 5);

pub enum Kind {
    Client(usize),
    Backend(usize),
}

pub fn client(key: usize) -> Token {
    Token(key << 1)
}

pub fn backend(key: usize) -> Token {
    Token((key << 1) | 1)
}

pub fn kind(token: Token) -> Kind {
    if token.0 & 1 == 0 {
        Kind::Client(token.0 >> 1)
    } else {
        Kind::Backend(token.0 >> 1)
    }
}
