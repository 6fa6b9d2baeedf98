//! From plaintext to records and back, for [`super::TlsStream`]: a write's slices
//! joined and encrypted in one batch of at most [`MAX_WRITE`] bytes, our
//! `close_notify`, and decrypted records handed to the reader or kept. Only rustls
//! builds and checks records; this file sizes buffers for it.

use std::io::IoSlice;

use rustls::server::ServerConnectionData;
use rustls::unbuffered::{EncodeError, EncryptError, InsufficientSizeError, ReadTraffic, WriteTraffic};
use tokio::io::ReadBuf;

/// The most plaintext one write encrypts: with room for the overhead of up to
/// [`MAX_WRITE_RECORDS`] records its buffer fits 32 KiB, the largest size jemalloc
/// serves from its per-thread cache, so freeing the buffer whenever the connection
/// waits costs a stream little.
pub const MAX_WRITE: usize = 32 * 1024 - MAX_WRITE_RECORDS * RECORD_OVERHEAD;
/// Records one write may make, counted as the encryption estimates count them
/// (one more per piece than whole 16 KiB in it): at most two joined pieces and
/// two slices encrypted on their own.
const MAX_WRITE_RECORDS: usize = 6;
/// Small slices of one write are joined into records of up to this size.
const JOIN_UP_TO: usize = 16 * 1024;
/// Room reserved per record for its header, tag and padding before encrypting.
pub(super) const RECORD_OVERHEAD: usize = 64;

/// Hand the plaintext of every record rustls decrypted to `read` while it has room
/// (unless earlier plaintext still waits in `received`), the rest to `received`.
/// Returns the ciphertext bytes those records used.
pub(super) fn read_plaintext(
    traffic: &mut ReadTraffic<'_, '_, ServerConnectionData>,
    mut read: Option<&mut ReadBuf<'_>>,
    received: &mut Vec<u8>,
) -> Result<usize, rustls::Error> {
    let mut discard = 0;
    while let Some(record) = traffic.next_record() {
        let record = record?;
        discard += record.discard;
        let mut payload = record.payload;
        if let Some(buf) = read.as_deref_mut().filter(|_| received.is_empty()) {
            let n = payload.len().min(buf.remaining());
            buf.put_slice(&payload[..n]);
            payload = &payload[n..];
        }
        received.extend_from_slice(payload);
    }
    Ok(discard)
}

/// Encrypt up to [`MAX_WRITE`] bytes of `send` onto `outgoing`; returns how many
/// were taken. Small slices (an HTTP/2 frame header, say) are joined into one
/// record with what follows them.
pub(super) fn encrypt_batch(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    send: &[IoSlice<'_>],
    outgoing: &mut Vec<u8>,
) -> Result<usize, rustls::Error> {
    let mut encrypt = |plaintext: &[u8], out: &mut Vec<u8>| {
        let estimate = plaintext.len() + (plaintext.len() / (16 * 1024) + 1) * RECORD_OVERHEAD;
        append(out, estimate, |out| traffic.encrypt(plaintext, out), encrypt_room).map_err(encrypt_error)
    };
    // A large write gets room for it all at once: growing as it goes would double
    // the buffer past the size it is meant to fit. (A small one grows to its size:
    // room reserved beyond it would land in the size classes of long-lived state.)
    let total = send.iter().map(|s| s.len()).sum::<usize>().min(MAX_WRITE);
    if total > JOIN_UP_TO {
        outgoing.reserve_exact(total + MAX_WRITE_RECORDS * RECORD_OVERHEAD);
    }
    let mut taken = 0;
    let mut joined = Vec::new();
    for slice in send {
        let slice = &slice[..slice.len().min(MAX_WRITE - taken - joined.len())];
        if joined.len() + slice.len() > JOIN_UP_TO && !joined.is_empty() {
            encrypt(&joined, outgoing)?;
            taken += joined.len();
            joined.clear();
        }
        if slice.len() >= JOIN_UP_TO || send.len() == 1 {
            encrypt(slice, outgoing)?;
            taken += slice.len();
        } else {
            joined.extend_from_slice(slice);
        }
    }
    if !joined.is_empty() {
        encrypt(&joined, outgoing)?;
        taken += joined.len();
    }
    Ok(taken)
}

/// Queue our `close_notify` onto `outgoing`.
pub(super) fn queue_close_notify(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    outgoing: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    append(outgoing, RECORD_OVERHEAD, |out| traffic.queue_close_notify(out), encrypt_room).map_err(encrypt_error)?;
    Ok(())
}

/// Append to `out` what `write` puts into a slice at its end, first with room for
/// `estimate` bytes, then with the room `too_small` says `write` asked for.
pub(super) fn append<E>(
    out: &mut Vec<u8>,
    estimate: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    too_small: impl Fn(&E) -> Option<usize>,
) -> Result<usize, E> {
    let at = out.len();
    let mut room = estimate;
    loop {
        out.resize(at + room, 0);
        let result = write(&mut out[at..]);
        out.truncate(at + *result.as_ref().unwrap_or(&0));
        match result {
            Err(e) => match too_small(&e) {
                Some(required) if required > room => room = required,
                _ => return Err(e),
            },
            written => return written,
        }
    }
}

/// The room an encoding asked for, if that was its failure.
pub(super) fn encode_room(error: &EncodeError) -> Option<usize> {
    match error {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Some(*required_size),
        _ => None,
    }
}

/// The room an encryption asked for, if that was its failure.
fn encrypt_room(error: &EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => Some(*required_size),
        _ => None,
    }
}

fn encrypt_error(_: EncryptError) -> rustls::Error {
    rustls::Error::EncryptError
}
